"""Privacy page: what a TSO reconstructs from the package, drawn on the DSO's map.

For the default scenario (weekday 18:00, default bids) the attack suite of :mod:`optim.privacy`
reads the paper-style package, the hardened one (the default: the binding rows) and the operating
envelopes (per-bus bounds per request band, :mod:`optim.privacy.envelope`). The buildings with a
bid are coloured by the group the attack puts their flexible bus in (substation groups or LV
feeders), on the DSO's own map, beside the scores of every attack against the real grid. Same
colour = same recovered group: on the paper-style package the groups are the real substations; on
the hardened one the congested feeders still show; on the envelopes they do not.

The figure and table functions are plain and tested in ``tests/app/test_privacy_page.py``.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any

PREFIX = "privacy-"
STYLES = (("paper", "paper-style package (paper A)"), ("hardened", "hardened package (default: the binding rows)"),
          ("envelope", "operating envelopes (per-bus bounds, no grid row)"))
GROUPINGS = (("substation", "substation groups"), ("feeder", "LV feeders"))
#: Colours of the recovered groups (cycled); buildings without a bid stay grey.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d")
SCORE_ROWS = (("substation groups (adjusted Rand index)", "substation_ari", "<= 0.2"),
              ("LV feeders (adjusted Rand index)", "feeder_ari", "<= 0.2"),
              ("tree of the flexible buses (clusters found)", "tree_cluster_recall", ""),
              ("bus-level parent-child edges (recall)", "edge_recall", "<= 0.1"),
              ("edge resistances (median relative error)", "resistance_median_rel_error", "no better than prior"),
              ("branch ratings (median relative error)", "rating_median_rel_error", ">= 0.5"),
              ("ids inverted by replaying the shuffle", "id_inversion_rate", "<= 1/n"),
              ("asset ids vs longitude (|Spearman rho|)", "asset_id_lon_rank_corr", ""))
_LOCK = threading.Lock()


def group_color(label: int) -> str:
    """Colour of recovered group ``label``."""
    return PALETTE[int(label) % len(PALETTE)]


@functools.lru_cache(maxsize=3)
def attack_result(style: str) -> dict[str, Any]:
    """Attack the default scenario's package of ``style``; the groups per building and the scores.

    Returns
    -------
    dict
        ``scores`` (audit scores), ``substation`` and ``feeder`` (building id -> recovered group),
        ``groups`` (number of groups per grouping), ``rows`` (constraint rows of point 0).
    """
    from app import session
    from optim.privacy import attacks
    from optim.privacy.audit import audit_package, origins_from_dso_key
    from optim.privacy.hardening import HardeningConfig, ac_verifier, harden
    from optim.privacy.truth import truth_from_grid

    if style not in dict(STYLES):
        raise ValueError(f"unknown package style {style!r}")
    with _LOCK:
        grid = session.default_grid()
        # the market page's cached linearization of the default round (warm-up computes it)
        bids, scenario, lin = session._linearized("weekday", 18, session.default_bid_records())
        if style == "paper":
            package, key, origins = lin.package, lin.key, origins_from_dso_key(lin.key)
        elif style == "envelope":  # boxes from the round's bids, checked by the DSO's AC power flow
            hard = harden(lin.package, lin.key, bids, config=HardeningConfig(mechanism="envelope", random_state=0),
                          verify=ac_verifier(grid, scenario, lin.key))
            package, key, origins = hard.package, hard.key, hard.origins
        else:
            hard = harden(lin.package, lin.key, config=HardeningConfig(random_state=0))
            package, key, origins = hard.package, hard.key, hard.origins
        report = audit_package(package, origins=origins, grid=grid, truth=truth_from_grid(grid))
        view = attacks.view_of_package(package)
        # draw the attack's best reading (the operating point and cleaning that the audit scored)
        subs, feeders = report.substation_labels, report.feeder_labels
    col = {f: k for k, f in enumerate(view.flex_ids)}
    per_building: dict[str, dict[str, int]] = {"substation": {}, "feeder": {}}
    for flex_id, buildings in key.buildings_of_flex.items():
        for b in buildings:
            per_building["substation"][str(b)] = int(subs[col[flex_id]])
            per_building["feeder"][str(b)] = int(feeders[col[flex_id]])
    return {"scores": report.scores, **per_building,
            "groups": {"substation": int(len(set(subs))), "feeder": int(len(set(feeders)))},
            "rows": int(package.points[0].n_rows)}


def coloured_geojson(geojson: dict[str, Any], groups: dict[str, int]) -> dict[str, Any]:
    """The grid's FeatureCollection with every building with a bid filled in its recovered group's colour."""
    out = {"type": "FeatureCollection", "features": []}
    for feature in geojson["features"]:
        if feature["properties"].get("kind") != "building":
            continue
        f = copy.deepcopy(feature)
        group = groups.get(str(f["properties"]["building_id"]))
        color = group_color(group) if group is not None else "#cfd8dc"
        f["properties"]["style"] = {"color": "#56606b", "weight": 1, "fillColor": color,
                                    "fillOpacity": 0.9 if group is not None else 0.4}
        f["properties"]["tooltip"] = (f"{f['properties']['building_id']}: recovered group {group}"
                                      if group is not None else f"{f['properties']['building_id']}: no bid")
        f["properties"]["group"] = group
        out["features"].append(f)
    return out


def privacy_map(geojson: dict[str, Any], groups: dict[str, int]):
    """The DSO's map (streets, feeders, substations) with the buildings coloured by recovered group."""
    import dash_leaflet as dl
    from dash import html

    from app.mapview import map_bounds, styled_layers

    layers = styled_layers(geojson)
    children = [dl.GeoJSON(id=f"{PREFIX}layer-{name}", data=layers[name], style={"variable": "digiplat.map.style"},
                           pointToLayer={"variable": "digiplat.map.point"},
                           onEachFeature={"variable": "digiplat.map.tooltip"})
                for name in ("base", "lv", "mv", "stations")]
    children.append(dl.GeoJSON(id=f"{PREFIX}layer-groups", data=coloured_geojson(geojson, groups),
                               style={"variable": "digiplat.map.style"},
                               onEachFeature={"variable": "digiplat.map.tooltip"}))
    (south, west), (north, east) = bounds = map_bounds(geojson)
    return html.Div(dl.Map(children, id=f"{PREFIX}map", bounds=bounds, center=[(south + north) / 2, (west + east) / 2],
                           style={"height": "100%", "width": "100%"}), className="map-frame")


