"""The exports of a market round: the same files from ``digiplat clear --export DIR`` and the app's download.

A :class:`MarketRound` (the grid, the time frame, the bids, the request and the outcome of one
or both clearing methods, each with its validated pandapower net) becomes the files of
:data:`EXPORT_FILES` (:func:`export_files`); the CLI writes them as a folder, the app sends them
as one zip (:func:`export_zip`, named by :func:`export_name`). Methods are named ``milp`` and
``merit_order`` in every file (column ``method``, property and key prefixes).

- ``activations.csv``: one row per method and bid-file row (a bid's share at one building) with
  ``offered_mw``, ``activated_mw`` and ``cost_eur``; summed by ``bid_id`` it gives the clearing's
  per-bid activations, by ``building_id`` the per-building ones. A row's activation is its bid's
  activation at its flexible bus, spread over the bid's rows there pro rata to their volume, as
  the balancing market (and :func:`optim.validation.q_flex_from_pieces`) does.
- ``violations.csv``: one row per method and limit the AC power flow breaks (element, pandapower
  index, opaque package id, name, quantity, value, limit).
- ``grid_results.geojson``: the grid's map features (buildings, 0.4 kV and 20 kV lines, service
  cables, substations, feed-in; WGS84) with per-method results as properties ``<method>_vm_pu``,
  ``<method>_loading_percent``, ``<method>_activated_mw``, ``<method>_violation``.
- ``grid_results.json``: ``{"attribution", "round", "nets": {"milp": NET, "merit_order": NET}}``
  where each ``NET`` is pandapower's own JSON of the validated net, ``res_*`` tables included:
  ``pandapower.from_json_string(json.dumps(data["nets"]["milp"]))`` loads it back. A method
  without a validation (infeasible request) has no net.
- ``report.html``: one self-contained page (plotly.js inline, no network): the cards, a map per
  method (lines and substations coloured by loading, buildings by voltage, on the colour scales
  of :data:`app.mapview.SCALES`; no tiles), the validation table (paper A, Table I) and the
  predicted-vs-AC-power-flow plots.

The ODbL credit of the OpenStreetMap data is in every file: the CSVs' first line is the comment
``# Map data © OpenStreetMap contributors, ODbL 1.0`` (read them with
``pandas.read_csv(path, comment="#")``; text fields are quoted, so a ``#`` inside one stays), the
JSON and GeoJSON files have a top-level ``attribution``, the report a visible footer.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import zipfile
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

EXPORT_FILES: tuple[str, ...] = ("activations.csv", "violations.csv", "grid_results.geojson", "grid_results.json",
                                 "report.html")
METHOD_TITLES: dict[str, str] = {"milp": "Grid-aware MILP (paper A)", "merit_order": "Grid-blind merit order"}
# Paper A, Table I (MAE / RMSE of the voltages in p.u. and of the loadings in %), the reference row.
PAPER_A_TABLE_I: dict[str, tuple[float, float]] = {"vm_pu": (2.3e-5, 2.6e-5), "loading_percent": (6.1e-3, 9.8e-3)}
GRID_KINDS = ("building", "lv_line", "service", "mv_line", "substation", "feed_in")
ACTIVATION_COLUMNS = ("method", "bid_id", "aggregator", "building_id", "fpu", "price_eur_per_mwh", "offered_mw",
                      "activated_mw", "cost_eur")
VIOLATION_COLUMNS = ("method", "element", "index", "id", "name", "quantity", "value", "limit")

__all__ = ["MarketRound", "EXPORT_FILES", "method_key", "attribution", "activations_frame", "violations_frame",
           "grid_results_geojson", "grid_results_json", "report_html", "export_files", "export_zip", "export_name"]


def method_key(method: str) -> str:
    """Return the name of a clearing method in the files: ``milp`` or ``merit_order``."""
    key = str(method).replace("-", "_")
    return "merit_order" if key == "merit" else key


def attribution() -> str:
    """Return the credit line every export carries."""
    from gridgen.grid import credit

    return credit()


@dataclass(frozen=True)
class MarketRound:
    """One market round to export.

    Parameters
    ----------
    grid
        The DSO's :class:`gridgen.grid.Grid`.
    scenario
        The time frame's :class:`optim.dso.scenario.Scenario`.
    bids
        The :class:`optim.tso.bids.BidTable` that was cleared.
    request_mw
        The request ``P_E`` (MW, + up).
    outcomes
        ``{method: MarketOutcome}`` for ``milp`` and/or ``merit_order`` (:func:`method_key`),
        each validated one with its solved net (``MarketOutcome.net``).
    """

    grid: Any
    scenario: Any
    bids: Any
    request_mw: float
    outcomes: Mapping[str, Any]

    def __post_init__(self) -> None:
        from optim._errors import InputError

        if not self.outcomes:
            raise InputError("a market round to export needs the outcome of at least one clearing method")
        object.__setattr__(self, "outcomes", {method_key(k): v for k, v in self.outcomes.items()})

    @property
    def time_frame(self) -> dict[str, Any]:
        """Day type, start (``HH:MM``), duration and timestamp of the round."""
        tf = self.scenario.time_frame
        return {"day_type": tf["day_type"], "start": tf["start"], "duration_min": tf["duration_min"],
                "timestamp": tf["timestamp"]}

    def summary(self) -> dict[str, Any]:
        """The round in one JSON-serializable dict: time frame, request and each method's summary."""
        return {"time_frame": self.time_frame, "request_mw": float(self.request_mw),
                "methods": {k: _summary(o) for k, o in self.outcomes.items()}}


