"""The dash-leaflet map: grid layers from the generator's GeoJSON, coloured by results.

Styles are computed here (plain Python, unit-tested) into ``feature.properties.style``;
``assets/map.js`` only hands them to Leaflet. Tiles are opt-in (``$DIGIPLAT_TILE_URL``): a
workshop room is often offline, and a default online tile URL filled its console with hundreds
of failed tile requests; without tiles the OSM streets and footprints of the GeoJSON, drawn in
light grey, are the base map. The OSM credit appears once per map (its attribution control)
and once in the page footer.
"""

from __future__ import annotations

import copy
import os
from typing import Any

# The map's one credit line (tiles or not): OSM's data, under the ODbL, with a link to its terms.
ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors, ODbL'

# Layer id suffix, legend name, feature kinds, shown at start.
LAYERS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("base", "OSM streets and footprints", ("street", "footprint"), True),
    ("buildings", "Buildings", ("building",), True),
    ("lv", "0.4 kV feeders", ("lv_line", "service"), True),
    ("mv", "20 kV ring", ("mv_line",), True),
    ("stations", "Substations and feed-in", ("substation", "feed_in"), True),
)

# Layers a result recolours; the base map (streets, footprints: two thirds of the bytes) never
# changes, so a market round sends only these layers' data, not the whole map again.
RESULT_LAYERS: tuple[str, ...] = tuple(name for name, *_ in LAYERS if name != "base")

COLORS = {
    "street": "#b9bec6", "footprint": "#d5d8dc", "building": "#7f8c9a", "lv_line": "#2b7bb9", "service": "#7fb2d9",
    "mv_line": "#6a1b9a", "substation": "#e65100", "feed_in": "#1b5e20",
    "ok": "#2e7d32", "warn": "#f9a825", "bad": "#c62828", "full": "#1b5e20", "partial": "#81c784", "none": "#cfd8dc",
}


def tile_url() -> str:
    """Return the tile URL of ``$DIGIPLAT_TILE_URL``; empty (the default): no tiles, the offline base map.

    E.g. ``DIGIPLAT_TILE_URL='https://tile.openstreetmap.org/{z}/{x}/{y}.png'`` where the room is online.
    """
    return os.environ.get("DIGIPLAT_TILE_URL", "").strip()


def loading_color(loading_percent: float, limit: float = 100.0) -> str:
    """Return the colour of a branch loading against its limit (unsigned)."""
    x = abs(loading_percent)
    if x > limit + 1e-6:
        return COLORS["bad"]
    if x > 0.8 * limit:
        return COLORS["warn"]
    return COLORS["ok"]


def voltage_color(vm_pu: float, vm_min_pu: float = 0.95, vm_max_pu: float = 1.05) -> str:
    """Return the colour of a bus voltage against the band (warn within 1 % of a limit)."""
    if vm_pu < vm_min_pu - 1e-9 or vm_pu > vm_max_pu + 1e-9:
        return COLORS["bad"]
    if vm_pu < vm_min_pu + 0.01 or vm_pu > vm_max_pu - 0.01:
        return COLORS["warn"]
    return COLORS["ok"]


def activation_class(offered_mw: float, activated_mw: float) -> str:
    """Return ``full``, ``partial`` or ``none`` for a building's activation."""
    if offered_mw == 0 or abs(activated_mw) < 1e-6:
        return "none"
    return "full" if abs(activated_mw) >= abs(offered_mw) * (1 - 1e-6) - 1e-9 else "partial"


