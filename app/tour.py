"""A guided tour for presentations: six steps, one sentence each, that drive the real app.

Each step is a set of URL-state values (:mod:`app.urlstate`): entering a step writes them into
the URL (which switches the tab, as a shared link does) and sets the shown page's controls, so
the tour shows the live app, not pictures. Steps that need a market result mark ``clear``:
``assets/tour.js`` then presses the page's own "Clear market" button once the controls hold the
step's values, if no current result is shown (none yet, or one marked outdated). The first of
them also sets the default round (day type, time and request: the table's defaults), the one in
which the grid-blind merit order congests the grid.

The panel takes the place of the header and the tabs (hidden while the tour runs), so it covers
none of the maps; Next/Back, the arrow keys (and PageDown/PageUp of a presenter's clicker) move,
Esc closes. ``?tour=1`` (or another step number) in a URL opens the tour at that step; the URL
follows the tour, so a reload stays on the step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from app import urlstate

log = logging.getLogger(__name__)
KEY = "tour"


@dataclass(frozen=True)
class TourStep:
    """One step: its title, its one sentence, the URL-state values it sets, whether it needs a result."""

    title: str
    sentence: str
    values: dict[str, str] = field(default_factory=dict)
    clear: bool = False


def _default_round() -> dict[str, str]:
    """The URL values of the default round (the defaults of :data:`app.urlstate.FIELDS`)."""
    return {key: urlstate.field(key).text(urlstate.field(key).default) for key in ("day", "time", "request_mw")}


STEPS: tuple[TourStep, ...] = (
    TourStep("The grid", "A distribution grid generated from OpenStreetMap: a 20 kV ring, its substations "
             "and 0.4 kV feeders to every building.", {"tab": "grid"}),
    TourStep("The bids", "Aggregators offer flexibility of batteries, EVs, heat pumps and PV as bids at buildings; "
             "the TSO sees bids, never the grid.", {"tab": "market", "method": "milp"}),
    TourStep("The merit order congests", "Blind to the grid, the merit order buys the cheapest bids first and pushes voltages "
             "and loadings past their limits.",
             {"tab": "market", "method": "merit", "view": "single", **_default_round()}, clear=True),
    TourStep("The MILP clears clean", "The grid-aware MILP of paper A clears the same request with the DSO's "
             "sensitivities, and the AC power flow finds no violation.",
             {"tab": "market", "method": "milp", "view": "compare"}, clear=True),
    TourStep("The validation", "An AC power flow checks the MILP's predicted voltages and loadings: the linearization "
             "holds where limits bind.", {"tab": "validation"}, clear=True),
    TourStep("What the TSO sees", "The TSO clears with bids and an opaque sensitivity package only: no topology, "
             "no customer data.",
             {"tab": "market", "method": "milp"}, clear=True),
)


def step_from_search(search: str | None) -> int | None:
    """Return the 1-based step of the URL's ``tour`` key (``1`` opens the tour), None if absent or invalid."""
    text = urlstate.query_items(search).get(KEY)
    if text is None or not text.strip().isdigit():
        return None
    step = int(text)
    return step if 1 <= step <= len(STEPS) else None


def search_for_step(search: str | None, step: int | None) -> str:
    """Return the URL query showing ``step`` (its values and ``tour=step``); None closes the tour."""
    if step is None:
        return urlstate.query_with(search, {KEY: None})
    return urlstate.query_with(search, {**STEPS[step - 1].values, KEY: str(step)})


def next_step(trigger: str | None, current: int | None, search: str | None) -> int | None:
    """Return the step after ``trigger`` (a button id, or ``url`` for a changed URL)."""
    if trigger == "tour-start":
        return 1
    if trigger == "tour-close" or (trigger == "tour-next" and current == len(STEPS)):
        return None
    if trigger == "tour-next":
        return min((current or 0) + 1, len(STEPS))
    if trigger == "tour-back":
        return max((current or 2) - 1, 1)
    return step_from_search(search)


def tour_update(trigger: str | None, current: int | None, search: str | None) -> tuple[Any, Any, Any]:
    """Return ``(step, URL updates, control values)`` after a button or a URL change; ``no_update`` where nothing changes.

    The updates (``{key: text or None}``) are merged into the URL by ``assets/urlstate.js``; the
    control values (:func:`app.urlstate.component_values`) set the shown page's controls. A step's
    values are written only when the step changes (or the URL names a step whose values it lacks),
    so a user may change a control during a step without the tour setting it back.
    """
    import dash

    step = next_step(trigger, current, search)
    if step == current and trigger in (None, "url"):
        return dash.no_update, dash.no_update, dash.no_update
    if step is None:
        updates: dict[str, str | None] = {KEY: None}
    elif trigger in (None, "url"):
        # a link opened (or moved) the tour: its own values win, the step adds those it lacks
        items = urlstate.query_items(search)
        updates = {k: v for k, v in STEPS[step - 1].values.items() if k not in items}
    else:
        updates = {**STEPS[step - 1].values, KEY: str(step)}
    new = urlstate.query_with(search, updates)
    if step is not None and step != current:  # the step's keys, as the URL now holds them
        values = urlstate.component_values(new, tuple(f for f in urlstate.FIELDS if f.key in STEPS[step - 1].values))
    else:
        values = dash.no_update
    return ((step if step != current else dash.no_update), (updates if new != (search or "") else dash.no_update), values)


