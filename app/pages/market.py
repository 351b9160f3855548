"""Grid, Market and Validation pages of paper A: layouts, figures and callbacks as plain functions."""

from __future__ import annotations

import logging
from typing import Any

import plotly.graph_objects as go


log = logging.getLogger(__name__)

METHODS = {"milp": "Grid-aware MILP (paper A)", "merit": "Grid-blind merit order"}
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
def grid_layout(geojson: dict[str, Any], summary: dict[str, Any], title: str = "Karlsruhe-Bergwald distribution grid"):
    """Return the Grid page: the map with every layer, the grid's figures and click details."""
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
        dbc.Col(map_component("grid", geojson), md=9),
        dbc.Col([
            html.Div(title, className="view-title"),
            dbc.Table([html.Tbody([html.Tr([html.Td(k), html.Td(str(v), id=f"grid-fact-{i}")]) for i, (k, v) in enumerate(facts)])],
                      size="sm", bordered=False),
            html.Div("Click an element on the map for its details.", id="grid-details", className="small"),
            html.Hr(),
            html.Div(f"Generated from OpenStreetMap by gridgen: k-means substations, TSP-routed 20 kV open ring, "
                     f"min-cost-flow 0.4 kV feeders, sized until the peak-load AC power flow is clean.",
                     className="credit"),
        ], md=3),
    ])


