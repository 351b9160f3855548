"""Grid, Market and Validation pages of paper A: layouts, figures and callbacks as plain functions."""

from __future__ import annotations

import logging
from typing import Any

import plotly.graph_objects as go


log = logging.getLogger(__name__)

METHODS = {"milp": "Grid-aware MILP (paper A)", "merit": "Grid-blind merit order"}
SHORT_METHODS = {"milp": "MILP", "merit": "merit order"}  # the labels of the single view's method choice
# AG Grid column definitions of the bid table: ``field`` is the bid column of app.session.BID_COLUMNS.
BID_TABLE_COLUMNS = [
    {"headerName": "bid", "field": "bid_id", "editable": False, "minWidth": 72},
    {"headerName": "aggregator", "field": "aggregator", "minWidth": 90},
    {"headerName": "building", "field": "building_id", "minWidth": 78},
    {"headerName": "MW (+ up)", "field": "p_mw", "cellDataType": "number", "headerTooltip": "volume (MW, + up)"},
    {"headerName": "€/MWh", "field": "price_eur_per_mwh", "cellDataType": "number", "headerTooltip": "price (€/MWh)"},
    {"headerName": "unit", "field": "fpu", "minWidth": 70},
]
BID_PAGE_ROWS = 12  # rows per page of the bid table


# ---------------------------------------------------------------------------------------- layouts
def grid_layout(geojson: dict[str, Any], summary: dict[str, Any], flow: dict[str, Any] | None = None,
                title: str = "Karlsruhe-Bergwald distribution grid"):
    """Return the Grid page: the map with every layer, the grid's figures and click details.

    ``flow``: the grid's peak-load power flow (:func:`app.session.peak_load_flow`), shown in the
    tooltips and click details of its elements.
    """
    import dash_bootstrap_components as dbc
    from dash import html

    from app.mapview import map_component

    facts = [
        ("Buildings", summary["buildings"]), ("Households", summary.get("households", "")),
        ("Substations", f"{summary['substations']} ({', '.join(map(str, summary.get('trafo_ratings_kva', [])))} kVA)"),
        ("Buses / lines", f"{summary['buses']} / {summary['lines']}"),
        ("20 kV ring", f"{summary['mv_length_km']:.2f} km"), ("0.4 kV cables", f"{summary['lv_length_km']:.2f} km"),
        ("Peak-load voltages", f"{summary['vm_min_pu']:.3f} – {summary['vm_max_pu']:.3f} p.u."),
        ("Max line / trafo loading", f"{summary['max_line_loading_percent']:.0f} % / {summary['max_trafo_loading_percent']:.0f} %"),
        ("Violations at peak load", summary["violations"]),
    ]
    return dbc.Row([
        dbc.Col(map_component("grid", geojson, flow=flow), md=9),
        dbc.Col([
            html.Div(title, className="view-title"),
            dbc.Table([html.Tbody([html.Tr([html.Td(k), html.Td(str(v), id=f"grid-fact-{i}")]) for i, (k, v) in enumerate(facts)])],
                      size="sm", bordered=False),
            html.Div("Click an element on the map for its details (values of the peak-load AC power flow).",
                     id="grid-details", className="small"),
            html.Hr(),
            html.Div(f"Generated from OpenStreetMap by gridgen: k-means substations, TSP-routed 20 kV open ring, "
                     f"min-cost-flow 0.4 kV feeders, sized until the peak-load AC power flow is clean.",
                     className="credit"),
        ], md=3),
    ])


VIEWS = {"compare": "Side by side", "single": "One map large"}
# The short explanations beside the controls (what a newcomer needs to read the page).
HELP = {
    "day": "load and offer profiles",
    "time": "15-minute market time unit",
    "request": "TSO's request at the feed-in; + up, - down",
    "request_long": ("P_E: the balancing energy the TSO requests from this grid at the 110/20 kV feed-in, MW; "
                     "+ up (more injection or less consumption), - down"),
    "view": "side by side: the two maps move together",
    "clear": "the TSO clears the bids with the MILP and with the grid-blind merit order; the DSO checks both by AC power flow",
    "refine": "refine: re-linearize at the MILP's dispatch, clear again until the AC flow is clean",
    "upload": ".csv or .json as in docs/bids.md",
    "points": ("Linearization points: the DSO linearizes its grid at several operating points (levels of bid activation) "
               "and sends the TSO only these sensitivities; the MILP clears at the point nearest its dispatch."),
}
MAP_METHODS = ("milp", "merit")  # the two maps of the Market page, left to right