def _summary(outcome: Any) -> dict[str, Any]:
    s = outcome.summary()
    return {k: s[k] for k in ("status", "requested_mw", "delivered_mw", "max_deliverable_mw", "cost_eur",
                              "chosen_point", "chosen_point_label", "points", "refined", "validation")}


def _num(value: Any, digits: int | None = None) -> float | None:
    """A finite float (rounded to ``digits`` decimals) or None: JSON has no NaN."""
    if value is None:
        return None
    x = float(value)
    if not math.isfinite(x):
        return None
    return round(x, digits) if digits is not None else x


# ------------------------------------------------------------------------------------ tables
def _row_shares(outcome: Any) -> tuple[dict[tuple[str, str], float], dict[str, str]]:
    """``(share of each (bid, flexible bus) piece, flexible bus of each building)`` of an outcome."""
    c = outcome.clearing
    share = {(p["bid_id"], p["flex_id"]): (p["activated_mw"] / p["offered_mw"] if p["offered_mw"] else 0.0)
             for p in c.piece_activations}
    flex_of: dict[str, str] = {}
    if outcome.key is not None:
        for flex_id, buildings in outcome.key.buildings_of_flex.items():
            for b in buildings:
                flex_of[str(b)] = flex_id
    return share, flex_of


def activations_frame(rnd: MarketRound) -> pd.DataFrame:
    """Return one row per method and bid row: offered, activated (MW) and cost (EUR) of :data:`ACTIVATION_COLUMNS`.

    Without the DSO key (a TSO-only clearing) the buildings' buses are unknown and every row of
    a bid gets the bid's activation pro rata to its volume.
    """
    rows = []
    for method, outcome in rnd.outcomes.items():
        c = outcome.clearing
        share, flex_of = _row_shares(outcome)
        by_bid = {a["bid_id"]: (a["activated_mw"] / a["offered_mw"] if a["offered_mw"] else 0.0) for a in c.activations}
        duration_h = float(getattr(c, "duration_h", 1.0) or 1.0)
        for row in rnd.bids.rows:
            if flex_of:
                s = share.get((row.bid_id, flex_of.get(str(row.building_id))), 0.0)
            else:
                s = by_bid.get(row.bid_id, 0.0)
            activated = float(row.p_mw) * s
            rows.append({"method": method, "bid_id": row.bid_id, "aggregator": row.aggregator,
                         "building_id": row.building_id, "fpu": row.fpu or "",
                         "price_eur_per_mwh": float(row.price_eur_per_mwh), "offered_mw": float(row.p_mw),
                         "activated_mw": activated,
                         "cost_eur": abs(activated) * float(row.price_eur_per_mwh) * duration_h})
    return pd.DataFrame(rows, columns=list(ACTIVATION_COLUMNS))


