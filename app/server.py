"""The Dash demonstrator: layout, callbacks (plain functions), background jobs, serving."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from gridgen import OSM_CREDIT

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
TABS = (("grid", "Grid"), ("market", "Market"), ("validation", "Validation"), ("mlopf", "Paper B: ML-based OPF"),
        ("privacy", "Privacy"))


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
    """Return the content of a tab."""
    from app import session
    from app.pages import market, mlopf, privacy

    grid = session.default_grid()
    if tab == "market":
        return market.market_layout(grid.geojson, bids if bids is not None else session.default_bid_records())
    if tab == "validation":
        return market.validation_layout()
    if tab == "mlopf":
        return mlopf.layout()
    if tab == "privacy":
        return privacy.layout()
    return market.grid_layout(grid.geojson, grid.summary)


def clear_market(n_clicks: int | None, day_type: str, hour: Any, request_mw: Any, bids: list[dict] | None,
                 refine: bool | None = False):
    """Run a market round; return ``(result, alert_text, alert_open)``; errors keep the old result."""
    import dash

    from app import session

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    try:
        hour_value = int(hour) if hour not in (None, "") else None
        request_value = float(request_mw) if request_mw not in (None, "") else None
        result = session.market_round(day_type, hour_value, request_value, bids or [], refine=bool(refine))
    except _user_error_types() as exc:
        return dash.no_update, user_message(exc), True
    except (TypeError, ValueError) as exc:
        return dash.no_update, f"invalid input: {user_message(exc)}", True
    return result, "", False


def clear_market_request(request: dict | None, day_type: str, hour: Any, request_mw: Any, bids: list[dict] | None,
                         refine: bool | None = False):
    """Background callback: :func:`clear_market` for a click recorded in the ``clear-request`` store."""
    return clear_market((request or {}).get("n_clicks"), day_type, hour, request_mw, bids, refine)


def show_result(result: dict | None, method: str):
    """Return the market page's cards, map, TSO package table and TSO loading chart for a result."""
    from app import session
    from app.mapview import map_component
    from app.pages import market

    grid = session.default_grid()
    if not result:
        return [], map_component("market", grid.geojson), "Clear the market to see the package's figures.", market.tso_loading_figure({})
    outcome = result.get(method) or result["milp"]
    return (market.summary_cards(result), map_component("market", grid.geojson, outcome),
            market.tso_package_view(result.get("tso", {})), market.tso_loading_figure(result.get("tso", {})))


def show_validation(result: dict | None):
    """Return the validation page's content for a result."""
    import plotly.graph_objects as go

    from app.pages import market

    if not result:
        empty = go.Figure().update_layout(template="plotly_white")
        return "Clear the market on the Market page; its AC power-flow validation appears here.", [], empty, empty, []
    vm_fig, loading_fig = market.validation_figures(result)
    return "", market.validation_table(result), vm_fig, loading_fig, market.merit_violations(result)


def upload_bids(contents: str | None, filename: str | None, current: list[dict] | None):
    """Return ``(bids, alert_text, alert_open)`` for an uploaded bid file; bad files keep the table."""
    import dash

    from app import session

    if not contents:
        raise dash.exceptions.PreventUpdate
    try:
        return session.bids_from_upload(contents, filename or "bids.csv"), "", False
    except _user_error_types() as exc:
        return dash.no_update, user_message(exc), True


def download_bids(n_clicks: int | None, bids: list[dict] | None):
    """Return the bid table as a CSV download."""
    import dash

    from app import session

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    return {"content": session.bids_csv(bids or []), "filename": "bids.csv", "type": "text/csv"}


def add_bid(n_clicks: int | None, bids: list[dict] | None):
    """Return the bid table with one empty row appended."""
    import dash

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    rows = list(bids or [])
    rows.append({"bid_id": f"NEW{len(rows) + 1:03d}", "aggregator": "", "building_id": "", "p_mw": 0.0,
                 "price_eur_per_mwh": 0.0, "fpu": ""})
    return rows


def element_details(*click_data: Any) -> Any:
    """Return the details of the map element clicked last."""
    import dash
    from dash import html

    trigger = dash.callback_context.triggered[0]["value"] if dash.callback_context.triggered else None
    feature = trigger if isinstance(trigger, dict) else next((c for c in click_data if c), None)
    if not feature:
        raise dash.exceptions.PreventUpdate
    props = {k: v for k, v in feature.get("properties", {}).items() if k not in ("style", "tooltip")}
    return html.Div([html.Div("Selected element", className="view-title"),
                     html.Table([html.Tr([html.Td(k), html.Td(str(v))]) for k, v in props.items()], className="small")])


