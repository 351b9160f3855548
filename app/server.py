"""The Dash demonstrator: layout, callbacks (plain functions), jobs, and serving a room.

How a workshop room is served (issue 9): ``digiplat serve`` runs gunicorn with a fixed number
of worker processes, forked from one warm master (grid loaded, default scenario linearized and
cleared once, so every worker starts warm and shares those pages copy-on-write). A market round
runs synchronously inside the worker that received the click, so the number of rounds running at
once, and the memory, are bounded by ``--workers``; further clicks wait, first come first served,
in the listening socket's queue, while the browser shows the ``running=`` indicator. With
``$REDIS_URL`` the round is a Dash background callback instead, run by Celery workers of fixed
concurrency (``serve`` starts and stops them), and the HTTP workers only answer polls.
Linearizations (~4 s each) are shared by all workers through the private cache directory
(:func:`app.session.cache_dir`).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gridgen import OSM_CREDIT
from gridgen.paths import assets_dir

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
ASSETS = assets_dir(strict=False)  # the checkout's assets/, or the installed copy (pip install .)
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # one callback request: a 5 MB upload is 6.7 MB of base64 plus the table
CLEAR_POLL_MS = 500  # how often the browser asks for a background round's result (Celery only)


@dataclass(frozen=True)
class Page:
    """One tab: its id, its label, its layout (given the session's bids) and its callbacks."""

    tab_id: str
    label: str
    layout: Callable[[list[dict] | None], Any]
    register: Callable[[Any], None] | None = None


def _grid_page(bids: list[dict] | None):
    from app import session
    from app.pages import market

    grid = session.default_grid()
    return market.grid_layout(grid.geojson, grid.summary, session.peak_load_flow(),
                              title=f"{session.grid_title()} distribution grid")


def _market_page(bids: list[dict] | None):
    from app import session
    from app.pages import market

    return market.market_layout(session.default_grid().geojson, bids if bids is not None else session.default_bid_records())


def _validation_page(bids: list[dict] | None):
    from app.pages import market

    return market.validation_layout()


def _mlopf_page(bids: list[dict] | None):
    from app.pages import mlopf

    return mlopf.layout()


def _mlopf_callbacks(app: Any) -> None:
    from app.pages import mlopf

    mlopf.register_callbacks(app)


def _privacy_page(bids: list[dict] | None):
    from app.pages import privacy

    return privacy.layout()


def _privacy_callbacks(app: Any) -> None:
    from app.pages import privacy

    privacy.register_callbacks(app)


def _day_page(bids: list[dict] | None):
    from app.pages import day

    return day.layout()


def _day_callbacks(app: Any) -> None:
    from app.pages import day

    day.register_callbacks(app)


# The tabs in their order; a new page is one more line here.
PAGES: tuple[Page, ...] = (
    Page("grid", "Grid", _grid_page),
    Page("market", "Market", _market_page),
    Page("day", "Market day", _day_page, _day_callbacks),
    Page("validation", "Validation", _validation_page),
    Page("mlopf", "Paper B: ML-based OPF", _mlopf_page, _mlopf_callbacks),
    Page("privacy", "Privacy", _privacy_page, _privacy_callbacks),
)
TABS = tuple((page.tab_id, page.label) for page in PAGES)


def _user_error_types() -> tuple[type[BaseException], ...]:
    from gridgen._errors import GridGenError
    from optim._errors import OptimError

    return (GridGenError, OptimError)


def user_message(exc: BaseException) -> str:
    """Return the one-line message shown to a user for an expected error (never a traceback)."""
    text = str(exc).strip()
    return text if text else type(exc).__name__


# ------------------------------------------------------------------------------------ callbacks
def render_page(tab: str | None, bids: list[dict] | None):
    """Return the content of a tab (the first page for an unknown tab id)."""
    page = next((p for p in PAGES if p.tab_id == tab), PAGES[0])
    return page.layout(bids)


def render_restored_page(tab: str | None, token: str | None, bids: list[dict] | None, search: str | None):
    """Return a tab's content with the session's kept bids (after a reload) and the URL's control values."""
    from app import bidstore, urlstate

    if bids is None:
        bids = bidstore.load_bids(token)
    return urlstate.restored_layout(render_page(tab, bids), search)


def keep_bids(bids: list[dict] | None, token: str | None) -> bool:
    """Keep the session's bid table on the server (:mod:`app.bidstore`); return whether it was kept."""
    import dash

    from app import bidstore

    if bids is None:
        raise dash.exceptions.PreventUpdate
    return bidstore.save_bids(token, bids)


def clear_market(n_clicks: int | None, day_type: str, time: Any, request_mw: Any, bids: list[dict] | None,
                 refine: bool | None = False):
    """Run a market round; return ``(result, alert_text, alert_open)``; errors keep the old result.

    ``time`` is the start ``HH:MM`` of the 15-minute time frame (the ``market-time`` control).
    """
    import dash

    from app import session

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    try:
        hour, minute = session.time_frame_of(time)
        request_value = float(request_mw) if request_mw not in (None, "") else None
        result = session.market_round(day_type, hour, request_value, bids or [], refine=bool(refine), minute=minute)
    except _user_error_types() as exc:
        return dash.no_update, user_message(exc), True
    except (TypeError, ValueError) as exc:
        return dash.no_update, f"invalid input: {user_message(exc)}", True
    except Exception as exc:  # a failed job must reach the user as an alert, never as a hung spinner
        log.exception("market round failed")
        return dash.no_update, f"The market round failed ({type(exc).__name__}); the server log has the details.", True
    return result, "", False


def clear_market_request(request: dict | None, day_type: str, time: Any, request_mw: Any, bids: list[dict] | None,
                         refine: bool | None = False):
    """Return the result, the alert and the market views for a click in the ``clear-request`` store.

    One request answers a click completely: ``(result, alert_text, alert_open, *views)``
    (:func:`clear_market`, then the views of :func:`show_result`); the views are ``no_update``
    when the round fails, so the old result stays on screen.
    """
    import dash

    if not isinstance(request, dict):
        raise dash.exceptions.PreventUpdate
    n_views = len(market_view_outputs(duplicate=False))
    result, alert, is_open = clear_market(request.get("n_clicks"), day_type, time, request_mw, bids, refine)
    if result is dash.no_update:
        return (result, alert, is_open) + (dash.no_update,) * n_views
    try:
        views = show_result(result)
    except Exception as exc:
        log.exception("drawing the market result failed")
        return (dash.no_update, f"The result could not be drawn ({type(exc).__name__}).", True) + (dash.no_update,) * n_views
    return (result, alert, is_open, *views)


def show_result(result: dict | None):
    """Return the market page's views of a result.

    ``(cards, restyle, milp bid markers, merit bid markers, legend, tso_package, tso_loading)``:
    the cards; the restyle of both maps' :data:`app.mapview.RESTYLED_LAYERS` (``{GeoJSON id:
    {styles, tips}}``, :func:`app.mapview.restyles`), each map coloured by its method's power
    flow; the bid markers of both maps (:data:`app.pages.market.MAP_METHODS`), the legend, the TSO
    package table and the TSO loading chart. Without a result the maps keep the plain grid they were drawn with (``no_update``).
    A switch of the view or of the single view's method redraws nothing: both maps are drawn.
    """
    import dash

    from app import session
    from app.mapview import legend, restyles, styled_layers
    from app.pages import market

    if not result:
        return ([], *([dash.no_update] * (2 + len(market.MAP_METHODS))), "Clear the market to see the package's figures.",
                market.tso_loading_figure({}))
    geojson = session.default_grid().geojson
    # the fixed layers are recoloured in place in the browser (a style and a tooltip per feature,
    # assets/map.js); the bid markers, which follow the bids, are sent as data
    restyle, bids = {}, []
    for method in market.MAP_METHODS:
        prefix = market.market_map_prefix(method)
        restyle.update({f"{prefix}-layer-{name}": value for name, value in restyles(geojson, result[method]).items()})
        bids.append(styled_layers(geojson, result[method], ("bids",))["bids"])
    return (market.summary_cards(result), restyle, *bids, legend(True),
            market.tso_package_view(result.get("tso", {})), market.tso_loading_figure(result.get("tso", {})))


def market_view_outputs(*, duplicate: bool) -> list:
    """The Outputs of :func:`show_result`'s views, in its order."""
    from dash import Output

    from app.pages.market import MAP_METHODS, market_map_prefix

    kw = {"allow_duplicate": True} if duplicate else {}
    return ([Output("market-cards", "children", **kw), Output("market-restyle", "data", **kw)]
            + [Output(f"{market_map_prefix(m)}-layer-bids", "data", **kw) for m in MAP_METHODS]
            + [Output("market-legend", "children", **kw), Output("market-tso-package", "children", **kw),
               Output("market-tso-loading", "figure", **kw)])


def show_validation(result: dict | None):
    """Return the validation page's content for a result."""
    from app.pages import market

    if not result:
        empty = market.hint_figure("Clear the market on the Market page to see this plot.")
        return "Clear the market on the Market page; its AC power-flow validation appears here.", [], empty, empty, []
    vm_fig, loading_fig = market.validation_figures(result)
    return "", market.validation_table(result), vm_fig, loading_fig, market.merit_violations(result)


# The inputs of a round: a change of one after a clearing makes the shown result outdated.
ROUND_INPUTS: tuple[tuple[str, str], ...] = (
    ("market-day-type", "value"), ("market-time", "value"), ("market-request", "value"), ("market-refine", "value"),
    ("market-bids", "rowData"), ("market-bids", "cellValueChanged"),
)
OUTDATED_NOTE = "Outdated: an input changed after this clearing (day, time, request, refine or bids). Clear the market again."


def outdated_marks(trigger: str | None, result: dict | None) -> tuple[str, str]:
    """Return ``(note, class name)`` of the market results after ``trigger`` (a component id) changed.

    A new result is current; a change of a round input while a result is shown makes it outdated
    (the cards and maps are dimmed and the note says why).
    """
    if trigger == "result-store" or not result:
        return "", "market-results"
    return OUTDATED_NOTE, "market-results outdated"


def violation_table(result: dict | None) -> list[dict]:
    """Return the rows of the merit order's violation table for a result (empty without)."""
    from app import session
    from app.pages import market

    if not result:
        return []
    return market.violation_rows(result, session.default_grid().geojson, session.bus_points())


def zoom_to_violation(cell: dict | None, rows: list[dict] | None) -> tuple[dict, ...]:
    """Return the viewport of each Market map (:data:`app.pages.market.MAP_METHODS`) for a clicked violation row.

    Both maps fly to the element's bounds: the merit order's map shows the violation, the MILP's
    the same place within its limits.
    """
    import dash

    from app.pages.market import MAP_METHODS

    if not isinstance(cell, dict) or not rows:
        raise dash.exceptions.PreventUpdate
    index = cell.get("rowIndex")
    row = cell.get("data") if isinstance(cell.get("data"), dict) else (rows[index] if isinstance(index, int) and 0 <= index < len(rows) else None)
    if not row or not row.get("bounds"):
        raise dash.exceptions.PreventUpdate
    # fitBounds without animation: a flight would be cut short by the other map's synchronisation
    # (dash-leaflet sets the view again even when it is unchanged, which stops a running flight)
    return tuple({"bounds": row["bounds"], "transition": "fitBounds", "options": {"animate": False}} for _ in MAP_METHODS)


def upload_bids(contents: str | None, filename: str | None, current: list[dict] | None):
    """Return ``(bids, alert_text, alert_open)`` for an uploaded bid file; bad files keep the table."""
    import dash

    from app import session

    if not contents:
        raise dash.exceptions.PreventUpdate
    try:
        return session.bids_from_upload(contents, filename), "", False
    except _user_error_types() as exc:
        return dash.no_update, user_message(exc), True
    except Exception as exc:  # never an HTTP 500 for a bad file
        log.exception("upload failed")
        return dash.no_update, f"{session.upload_name(filename)}: cannot read the bid file ({type(exc).__name__})", True


def download_bids(n_clicks: int | None, bids: list[dict] | None):
    """Return the bid table as a CSV download."""
    import dash

    from app import session

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    return {"content": session.bids_csv(bids or []), "filename": "bids.csv", "type": "text/csv"}


def download_round(n_clicks: int | None, result: dict | None, bids: list[dict] | None):
    """Return ``(download, alert_text, alert_open)``: the shown round's export files as one zip.

    The zip holds the files of ``digiplat clear --export`` (:mod:`app.export`) for both methods,
    named with the round's day type, time and request; without a result, or when the round can
    no longer be reproduced, an alert says what to do.
    """
    import base64

    import dash

    from app import export, session

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    try:
        rnd = session.exported_round(result, bids)
        content = export.export_zip(rnd)
    except _user_error_types() as exc:
        return dash.no_update, user_message(exc), True
    except Exception as exc:  # a failed export must reach the user as an alert, never as a hung button
        log.exception("export failed")
        return dash.no_update, f"The export failed ({type(exc).__name__}); the server log has the details.", True
    return ({"content": base64.b64encode(content).decode("ascii"), "filename": f"{export.export_name(rnd)}.zip",
             "type": "application/zip", "base64": True}, "", False)


def add_bid(n_clicks: int | None, bids: list[dict] | None):
    """Return the bid table with one new row (a free ``NEWnnn`` id, to be filled in) on top."""
    import dash

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    rows = list(bids or [])
    taken = {str(r.get("bid_id")) for r in rows}
    number = next(k for k in range(1, len(rows) + 2) if f"NEW{k:03d}" not in taken)
    # on top: the new row is on the first page, where the user looks, not on the last one
    return [{"bid_id": f"NEW{number:03d}", "aggregator": "", "building_id": "", "p_mw": 0.0,
             "price_eur_per_mwh": 0.0, "fpu": ""}, *rows]


def frame_bids(n_clicks: int | None, day_type: str, time: Any):
    """Return ``(bids, alert_text, alert_open)``: the scenario's default bids of the chosen time frame.

    The bid table is the user's (edited or uploaded), so a change of the time frame does not
    replace it; this button does, on request.
    """
    import dash

    from app import session

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    try:
        hour, minute = session.time_frame_of(time)
        return session.default_bid_records(day_type, hour, minute), "", False
    except _user_error_types() as exc:
        return dash.no_update, user_message(exc), True


def delete_bids(n_clicks: int | None, selected: list[dict] | None, bids: list[dict] | None):
    """Return the bid table without the selected rows (each selected row removes one equal row)."""
    import dash

    if not n_clicks or not selected:
        raise dash.exceptions.PreventUpdate
    pending = [dict(row) for row in selected]
    kept = []
    for row in bids or []:
        if row in pending:
            pending.remove(row)
        else:
            kept.append(row)
    return kept


def details_panel(details: dict | None, where: str | None = None) -> Any:
    """Return the panel of a map element's readable details (:func:`app.mapview.feature_details`).

    ``where`` says where the values come from: the map (method) on the Market page, where two maps
    show the same element, or the peak-load power flow on the Grid page.
    """
    from dash import html

    if not isinstance(details, dict):
        return "No details for this element."
    rows = [html.Tr([html.Td(label, className="pe-2 text-muted"), html.Td(value)]) for label, value in details.get("rows", [])]
    return html.Div([html.Div(details.get("title", ""), className="view-title"),
                     *([html.Div(where, className="control-help")] if where else []),
                     html.Table(html.Tbody(rows), className="small element-details")])


def _clicked(click_data: tuple[Any, ...]) -> tuple[dict[str, Any], str]:
    """The feature clicked last of a details callback's ``clickData`` inputs and the id of its layer."""
    import dash

    ctx = dash.callback_context
    trigger = ctx.triggered[0]["value"] if ctx.triggered else None
    feature = trigger if isinstance(trigger, dict) else next((c for c in click_data if c), None)
    if not isinstance(feature, dict):
        raise dash.exceptions.PreventUpdate
    return feature, ctx.triggered_id if isinstance(ctx.triggered_id, str) else ""


def element_details(*click_data: Any) -> Any:
    """Return the details panel of the Grid page's map element clicked last."""
    feature, source = _clicked(click_data)
    where = "values of the grid's peak-load AC power flow" if source.startswith("grid-") else None
    return details_panel((feature.get("properties") or {}).get("details"), where)


def market_element_details(*click_data_and_result: Any) -> Any:
    """Return the details panel of the market map element clicked last, with the shown result's values.

    The fixed layers are recoloured in the browser and keep the plain grid's properties, so the
    values (voltage, loading, activation) come from the result in ``result-store``.
    """
    from app import session
    from app.mapview import feature_details, substation_names
    from app.pages.market import METHODS, MAP_METHODS, market_map_prefix

    *click_data, result = click_data_and_result
    feature, source = _clicked(tuple(click_data))
    method = next((m for m in MAP_METHODS if source.startswith(market_map_prefix(m) + "-")), None)
    props = feature.get("properties") or {}
    details = props.get("details")
    outcome = (result or {}).get(method) if method else None
    if isinstance(outcome, dict) and props.get("kind") not in (None, "bid"):
        geojson = session.default_grid().geojson
        details = feature_details(props["kind"], props, outcome, outcome.get("buildings", {}),
                                  substation_names(geojson)) or details
    where = f"on the map of the {METHODS[method]}" if method else None
    return details_panel(details, where)


# ---------------------------------------------------------------------------------------- app
def celery_for(redis_url: str):
    """Return the Celery app of the background rounds (broker and results on ``redis_url``)."""
    from celery import Celery

    celery_app = Celery("digiplat", broker=redis_url, backend=redis_url)
    celery_app.conf.update(
        worker_prefetch_multiplier=1,  # a worker takes one round at a time: first come, first served
        task_acks_late=False,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        task_time_limit=600,  # a round that hangs is killed; the user gets the failure, not a spinner forever
        worker_hijack_root_logger=False,
    )
    return celery_app


def background_manager():
    """Return Dash's CeleryManager when ``$REDIS_URL`` is set, else None (rounds run in the request)."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        return None
    from dash import CeleryManager

    return CeleryManager(celery_for(redis_url))


def create_app(*, warm_up: bool = True):
    """Return the Dash app (its pages: :data:`PAGES`).

    ``warm_up`` loads the grid and clears the default round once, synchronously, before the app
    is returned: gunicorn forks its workers (and Celery its pool) from this warm process.
    """
    import dash
    import dash_bootstrap_components as dbc
    import dash_ag_grid  # noqa: F401  (Dash wants every component library imported before callbacks run)
    import dash_leaflet  # noqa: F401
    from dash import Input, Output, State, dcc, html

    from app import bidstore, session, tour, urlstate
    from app.mapview import LAYERS

    manager = background_manager()
    app = dash.Dash(
        __name__, title="DigIPlat flexibility demonstrator", assets_folder=str(ASSETS),
        external_stylesheets=[], suppress_callback_exceptions=True, background_callback_manager=manager,
        serve_locally=True, compress=True,  # gzip (flask-compress): a map render is ~1 MB of JSON
    )
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    # Bootstrap's CSS is served from assets/vendor (Dash loads every .css in assets): no CDN, works offline.
    header = html.Div([
        html.H1("DigIPlat: privacy-preserving TSO–DSO flexibility market"),
        html.Small(f" {session.grid_title()} · paper A (sensitivity-based MILP) and paper B (ML-based OPF)"),
        tour.start_button(),
    ], className="digiplat-header")
    # A function: each page load gets a fresh session token, which the browser's session storage
    # replaces by the one it already holds (dcc.Store prefers stored data), so a reload keeps it.
    app.layout = lambda: html.Div([
        dcc.Location(id="url", refresh=False),  # shareable state (app.urlstate): the URL follows the controls
        dcc.Store(id="session-token", storage_type="session", data=bidstore.new_token()),
        dcc.Store(id="bids-saved", storage_type="memory"),
        dcc.Store(id="url-updates", storage_type="memory"),
        dcc.Store(id="url-values", storage_type="memory"),
        dcc.Store(id="url-applied", storage_type="memory"),
        tour.layout(),
        header,
        dcc.Store(id="bids-store", storage_type="memory"),
        dcc.Store(id="result-store", storage_type="memory"),
        dcc.Store(id="clear-request", storage_type="memory"),
        dbc.Tabs([dbc.Tab(label=page.label, tab_id=page.tab_id) for page in PAGES], id="tabs", active_tab=PAGES[0].tab_id,
                 className="mt-2"),
        # The spinner covers the page only while a tab renders, not while a callback inside it runs
        # (a market round has its own running indicator and must not hide the page).
        dcc.Loading(dbc.Container(id="page", fluid=True, className="py-2"), type="default", delay_show=300,
                    target_components={"page": "children"}),
        html.Footer(f"Map data {OSM_CREDIT}. Code: DigIPlat demonstrator.", className="credit p-2"),
    ], id="app-root")

    app.callback(Output("page", "children"), Input("tabs", "active_tab"), Input("session-token", "data"),
                 State("bids-store", "data"), State("url", "search"))(render_restored_page)
    # A click becomes a request in a store outside the page. Dash runs a callback whose Input appears
    # in a newly rendered tab when one of its Outputs lies outside that tab, prevent_initial_call or
    # not: with market-clear as its Input the round ran (and the controls were disabled) every time
    # the Market tab was opened. This clientside step ignores the fresh button.
    app.clientside_callback(
        "function (n) { return n ? {n_clicks: n, at: Date.now()} : window.dash_clientside.no_update; }",
        Output("clear-request", "data"), Input("market-clear", "n_clicks"), prevent_initial_call=True,
    )
    # One request per click returns the result and the market views of both maps (no second round
    # trip that would queue behind the other sessions' rounds).
    job = dict(background=True, interval=CLEAR_POLL_MS) if manager is not None else {}
    app.callback(
        Output("result-store", "data"), Output("market-alert", "children", allow_duplicate=True),
        Output("market-alert", "is_open", allow_duplicate=True), *market_view_outputs(duplicate=True),
        Input("clear-request", "data"),
        State("market-day-type", "value"), State("market-time", "value"), State("market-request", "value"), State("market-bids", "rowData"),
        State("market-refine", "value"),
        running=[(Output("market-clear", "disabled"), True, False), (Output("market-upload", "disabled"), True, False),
                 (Output("market-running", "children"), "clearing…", "")],
        prevent_initial_call=True, **job,
    )(clear_market_request)
    # The Market tab drawn anew (back from another tab, a reload with a kept result, the tour) shows
    # the session's result: this runs once per render (market-cards' id never changes).
    app.callback(*market_view_outputs(duplicate=False), Input("market-cards", "id"), State("result-store", "data"),
                 )(lambda _id, result: show_result(result))
    register_market_maps(app)
    app.callback(
        Output("validation-empty", "children"), Output("validation-table", "children"), Output("validation-vm", "figure"),
        Output("validation-loading", "figure"), Output("validation-merit", "children"),
        Input("result-store", "data"),
    )(show_validation)
    app.callback(
        Output("market-bids", "rowData", allow_duplicate=True), Output("market-alert", "children", allow_duplicate=True),
        Output("market-alert", "is_open", allow_duplicate=True),
        Input("market-upload", "contents"), State("market-upload", "filename"), State("market-bids", "rowData"),
        prevent_initial_call=True,
    )(upload_bids)
    app.callback(Output("market-download", "data"), Input("market-download-btn", "n_clicks"), State("market-bids", "rowData"),
                 prevent_initial_call=True)(download_bids)
    app.callback(Output("market-export", "data"), Output("market-alert", "children", allow_duplicate=True),
                 Output("market-alert", "is_open", allow_duplicate=True), Input("market-export-btn", "n_clicks"),
                 State("result-store", "data"), State("market-bids", "rowData"),
                 running=[(Output("market-export-btn", "disabled"), True, False)],
                 prevent_initial_call=True, **job)(download_round)
    app.callback(Output("market-bids", "rowData", allow_duplicate=True), Input("market-add-bid", "n_clicks"), State("market-bids", "rowData"),
                 prevent_initial_call=True)(add_bid)
    app.callback(Output("market-bids", "rowData", allow_duplicate=True), Output("market-alert", "children", allow_duplicate=True),
                 Output("market-alert", "is_open", allow_duplicate=True), Input("market-default-bids", "n_clicks"),
                 State("market-day-type", "value"), State("market-time", "value"), prevent_initial_call=True)(frame_bids)
    app.callback(Output("market-bids", "rowData", allow_duplicate=True), Input("market-delete-bids", "n_clicks"),
                 State("market-bids", "selectedRows"), State("market-bids", "rowData"), prevent_initial_call=True)(delete_bids)
    # An edit changes rowData without firing it as an Input (dash-ag-grid): cellValueChanged does.
    app.callback(Output("bids-store", "data"), Input("market-bids", "rowData"), Input("market-bids", "cellValueChanged"),
                 State("market-bids", "rowData"), prevent_initial_call=True)(lambda _rows, _edit, data: data)
    app.callback(Output("grid-details", "children"),
                 [Input(f"grid-layer-{name}", "clickData") for name, *_ in LAYERS], prevent_initial_call=True)(element_details)
    app.callback(Output("market-outdated", "children"), Output("market-results", "className"),
                 Input("result-store", "data"), *[Input(i, p) for i, p in ROUND_INPUTS], prevent_initial_call=True,
                 )(lambda result, *_: outdated_marks(dash.callback_context.triggered_id, result))
    app.callback(Output("market-violations", "rowData"), Input("result-store", "data"))(violation_table)
    for page in PAGES:
        if page.register is not None:
            page.register(app)
    # shareable state (URL), the session's kept bids, the guided tour
    urlstate.register_callbacks(app, {"market": render_page("market", None)})
    app.callback(Output("bids-saved", "data"), Input("bids-store", "data"), State("session-token", "data"),
                 prevent_initial_call=True)(keep_bids)
    tour.register_callbacks(app, job)

    if warm_up:
        warm_up_views(rounds=manager is None)
    return app


def register_market_maps(app: Any) -> None:
    """The Market page's two maps: synchronised views, the view switch, the violation zoom, click details.

    Synchronisation runs in the browser (``assets/market_maps.js``): a map reports its centre and
    zoom after each move (dash-leaflet's ``trackViewport``); the other map is set to the same
    view if the user moved it (the map last touched leads, so two maps can never swap views forever)
    and it is not there already. The view switch (compare / single) and the single view's method
    only change CSS classes; the map shown anew is resized (``invalidateSize``) and set to the view of the map seen before.
    """
    from dash import ClientsideFunction, Input, Output, State

    from app.mapview import LAYERS
    from app.pages.market import MAP_METHODS, market_map_prefix

    ids = [f"{market_map_prefix(m)}-map" for m in MAP_METHODS]
    # a result recolours the drawn maps in place (assets/map.js), no GeoJSON sent or redrawn
    app.clientside_callback(ClientsideFunction("digiplat_map", "restyle"), Output("market-restyled", "data"),
                            Input("market-restyle", "data"), prevent_initial_call=True)
    for source, target in ((ids[0], ids[1]), (ids[1], ids[0])):
        app.clientside_callback(
            ClientsideFunction("digiplat_market", "follow"),
            Output(target, "viewport", allow_duplicate=True), Input(source, "center"), Input(source, "zoom"),
            State(target, "center"), State(target, "zoom"), prevent_initial_call=True,
        )
    app.clientside_callback(
        ClientsideFunction("digiplat_market", "view"),
        Output("market-body", "className"), *[Output(i, "invalidateSize") for i in ids],
        *[Output(i, "viewport", allow_duplicate=True) for i in ids],
        Input("market-view", "value"), Input("market-method", "value"),
        # also when the page is drawn: a link (app.urlstate) may open it in the single view
        *[State(i, prop) for i in ids for prop in ("center", "zoom")], prevent_initial_call="initial_duplicate",
    )
    app.callback(*[Output(i, "viewport", allow_duplicate=True) for i in ids], Input("market-violations", "cellClicked"),
                 State("market-violations", "rowData"), prevent_initial_call=True)(zoom_to_violation)
    app.callback(Output("market-details", "children"),
                 [Input(f"{market_map_prefix(m)}-layer-{name}", "clickData") for m in MAP_METHODS for name, *_ in LAYERS],
                 State("result-store", "data"), prevent_initial_call=True)(market_element_details)


def warm_up_views(*, rounds: bool = True) -> None:
    """Load the grid and draw the Market tab; with ``rounds`` also linearize and clear the default round.

    Every import and cache a click needs is then loaded before gunicorn (or Celery) forks, so the
    first click of each worker is as fast as the others. The HTTP workers of the Celery path run
    no rounds and skip them.
    """
    from app import session

    session.default_grid()
    try:
        render_page("market", None)
        if rounds:
            session.warm_up()
            clear_market_request({"n_clicks": 1}, "weekday", "18:00", 1.8, session.default_bid_records())
    except Exception:  # an optimisation only; a real click reports its own errors
        log.exception("warm-up failed")


def __getattr__(name: str) -> Any:
    """``app.server:celery_app`` for ``celery -A``: the Dash app's background tasks, built warm.

    Building the Dash app registers its background callbacks as Celery tasks; the warm-up runs
    in the Celery main process, so its prefork pool starts warm.
    """
    if name == "celery_app":
        if not os.environ.get("REDIS_URL"):
            raise RuntimeError("app.server:celery_app needs $REDIS_URL")
        dash_app = create_app(warm_up=True)
        globals()["celery_app"] = dash_app._background_manager.handle
        return globals()["celery_app"]
    raise AttributeError(name)


# ------------------------------------------------------------------------------------- serving
def celery_worker_command(concurrency: int, name: str) -> list[str]:
    """Return the command of the Celery worker that runs the background rounds."""
    import sys

    return [sys.executable, "-m", "celery", "-A", "app.server:celery_app", "worker", "--pool", "prefork",
            "--concurrency", str(concurrency), "--loglevel", "WARNING", "-O", "fair", "--without-gossip",
            "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h"]


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the server process dies (Linux), so nothing is left behind."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class CeleryWorkers:
    """The Celery worker process (and its fixed pool) of a served room; started and stopped by ``serve``."""

    def __init__(self, concurrency: int, name: str, redis_url: str) -> None:
        self.command = celery_worker_command(concurrency, name)
        self.name = name
        self.redis_url = redis_url
        self.process = None

    def start(self) -> None:
        import subprocess

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        self.process = subprocess.Popen(self.command, env=env, start_new_session=True, preexec_fn=_die_with_parent)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Block until the worker answers a ping (it loads and warms the app first), so the room opens ready."""
        import time

        control = celery_for(self.redis_url).control
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with code {self.process.returncode}")
            if control.ping(destination=[f"{self.name}@{socket.gethostname()}"], timeout=1.0):
                return
        log.warning("the Celery worker did not answer within %.0f s; serving anyway", timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Warm shutdown (running rounds finish), then kill the worker's process group."""
        import signal
        import subprocess

        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its pool children, if any survived
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            log.warning("celery worker %d did not stop", self.process.pid)


def gunicorn_application(options: dict[str, Any], celery: CeleryWorkers | None = None):
    """Return a gunicorn application serving the warm Dash app with ``options`` (gunicorn settings)."""
    from gunicorn.app.base import BaseApplication

    class DigiplatServer(BaseApplication):
        """gunicorn from Python: the master builds the warm app once (``preload_app``), then forks."""

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            # A stopping worker skips the interpreter's teardown of its large heap (seconds on a busy
            # machine); it holds nothing unwritten: cache files are complete once renamed.
            self.cfg.set("worker_exit", lambda server, worker: (logging.shutdown(), os._exit(0)))
            if celery is not None:
                self.cfg.set("on_starting", lambda server: (celery.start(), celery.wait_ready()))
                self.cfg.set("on_exit", lambda server: celery.stop())

        def load(self):
            return create_app(warm_up=True).server

    return DigiplatServer()


def serve(*, host: str = "127.0.0.1", port: int = 8050, workers: int = 2, celery_workers: int | None = None,
          debug: bool = False) -> None:
    """Serve the demonstrator and block until stopped (Ctrl+C or SIGTERM).

    Parameters
    ----------
    host, port
        Where to listen (checked by the caller, :mod:`app.commands.serve`).
    workers
        gunicorn worker processes: the rounds that run at once without ``$REDIS_URL``.
    celery_workers
        With ``$REDIS_URL``: the Celery pool's concurrency (default ``workers``).
    debug
        Flask's development server with Dash's dev tools, one process (not for a room).
    """
    redis_url = os.environ.get("REDIS_URL")
    celery = CeleryWorkers(celery_workers or workers, f"digiplat-{port}", redis_url) if redis_url else None
    if debug:
        app = create_app(warm_up=True)
        print(f"DigIPlat demonstrator (development server) on http://{host}:{port}/  (Map data {OSM_CREDIT})", flush=True)
        if celery is not None:
            celery.start()
        try:  # no reloader: it would run a second copy of this process (and of the Celery worker)
            app.run(host=host, port=port, debug=True, use_reloader=False)
        finally:
            if celery is not None:
                celery.stop()
        return
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": [bind],
        "workers": workers,
        # Rounds in the request: one request at a time per worker, so rounds queue first come, first
        # served. Rounds on Celery: the HTTP workers only answer polls and pages (light, waiting on
        # Redis), so each serves several at once and keeps connections alive.
        **({"worker_class": "gthread", "threads": 4} if redis_url else {"worker_class": "sync"}),
        "preload_app": True,
        "timeout": 300,  # a refined round on a loaded machine may take a minute; a stuck worker is replaced
        "graceful_timeout": 20,
        "keepalive": 2,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "digiplat",
        "limit_request_line": 8190,
    }
    jobs = f"background rounds on {celery_workers or workers} Celery workers ({_redacted(redis_url)})" if redis_url \
        else "rounds run in the workers"
    print(f"DigIPlat demonstrator on http://{bind}/ with {workers} gunicorn workers, {jobs}; it answers once "
          f"warm (Map data {OSM_CREDIT}; Ctrl+C to stop)", flush=True)
    gunicorn_application(options, celery).run()


def _redacted(url: str) -> str:
    """Return a Redis URL without its password (for the start-up line)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url