def market_map_prefix(method: str) -> str:
    """Return the id prefix of a method's map on the Market page (``market-milp-map``, ``market-milp-layer-bids``...)."""
    return f"market-{method}"


def market_body_class(view: str, method: str) -> str:
    """Return the class of the Market page's body for a view (``compare``/``single``) and the single view's method."""
    return f"market-body view-{'single' if view == 'single' else 'compare'} method-{'merit' if method == 'merit' else 'milp'}"


def _control(label: str, control: Any, help_text: str, width_px: int, label_title: str | None = None):
    from dash import html

    head = html.Span(label, title=label_title) if label_title else label
    return html.Div([html.Label(head, className="form-label"), control, html.Div(help_text, className="control-help")],
                    style={"width": f"{width_px}px"}, className="market-control")


def market_layout(geojson: dict[str, Any], bid_records: list[dict[str, Any]]):
    """Return the Market page: controls, the result cards above two synchronised DSO maps (MILP and
    merit order), the TSO view (bids, package) and the merit order's violation table."""
    import dash_bootstrap_components as dbc
    import dash_ag_grid as dag
    from dash import dcc, html

    from app.mapview import legend, map_component
    from app.session import FRAME_STARTS, UPLOAD_LIMIT_BYTES  # the browser refuses larger files; the server checks again

    radio = dict(inline=True, inputStyle={"marginRight": "3px"}, labelStyle={"display": "inline-block", "marginRight": "10px"})
    controls = dbc.Card(dbc.CardBody(html.Div([
        _control("Day type", dcc.Dropdown(id="market-day-type", options=["weekday", "weekend"], value="weekday",
                                          clearable=False), HELP["day"], 125),
        _control("Time", dcc.Dropdown(id="market-time", options=list(FRAME_STARTS), value="18:00", clearable=False,
                                      searchable=True, placeholder="HH:MM"), HELP["time"], 105),
        _control("Request P_E (MW)", dbc.Input(id="market-request", type="number", step=0.1, value=1.8, size="sm"),
                 HELP["request"], 140, label_title=HELP["request_long"]),
        html.Div([
            html.Div([html.Span("Maps", className="form-label me-2"),
                      dcc.RadioItems(id="market-view", options=[{"label": v, "value": k} for k, v in VIEWS.items()],
                                     value="compare", className="small d-inline-block", **radio)]),
            html.Div([html.Span("Large map", className="form-label me-2", title="the map of the single view"),
                      dcc.RadioItems(id="market-method", options=[{"label": v, "value": k} for k, v in SHORT_METHODS.items()],
                                     value="milp", className="small d-inline-block market-method", **radio)]),
            html.Div(HELP["view"], className="control-help"),
        ], className="market-control", style={"width": "285px"}),
        html.Div([
            html.Div([dbc.Button("Clear market", id="market-clear", color="primary", size="sm", className="me-2",
                                 title=HELP["clear"]),
                      html.Span(dbc.Checkbox(id="market-refine", label="refine", value=False, className="small"),
                                title=HELP["refine"], className="d-inline-block"),
                      dbc.Spinner(html.Span(id="market-running"), size="sm", color="primary")],
                     className="d-flex align-items-center gap-1 mt-3"),
            html.Div(HELP["refine"], className="control-help"),
        ], className="market-control", style={"width": "235px"}),
        html.Div([
            # No ``accept`` filter: the browser would drop a .txt silently; the server says what is wrong.
            html.Div([dcc.Upload(dbc.Button("Upload bids (≤ 5 MB)", color="secondary", outline=True, size="sm"), id="market-upload",
                                 max_size=UPLOAD_LIMIT_BYTES, className="d-inline-block"),
                      # one menu for both downloads: a second line of buttons would push the maps below the fold
                      dbc.DropdownMenu([
                          dbc.DropdownMenuItem("Bids (CSV)", id="market-download-btn"),
                          # the shown round's files (as digiplat clear --export), one zip: app.server.download_round
                          dbc.DropdownMenuItem(html.Span("Results of the round (zip)", title="activations.csv, violations.csv, "
                                                         "grid_results.geojson, grid_results.json (pandapower), report.html"),
                                               id="market-export-btn"),
                      ], label="Download", id="market-download-menu", size="sm", color="link", align_end=True,
                         className="d-inline-block")], className="mt-3 text-nowrap"),
            dcc.Download(id="market-download"), dcc.Download(id="market-export"),
            html.Div(HELP["upload"], className="control-help"),
        ], className="market-control", style={"width": "215px"}),
    ], className="d-flex flex-wrap gap-3 align-items-start"), className="py-1"), className="mb-1 market-controls")
    tso_view = dbc.Card([
        dbc.CardHeader("TSO view: only bids and the DSO's sensitivity package, no grid", className="py-1"),
        dbc.CardBody([
            html.Div(HELP["points"], className="control-help mb-1"),
            html.Div(id="market-tso-package", className="small mb-2", children="Clear the market to see the package's figures."),
            # dash-ag-grid (dash_table.DataTable is deprecated in Dash 4): edits land in rowData
            # (read as State); rows are added and deleted by the buttons below.
            dag.AgGrid(
                id="market-bids", columnDefs=BID_TABLE_COLUMNS, rowData=bid_records,
                defaultColDef={"editable": True, "sortable": True, "filter": True, "resizable": True, "flex": 1,
                               "minWidth": 64},
                dashGridOptions={"pagination": True, "paginationPageSize": BID_PAGE_ROWS,
                                 "paginationPageSizeSelector": False, "rowHeight": 26, "headerHeight": 30,
                                 "rowSelection": {"mode": "multiRow", "checkboxes": True, "headerCheckbox": True,
                                                  "enableClickSelection": False},
                                 "animateRows": False,
                                 "stopEditingWhenCellsLoseFocus": True},
                className="bid-grid", style={"height": "410px", "width": "100%"},
            ),
            dbc.Button("Add bid", id="market-add-bid", size="sm", color="link", title="a new row on top of the table: fill in building, MW and price"),
            dbc.Button("Delete selected", id="market-delete-bids", size="sm", color="link"),
            dbc.Button("Default bids of this time frame", id="market-default-bids", size="sm", color="link",
                       title="replace the table by the scenario's bids of the chosen day type and time"),
            dcc.Graph(id="market-tso-loading", figure=tso_loading_figure({}), config={"displayModeBar": False},
                      style={"height": "260px"}),  # a hint until a clearing, never an empty plot
        ]),
    ], className="market-area-tso")
    maps = html.Div([
        *[map_component(market_map_prefix(m), geojson, legend_inside=False, title=METHODS[m]) for m in MAP_METHODS],
        # a result's restyle of both maps, applied in the browser (assets/map.js)
        dcc.Store(id="market-restyle", storage_type="memory"), dcc.Store(id="market-restyled", storage_type="memory"),
        html.Div([
            html.Div(legend(False), id="market-legend"),
            html.Div("Hover over an element for its values; click it for its details here.", id="market-details",
                     className="small market-details"),
        ], className="market-side"),
    ], className="market-maps")
    dso_view = html.Div(maps, className="market-area-dso")
    violations = dbc.Card([
        dbc.CardHeader("Violations of the grid-blind merit order (click a row: both maps zoom to the element)", className="py-1"),
        dbc.CardBody(dag.AgGrid(id="market-violations", columnDefs=VIOLATION_COLUMNS, rowData=[],
                                defaultColDef={"sortable": True, "resizable": True, "flex": 1},
                                dashGridOptions={"rowHeight": 24, "headerHeight": 26, "animateRows": False},
                                className="bid-grid", style={"height": "300px", "width": "100%"}), className="p-1"),
    ], className="market-area-violations")
    return html.Div([
        controls,
        dbc.Alert(id="market-alert", is_open=False, color="danger", dismissable=True, style={"whiteSpace": "pre-line"}),
        html.Div(id="market-outdated", className="outdated-note"),
        html.Div([
            html.Div([
                dbc.Row(id="market-cards", className="market-cards g-2"),
                dso_view, tso_view, violations,
            ], id="market-body", className=market_body_class("compare", "milp")),
        ], id="market-results", className="market-results"),
    ])


