"""What the app computes on the server: one market round as a small, browser-safe dict.

The pandapower net, the DSO key and the package stay on the server; the browser receives only
the figures it draws (per-element voltages and loadings by pandapower index for the DSO's map,
the package's opaque figures for the TSO view). Every function here is plain and tested directly.
"""

from __future__ import annotations

import functools
from dataclasses import replace
import io
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DAY_TYPES = ("weekday", "weekend")
BID_COLUMNS = ("bid_id", "aggregator", "building_id", "p_mw", "price_eur_per_mwh", "fpu")


@functools.lru_cache(maxsize=1)
def default_grid():
    """Return the shipped Bergwald grid (loaded once per server process)."""
    from gridgen.grid import Grid, default_grid_dir

    return Grid.load(default_grid_dir())


@functools.lru_cache(maxsize=8)
def scenario_for(day_type: str, hour: int):
    """Return the default scenario at a time frame (cached; read-only)."""
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    config = ScenarioConfig().with_time_frame(day_type=day_type, hour=int(hour))
    return scenario_from_grid(default_grid(), config)


def default_bid_records(day_type: str = "weekday", hour: int = 18) -> list[dict[str, Any]]:
    """Return the scenario's bids as DataTable records."""
    frame = scenario_for(day_type, hour).bids
    return _records(frame)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    frame = frame.reindex(columns=list(BID_COLUMNS))
    frame["fpu"] = frame["fpu"].fillna("")
    return frame.to_dict("records")