def market_layout(geojson: dict[str, Any], bid_records: list[dict[str, Any]]):
    """Return the Market page: controls, TSO view (bids, package) beside the DSO view (map)."""
    import dash_bootstrap_components as dbc
    import dash_ag_grid as dag
    from dash import dcc, html

    from app.mapview import map_component
    from app.session import UPLOAD_LIMIT_BYTES  # the browser refuses larger files; the server checks again

    controls = dbc.Card(dbc.CardBody(dbc.Row([
        dbc.Col([dbc.Label("Day type"), dcc.Dropdown(id="market-day-type", options=["weekday", "weekend"], value="weekday", clearable=False)], md=2),
        dbc.Col([dbc.Label("Hour"), dbc.Input(id="market-hour", type="number", min=0, max=23, step=1, value=18)], md=1),
        dbc.Col([dbc.Label(html.Span("Request P_E (MW)", title="the TSO's request at the interface, MW; + up, - down")),
                 dbc.Input(id="market-request", type="number", step=0.1, value=1.8)], md=2),
        dbc.Col([dbc.Label("Map shows"), dcc.RadioItems(id="market-method", options=[{"label": v, "value": k} for k, v in METHODS.items()],
                                                         value="milp", inputStyle={"marginRight": "4px"}, labelStyle={"display": "block"})], md=3),
        dbc.Col([html.Br(), dbc.Button("Clear market", id="market-clear", color="primary", className="me-2"),
                 html.Span(dbc.Checkbox(id="market-refine", label="refine", value=False, className="small mt-1"),
                           title="re-linearize at the dispatch and clear again until the AC power flow is clean",
                           className="d-inline-block"),
                 dbc.Spinner(html.Span(id="market-running"), size="sm", color="primary")], md=2),
        dbc.Col([html.Br(), dcc.Upload(dbc.Button("Upload bids (≤ 5 MB)", color="secondary", outline=True, size="sm"), id="market-upload",
                                       accept=".csv,.json", max_size=UPLOAD_LIMIT_BYTES),
                 # one menu for both downloads: a second line of buttons would push the map below the fold
                 dbc.DropdownMenu([
                     dbc.DropdownMenuItem("Bids (CSV)", id="market-download-btn"),
                     # the shown round's files (as digiplat clear --export), one zip: app.server.download_round
                     dbc.DropdownMenuItem(html.Span("Results of the round (zip)", title="activations.csv, violations.csv, "
                                                    "grid_results.geojson, grid_results.json (pandapower), report.html"),
                                          id="market-export-btn"),
                 ], label="Download", id="market-download-menu", size="sm", color="link", align_end=True,
                    className="d-inline-block"),
                 dcc.Download(id="market-download"), dcc.Download(id="market-export")], md=2),
    ]), className="py-1"), className="mb-1 market-controls")
    tso_view = dbc.Card([
        dbc.CardHeader("TSO view: only bids and the DSO's sensitivity package, no grid", className="py-1"),
        dbc.CardBody([
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
            dbc.Button("Add bid", id="market-add-bid", size="sm", color="link"),
            dbc.Button("Delete selected", id="market-delete-bids", size="sm", color="link"),
            dcc.Graph(id="market-tso-loading", config={"displayModeBar": False}, style={"height": "260px"}),
        ]),
    ])
    dso_view = dbc.Card([
        dbc.CardHeader("DSO view: the grid, coloured by the AC power flow of the dispatch", className="py-1"),
        dbc.CardBody([
            html.Div(map_component("market", geojson), id="market-map-holder"),
            html.Details([
                html.Summary("Violations of the grid-blind merit order, listed after a clearing (click a row: the map zooms to it)",
                             className="small"),
                dag.AgGrid(id="market-violations", columnDefs=VIOLATION_COLUMNS, rowData=[],
                           defaultColDef={"sortable": True, "resizable": True, "flex": 1},
                           dashGridOptions={"rowHeight": 24, "headerHeight": 26, "animateRows": False},
                           className="bid-grid", style={"height": "220px", "width": "100%"}),
            ], open=True, className="mt-1"),
        ], className="p-1"),
    ])
    return html.Div([
        controls,
        dbc.Alert(id="market-alert", is_open=False, color="danger", dismissable=True, style={"whiteSpace": "pre-line"}),
        html.Div(id="market-outdated", className="outdated-note"),
        html.Div([
            dbc.Row(id="market-cards", className="mb-1 g-2"),
            dbc.Row([dbc.Col(tso_view, md=5), dbc.Col(dso_view, md=7)]),
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
    """Return the cards comparing the MILP with the merit order."""
    import dash_bootstrap_components as dbc
    from dash import html

    cols = []
    for key, title in METHODS.items():
        s = result[key]["summary"]
        v = s.get("validation") or {}
        status = s["status"]
        body = [
            html.Div(title, className="view-title"),
            html.Div(f"{s['delivered_mw']:.3f} of {s['requested_mw']:.3f} MW", className="card-metric", id=f"market-card-{key}-delivered"),
            html.Div(f"status {status}" + (f", at most {s['max_deliverable_mw']:.3f} MW deliverable" if s.get("max_deliverable_mw") is not None and status != "optimal" else "")),
            html.Div(f"cost {s['cost_eur']:.2f} €" + (f", linearization point {s['chosen_point']} ({s['chosen_point_label']})" if s.get("chosen_point") is not None else "")
                     + (f", refined in {len(s.get('rounds') or [])} clearing rounds" if s.get("refined") else "")),
            html.Div(f"{v.get('violations', 0)} violations in the AC power flow" if v else "not validated", id=f"market-card-{key}-violations"),
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
        fig.update_layout(title=f"{title}: prediction vs AC power flow", yaxis_title=unit, template="plotly_white",
                          margin=dict(l=50, r=10, t=40, b=60), legend=dict(orientation="h"))
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
    rows = []
    for x in result.get("merit", {}).get("violations", []):
        voltage = x["quantity"] == "vm_pu"
        rows.append({
            "element": f"{'bus' if voltage else 'line'} {x['id']}", "quantity": "voltage" if voltage else "loading",
            "value": f"{x['value']:.4f} p.u." if voltage else f"{x['value']:.1f} %",
            "limit": f"{x['limit']:.2f} p.u." if voltage else f"{x['limit']:.0f} %",
            "excess": abs(x["value"] - x["limit"]) / abs(x["limit"]),
            "bounds": element_bounds(geojson, x["element"], int(x["index"]), bus_points),
        })
    return sorted(rows, key=lambda r: -r["excess"])


def merit_violations(result: dict[str, Any]):
    """Return the list of limits the grid-blind merit order would have violated."""
    from dash import html

    violations = result["merit"].get("violations", [])
    items = [html.Li(f"{x['element']} {x['index']} ({x['id']}): {x['quantity']} {x['value']:.4g} beyond {x['limit']:.4g}")
             for x in violations[:30]]
    more = [html.Li(f"... and {len(violations) - 30} more")] if len(violations) > 30 else []
    return [html.H6(f"The grid-blind merit order would violate {len(violations)} limits"), html.Ul(items + more, className="small")]