def validation_layout():
    """Return the Validation page (filled from the last market result)."""
    from dash import dcc, html
    import dash_bootstrap_components as dbc

    return html.Div([
        html.Div("Clear the market on the Market page; its AC power-flow validation appears here.", id="validation-empty"),
        html.Div(id="validation-table"),
        dbc.Row([dbc.Col(dcc.Graph(id="validation-vm"), md=6), dbc.Col(dcc.Graph(id="validation-loading"), md=6)]),
        html.Div(id="validation-merit"),
    ])


# --------------------------------------------------------------------------------------- figures
def summary_cards(result: dict[str, Any]):
    """Return the cards comparing the MILP with the merit order (one above each map).

    Delivered volume, violations and cost on the first line; status, linearization point and
    refinement rounds on the second, smaller one.
    """
    import dash_bootstrap_components as dbc
    from dash import html

    cols = []
    for key, title in METHODS.items():
        s = result[key]["summary"]
        v = s.get("validation") or {}
        status = s["status"]
        detail = (f"status {status}" + (f", at most {s['max_deliverable_mw']:.3f} MW deliverable"
                                        if s.get("max_deliverable_mw") is not None and status != "optimal" else "")
                  + (f"; linearization point {s['chosen_point']} ({s['chosen_point_label']})" if s.get("chosen_point") is not None else "")
                  + (f"; refined in {len(s.get('rounds') or [])} clearing rounds" if s.get("refined") else ""))
        body = [
            html.Div(title, className="view-title"),
            html.Div(f"{s['delivered_mw']:.3f} of {s['requested_mw']:.3f} MW", className="card-metric", id=f"market-card-{key}-delivered"),
            html.Div(f"{v.get('violations', 0)} violations in the AC power flow" if v else "not validated", id=f"market-card-{key}-violations",
                     className="card-violations"),
            html.Div(f"cost {s['cost_eur']:.2f} €", id=f"market-card-{key}-cost", title="price x activated MW x 1 h, summed over the bids"),
            html.Div(detail, className="card-detail", title=HELP["points"] if s.get("chosen_point") is not None else None),
        ]
        color = "success" if v and v.get("violations", 0) == 0 and status == "optimal" else ("danger" if v else "warning")
        cols.append(dbc.Col(dbc.Card(dbc.CardBody(body, className="py-1 px-2 result-card"), color=color, outline=True), md=6))
    return cols


