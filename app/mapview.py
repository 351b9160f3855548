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
import functools
import os
from dataclasses import dataclass
from typing import Any

# The map's one credit line (tiles or not): OSM's data, under the ODbL, with a link to its terms.
ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors, ODbL'

# Layer id suffix, legend name, feature kinds, shown at start. The ``bids`` layer holds one marker
# per building with a bid (its activation), made from the buildings, not from a GeoJSON kind.
# Drawn in this order: buildings above the cables, so hovering a building's centre (where its
# service cable ends) shows the building, not the cable.
LAYERS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("base", "OSM streets and footprints", ("street", "footprint"), True),
    ("lv", "0.4 kV feeders", ("lv_line", "service"), True),
    ("mv", "20 kV ring", ("mv_line",), True),
    ("buildings", "Buildings", ("building",), True),
    ("stations", "Substations and feed-in", ("substation", "feed_in"), True),
    ("bids", "Bid activation", (), True),
)

# Layers a result recolours; the base map (streets, footprints: two thirds of the bytes) never
# changes, so a market round sends only these layers' data, not the whole map again.
RESULT_LAYERS: tuple[str, ...] = tuple(name for name, *_ in LAYERS if name != "base")
# Of these, the layers whose features never change (only their colours and tooltips do): the
# market page recolours them in place in the browser from a small restyle (a style and a tooltip
# per feature, by the feature's position ``fid`` in its layer; assets/map.js) instead of receiving
# and redrawing their GeoJSON; the bid markers change with the bids, so ``bids`` is sent as data.
RESTYLED_LAYERS: tuple[str, ...] = tuple(name for name in RESULT_LAYERS if name != "bids")


@dataclass(frozen=True)
class Scale:
    """A continuous, colour-blind-safe colour scale of one grid quantity, and its colour bar.

    Values outside ``[vmin, vmax]`` take the end colours; ``limits`` are the operating limits
    marked on the colour bar (an element beyond them is also drawn as a violation).
    """

    label: str
    unit: str
    vmin: float
    vmax: float
    colorscale: tuple[str, ...]
    limits: tuple[float, ...]
    ticks: tuple[float, ...]

    def position(self, value: float) -> float:
        """Return where ``value`` lies on the bar, 0..1 (clipped)."""
        return min(1.0, max(0.0, (value - self.vmin) / (self.vmax - self.vmin)))

    def color(self, value: float) -> str:
        """Return the ``#rrggbb`` colour of ``value``.

        The interpolation of plotly's ``sample_colorscale`` (evenly spaced stops, linear in RGB),
        done here on the stops parsed once: plotly re-parses and re-validates the scale on every
        call, which cost 0.3 s of a market result's two maps (1,400 elements). The colours differ
        from plotly's by at most 1 of 255 per channel (its rounding in 0..1 space;
        ``tests/app/test_scale_colors.py``); map and colour bar both use this method.
        """
        rgb = _scale_rgb(self.colorscale)
        x = self.position(value) * (len(rgb) - 1)
        k = min(int(x), len(rgb) - 2)
        t = x - k
        r, g, b = (lo + t * (hi - lo) for lo, hi in zip(rgb[k], rgb[k + 1]))
        return f"#{round(r):02x}{round(g):02x}{round(b):02x}"

    def gradient_css(self, steps: int = 11) -> str:
        """Return the CSS gradient of the colour bar, sampled with :meth:`color`."""
        stops = [self.vmin + (self.vmax - self.vmin) * i / (steps - 1) for i in range(steps)]
        return "linear-gradient(to right, " + ", ".join(f"{self.color(v)} {100 * self.position(v):.0f}%" for v in stops) + ")"


@functools.lru_cache(maxsize=16)
def _scale_rgb(colorscale: tuple[str, ...]) -> tuple[tuple[float, float, float], ...]:
    """The stops of a colour scale as RGB triples (plotly parses them)."""
    from plotly.colors import color_parser, unlabel_rgb, validate_colors

    return tuple(tuple(float(c) for c in unlabel_rgb(color)) for color in
                 color_parser(validate_colors(list(colorscale), "rgb"), lambda c: c))