def score_table(results: dict[str, dict[str, Any]]):
    """One table: every attack's score on the paper-style and the hardened package, with the target."""
    from dash import html

    def fmt(value: Any) -> str:
        return "n/a (no such row)" if value is None else f"{value:.3f}"

    head = html.Tr([html.Th("attack"), *[html.Th(label.replace(" package", "").split(" (")[0])
                                         for s, label in STYLES if s in results],
                    html.Th("target")])
    body = [html.Tr([html.Td(label), *[html.Td(fmt(results[s]["scores"].get(key)), id=f"{PREFIX}score-{s}-{key}")
                                       for s, _ in STYLES if s in results], html.Td(target)])
            for label, key, target in SCORE_ROWS]
    body.append(html.Tr([html.Td("rows shipped (point 0; envelopes: per-bus bounds)"),
                         *[html.Td(str(results[s]["rows"])) for s, _ in STYLES if s in results], html.Td("")]))
    return html.Table([html.Thead(head), html.Tbody(body)], className="table table-sm", id=f"{PREFIX}scores")


def show_privacy(style: str | None, grouping: str | None):
    """Callback: the map of the recovered groups for ``style`` and ``grouping``, the caption and the scores."""
    from app import session

    style = style if style in dict(STYLES) else "paper"
    grouping = grouping if grouping in dict(GROUPINGS) else "substation"
    result = attack_result(style)
    results = {s: attack_result(s) for s, _ in STYLES}
    caption = (f"{dict(STYLES)[style]}: the attack finds {result['groups'][grouping]} {dict(GROUPINGS)[grouping]}; "
               f"adjusted Rand index against the real grid {result['scores'][grouping + '_ari']:.3f} "
               "(1 = the grid recovered, 0 = chance).")
    return privacy_map(session.default_grid().geojson, result[grouping]), caption, score_table(results)


def layout():
    """The page: package style and grouping selectors, the map, the scores."""
    import dash_bootstrap_components as dbc
    from dash import dcc, html

    return html.Div([
        html.H4("What a TSO can reconstruct from the package"),
        html.P("The attack suite reads only the package file, as a curious TSO would: shared-path structure of the "
               "sensitivities, magnitudes, id order. Buildings with a bid are coloured by the group the attack puts "
               "them in; the grey lines and substations are the DSO's real grid, for comparison. Command line: "
               "digiplat audit --package FILE."),
        dbc.Row([
            dbc.Col(dcc.RadioItems(id=f"{PREFIX}style", options=[{"label": f" {l}", "value": v} for v, l in STYLES],
                                   value="paper", inline=False), md=4),
            dbc.Col(dcc.RadioItems(id=f"{PREFIX}grouping", options=[{"label": f" {l}", "value": v} for v, l in GROUPINGS],
                                   value="substation", inline=False), md=4),
        ], className="mb-2"),
        dcc.Loading([html.Div(id=f"{PREFIX}caption", className="mb-2"),
                     dbc.Row([dbc.Col(html.Div(id=f"{PREFIX}map-holder", style={"height": "560px"}), md=7),
                              dbc.Col(html.Div(id=f"{PREFIX}table-holder"), md=5)])]),
    ])


def register_callbacks(app: Any) -> None:
    """Wire the page's callback."""
    from dash import Input, Output

    app.callback(Output(f"{PREFIX}map-holder", "children"), Output(f"{PREFIX}caption", "children"),
                 Output(f"{PREFIX}table-holder", "children"),
                 Input(f"{PREFIX}style", "value"), Input(f"{PREFIX}grouping", "value"))(show_privacy)