def tso_package_view(tso: dict[str, Any]):
    """Return the TSO's table of the package's operating points (opaque figures only)."""
    from dash import html
    import dash_bootstrap_components as dbc

    if not tso:
        return "No package."
    head = html.Div(f"Package: {tso['flex_buses']} flexible buses, {tso['monitored_buses']} monitored voltages, "
                    f"{tso['monitored_branches']} monitored branches, {len(tso['points'])} operating points (opaque ids only).")
    rows = [html.Tr([html.Td(p["point"]), html.Td(p["label"]), html.Td(f"{p['p_flex_mw']:.3f}"), html.Td(f"{p['vm_min_pu']:.4f}–{p['vm_max_pu']:.4f}"),
                     html.Td(f"{p['max_abs_loading_percent']:.1f}")]) for p in tso["points"]]
    table = dbc.Table([html.Thead(html.Tr([html.Th(h) for h in ("point", "label", "flex MW", "V p.u.", "max |L| %")])), html.Tbody(rows)],
                      size="sm", bordered=True, className="mb-1")
    return [head, table]


def hint_figure(text: str, height_px: int | None = None) -> go.Figure:
    """Return a figure with no axes and only ``text``: shown instead of an empty plot."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=13, color="#555"))
    fig.update_layout(template="plotly_white", xaxis=dict(visible=False), yaxis=dict(visible=False),
                      margin=dict(l=10, r=10, t=10, b=10), **({"height": height_px} if height_px else {}))
    return fig


def tso_loading_figure(tso: dict[str, Any]) -> go.Figure:
    """Return the TSO's bar chart of the predicted loadings closest to their limits, by opaque id (a hint without)."""
    top = (tso or {}).get("predicted_loading_top", [])
    if not top:
        return hint_figure("Clear the market to see the TSO's predicted branch loadings.")
    fig = go.Figure(go.Bar(x=[t["id"] for t in top], y=[t["loading_percent"] for t in top], marker_color="#2b7bb9"))
    fig.add_hline(y=100, line_dash="dash", line_color="#c62828")
    fig.add_hline(y=-100, line_dash="dash", line_color="#c62828")
    fig.update_layout(title="Predicted branch loadings (MILP, opaque ids)", margin=dict(l=40, r=10, t=40, b=40),
                      yaxis_title="loading (%)", template="plotly_white")
    return fig