def _plotly_scale(name: str, start: int = 0) -> tuple[str, ...]:
    """Return plotly's ColorBrewer scale ``name`` (sequential or diverging), from its step ``start``."""
    import plotly.colors

    colors = getattr(plotly.colors.sequential, name, None) or getattr(plotly.colors.diverging, name)
    return tuple(colors[start:])


# ColorBrewer scales (colour-blind safe): loading on the sequential YlOrRd without its two
# palest steps (invisible on the light base map), voltage on the diverging PuOr centred on 1 p.u.
SCALES: dict[str, Scale] = {
    "loading": Scale("line / substation loading", "%", 0.0, 120.0, _plotly_scale("YlOrRd", 2), (100.0,), (0, 50, 100)),
    "voltage": Scale("building voltage", "p.u.", 0.94, 1.06, _plotly_scale("PuOr"), (0.95, 1.05), (0.95, 1.0, 1.05)),
}

# The one table of fixed symbols: the style function draws them and the legend lists them, so the
# two cannot drift. ``shape``: how the legend draws the swatch; ``shown``: on the plain grid map,
# on the result map, or both. Grid classes (grid map) and bid activation (markers, result map)
# use greys, black, green and the Okabe-Ito vermillion, none of them on the two scales.
STYLES: dict[str, dict[str, Any]] = {
    "street": {"label": "OSM street", "shape": "line", "shown": "grid", "style": {"color": "#b9bec6", "weight": 1, "opacity": 0.8}},
    "footprint": {"label": "OSM footprint", "shape": "area", "shown": "grid",
                  "style": {"color": "#d5d8dc", "weight": 0.5, "fillColor": "#d5d8dc", "fillOpacity": 0.5}},
    "mv_line": {"label": "20 kV ring", "shape": "line", "shown": "grid", "style": {"color": "#3b3b8f", "weight": 4, "opacity": 0.95}},
    "lv_line": {"label": "0.4 kV feeder", "shape": "line", "shown": "grid", "style": {"color": "#2b7bb9", "weight": 3, "opacity": 0.95}},
    "service": {"label": "service connection", "shape": "line", "shown": "grid", "style": {"color": "#7fb2d9", "weight": 1.5, "opacity": 0.95}},
    "normally_open": {"label": "normally open point (no flow)", "shape": "line", "shown": "both",
                      "style": {"color": "#222222", "weight": 3, "opacity": 0.95, "dashArray": "6 6"}},
    "building": {"label": "supplied building", "shape": "area", "shown": "grid",
                 "style": {"color": "#56606b", "weight": 1, "fillColor": "#7f8c9a", "fillOpacity": 0.7}},
    "substation": {"label": "20/0.4 kV substation", "shape": "dot", "shown": "grid",
                   "style": {"radius": 8, "color": "#000000", "weight": 3, "fillColor": "#d55e00", "fillOpacity": 1.0}},
    "substation_result": {"label": "substation (fill: its loading)", "shape": "dot", "shown": "result",
                          "style": {"radius": 8, "color": "#000000", "weight": 3, "fillColor": "#ffffff", "fillOpacity": 1.0}},
    "feed_in": {"label": "feed-in (110/20 kV)", "shape": "dot", "shown": "both",
                "style": {"radius": 10, "color": "#ffffff", "weight": 3, "fillColor": "#009e73", "fillOpacity": 1.0}},
    "violation": {"label": "beyond a limit (tick): thick, black edge", "shape": "line", "shown": "result",
                  "style": {"color": "#000000", "weight": 4, "opacity": 1.0}},
    "bid_full": {"label": "bid fully activated", "shape": "dot", "shown": "result",
                 "style": {"radius": 4, "color": "#000000", "weight": 1.5, "fillColor": "#000000", "fillOpacity": 1.0}},
    "bid_partial": {"label": "bid partially activated", "shape": "dot", "shown": "result",
                    "style": {"radius": 4, "color": "#000000", "weight": 2.5, "fillColor": "#ffffff", "fillOpacity": 1.0}},
    "bid_none": {"label": "bid not activated", "shape": "dot", "shown": "result",
                 "style": {"radius": 4, "color": "#6b6b6b", "weight": 1.5, "fillColor": "#6b6b6b", "fillOpacity": 0.0}},
    "no_bid": {"label": "no marker: building without a bid", "shape": "none", "shown": "result", "style": {}},
}
LEGEND_WIDTH_PX = 215  # the legend's width (assets/style.css .legend)
VIOLATION_CLASS = "violation"  # Leaflet className of every element drawn beyond a limit