def _element_name(net: Any, element: str, index: int) -> str:
    table = getattr(net, element, None) if net is not None else None
    if table is None or index not in table.index or "name" not in table:
        return ""
    name = table.at[index, "name"]
    return "" if name is None or (isinstance(name, float) and math.isnan(name)) else str(name)


def violations_frame(rnd: MarketRound) -> pd.DataFrame:
    """Return one row per method and violated limit (:data:`VIOLATION_COLUMNS`), worst first within a method."""
    rows = []
    for method, outcome in rnd.outcomes.items():
        v = outcome.validation
        if v is None:
            continue
        found = sorted(v.violations, key=lambda x: -abs(x.value - x.limit) / abs(x.limit))
        for x in found:
            rows.append({"method": method, "element": x.element, "index": int(x.index), "id": x.opaque_id,
                         "name": _element_name(outcome.net, x.element, int(x.index)), "quantity": x.quantity,
                         "value": float(x.value), "limit": float(x.limit)})
    return pd.DataFrame(rows, columns=list(VIOLATION_COLUMNS))


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV with the credit as its first (comment) line; text fields quoted (a ``#`` in one is kept)."""
    buf = io.StringIO()
    buf.write(f"# {attribution()}\n")
    frame.to_csv(buf, index=False, quoting=csv.QUOTE_NONNUMERIC, float_format="%.10g", lineterminator="\n")
    return buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------------- grid results
def _results_of(outcome: Any) -> dict[str, dict[int, float]]:
    """Per-element power-flow results of an outcome's net: ``vm_pu`` by bus, loadings by line/trafo."""
    net = outcome.net
    if net is None or not len(getattr(net, "res_bus", ())):
        return {}
    out: dict[str, dict[int, float]] = {"vm_pu": net.res_bus.vm_pu.to_dict(),
                                        "line": net.res_line.loading_percent.to_dict(),
                                        "trafo": net.res_trafo.loading_percent.to_dict(),
                                        "ext_grid_p_mw": dict(zip(net.ext_grid.bus, net.res_ext_grid.p_mw))}
    return out


def _violating(outcome: Any) -> set[tuple[str, int]]:
    v = outcome.validation
    return set() if v is None else {(x.element, int(x.index)) for x in v.violations}


def _building_activation(rnd: MarketRound, activations: pd.DataFrame) -> dict[str, dict[str, tuple[float, float]]]:
    """``{method: {building: (offered_mw, activated_mw)}}``."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    if activations.empty:
        return {m: {} for m in rnd.outcomes}
    sums = activations.groupby(["method", "building_id"], sort=False)[["offered_mw", "activated_mw"]].sum()
    for (method, building), row in sums.iterrows():
        out.setdefault(method, {})[str(building)] = (float(row.offered_mw), float(row.activated_mw))
    return out


def grid_results_geojson(rnd: MarketRound, activations: pd.DataFrame | None = None) -> dict[str, Any]:
    """Return the grid's map features with each method's power-flow results and activations (a FeatureCollection)."""
    activations = activations_frame(rnd) if activations is None else activations
    per_building = _building_activation(rnd, activations)
    results = {m: _results_of(o) for m, o in rnd.outcomes.items()}
    violating = {m: _violating(o) for m, o in rnd.outcomes.items()}
    features = []
    for feature in rnd.grid.geojson.get("features", []):
        props = dict(feature.get("properties", {}))
        kind = props.get("kind")
        if kind not in GRID_KINDS:
            continue
        for m in rnd.outcomes:
            r = results[m]
            if kind == "building":
                bus = int(props["bus"])
                props[f"{m}_vm_pu"] = _num(r.get("vm_pu", {}).get(bus), 6)
                offered, activated = per_building.get(m, {}).get(str(props["building_id"]), (0.0, 0.0))
                props["offered_mw"] = _num(offered, 9)
                props[f"{m}_activated_mw"] = _num(activated, 9)
                props[f"{m}_violation"] = ("bus", bus) in violating[m]
            elif kind in ("lv_line", "service", "mv_line"):
                line = int(props["line"])
                props[f"{m}_loading_percent"] = _num(r.get("line", {}).get(line), 4)
                props[f"{m}_violation"] = ("line", line) in violating[m]
            elif kind == "substation":
                trafo = int(props["trafo"])
                props[f"{m}_loading_percent"] = _num(r.get("trafo", {}).get(trafo), 4)
                props[f"{m}_violation"] = ("trafo", trafo) in violating[m]
            elif kind == "feed_in":
                props[f"{m}_p_mw"] = _num(r.get("ext_grid_p_mw", {}).get(int(props["bus"])), 6)
        features.append({"type": "Feature", "geometry": feature["geometry"], "properties": props})
    return {"type": "FeatureCollection", "attribution": attribution(), "round": rnd.summary(), "features": features}


def grid_results_json(rnd: MarketRound) -> dict[str, Any]:
    """Return ``{"attribution", "round", "nets": {method: pandapower JSON}}`` of the validated nets."""
    import pandapower as pp

    nets = {}
    for method, outcome in rnd.outcomes.items():
        if outcome.net is not None:
            nets[method] = json.loads(pp.to_json(outcome.net))
    return {"attribution": attribution(), "round": rnd.summary(), "nets": nets}


# ------------------------------------------------------------------------------------- report
def _centroid(geometry: dict[str, Any]) -> tuple[float, float]:
    ring = geometry["coordinates"][0] if geometry["type"] == "Polygon" else [geometry["coordinates"]]
    pts = ring[:-1] if len(ring) > 1 and ring[0] == ring[-1] else ring
    return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)


def _colorscale(name: str) -> list[list[Any]]:
    from app.mapview import SCALES

    colors = list(SCALES[name].colorscale)
    return [[k / (len(colors) - 1), c] for k, c in enumerate(colors)]


def map_figure(rnd: MarketRound, method: str, activations: pd.DataFrame) -> Any:
    """Return the plotly map of one method: lines and substations by loading, buildings by voltage.

    Drawn in longitude/latitude with the aspect of the grid's latitude (no tiles: the report is
    read offline). Lines are grouped into 10 %-steps of the loading scale (plotly gives a line
    trace one colour); elements beyond a limit get a black outline, like the app's map.
    """
    import plotly.graph_objects as go

    from app.mapview import SCALES, STYLES, activation_class

    outcome = rnd.outcomes[method]
    r = _results_of(outcome)
    bad = _violating(outcome)
    activation = _building_activation(rnd, activations).get(method, {})
    loading_scale, voltage_scale = SCALES["loading"], SCALES["voltage"]
    step = 10.0
    n_bins = int(math.ceil((loading_scale.vmax - loading_scale.vmin) / step))
    bins: dict[Any, tuple[list, list]] = {}
    beyond: tuple[list, list] = ([], [])
    buildings: dict[str, list] = {"x": [], "y": [], "vm": [], "text": [], "bad": []}
    stations: dict[str, list] = {"x": [], "y": [], "loading": [], "text": [], "bad": []}
    bids: dict[str, tuple[list, list, list]] = {"full": ([], [], []), "partial": ([], [], [])}
    feed: tuple[list, list] = ([], [])
    lats = []
    for feature in rnd.grid.geojson.get("features", []):
        props, geom = feature["properties"], feature["geometry"]
        kind = props.get("kind")
        if kind in ("lv_line", "service", "mv_line"):
            xs = [p[0] for p in geom["coordinates"]] + [None]
            ys = [p[1] for p in geom["coordinates"]] + [None]
            lats += ys[:-1]
            loading = r.get("line", {}).get(int(props["line"]))
            if props.get("normally_open"):
                key: Any = "open"
            elif loading is None or not math.isfinite(loading):
                key = kind
            else:
                key = min(n_bins - 1, max(0, int((abs(loading) - loading_scale.vmin) // step)))
            bins.setdefault(key, ([], []))
            bins[key][0].extend(xs)
            bins[key][1].extend(ys)
            if ("line", int(props["line"])) in bad:
                beyond[0].extend(xs)
                beyond[1].extend(ys)
        elif kind == "building":
            x, y = _centroid(geom)
            vm = r.get("vm_pu", {}).get(int(props["bus"]))
            offered, activated = activation.get(str(props["building_id"]), (0.0, 0.0))
            text = f"{props['building_id']}"
            if vm is not None:
                text += f"<br>voltage {vm:.4f} p.u."
            if offered:
                cls = activation_class(offered, activated)
                text += f"<br>bid {offered * 1000:.1f} kW, activated {activated * 1000:.1f} kW ({cls})"
                if cls in bids:
                    bids[cls][0].append(x)
                    bids[cls][1].append(y)
                    bids[cls][2].append(text)
            buildings["x"].append(x)
            buildings["y"].append(y)
            buildings["vm"].append(vm)
            buildings["text"].append(text)
            buildings["bad"].append(("bus", int(props["bus"])) in bad)
        elif kind == "substation":
            x, y = geom["coordinates"][:2]
            loading = r.get("trafo", {}).get(int(props["trafo"]))
            stations["x"].append(x)
            stations["y"].append(y)
            stations["loading"].append(None if loading is None else abs(loading))
            stations["text"].append(f"{props.get('name', 'substation')}" +
                                    ("" if loading is None else f"<br>loading {abs(loading):.1f} %"))
            stations["bad"].append(("trafo", int(props["trafo"])) in bad)
        elif kind == "feed_in":
            feed[0].append(geom["coordinates"][0])
            feed[1].append(geom["coordinates"][1])

    fig = go.Figure()
    if beyond[0]:
        fig.add_trace(go.Scatter(x=beyond[0], y=beyond[1], mode="lines", name="line beyond its limit",
                                 line=dict(color="#000000", width=7), hoverinfo="skip"))
    for key in sorted(bins, key=lambda k: (isinstance(k, str), k if not isinstance(k, str) else 0, str(k))):
        xs, ys = bins[key]
        if key == "open":
            style, name = STYLES["normally_open"]["style"], "normally open point"
            line = dict(color=style["color"], width=2, dash="dash")
        elif isinstance(key, str):
            style, name = STYLES[key]["style"], STYLES[key]["label"]
            line = dict(color=style["color"], width=1.5)
        else:
            lo = loading_scale.vmin + key * step
            name = f"loading {lo:.0f}–{lo + step:.0f} %" if key < n_bins - 1 else f"loading ≥ {lo:.0f} %"
            line = dict(color=loading_scale.color(lo + step / 2), width=3)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line=line, hoverinfo="skip"))
    has_vm = any(v is not None for v in buildings["vm"])
    fig.add_trace(go.Scatter(
        x=buildings["x"], y=buildings["y"], mode="markers", name="building (colour: voltage)", text=buildings["text"],
        hoverinfo="text",
        marker=dict(size=[11 if b else 9 for b in buildings["bad"]], symbol="square", color=buildings["vm"] if has_vm else STYLES["building"]["style"]["fillColor"],
                    colorscale=_colorscale("voltage"), cmin=voltage_scale.vmin, cmax=voltage_scale.vmax,
                    showscale=has_vm,
                    colorbar=dict(title=dict(text=f"{voltage_scale.label} ({voltage_scale.unit})", side="right"),
                                  x=1.02, len=0.45, y=0.75, tickvals=list(voltage_scale.ticks)),
                    line=dict(color=["#000000" if b else "#56606b" for b in buildings["bad"]],
                              width=[2 if b else 0.5 for b in buildings["bad"]])),
    ))
    for cls, (xs, ys, texts) in bids.items():
        if xs:
            style = STYLES[f"bid_{cls}"]["style"]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=STYLES[f"bid_{cls}"]["label"], text=texts,
                                     hoverinfo="text",
                                     marker=dict(size=5, color=style["fillColor"] if style["fillOpacity"] else "rgba(0,0,0,0)",
                                                 line=dict(color=style["color"], width=1.5))))
    has_loading = any(v is not None for v in stations["loading"])
    if stations["x"]:
        fig.add_trace(go.Scatter(
            x=stations["x"], y=stations["y"], mode="markers", name="substation (colour: loading)", text=stations["text"],
            hoverinfo="text",
            marker=dict(size=14, symbol="diamond",
                        color=stations["loading"] if has_loading else STYLES["substation"]["style"]["fillColor"],
                        colorscale=_colorscale("loading"), cmin=loading_scale.vmin, cmax=loading_scale.vmax,
                        showscale=has_loading,
                        colorbar=dict(title=dict(text=f"{loading_scale.label} ({loading_scale.unit})", side="right"),
                                      x=1.02, len=0.45, y=0.25, tickvals=list(loading_scale.ticks)),
                        line=dict(color="#000000", width=[4 if b else 1.5 for b in stations["bad"]])),
        ))
    if feed[0]:
        style = STYLES["feed_in"]["style"]
        fig.add_trace(go.Scatter(x=feed[0], y=feed[1], mode="markers", name=STYLES["feed_in"]["label"],
                                 marker=dict(size=16, color=style["fillColor"], line=dict(color="#000000", width=2))))
    lat0 = float(np.mean(lats or buildings["y"] or [0.0]))
    fig.update_layout(
        title=METHOD_TITLES.get(method, method), template="plotly_white", height=620,
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.02, font=dict(size=10)),
        xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x", scaleratio=1 / math.cos(math.radians(lat0))),
    )
    return fig


def _parity_figures(outcome: Any) -> list[Any]:
    """Predicted vs AC power flow, voltages and loadings (all monitored elements, critical ones marked)."""
    import plotly.graph_objects as go

    v = outcome.validation
    if v is None or v.vm_pred_pu is None or v.loading_pred_percent is None:
        return []
    figs = []
    for title, unit, ids, pf, pred, crit in (
            ("Bus voltages", "p.u.", v.bus_ids, v.vm_pf_pu, v.vm_pred_pu, v.critical_buses),
            ("Branch loadings (signed)", "%", v.branch_ids, v.loading_pf_percent, v.loading_pred_percent,
             v.critical_branches)):
        pf, pred, crit = np.asarray(pf, float), np.asarray(pred, float), np.asarray(crit, bool)
        ids = np.asarray(ids, dtype=object)
        lo, hi = float(min(pf.min(), pred.min())), float(max(pf.max(), pred.max()))
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="prediction = power flow",
                                 line=dict(color="#999999", dash="dot"), hoverinfo="skip"))
        for mask, name, color in ((~crit, "monitored", "#2b7bb9"), (crit, "critical (closest to a limit)", "#c62828")):
            fig.add_trace(go.Scatter(x=pf[mask], y=pred[mask], mode="markers", name=name, text=ids[mask],
                                     hovertemplate="%{text}<br>AC %{x:.6g}<br>predicted %{y:.6g}<extra></extra>",
                                     marker=dict(size=6, color=color, opacity=0.8)))
        fig.update_layout(title=f"{title}: MILP prediction vs AC power flow", template="plotly_white", height=420,
                          xaxis_title=f"AC power flow ({unit})", yaxis_title=f"prediction ({unit})",
                          margin=dict(l=60, r=10, t=40, b=50), legend=dict(orientation="h", y=-0.2))
        figs.append(fig)
    return figs


def _fmt(x: Any, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _card(method: str, outcome: Any) -> str:
    s = outcome.summary()
    v = s.get("validation")
    ok = s["status"] == "optimal" and v is not None and v["violations"] == 0
    lines = [f"<div class='metric' data-field='delivered'>{s['delivered_mw']:.3f} of {s['requested_mw']:.3f} MW</div>",
             f"<div>status {html.escape(s['status'])}"
             + (f", at most {s['max_deliverable_mw']:.3f} MW deliverable"
                if s.get("max_deliverable_mw") is not None and s["status"] != "optimal" else "") + "</div>",
             f"<div data-field='cost'>cost {s['cost_eur']:.2f} €</div>"]
    if s.get("chosen_point") is not None:
        lines.append(f"<div data-field='point'>linearization point {s['chosen_point']} "
                     f"({html.escape(str(s.get('chosen_point_label') or ''))}) of {s.get('points')}"
                     + (f", refined in {len(s.get('rounds') or [])} clearings" if s.get("refined") else "") + "</div>")
    if v is not None:
        lines.append(f"<div data-field='violations'>{v['violations']} violations in the AC power flow</div>")
        lines.append(f"<div>voltages {v['vm_min_pu']:.4f}–{v['vm_max_pu']:.4f} p.u., "
                     f"max loading {v['max_loading_percent']:.1f} %</div>")
    else:
        lines.append("<div data-field='violations'>not validated (no dispatch)</div>")
    cls = "ok" if ok else ("bad" if v is not None else "warn")
    return (f"<div class='card {cls}' data-method='{method}'><div class='title'>"
            f"{html.escape(METHOD_TITLES.get(method, method))}</div>{''.join(lines)}</div>")


def _table_i(outcome: Any) -> str:
    v = outcome.validation
    rows = []
    for label, vm_key, ld_key in (("MAE, all", "vm_mae_pu", "loading_mae_percent"),
                                  ("RMSE, all", "vm_rmse_pu", "loading_rmse_percent"),
                                  ("MAE, critical", "critical_vm_mae_pu", "critical_loading_mae_percent"),
                                  ("RMSE, critical", "critical_vm_rmse_pu", "critical_loading_rmse_percent")):
        rows.append((label, _fmt(getattr(v, vm_key), ".2e"), _fmt(getattr(v, ld_key), ".2e")))
    vm, ld = PAPER_A_TABLE_I["vm_pu"], PAPER_A_TABLE_I["loading_percent"]
    rows.append(("Paper A, Table I (MAE / RMSE)", f"{vm[0]:.1e} / {vm[1]:.1e}", f"{ld[0]:.1e} / {ld[1]:.1e}"))
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows)
    return ("<table class='metrics' id='table-i'><thead><tr><th>metric</th><th>voltages (p.u.)</th>"
            f"<th>loadings (%)</th></tr></thead><tbody>{body}</tbody></table>")


def _violation_list(violations: pd.DataFrame, method: str, limit: int = 25) -> str:
    rows = violations[violations.method == method]
    if rows.empty:
        return ""
    items = []
    for r in rows.head(limit).itertuples():
        unit = "p.u." if r.quantity == "vm_pu" else "%"
        items.append(f"<li>{html.escape(r.element)} {r.index} ({html.escape(r.id)}{', ' + html.escape(r.name) if r.name else ''}): "
                     f"{html.escape(r.quantity)} {r.value:.4f} {unit} beyond {r.limit:.4g} {unit}</li>")
    more = f"<li>… and {len(rows) - limit} more (violations.csv has them all)</li>" if len(rows) > limit else ""
    return (f"<h3>{html.escape(METHOD_TITLES.get(method, method))}: {len(rows)} violations, worst first</h3>"
            f"<ul class='small'>{''.join(items)}{more}</ul>")


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1900px;padding:0 16px;color:#222}
h1{font-size:1.5rem;margin:12px 0 4px} h2{font-size:1.2rem;margin:18px 0 6px} h3{font-size:1rem;margin:10px 0 4px}
.cards,.maps,.plots{display:grid;grid-template-columns:repeat(var(--columns),minmax(0,1fr));gap:12px}
.cards,.maps,.plots{--columns:2} @media (max-width:1100px){.cards,.maps,.plots{--columns:1}}
.card{border:2px solid #999;border-radius:6px;padding:8px 12px}
.card.ok{border-color:#1a7f37}.card.bad{border-color:#c62828}.card.warn{border-color:#b58900}
.card .title{font-weight:600}.card .metric{font-size:1.4rem;font-weight:600}
table.metrics{border-collapse:collapse;font-size:.9rem}table.metrics td,table.metrics th{border:1px solid #ccc;padding:3px 8px}
.small{font-size:.85rem} footer{margin:24px 0 12px;padding-top:8px;border-top:1px solid #ccc;font-size:.9rem}
"""