def validation_figures(result: dict[str, Any]) -> tuple[go.Figure, go.Figure]:
    """Return predicted-vs-power-flow plots of critical voltages and loadings (paper A, Fig. 4/5)."""
    plots = result["milp"].get("plots") or {}
    figs = []
    for quantity, unit, title in (("vm", "p.u.", "Critical bus voltages"), ("loading", "%", "Critical branch loadings")):
        ids = plots.get("bus_ids" if quantity == "vm" else "branch_ids", [])
        pf = plots.get(f"{quantity}_pf_pu" if quantity == "vm" else "loading_pf_percent", [])
        pred = plots.get(f"{quantity}_pred_pu" if quantity == "vm" else "loading_pred_percent") or []
        crit = plots.get("critical_buses" if quantity == "vm" else "critical_branches", [])
        idx = [i for i, c in enumerate(crit) if c][:40]
        if not idx:
            figs.append(hint_figure(f"{title}: none to show for this round (no dispatch, or nothing near its limits)."))
            continue
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=[ids[i] for i in idx], y=[pf[i] for i in idx], mode="markers", name="AC power flow",
                                 marker=dict(symbol="circle-open", size=10, color="#c62828")))
        if pred:
            fig.add_trace(go.Scatter(x=[ids[i] for i in idx], y=[pred[i] for i in idx], mode="markers", name="MILP prediction",
                                     marker=dict(symbol="x", size=7, color="#0b3d5c")))
        # the tool bar upright at the right edge: lying at the top it covered the end of the title
        fig.update_layout(title=f"{title}: prediction vs AC power flow", yaxis_title=unit, template="plotly_white",
                          margin=dict(l=50, r=40, t=40, b=70), legend=dict(orientation="h"),
                          modebar=dict(orientation="v"), xaxis_tickangle=-45)
        figs.append(fig)
    return figs[0], figs[1]


def validation_table(result: dict[str, Any]):
    """Return the MAE/RMSE table of paper A's Table I for the MILP dispatch."""
    import dash_bootstrap_components as dbc
    from dash import html

    v = result["milp"]["summary"].get("validation") or {}

    def fmt(x: Any) -> str:
        return "–" if x is None else f"{x:.2e}"

    rows = [
        ("MAE, all", fmt(v.get("vm_mae_pu")), fmt(v.get("loading_mae_percent"))),
        ("RMSE, all", fmt(v.get("vm_rmse_pu")), fmt(v.get("loading_rmse_percent"))),
        ("MAE, critical", fmt(v.get("critical_vm_mae_pu")), fmt(v.get("critical_loading_mae_percent"))),
        ("RMSE, critical", fmt(v.get("critical_vm_rmse_pu")), fmt(v.get("critical_loading_rmse_percent"))),
        ("Paper A, Table I (MAE / RMSE)", "2.3e-05 / 2.6e-05", "6.1e-03 / 9.8e-03"),
    ]
    return dbc.Table([html.Thead(html.Tr([html.Th("metric"), html.Th("voltages (p.u.)"), html.Th("loadings (%)")])),
                      html.Tbody([html.Tr([html.Td(c) for c in r]) for r in rows])], bordered=True, size="sm", id="validation-metrics")