def tile_url() -> str:
    """Return the tile URL of ``$DIGIPLAT_TILE_URL``; empty (the default): no tiles, the offline base map.

    E.g. ``DIGIPLAT_TILE_URL='https://tile.openstreetmap.org/{z}/{x}/{y}.png'`` where the room is online.
    """
    return os.environ.get("DIGIPLAT_TILE_URL", "").strip()


def loading_color(loading_percent: float) -> str:
    """Return the colour of a branch loading (unsigned) on the loading scale."""
    return SCALES["loading"].color(abs(loading_percent))


def voltage_color(vm_pu: float) -> str:
    """Return the colour of a bus voltage on the voltage scale."""
    return SCALES["voltage"].color(vm_pu)


def beyond_loading(loading_percent: float, limit: float = 100.0) -> bool:
    """Return whether an unsigned loading exceeds its limit."""
    return abs(loading_percent) > limit + 1e-6


def beyond_voltage(vm_pu: float, vm_min_pu: float = 0.95, vm_max_pu: float = 1.05) -> bool:
    """Return whether a voltage leaves the band."""
    return vm_pu < vm_min_pu - 1e-9 or vm_pu > vm_max_pu + 1e-9


def activation_class(offered_mw: float, activated_mw: float) -> str:
    """Return ``full``, ``partial`` or ``none`` for a building's activation."""
    if offered_mw == 0 or abs(activated_mw) < 1e-6:
        return "none"
    return "full" if abs(activated_mw) >= abs(offered_mw) * (1 - 1e-6) - 1e-9 else "partial"


def style_of(key: str, **overrides: Any) -> dict[str, Any]:
    """Return a copy of the Leaflet style of :data:`STYLES` ``key`` with ``overrides``."""
    return {**STYLES[key]["style"], **overrides}


def _violating(style: dict[str, Any]) -> dict[str, Any]:
    return {**style, "className": VIOLATION_CLASS}


def _centroid(geometry: dict[str, Any]) -> list[float]:
    ring = geometry["coordinates"][0] if geometry["type"] == "Polygon" else [geometry["coordinates"]]
    pts = ring[:-1] if len(ring) > 1 and ring[0] == ring[-1] else ring
    return [sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)]