def step_payload(step: int | None) -> dict[str, Any] | None:
    """Return what ``assets/tour.js`` needs of a step: its number, the controls to wait for, ``clear``."""
    if step is None:
        return None
    s = STEPS[step - 1]
    search = urlstate.query_with("", s.values)
    return {"step": step, "clear": s.clear, "tab": s.values.get("tab"), "values": urlstate.component_values(search)}


def tour_round(request: dict | None, search: str | None, token: str | None, bids: list[dict] | None) -> dict:
    """Return a market result for a step that needs one on a page without the Clear button.

``assets/tour.js`` asks for it (``tour-clear``) when such a step (the Validation tab, opened by
``?tour=5``) finds no result.

    The round is the URL's (day, time, request; their defaults where absent or invalid) with the
    session's bids (the page's table, else the kept table, else the default bids). A failed
    round leaves the result store as it is (logged; the page then shows its hint).
    """
    import dash

    from app import bidstore, server, session

    if not isinstance(request, dict):
        raise dash.exceptions.PreventUpdate
    values = urlstate.state(search)
    if bids is None:
        bids = bidstore.load_bids(token)
    if bids is None:
        bids = session.default_bid_records()
    result, alert, _ = server.clear_market(1, values["day"], values["time"], values["request_mw"], bids)
    if result is dash.no_update:
        log.warning("the tour's market round failed: %s", alert)
        raise dash.exceptions.PreventUpdate
    return result


def panel(step: int | None) -> tuple[Any, str, str, bool, str]:
    """Return ``(body, counter, app class, back disabled, next label)`` of the tour panel at ``step``."""
    from dash import html

    if step is None:
        return [], "", "", True, "Next"
    s = STEPS[step - 1]
    body = [html.Div(s.title, className="tour-title", id="tour-title"), html.Div(s.sentence, className="tour-sentence")]
    return body, f"{step} / {len(STEPS)}", "tour-open", step == 1, ("Finish" if step == len(STEPS) else "Next")


def layout():
    """Return the tour panel (hidden until the tour opens) and its store."""
    import dash_bootstrap_components as dbc
    from dash import dcc, html

    return html.Div([
        dcc.Store(id="tour-step", storage_type="memory"),
        dcc.Store(id="tour-follow", storage_type="memory"),
        dcc.Store(id="tour-followed", storage_type="memory"),
        dcc.Store(id="tour-clear", storage_type="memory"),
        html.Div(id="tour-body", className="tour-body"),
        html.Div([
            html.Span(id="tour-running", className="tour-running"),
            html.Span(id="tour-counter", className="tour-counter"),
            dbc.Button("Back", id="tour-back", color="light", className="tour-button"),
            dbc.Button("Next", id="tour-next", color="warning", className="tour-button"),
            dbc.Button("×", id="tour-close", color="link", className="tour-close", title="close the tour (Esc)"),
        ], className="tour-nav"),
    ], id="tour-panel", className="tour-panel", role="region", **{"aria-label": "guided tour"})


def start_button():
    """Return the navbar's button that starts the tour."""
    import dash_bootstrap_components as dbc

    return dbc.Button("▶ Tour", id="tour-start", color="light", outline=True, size="sm", className="tour-start",
                      title="a guided tour for presentations (arrow keys move, Esc closes)")


def register_callbacks(app: Any, job: dict[str, Any] | None = None) -> None:
    """Register the tour's callbacks: buttons and URL -> step and URL; step -> panel; step -> ``assets/tour.js``;
    ``tour-clear`` -> a market round (``job``: the keywords of the app's clearing callback, e.g. background)."""
    import dash
    from dash import Input, Output, State

    app.callback(
        Output("tour-step", "data"), Output("url-updates", "data", allow_duplicate=True), Output("url-values", "data"),
        Input("tour-start", "n_clicks"), Input("tour-next", "n_clicks"), Input("tour-back", "n_clicks"),
        Input("tour-close", "n_clicks"), Input("url", "search"), State("tour-step", "data"),
        prevent_initial_call="initial_duplicate",
    )(lambda *args: tour_update(dash.callback_context.triggered_id, args[-1], args[-2]))
    app.callback(Output("tour-body", "children"), Output("tour-counter", "children"), Output("app-root", "className"),
                 Output("tour-back", "disabled"), Output("tour-next", "children"), Input("tour-step", "data"))(panel)
    app.callback(Output("tour-follow", "data"), Input("tour-step", "data"))(step_payload)
    app.callback(Output("result-store", "data", allow_duplicate=True), Input("tour-clear", "data"), State("url", "search"),
                 State("session-token", "data"), State("bids-store", "data"),
                 running=[(Output("tour-running", "children"), "clearing the default round…", "")],
                 prevent_initial_call=True, **(job or {}))(tour_round)
    app.clientside_callback(
        dash.ClientsideFunction(namespace="digiplat_tour", function_name="follow"),
        Output("tour-followed", "data"), Input("tour-follow", "data"), prevent_initial_call=True,
    )
