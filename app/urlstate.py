"""Shareable state: the app's controls as URL query keys (``?tab=market&day=weekday&time=18:00...``).

One table, :data:`FIELDS`, binds each query key to a component property with a parser (query
text -> component value, ``None`` when the text is not valid), a formatter (component value ->
query text) and a default. Everything else reads that table:

* the tab is restored by :func:`sync_tab` (one callback both ways: the URL sets ``tabs``, a tab
  click writes the URL), so a reload opens the tab of the link before the page renders;
* a page's controls are restored when the page is rendered (:func:`restored_layout` sets their
  values in the layout) and, while the page is shown, by ``assets/urlstate.js``, which sets the
  components listed by :func:`component_values` when the guided tour moves (only then: a value
  typed meanwhile is never overwritten by an older URL);
* a change of a control writes its keys into the URL without a reload (:func:`controls_update`,
  merged by ``assets/urlstate.js`` into ``dcc.Location(refresh=False)``).

A bad value (``request_mw=abc``, ``tab=nope``, ``time=25:00``) is ignored: the control keeps its
default, nothing is raised. A field whose component is not in its page's layout is skipped when
the callbacks are registered (:func:`present_fields`): ``view`` is bound to ``market-view``, which
a later layout adds; until then the key is kept in the URL but drives nothing.

Retargeting a key is one line of :data:`FIELDS` (e.g. ``time`` to a ``market-time`` input holding
``"HH:MM"``: ``UrlField("time", "market-time", "value", parse_quarter_hour, "18:00", str, "market")``).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qsl, urlencode

log = logging.getLogger(__name__)

TIME_RE = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*$")
REQUEST_LIMIT_MW = 1000.0  # beyond any distribution grid's interface; a larger value in a link is a typo
VIEWS = ("compare", "single")


# ----------------------------------------------------------------------------------------- parsers
def parse_tab(text: str) -> str | None:
    """Return the tab id ``text`` if it is one of the app's tabs (:data:`app.server.TABS`), else None."""
    from app.server import TABS

    return text if text in {tab_id for tab_id, _ in TABS} else None


def parse_day_type(text: str) -> str | None:
    """Return ``weekday`` or ``weekend`` (:data:`app.session.DAY_TYPES`), else None."""
    from app.session import DAY_TYPES

    return text if text in DAY_TYPES else None


def _time_parts(text: str) -> tuple[int, int] | None:
    """Return ``(hour, minute)`` of ``HH:MM`` (or ``HH``) on the 15-min grid of a day, else None."""
    match = TIME_RE.match(text)
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if not (0 <= hour <= 23 and minute in (0, 15, 30, 45)):
        return None
    return hour, minute


def parse_hour(text: str) -> int | None:
    """Return the hour (0..23) of ``HH:MM`` or ``HH``: the time frame of the hourly ``market-hour`` input.

    Quarter hours map to their hour (``18:45`` -> 18): the hourly input has no finer value.
    """
    parts = _time_parts(text)
    return None if parts is None else parts[0]


def parse_quarter_hour(text: str) -> str | None:
    """Return ``HH:MM`` (15-min steps) of ``HH:MM`` or ``HH``, normalised (``7`` -> ``07:00``), else None."""
    parts = _time_parts(text)
    return None if parts is None else f"{parts[0]:02d}:{parts[1]:02d}"


def hour_text(hour: Any) -> str | None:
    """Return the query text ``HH:00`` of an hour value (None when it is not an hour 0..23)."""
    try:
        value = float(hour)
    except (TypeError, ValueError):
        return None
    if not value.is_integer() or not 0 <= value <= 23:
        return None
    return f"{int(value):02d}:00"


def parse_request_mw(text: str) -> float | None:
    """Return a finite, non-zero request P_E in MW (|P_E| <= :data:`REQUEST_LIMIT_MW`), else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value == 0 or abs(value) > REQUEST_LIMIT_MW:
        return None
    return value


def mw_text(value: Any) -> str | None:
    """Return the query text of a request in MW (``1.8``), None when the input holds no number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return f"{number:g}" if math.isfinite(number) else None


def parse_method(text: str) -> str | None:
    """Return ``milp`` or ``merit`` (the map's method, :data:`app.pages.market.METHODS`), else None."""
    from app.pages.market import METHODS

    return text if text in METHODS else None