def report_html(rnd: MarketRound, activations: pd.DataFrame | None = None,
                violations: pd.DataFrame | None = None) -> str:
    """Return the self-contained report page: cards, maps, validation table and plots, credit footer."""
    activations = activations_frame(rnd) if activations is None else activations
    violations = violations_frame(rnd) if violations is None else violations
    tf = rnd.time_frame
    figures: list[tuple[str, Any]] = [(f"map-{m}", map_figure(rnd, m, activations)) for m in rnd.outcomes]
    milp = rnd.outcomes.get("milp")
    parity = _parity_figures(milp) if milp is not None else []
    figures += [(f"validation-{k}", f) for k, f in zip(("vm", "loading"), parity)]
    divs = {}
    for k, (div_id, fig) in enumerate(figures):
        # plotly.js once, inline (no network); the other figures use the same window.Plotly
        divs[div_id] = fig.to_html(full_html=False, include_plotlyjs=(k == 0), div_id=div_id,
                                   config={"displaylogo": False, "responsive": True})
    title = (f"Market round: {tf['day_type']} {tf['start']} ({tf['duration_min']} min), "
             f"request P_E = {rnd.request_mw:g} MW")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='small'>Time frame starting {html.escape(str(tf['timestamp']))}; {rnd.bids.n_bids} bids "
        f"({len(rnd.bids.rows)} rows); grid of {len(rnd.grid.buildings)} buildings. Generated by the DigIPlat "
        "demonstrator (digiplat clear --export or the app's download); the numbers are in activations.csv, "
        "violations.csv and grid_results.*.</p>",
        "<h2>Results</h2><div class='cards'>", *(_card(m, o) for m, o in rnd.outcomes.items()), "</div>",
        "<h2>The grid under each dispatch (AC power flow)</h2>",
        "<p class='small'>Lines and substations coloured by loading, buildings by their voltage; a black outline "
        "marks an element beyond its limit; dots mark the buildings whose bids were activated.</p>",
        "<div class='maps'>", *(f"<div>{divs[f'map-{m}']}</div>" for m in rnd.outcomes), "</div>",
        "<h2>Validation (paper A, IV)</h2>",
    ]
    if milp is not None and milp.validation is not None and milp.validation.vm_mae_pu is not None:
        parts += ["<p class='small'>Errors of the MILP's linear prediction at its chosen point against the AC "
                  "power flow at the dispatch; critical: the 10 % of elements closest to their limits.</p>",
                  _table_i(milp), "<div class='plots'>",
                  *(f"<div>{divs[k]}</div>" for k in ("validation-vm", "validation-loading") if k in divs), "</div>"]
    else:
        parts.append("<p>No prediction to validate: the grid-blind merit order predicts nothing, and an "
                     "infeasible request has no dispatch.</p>")
    parts += [_violation_list(violations, m) for m in rnd.outcomes]
    parts.append(f"<footer id='credit'>Map data {html.escape(attribution().removeprefix('Map data '))}. "
                 "Grid generated from OpenStreetMap by gridgen.</footer></body></html>")
    return "".join(parts)