def styled_layers(geojson: dict[str, Any], outcome: dict[str, Any] | None = None,
                  names: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """Return one FeatureCollection per layer with styles and tooltips.

    Parameters
    ----------
    geojson
        The grid's FeatureCollection (``map.geojson``).
    outcome
        One outcome view of :func:`app.session.market_round` (``milp`` or ``merit``), or None
        for the plain grid. With it, lines are coloured by loading, buildings by activation, and
        house connections by voltage.
    names
        Only these layers (default: all of :data:`LAYERS`).
    """
    by_layer: dict[str, list[dict]] = {name: [] for name, *_ in LAYERS if names is None or name in names}
    kind_layer = {kind: name for name, _, kinds, _ in LAYERS for kind in kinds}
    vm = (outcome or {}).get("vm_pu", {})
    line_loading = (outcome or {}).get("line_loading_percent", {})
    trafo_loading = (outcome or {}).get("trafo_loading_percent", {})
    activation = (outcome or {}).get("buildings", {})
    for feature in geojson["features"]:
        props = feature["properties"]
        kind = props["kind"]
        if kind not in kind_layer or kind_layer[kind] not in by_layer:
            continue
        f = {"type": "Feature", "geometry": feature["geometry"], "properties": copy.copy(props)}
        style, tooltip = _style(kind, props, outcome is not None, vm, line_loading, trafo_loading, activation)
        f["properties"]["style"] = style
        if tooltip:
            f["properties"]["tooltip"] = tooltip
        by_layer[kind_layer[kind]].append(f)
    return {name: {"type": "FeatureCollection", "features": feats} for name, feats in by_layer.items()}


def _style(kind, props, has_outcome, vm, line_loading, trafo_loading, activation) -> tuple[dict, str]:
    if kind == "street":
        return {"color": COLORS["street"], "weight": 1, "opacity": 0.8}, ""
    if kind == "footprint":
        return {"color": COLORS["footprint"], "weight": 0.5, "fillColor": COLORS["footprint"], "fillOpacity": 0.5}, ""
    if kind == "building":
        tip = f"{props['building_id']} {props.get('housenumber') or ''}<br>{props['households']} households, peak {props['peak_kw']} kW"
        color = COLORS["building"]
        if has_outcome:
            a = activation.get(props["building_id"])
            if a is not None:
                cls = activation_class(a["offered_mw"], a["activated_mw"])
                color = COLORS[cls]
                tip += f"<br>bid {a['offered_mw'] * 1000:.1f} kW, activated {a['activated_mw'] * 1000:.1f} kW ({cls})"
            v = vm.get(str(props["bus"]))
            if v is not None:
                tip += f"<br>voltage {v:.4f} p.u."
            edge = voltage_color(v) if v is not None else color
            return {"color": edge, "weight": 2 if edge != COLORS["ok"] else 1, "fillColor": color, "fillOpacity": 0.85}, tip
        return {"color": "#56606b", "weight": 1, "fillColor": color, "fillOpacity": 0.7}, tip
    if kind in ("lv_line", "service", "mv_line"):
        base = {"lv_line": 3, "service": 1.5, "mv_line": 4}[kind]
        tip = f"{props['name']}<br>{props['parallel']} x {props['std_type']}, {props['length_m']} m"
        color = COLORS[kind]
        style: dict[str, Any] = {"weight": base, "opacity": 0.95}
        if props.get("normally_open"):
            style["dashArray"] = "6 6"
            tip += "<br>normally open point"
        if has_outcome:
            loading = line_loading.get(str(props["line"]))
            if loading is not None:
                color = loading_color(loading)
                tip += f"<br>loading {abs(loading):.1f} %" + (" (reversed flow)" if loading < 0 else "")
                if color == COLORS["bad"]:
                    style["weight"] = base + 3
        style["color"] = color
        return style, tip
    if kind == "substation":
        tip = f"{props['name']} (20/0.4 kV)"
        color = COLORS["substation"]
        if has_outcome and str(props["trafo"]) in trafo_loading:
            loading = trafo_loading[str(props["trafo"])]
            color = loading_color(loading)
            tip += f"<br>loading {abs(loading):.1f} %"
        return {"radius": 8, "color": "#333", "weight": 1.5, "fillColor": color, "fillOpacity": 1.0}, tip
    if kind == "feed_in":
        return {"radius": 9, "color": "#111", "weight": 2, "fillColor": COLORS["feed_in"], "fillOpacity": 1.0}, props.get("name", "feed-in")
    return {}, ""


def map_bounds(geojson: dict[str, Any]) -> list[list[float]]:
    """Return ``[[south, west], [north, east]]`` of the supplied buildings."""
    lons, lats = [], []
    for f in geojson["features"]:
        if f["properties"]["kind"] in ("building", "substation", "feed_in"):
            coords = f["geometry"]["coordinates"]
            pts = coords[0] if f["geometry"]["type"] == "Polygon" else [coords]
            for lon, lat in pts:
                lons.append(lon)
                lats.append(lat)
    return [[min(lats), min(lons)], [max(lats), max(lons)]]


def map_component(prefix: str, geojson: dict[str, Any], outcome: dict[str, Any] | None = None):
    """Return the dash-leaflet map with one toggleable GeoJSON overlay per layer and a legend."""
    import dash_leaflet as dl
    from dash import html

    layers = styled_layers(geojson, outcome)
    overlays = []
    for name, label, _, checked in LAYERS:
        overlays.append(
            dl.Overlay(
                dl.LayerGroup(
                    dl.GeoJSON(
                        id=f"{prefix}-layer-{name}",
                        data=layers[name],
                        style={"variable": "digiplat.map.style"},
                        pointToLayer={"variable": "digiplat.map.point"},
                        onEachFeature={"variable": "digiplat.map.tooltip"},
                    )
                ),
                name=label,
                checked=checked,
            )
        )
    children = []
    url = tile_url()
    if url:
        # The tile layer's own attribution would repeat the control's credit line.
        children.append(dl.TileLayer(url=url, attribution="", maxZoom=19))
    children.append(dl.LayersControl(overlays, position="topright"))
    children.append(dl.AttributionControl(prefix=f"Map data {ATTRIBUTION}", position="bottomright"))
    (south, west), (north, east) = bounds = map_bounds(geojson)
    return html.Div(
        [
            # ``center`` without ``zoom``: Leaflet still fits ``bounds``; dash-leaflet 1.1 compares the
            # view with ``center`` on every move and throws a console TypeError when it is missing.
            dl.Map(children, id=f"{prefix}-map", bounds=bounds, center=[(south + north) / 2, (west + east) / 2],
                   style={"height": "100%", "width": "100%"}, attributionControl=False),
            html.Div(legend(outcome is not None), id=f"{prefix}-legend"),
        ],
        className="map-frame",
        style={"position": "relative"},
    )


def result_layer_data(geojson: dict[str, Any], outcome: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Return the FeatureCollections of :data:`RESULT_LAYERS`, in that order, styled for ``outcome``."""
    layers = styled_layers(geojson, outcome, RESULT_LAYERS)
    return [layers[name] for name in RESULT_LAYERS]


def legend(with_outcome: bool):
    """Return the map legend (grid symbols, and the result colours when a result is shown)."""
    from dash import html

    def line(color: str, text: str, dashed: bool = False):
        style = {"background": color}
        if dashed:
            style = {"borderTop": f"3px dashed {color}", "height": 0}
        return html.Div([html.Span(className="sw", style=style), text])

    def dot(color: str, text: str):
        return html.Div([html.Span(className="dot", style={"background": color}), text])

    rows = [line(COLORS["mv_line"], "20 kV ring"), line(COLORS["mv_line"], "normally open point", dashed=True),
            dot(COLORS["substation"], "20/0.4 kV substation"), dot(COLORS["feed_in"], "feed-in")]
    if with_outcome:
        rows += [line(COLORS["ok"], "loading < 80 %"), line(COLORS["warn"], "loading 80-100 %"),
                 line(COLORS["bad"], "overloaded / voltage outside 0.95-1.05"),
                 dot(COLORS["full"], "bid fully activated"), dot(COLORS["partial"], "partially activated"),
                 dot(COLORS["none"], "not activated")]
    else:
        rows += [line(COLORS["lv_line"], "0.4 kV feeder"), line(COLORS["service"], "service connection"),
                 dot(COLORS["building"], "supplied building")]
    return html.Div(rows, className="legend")