def parse_view(text: str) -> str | None:
    """Return ``compare`` (both maps) or ``single`` (one map), else None."""
    return text if text in VIEWS else None


def plain_text(value: Any) -> str | None:
    """Return a string control value as its query text (None for no value)."""
    return None if value is None or value == "" else str(value)


# ------------------------------------------------------------------------------------------- table
@dataclass(frozen=True)
class UrlField:
    """One query key bound to a component property.

    ``page`` is the tab whose layout holds the component (None: always in the layout).
    ``parse`` returns the component value of a query text or None (invalid: ignored);
    ``text`` returns the query text of a component value or None (the key is dropped).
    """

    key: str
    component_id: str
    prop: str
    parse: Callable[[str], Any]
    default: Any
    text: Callable[[Any], str | None]
    page: str | None


FIELDS: tuple[UrlField, ...] = (
    UrlField("tab", "tabs", "active_tab", parse_tab, "grid", plain_text, None),
    UrlField("day", "market-day-type", "value", parse_day_type, "weekday", plain_text, "market"),
    UrlField("time", "market-time", "value", parse_quarter_hour, "18:00", plain_text, "market"),
    UrlField("request_mw", "market-request", "value", parse_request_mw, 1.8, mw_text, "market"),
    UrlField("method", "market-method", "value", parse_method, "milp", plain_text, "market"),
    # skipped while the layout has no market-view (present_fields): the key then drives nothing
    UrlField("view", "market-view", "value", parse_view, "compare", plain_text, "market"),
)
KEYS = tuple(f.key for f in FIELDS)


def field(key: str, fields: Iterable[UrlField] = FIELDS) -> UrlField:
    """Return the field of a query key."""
    return next(f for f in fields if f.key == key)


# ----------------------------------------------------------------------------------- query strings
def query_items(search: str | None) -> dict[str, str]:
    """Return the query's keys and values (the first value of a repeated key), ``?`` optional."""
    items: dict[str, str] = {}
    for key, value in parse_qsl((search or "").lstrip("?"), keep_blank_values=True):
        items.setdefault(key, value)
    return items


def query_with(search: str | None, updates: dict[str, str | None]) -> str:
    """Return ``search`` with ``updates`` applied (None removes a key); the table's keys first, in order."""
    items = query_items(search)
    for key, value in updates.items():
        if value is None:
            items.pop(key, None)
        else:
            items[key] = str(value)
    ordered = [(k, items[k]) for k in KEYS if k in items] + [(k, v) for k, v in items.items() if k not in KEYS]
    return ("?" + urlencode(ordered, safe=":")) if ordered else ""


def url_values(search: str | None, fields: Iterable[UrlField] = FIELDS) -> dict[str, Any]:
    """Return ``{key: component value}`` of the query's valid keys (bad and absent keys left out)."""
    items = query_items(search)
    values = {}
    for f in fields:
        if f.key in items:
            value = f.parse(items[f.key])
            if value is not None:
                values[f.key] = value
    return values


def state(search: str | None, fields: Iterable[UrlField] = FIELDS) -> dict[str, Any]:
    """Return every key's value: the query's where valid, else the field's default."""
    fields = tuple(fields)
    return {f.key: f.default for f in fields} | url_values(search, fields)


def component_values(search: str | None, fields: Iterable[UrlField] = FIELDS) -> list[dict[str, Any]]:
    """Return ``[{id, prop, value}]`` of the query's valid keys of page controls, for ``assets/urlstate.js``.

    The tab is left out: :func:`sync_tab` owns it (a second writer would render the page twice).
    """
    fields = tuple(f for f in fields if f.page is not None)
    values = url_values(search, fields)
    return [{"id": f.component_id, "prop": f.prop, "value": values[f.key]} for f in fields if f.key in values]


# ---------------------------------------------------------------------------------------- layouts
def layout_components(component: Any) -> Iterator[Any]:
    """Yield every Dash component of a layout tree (children, lists, tuples; not plotly figures)."""
    if isinstance(component, (list, tuple)):
        for child in component:
            yield from layout_components(child)
        return
    if not hasattr(component, "_prop_names"):
        return
    yield component
    yield from layout_components(getattr(component, "children", None))


def layout_ids(layout: Any) -> set[str]:
    """Return the string ids of a layout's components."""
    return {c.id for c in layout_components(layout) if isinstance(getattr(c, "id", None), str)}