# ------------------------------------------------------------------------------------- files
def export_files(rnd: MarketRound) -> dict[str, bytes]:
    """Return the export's files (:data:`EXPORT_FILES`, in that order) as ``{name: content}``."""
    activations = activations_frame(rnd)
    violations = violations_frame(rnd)
    files = {
        "activations.csv": _csv_bytes(activations),
        "violations.csv": _csv_bytes(violations),
        "grid_results.geojson": json.dumps(grid_results_geojson(rnd, activations), separators=(",", ":"),
                                           allow_nan=False).encode("utf-8"),
        "grid_results.json": json.dumps(grid_results_json(rnd), separators=(",", ":")).encode("utf-8"),
        "report.html": report_html(rnd, activations, violations).encode("utf-8"),
    }
    return {name: files[name] for name in EXPORT_FILES}


def export_name(rnd: MarketRound) -> str:
    """Return the export's base name with day type, start time and request, e.g. ``digiplat-round_weekday_18-00_1.8MW``."""
    tf = rnd.time_frame
    return f"digiplat-round_{tf['day_type']}_{tf['start'].replace(':', '-')}_{rnd.request_mw:g}MW"


def export_zip(rnd: MarketRound, files: Mapping[str, bytes] | None = None) -> bytes:
    """Return the export's files as one zip (deflated), in a folder named :func:`export_name`."""
    files = export_files(rnd) if files is None else files
    folder = export_name(rnd)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.comment = attribution().encode("utf-8")
        for name, data in files.items():
            zf.writestr(f"{folder}/{name}", data)
    return buf.getvalue()