def styled_layers(geojson: dict[str, Any], outcome: dict[str, Any] | None = None,
                  names: tuple[str, ...] | None = None, flow: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Return one FeatureCollection per layer with styles, tooltips and click details.

    Parameters
    ----------
    geojson
        The grid's FeatureCollection (``map.geojson``).
    outcome
        One outcome view of :func:`app.session.market_round` (``milp`` or ``merit``), or None
        for the plain grid. With it, lines and substations are coloured by loading, buildings by
        their bus voltage (:data:`SCALES`), and each building with a bid gets an activation marker
        in the ``bids`` layer.
    names
        Only these layers (default: all of :data:`LAYERS`).
    flow
        Power-flow values in the outcome's form (``vm_pu``, ``line_loading_percent``,
        ``trafo_loading_percent``) shown in the details of the plain grid (its peak-load power
        flow) without colouring it; ignored with an ``outcome``.

    Every drawn feature gets ``properties.details``, ``{"title": ..., "rows": [[label, value], ...]}``
    in readable words (:func:`feature_details`), and its ``tooltip`` made of them.
    """
    by_layer: dict[str, list[dict]] = {name: [] for name, *_ in LAYERS if names is None or name in names}
    kind_layer = {kind: name for name, _, kinds, _ in LAYERS for kind in kinds}
    values = outcome if outcome is not None else (flow or {})
    activation = (outcome or {}).get("buildings", {})
    stations = substation_names(geojson)
    for feature in geojson["features"]:
        props = feature["properties"]
        kind = props["kind"]
        if kind not in kind_layer:
            continue
        if kind == "building" and "bids" in by_layer and props["building_id"] in activation:
            by_layer["bids"].append(_bid_marker(feature, activation[props["building_id"]]))
        if kind_layer[kind] not in by_layer:
            continue
        f = {"type": "Feature", "geometry": feature["geometry"], "properties": copy.copy(props)}
        f["properties"]["fid"] = len(by_layer[kind_layer[kind]])  # position in its layer: the restyle's key
        f["properties"]["style"] = _style(kind, props, outcome)
        details = feature_details(kind, props, values, activation, stations)
        if details is not None:
            f["properties"]["details"] = details
            f["properties"]["tooltip"] = tooltip_html(details)
        by_layer[kind_layer[kind]].append(f)
    return {name: {"type": "FeatureCollection", "features": feats} for name, feats in by_layer.items()}


def restyles(geojson: dict[str, Any], outcome: dict[str, Any] | None,
             names: tuple[str, ...] = RESTYLED_LAYERS) -> dict[str, dict[str, list]]:
    """Per layer the restyle that recolours its plain-grid features for ``outcome`` in the browser.

    ``{"styles": [...], "tips": [...]}``, one entry per feature in the order of
    :func:`styled_layers` (the features' ``fid``): the same styles and tooltips that
    ``styled_layers(geojson, outcome)`` gives them, without their geometry and properties
    (``assets/map.js`` reads them; :func:`restyled` applies them in Python). Click details are
    made on the server from the result (:func:`feature_details`).
    """
    kind_layer = {kind: name for name, _, kinds, _ in LAYERS for kind in kinds if name in names}
    out: dict[str, dict[str, list]] = {name: {"styles": [], "tips": []} for name in names}
    values = outcome or {}
    activation = values.get("buildings", {})
    stations = substation_names(geojson)
    for feature in geojson["features"]:
        props = feature["properties"]
        layer = kind_layer.get(props["kind"])
        if layer is None:
            continue
        details = feature_details(props["kind"], props, values, activation, stations)
        out[layer]["styles"].append(_style(props["kind"], props, outcome))
        out[layer]["tips"].append(tooltip_html(details) if details is not None else "")
    return out


def restyled(collection: dict[str, Any], restyle: dict[str, list] | None) -> dict[str, Any]:
    """A layer's FeatureCollection with the styles and tooltips of a :func:`restyles` entry (as the browser draws it)."""
    if not restyle:
        return collection
    features = []
    for f in collection["features"]:
        k = f["properties"]["fid"]
        props = {**f["properties"], "style": restyle["styles"][k], "tooltip": restyle["tips"][k]}
        features.append({**f, "properties": props})
    return {**collection, "features": features}


def substation_names(geojson: dict[str, Any]) -> dict[int, str]:
    """Return ``{transformer index: short name}`` of the substations (``S1``...), for the buildings they supply."""
    return {int(f["properties"]["trafo"]): str(f["properties"]["name"]).split()[0]
            for f in geojson["features"] if f["properties"]["kind"] == "substation"}


def tooltip_html(details: dict[str, Any]) -> str:
    """Return the hover text of :func:`feature_details`: the title in bold, one ``label: value`` per line."""
    from html import escape

    lines = [f"<b>{escape(details['title'])}</b>"] + [f"{escape(label)}: {escape(value)}" for label, value in details["rows"]]
    return "<br>".join(lines)


def _kw(p_mw: float) -> str:
    return f"{p_mw * 1000:.1f} kW"


def _loading_text(loading: float) -> str:
    text = f"{abs(loading):.1f} %" + (" (reversed flow)" if loading < 0 else "")
    return text + (" - beyond 100 %" if beyond_loading(loading) else "")


def _voltage_text(vm: float) -> str:
    return f"{vm:.4f} p.u." + (" - outside 0.95-1.05" if beyond_voltage(vm) else "")


ACTIVATION_WORDS = {"full": "fully activated", "partial": "partly activated", "none": "not activated"}


def feature_details(kind: str, props: dict[str, Any], values: dict[str, Any], activation: dict[str, Any],
                    stations: dict[int, str] | None = None) -> dict[str, Any] | None:
    """Return the readable details of one grid feature: ``{"title": str, "rows": [[label, value], ...]}``.

    ``values`` holds power-flow results by pandapower index (``vm_pu``, ``line_loading_percent``,
    ``trafo_loading_percent``, as strings of the index); ``activation`` the per-building bid and
    activation of a market outcome. Streets and footprints have none (None).
    """
    vm = values.get("vm_pu", {})
    line_loading = values.get("line_loading_percent", {})
    trafo_loading = values.get("trafo_loading_percent", {})
    rows: list[list[str]] = []
    if kind == "building":
        number = f", No. {props['housenumber']}" if props.get("housenumber") else ""
        title = f"Building {props['building_id']}{number}"
        rows.append(["households", str(props["households"])])
        rows.append(["peak load", f"{props['peak_kw']:.1f} kW"])
        station = (stations or {}).get(props.get("substation"))
        if station:
            rows.append(["supplied by", f"substation {station}"])
        if str(props["bus"]) in vm:
            rows.append(["voltage", _voltage_text(vm[str(props["bus"])])])
        a = activation.get(props["building_id"])
        if a is not None:
            rows.append(["bid", _kw(a["offered_mw"])])
            rows.append(["activated", f"{_kw(a['activated_mw'])} ({ACTIVATION_WORDS[activation_class(a['offered_mw'], a['activated_mw'])]})"])
        elif activation:
            rows.append(["bid", "none"])
        return {"title": title, "rows": rows}
    if kind in ("lv_line", "service", "mv_line"):
        title = {"mv_line": f"20 kV cable: {props['name']}", "lv_line": f"0.4 kV feeder cable: {props['name']}",
                 "service": f"Service cable of {props['name'].removesuffix(' service')}"}[kind]
        rows.append(["cable", f"{props['parallel']} x {props['std_type']}"])
        rows.append(["length", f"{props['length_m']:.0f} m"])
        if props.get("normally_open"):
            rows.append(["state", "normally open point (switch open, no flow)"])
        elif str(props["line"]) in line_loading:
            rows.append(["loading", _loading_text(line_loading[str(props["line"])])])
        return {"title": title, "rows": rows}
    if kind == "substation":
        rating = f", {props['sn_kva']:.0f} kVA" if props.get("sn_kva") is not None else ""
        title = f"Substation {str(props['name']).split()[0]} (20/0.4 kV{rating})"
        if str(props["trafo"]) in trafo_loading:
            rows.append(["transformer loading", _loading_text(trafo_loading[str(props["trafo"])])])
        if "lv_bus" in props and str(props["lv_bus"]) in vm:
            rows.append(["0.4 kV busbar voltage", _voltage_text(vm[str(props["lv_bus"])])])
        return {"title": title, "rows": rows}
    if kind == "feed_in":
        rows.append(["role", "connection to the 110 kV grid: the TSO-DSO interface where P_E is delivered"])
        if str(props.get("bus")) in vm:
            rows.append(["voltage", _voltage_text(vm[str(props["bus"])])])
        return {"title": "Feed-in (110/20 kV)", "rows": rows}
    return None


def _bid_marker(building: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
    props = building["properties"]
    cls = activation_class(a["offered_mw"], a["activated_mw"])
    details = {"title": f"Bid at building {props['building_id']}",
               "rows": [["bid", _kw(a["offered_mw"])], ["activated", f"{_kw(a['activated_mw'])} ({ACTIVATION_WORDS[cls]})"]]}
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": _centroid(building["geometry"])},
            "properties": {"kind": "bid", "building_id": props["building_id"], "activation": cls,
                           "style": style_of(f"bid_{cls}"), "details": details, "tooltip": tooltip_html(details)}}


def _style(kind: str, props: dict[str, Any], outcome: dict[str, Any] | None) -> dict[str, Any]:
    """Return the Leaflet style of a feature: grid classes, or with an outcome its voltage/loading colours."""
    if kind in ("street", "footprint"):
        return style_of(kind)
    vm = (outcome or {}).get("vm_pu", {})
    if kind == "building":
        v = vm.get(str(props["bus"]))
        if v is None:
            return style_of("building")
        style = style_of("building", fillColor=voltage_color(v), fillOpacity=0.9)
        if beyond_voltage(v):
            style = _violating({**style, "color": STYLES["violation"]["style"]["color"], "weight": 3})
        return style
    if kind in ("lv_line", "service", "mv_line"):
        if props.get("normally_open"):
            return style_of("normally_open")
        style = style_of(kind)
        loading = (outcome or {}).get("line_loading_percent", {}).get(str(props["line"]))
        if loading is not None:
            style["color"] = loading_color(loading)
            if beyond_loading(loading):
                style = _violating({**style, "weight": style["weight"] + 3})
        return style
    if kind == "substation":
        loading = (outcome or {}).get("trafo_loading_percent", {}).get(str(props["trafo"]))
        if loading is None:
            return style_of("substation")
        style = style_of("substation_result", fillColor=loading_color(loading))
        return _violating(style) if beyond_loading(loading) else style
    if kind == "feed_in":
        return style_of("feed_in")
    return {}


def element_bounds(geojson: dict[str, Any], element: str, index: int,
                   bus_points: dict[int, tuple[float, float]] | None = None) -> list[list[float]] | None:
    """Return ``[[south, west], [north, east]]`` of a pandapower ``bus``, ``line`` or ``trafo`` on the map (None if unknown).

    A bus is the buildings connected to it, else its own ``(lon, lat)`` in ``bus_points`` (a
    feeder junction, drawn as no feature); a line is its cable.
    """
    key = {"bus": "bus", "line": "line", "trafo": "trafo"}.get(element)
    kinds = {"bus": ("building", "substation", "feed_in"), "line": ("lv_line", "service", "mv_line"),
             "trafo": ("substation",)}.get(element, ())
    lons, lats = [], []
    for f in geojson["features"]:
        props = f["properties"]
        if key and props["kind"] in kinds and props.get(key) == index:
            geom = f["geometry"]
            pts = {"Polygon": lambda c: c[0], "LineString": lambda c: c, "Point": lambda c: [c]}[geom["type"]](geom["coordinates"])
            lons += [p[0] for p in pts]
            lats += [p[1] for p in pts]
    if not lons and element == "bus" and bus_points and index in bus_points:
        lon, lat = bus_points[index]
        lons, lats = [lon], [lat]
    if not lons:
        return None
    pad = 0.001  # ~100 m around the element: its street and neighbours stay in view
    return [[min(lats) - pad, min(lons) - pad], [max(lats) + pad, max(lons) + pad]]


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


def map_component(prefix: str, geojson: dict[str, Any], outcome: dict[str, Any] | None = None, *,
                  flow: dict[str, Any] | None = None, legend_inside: bool = True, title: str | None = None):
    """Return the dash-leaflet map ``{prefix}-map`` with one toggleable GeoJSON overlay per layer.

    With ``legend_inside`` the legend (``{prefix}-legend``) floats in the map's lower left corner
    and the district is fitted to its right; without, the page draws one legend beside several
    maps and the district fills the map. ``title`` is shown on top of the map (which map it is,
    when two are side by side); ``flow`` goes to :func:`styled_layers`.
    """
    import dash_leaflet as dl
    from dash import html

    layers = styled_layers(geojson, outcome, flow=flow)
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
    left_px = LEGEND_WIDTH_PX + 20 if legend_inside else 10
    frame = [
        # ``center`` without ``zoom``: Leaflet still fits ``bounds``; dash-leaflet 1.1 compares the
        # view with ``center`` on every move and throws a console TypeError when it is missing.
        # The district is fitted right of the legend's strip, so the legend covers no element.
        dl.Map(children, id=f"{prefix}-map", bounds=bounds, center=[(south + north) / 2, (west + east) / 2],
               boundsOptions={"paddingTopLeft": [left_px, 30 if title else 10], "paddingBottomRight": [10, 10]},
               style={"height": "100%", "width": "100%"}, attributionControl=False,
               zoomSnap=0.25, zoomDelta=0.5),  # quarter zoom steps: the district fills the map
    ]
    if title:
        frame.append(html.Div(title, className="map-title", id=f"{prefix}-title"))
    if legend_inside:
        frame.append(html.Div(legend(outcome is not None), id=f"{prefix}-legend"))
    return html.Div(
        frame,
        className=f"map-frame map-frame-{prefix}",  # its height follows the viewport (assets/style.css)
        style={"position": "relative"},
    )


def result_layer_data(geojson: dict[str, Any], outcome: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Return the FeatureCollections of :data:`RESULT_LAYERS`, in that order, styled for ``outcome``."""
    layers = styled_layers(geojson, outcome, RESULT_LAYERS)
    return [layers[name] for name in RESULT_LAYERS]


def legend_entries(with_outcome: bool) -> list[str]:
    """Return the :data:`STYLES` keys the legend lists for the plain grid map or the result map."""
    shown = "result" if with_outcome else "grid"
    return [key for key, entry in STYLES.items() if entry["shown"] in (shown, "both")]


def legend_scales(with_outcome: bool) -> list[str]:
    """Return the :data:`SCALES` keys the legend shows as colour bars (only with a result)."""
    return list(SCALES) if with_outcome else []


def _swatch(key: str):
    from dash import html

    entry = STYLES[key]
    style = entry["style"]
    if entry["shape"] == "line":
        css = {"borderTop": f"{min(style.get('weight', 3), 5)}px {'dashed' if style.get('dashArray') else 'solid'} {style['color']}"}
        return html.Span(className="sw", style=css)
    if entry["shape"] == "dot":
        fill = style["fillColor"] if style.get("fillOpacity", 1) > 0 else "transparent"
        # an outline, so a white ring (the feed-in's) shows on the white legend too
        return html.Span(className="dot", style={"background": fill, "border": f"{min(style['weight'], 2.5)}px solid {style['color']}",
                                                 "outline": "1px solid #333"})
    if entry["shape"] == "area":
        return html.Span(className="area", style={"background": style["fillColor"], "border": f"1px solid {style['color']}"})
    return html.Span(className="sw")


def _colour_bar(key: str):
    from dash import html

    scale = SCALES[key]
    ticks = [html.Span(f"{t:g}", className="tick", style={"left": f"{100 * scale.position(t):.1f}%"}) for t in scale.ticks]
    limits = [html.Span(className="limit", style={"left": f"{100 * scale.position(x):.1f}%"}) for x in scale.limits]
    return html.Div([
        html.Div(f"{scale.label} ({scale.unit})", className="bar-title"),
        html.Div(limits, className="bar", style={"background": scale.gradient_css()}, **{"data-scale": key}),
        html.Div(ticks, className="ticks"),
    ], className="colour-bar")


def legend(with_outcome: bool):
    """Return the map legend, collapsible, built from :data:`SCALES` and :data:`STYLES`.

    The result map shows the two colour bars (grid state) and the fixed symbols (bid activation,
    violations, stations); the plain grid map shows the grid's classes.
    """
    from dash import html

    rows = [_colour_bar(key) for key in legend_scales(with_outcome)]
    rows += [html.Div([_swatch(key), STYLES[key]["label"]], className="legend-row", **{"data-style": key})
             for key in legend_entries(with_outcome)]
    return html.Details([html.Summary("Legend"), html.Div(rows)], open=True, className="legend")