def present_fields(page: str, layout: Any, fields: Iterable[UrlField] = FIELDS) -> tuple[UrlField, ...]:
    """Return the fields of ``page`` whose component is in ``layout`` (the others are skipped, logged)."""
    ids = layout_ids(layout)
    found = []
    for f in fields:
        if f.page != page:
            continue
        if f.component_id in ids:
            found.append(f)
        else:
            log.info("URL key %r: no component %r on page %r; the key is kept but drives nothing", f.key, f.component_id, page)
    return tuple(found)


def restored_layout(layout: Any, search: str | None, fields: Iterable[UrlField] = FIELDS) -> Any:
    """Return ``layout`` with the query's valid values set on its components (in place)."""
    fields = tuple(f for f in fields if f.page is not None)
    values = url_values(search, fields)
    by_id = {f.component_id: f for f in fields if f.key in values}
    for component in layout_components(layout):
        f = by_id.get(getattr(component, "id", None))
        if f is not None:
            setattr(component, f.prop, values[f.key])
    return layout


# -------------------------------------------------------------------------------------- callbacks
def sync_tab(search: str | None, active_tab: str | None, trigger: str | None) -> tuple[Any, Any]:
    """Return ``(active_tab, url updates)`` keeping the tab and the URL in step; ``no_update`` where nothing changes.

    A tab click (``trigger == "tabs"``) updates the URL's ``tab``; the URL (a load, a link, the
    tour, the browser's back button) sets the tab when it names another valid one.
    """
    import dash

    tab = field("tab")
    if trigger == "tabs":
        text = tab.text(active_tab)
        return dash.no_update, ({"tab": text} if query_items(search).get("tab") != text else dash.no_update)
    wanted = url_values(search, (tab,)).get("tab")
    return (wanted if wanted is not None and wanted != active_tab else dash.no_update), dash.no_update


def controls_update(search: str | None, fields: tuple[UrlField, ...], *values: Any) -> dict[str, str | None]:
    """Return the URL updates ``{key: text or None}`` after a page's controls changed (``values`` in ``fields`` order).

    Only the page's own keys: the merge into the URL (``assets/urlstate.js``) reads the URL as it
    is then, so a tab clicked meanwhile is never set back. Raises ``PreventUpdate`` when the URL
    already holds these values (this ends the loop URL -> control -> URL).
    """
    import dash

    items = query_items(search)
    updates = {f.key: f.text(v) for f, v in zip(fields, values)}
    if all(items.get(k) == v for k, v in updates.items()):
        raise dash.exceptions.PreventUpdate
    return updates


def register_callbacks(app: Any, page_layouts: dict[str, Any]) -> None:
    """Register the URL callbacks: the merge of updates into the URL, tab sync, the controls' writers
    (one per page), and the setting of controls by ``url-values`` (written by the tour).

    ``page_layouts`` maps a tab id to its layout, used only to skip absent components. Every
    change of the URL goes through the ``url-updates`` store and one clientside merge, which reads
    the URL when it runs: two writers never overwrite each other's keys with a stale copy.
    """
    import dash
    from dash import Input, Output, State

    app.clientside_callback(
        dash.ClientsideFunction(namespace="digiplat_urlstate", function_name="merge"),
        Output("url", "search"), Input("url-updates", "data"), State("url", "search"), prevent_initial_call=True,
    )
    app.callback(Output("tabs", "active_tab"), Output("url-updates", "data", allow_duplicate=True), Input("url", "search"),
                 Input("tabs", "active_tab"), prevent_initial_call="initial_duplicate",
                 )(lambda search, tab: sync_tab(search, tab, dash.callback_context.triggered_id))
    for page, layout in page_layouts.items():
        fields = present_fields(page, layout)
        if not fields:
            continue
        app.callback(Output("url-updates", "data", allow_duplicate=True),
                     *[Input(f.component_id, f.prop) for f in fields], State("url", "search"), prevent_initial_call=True,
                     )(lambda *args, _fields=fields: controls_update(args[-1], _fields, *args[:-1]))
    app.clientside_callback(
        dash.ClientsideFunction(namespace="digiplat_urlstate", function_name="apply"),
        Output("url-applied", "data"), Input("url-values", "data"), prevent_initial_call=True,
    )