# ---------------------------------------------------------------------------------------- app
def background_manager():
    """Return Celery (``$REDIS_URL``) or Diskcache background-callback manager."""
    from dash import CeleryManager, DiskcacheManager

    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        from celery import Celery

        celery_app = Celery(__name__, broker=redis_url, backend=redis_url)
        return CeleryManager(celery_app)
    import diskcache

    cache_dir = os.environ.get("DIGIPLAT_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "digiplat-dash-cache")
    return DiskcacheManager(diskcache.Cache(cache_dir))


def create_app(*, warm_up: bool = True):
    """Return the Dash app (pages: Grid, Market, Validation, Paper B)."""
    import dash
    import dash_bootstrap_components as dbc
    import dash_leaflet  # noqa: F401  (Dash wants every component library imported before callbacks run)
    from dash import Input, Output, State, dash_table, dcc, html  # noqa: F401

    from app import session
    from app.mapview import LAYERS
    from app.pages import mlopf, privacy

    app = dash.Dash(
        __name__, title="DigIPlat flexibility demonstrator", assets_folder=str(ASSETS),
        external_stylesheets=[], suppress_callback_exceptions=True, background_callback_manager=background_manager(),
        serve_locally=True,
    )
    # Bootstrap's CSS is served from assets/vendor (Dash loads every .css in assets): no CDN, works offline.
    header = html.Div([
        html.H1("DigIPlat: privacy-preserving TSO–DSO flexibility market"),
        html.Small(f"Karlsruhe-Bergwald · paper A (sensitivity-based MILP) and paper B (ML-based OPF) · Map data {OSM_CREDIT}"),
    ], className="digiplat-header")
    app.layout = html.Div([
        header,
        dcc.Store(id="bids-store", storage_type="memory"),
        dcc.Store(id="result-store", storage_type="memory"),
        dcc.Store(id="clear-request", storage_type="memory"),
        dbc.Tabs([dbc.Tab(label=label, tab_id=tab_id) for tab_id, label in TABS], id="tabs", active_tab="grid", className="mt-2"),
        # The spinner covers the page only while a tab renders, not while a callback inside it runs
        # (a market round has its own running indicator and must not hide the page).
        dcc.Loading(dbc.Container(id="page", fluid=True, className="py-2"), type="default", delay_show=300,
                    target_components={"page": "children"}),
        html.Footer(f"Map data {OSM_CREDIT}. Code: DigIPlat demonstrator.", className="credit p-2"),
    ])

    app.callback(Output("page", "children"), Input("tabs", "active_tab"), State("bids-store", "data"))(render_page)
    # A click becomes a request in a store outside the page. Dash runs a callback whose Input appears
    # in a newly rendered tab when one of its Outputs lies outside that tab, prevent_initial_call or
    # not: with market-clear as its Input the background job was spawned (and the controls disabled)
    # every time the Market tab was opened. This clientside step ignores the fresh button.
    app.clientside_callback(
        "function (n) { return n ? {n_clicks: n, at: Date.now()} : window.dash_clientside.no_update; }",
        Output("clear-request", "data"), Input("market-clear", "n_clicks"), prevent_initial_call=True,
    )
    app.callback(
        Output("result-store", "data"), Output("market-alert", "children", allow_duplicate=True),
        Output("market-alert", "is_open", allow_duplicate=True),
        Input("clear-request", "data"),
        State("market-day-type", "value"), State("market-hour", "value"), State("market-request", "value"), State("market-bids", "data"),
        State("market-refine", "value"),
        background=True, interval=250,  # poll the job every 250 ms (Dash's default 1 s adds 0.5 s on average)
        running=[(Output("market-clear", "disabled"), True, False), (Output("market-upload", "disabled"), True, False),
                 (Output("market-running", "children"), "clearing…", "")],
        prevent_initial_call=True,
    )(clear_market_request)
    app.callback(
        Output("market-cards", "children"), Output("market-map-holder", "children"), Output("market-tso-package", "children"),
        Output("market-tso-loading", "figure"),
        Input("result-store", "data"), Input("market-method", "value"),
    )(show_result)
    app.callback(
        Output("validation-empty", "children"), Output("validation-table", "children"), Output("validation-vm", "figure"),
        Output("validation-loading", "figure"), Output("validation-merit", "children"),
        Input("result-store", "data"),
    )(show_validation)
    app.callback(
        Output("market-bids", "data", allow_duplicate=True), Output("market-alert", "children", allow_duplicate=True),
        Output("market-alert", "is_open", allow_duplicate=True),
        Input("market-upload", "contents"), State("market-upload", "filename"), State("market-bids", "data"),
        prevent_initial_call=True,
    )(upload_bids)
    app.callback(Output("market-download", "data"), Input("market-download-btn", "n_clicks"), State("market-bids", "data"),
                 prevent_initial_call=True)(download_bids)
    app.callback(Output("market-bids", "data", allow_duplicate=True), Input("market-add-bid", "n_clicks"), State("market-bids", "data"),
                 prevent_initial_call=True)(add_bid)
    app.callback(Output("bids-store", "data"), Input("market-bids", "data"), prevent_initial_call=True)(lambda data: data)
    app.callback(Output("grid-details", "children"),
                 [Input(f"grid-layer-{name}", "clickData") for name, *_ in LAYERS], prevent_initial_call=True)(element_details)
    mlopf.register_callbacks(app)
    privacy.register_callbacks(app)

    if warm_up:
        # Load the grid and linearize the default scenario before the first click (background jobs fork
        # from this process and inherit its caches).
        session.default_grid()
        threading.Thread(target=session.warm_up, daemon=True).start()
    return app


def serve(*, host: str = "127.0.0.1", port: int = 8050, debug: bool = False) -> None:
    """Start the demonstrator and block."""
    app = create_app()
    print(f"DigIPlat demonstrator on http://{host}:{port}/  (Map data {OSM_CREDIT}; Ctrl+C to stop)")
    app.run(host=host, port=port, debug=debug)