def bids_from_upload(contents: str, filename: str) -> list[dict[str, Any]]:
    """Return DataTable records from an uploaded CSV/JSON (``dcc.Upload`` base64 contents).

    Raises ``optim._errors.InputError`` listing every bad row; nothing is returned half-read.
    """
    import base64
    import tempfile
    from pathlib import Path

    from optim._errors import InputError
    from optim.tso.bids import read_bids

    if not contents or "," not in contents:
        raise InputError("the upload is empty")
    suffix = Path(filename or "bids.csv").suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"{filename}: upload a .csv or .json bid file")
    raw = base64.b64decode(contents.split(",", 1)[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(raw)
        table = read_bids(path)
    return _records(table.to_frame())


def bids_csv(records: list[dict[str, Any]]) -> str:
    """Return the bid table as CSV text (the documented bid format, docs/bids.md)."""
    frame = pd.DataFrame(records).reindex(columns=list(BID_COLUMNS))
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue()


def market_round(
    day_type: str, hour: int, request_mw: float, bid_records: list[dict[str, Any]], *, refine: bool = False
) -> dict[str, Any]:
    """Clear one request with the grid-aware MILP and the grid-blind merit order; validate both.

    With ``refine`` the MILP adds its validated dispatch as a linearization point and clears again
    until it is clean (beyond paper A; see :func:`optim.market.clear_market`).

    Returns a JSON-serializable dict (see :func:`_outcome_view`) with ``milp``, ``merit``, the TSO
    view ``tso`` and the time frame. Raises ``optim._errors.InputError`` for bad bids or request.
    """
    from optim._errors import InputError
    from optim.market import clear_market

    if day_type not in DAY_TYPES:
        raise InputError(f"day type must be one of {', '.join(DAY_TYPES)}")
    if hour is None or not (0 <= int(hour) <= 23):
        raise InputError("hour must be between 0 and 23")
    if request_mw is None or not math.isfinite(float(request_mw)) or float(request_mw) == 0:
        raise InputError("the request P_E must be a non-zero number of MW")
    grid = default_grid()
    bids, scenario_with_bids, lin = _linearized(day_type, int(hour), bid_records)
    milp = clear_market(grid, scenario_with_bids, bids, float(request_mw), method="milp", linearization=lin, refine=refine)
    merit = clear_market(grid, scenario_with_bids, bids, float(request_mw), method="merit-order", linearization=lin)
    return {
        "time_frame": {"day_type": day_type, "hour": int(hour), "timestamp": scenario_with_bids.timestamp},
        "request_mw": float(request_mw),
        "milp": _outcome_view(milp, grid, bids),
        "merit": _outcome_view(merit, grid, bids),
        "tso": _tso_view(milp.package, milp.clearing),
        "linearize_s": round(lin.runtime_s, 3),
    }


_LIN_CACHE: dict[tuple, Any] = {}
_LIN_LOCK = __import__("threading").Lock()


def _bids_key(frame: pd.DataFrame) -> str:
    import hashlib

    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _linearization(day_type: str, hour: int, bids_key: str, scenario):
    """Return the DSO's linearization for a time frame and bid set (cached: bids define the points)."""
    from optim.dso.linearize import linearize

    key = (day_type, hour, bids_key)
    with _LIN_LOCK:
        if key not in _LIN_CACHE:
            if len(_LIN_CACHE) >= 8:
                _LIN_CACHE.pop(next(iter(_LIN_CACHE)))
            _LIN_CACHE[key] = linearize(default_grid(), scenario)
        return _LIN_CACHE[key]


def _linearized(day_type: str, hour: int, bid_records: list[dict[str, Any]] | None):
    """Return ``(bids, scenario with these bids, linearization)`` for DataTable records.

    Raises ``optim._errors.InputError`` listing every bad bid row.
    """
    from optim.tso.bids import bids_from_frame

    frame = pd.DataFrame(bid_records or []).reindex(columns=list(BID_COLUMNS))
    frame["fpu"] = frame["fpu"].replace("", None)
    bids = bids_from_frame(frame)
    scenario = replace(scenario_for(day_type, hour), bids=bids.to_frame())
    return bids, scenario, _linearization(day_type, hour, _bids_key(scenario.bids), scenario)


def warm_up() -> None:
    """Load the grid, the default scenario and its linearization (the first click is then fast)."""
    try:
        _linearized("weekday", 18, default_bid_records())
    except Exception:  # warm-up is an optimisation; the real call reports errors to the user
        log.exception("warm-up failed")


def _outcome_view(outcome, grid, bids) -> dict[str, Any]:
    """Browser-safe summary of one outcome: per-bid, per-building, per-element results."""
    c, v = outcome.clearing, outcome.validation
    key = outcome.key
    share_of_piece = {
        (p["bid_id"], p["flex_id"]): (p["activated_mw"] / p["offered_mw"] if p["offered_mw"] else 0.0)
        for p in c.piece_activations
    }
    flex_of_building = {}
    if key is not None:
        for flex_id, buildings in key.buildings_of_flex.items():
            for b in buildings:
                flex_of_building[b] = flex_id
    per_building: dict[str, dict[str, float]] = {}
    for row in bids.to_frame().itertuples():
        flex = flex_of_building.get(row.building_id)
        share = share_of_piece.get((row.bid_id, flex), 0.0)
        entry = per_building.setdefault(row.building_id, {"offered_mw": 0.0, "activated_mw": 0.0})
        entry["offered_mw"] += float(row.p_mw)
        entry["activated_mw"] += float(row.p_mw) * share
    view: dict[str, Any] = {
        "summary": outcome.summary(),
        "buildings": {b: {k: round(x, 6) for k, x in e.items()} for b, e in per_building.items()},
        "vm_pu": {},
        "line_loading_percent": {},
        "trafo_loading_percent": {},
        "violations": [],
    }
    if v is not None and key is not None:
        view["vm_pu"] = {str(b): round(float(x), 6) for b, x in zip(key.buses, v.vm_pf_pu)}
        for element, index, value in zip(key.branch_elements, key.branch_indices, v.loading_pf_percent):
            view[f"{element}_loading_percent"][str(index)] = round(float(value), 4)
        view["violations"] = [x.to_dict() for x in v.violations]
        view["plots"] = {
            "bus_ids": list(v.bus_ids),
            "vm_pf_pu": np.round(v.vm_pf_pu, 8).tolist(),
            "vm_pred_pu": None if v.vm_pred_pu is None else np.round(v.vm_pred_pu, 8).tolist(),
            "critical_buses": np.asarray(v.critical_buses, bool).tolist(),
            "branch_ids": list(v.branch_ids),
            "loading_pf_percent": np.round(v.loading_pf_percent, 6).tolist(),
            "loading_pred_percent": None if v.loading_pred_percent is None else np.round(v.loading_pred_percent, 6).tolist(),
            "critical_branches": np.asarray(v.critical_branches, bool).tolist(),
        }
    return view


def _tso_view(package, clearing) -> dict[str, Any]:
    """What the TSO knows: the package's opaque figures and its own clearing, no grid."""
    if package is None:
        return {}
    points = []
    for k, p in enumerate(package.points):
        points.append({
            "point": k,
            "label": p.label,
            "p_flex_mw": round(float(p.p_flex_mw.sum()), 4),
            "vm_min_pu": round(float(p.vm_pu.min()), 5),
            "vm_max_pu": round(float(p.vm_pu.max()), 5),
            "max_abs_loading_percent": round(float(np.abs(p.loading_percent).max()), 2),
        })
    view: dict[str, Any] = {
        "flex_buses": len(package.flex_ids),
        "monitored_buses": len(package.bus_ids),
        "monitored_branches": len(package.branch_ids),
        "points": points,
        "limits": {"vm_min_pu": package.vm_min_pu, "vm_max_pu": package.vm_max_pu,
                   "loading_min_percent": package.loading_min_percent, "loading_max_percent": package.loading_max_percent},
    }
    if clearing.vm_pu is not None and clearing.loading_percent is not None:
        order = np.argsort(-np.abs(clearing.loading_percent))[:15]
        view["predicted_loading_top"] = [
            {"id": clearing.branch_ids[i], "loading_percent": round(float(clearing.loading_percent[i]), 3)} for i in order
        ]
        order_v = np.argsort(-np.abs(clearing.vm_pu - 1.0))[:15]
        view["predicted_vm_top"] = [{"id": clearing.bus_ids[i], "vm_pu": round(float(clearing.vm_pu[i]), 5)} for i in order_v]
    return view