VIOLATION_COLUMNS = [
    {"headerName": "element", "field": "element", "minWidth": 110},
    {"headerName": "quantity", "field": "quantity", "minWidth": 90},
    {"headerName": "value", "field": "value", "minWidth": 80},
    {"headerName": "limit", "field": "limit", "minWidth": 70},
]


def violation_rows(result: dict[str, Any] | None, geojson: dict[str, Any],
                   bus_points: dict[int, tuple[float, float]] | None = None) -> list[dict[str, Any]]:
    """Return the table rows of the grid-blind merit order's violations, worst first, with map bounds.

    ``value`` and ``limit`` are display strings (voltages in p.u., loadings in %); ``bounds`` is
    where the map zooms when the row is clicked.
    """
    from app.mapview import element_bounds

    if not result:
        return []
    names = element_names(geojson)
    rows = []
    for x in result.get("merit", {}).get("violations", []):
        voltage = x["quantity"] == "vm_pu"
        key = ("bus" if voltage else x["element"], int(x["index"]))
        rows.append({
            "element": names.get(key, f"{'junction' if voltage else x['element']} {x['id']}"),
            "quantity": "voltage" if voltage else "loading",
            "value": f"{x['value']:.4f} p.u." if voltage else f"{x['value']:.1f} %",
            "limit": f"{x['limit']:.2f} p.u." if voltage else f"{x['limit']:.0f} %",
            "excess": abs(x["value"] - x["limit"]) / abs(x["limit"]),
            "bounds": element_bounds(geojson, x["element"], int(x["index"]), bus_points),
        })
    return sorted(rows, key=lambda r: -r["excess"])


def element_names(geojson: dict[str, Any]) -> dict[tuple[str, int], str]:
    """Return readable names of the grid's buses and lines by ``(element, pandapower index)``.

    A bus is named by the buildings it supplies (``B0012`` or ``B0012 +3``), a substation's
    busbar by the substation, the feed-in's bus as the feed-in; a line by its cable (``S1 feeder``,
    ``B0001 service``, ``MV ring 2``) with its index where names repeat.
    """
    buildings: dict[int, list[str]] = {}
    names: dict[tuple[str, int], str] = {}
    line_names: dict[str, int] = {}
    for f in geojson["features"]:
        props = f["properties"]
        kind = props["kind"]
        if kind == "building":
            buildings.setdefault(int(props["bus"]), []).append(props["building_id"])
        elif kind in ("lv_line", "service", "mv_line"):
            names[("line", int(props["line"]))] = str(props["name"])
            line_names[str(props["name"])] = line_names.get(str(props["name"]), 0) + 1
        elif kind == "substation":
            station = str(props["name"]).split()[0]
            if "lv_bus" in props:
                names[("bus", int(props["lv_bus"]))] = f"substation {station}, 0.4 kV busbar"
            names[("trafo", int(props["trafo"]))] = f"substation {station} transformer"
        elif kind == "feed_in":
            names[("bus", int(props["bus"]))] = "feed-in (110/20 kV)"
    for (element, index), name in list(names.items()):
        if element == "line" and line_names.get(name, 0) > 1:
            names[(element, index)] = f"{name}, cable {index}"
    for bus, ids in buildings.items():
        ids = sorted(ids)
        names[("bus", bus)] = "building " + ids[0] + (f" +{len(ids) - 1}" if len(ids) > 1 else "")
    return names


def merit_violations(result: dict[str, Any]):
    """Return the list of limits the grid-blind merit order would have violated."""
    from dash import html

    violations = result["merit"].get("violations", [])
    items = [html.Li(f"{x['element']} {x['index']} ({x['id']}): {x['quantity']} {x['value']:.4g} beyond {x['limit']:.4g}")
             for x in violations[:30]]
    more = [html.Li(f"... and {len(violations) - 30} more")] if len(violations) > 30 else []
    return [html.H6(f"The grid-blind merit order would violate {len(violations)} limits"), html.Ul(items + more, className="small")]
