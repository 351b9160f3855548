"""A market day: every market time unit (MTU) of a day linearized, cleared and validated.

Paper A: "new VTDF and LTDF values must be recalculated for different day types or specific time
frames", and balancing energy is traded in 15-minute units. For each MTU ``u`` of the day the DSO
builds the unit's time frame (``P_fix`` and bids of the quarter-hour, :mod:`optim.dso.scenario`),
linearizes its grid there (:func:`optim.dso.linearize.linearize`, the package of that unit), the
TSO clears the unit's request ``P_E,u`` with the grid-aware MILP and, for comparison, with the
grid-blind merit order on the same bids, and the DSO validates both dispatches by AC power flow
(:func:`optim.market.clear_market`).

With ``districts=True`` the grid is split into its districts (:mod:`optim.dso.districts`: the radial
20 kV feeders, which do not interact through the fixed feed-in voltage), as a DSO with many districts
would: per unit one package per district, the TSO clears the unit's request across all districts'
packages at once (:mod:`optim.tso.districts`), and each district validates its own dispatch.

The units are independent: nothing of unit ``u`` enters unit ``u + 1`` (each frame's state, e.g. a
battery's availability, is an input of the frame, not simulated across frames). So they run as
independent tasks on ``dask.distributed``: an embedded ``LocalCluster`` with ``workers`` processes
(one thread each: the power flows and HiGHS are single-threaded, and one process per core avoids
the GIL), or an existing scheduler (``scheduler="tcp://host:8786"``) for a cluster. Each worker
loads the grid folder once (cached per process) and runs whole units; the results are plain dicts
that name bids, the linearization point's index and label, never a package's row ids, so a
distributed run returns exactly what the serial run (``workers=0``) returns.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from optim._errors import InputError

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]

#: Market time unit lengths (minutes) a day can be cut into.
MTU_CHOICES = (15, 30, 60)
#: Largest request profile file read (bytes); a day has at most 96 rows.
MAX_PROFILE_BYTES = 1_000_000
#: The shipped request profile (under the assets folder) used when no profile or request is given.
DEFAULT_PROFILE = ("profiles", "request_weekday.csv")

__all__ = [
    "MTU_CHOICES",
    "DayConfig",
    "MarketDay",
    "unit_starts",
    "request_profile_from_csv",
    "constant_request_profile",
    "default_request_profile",
    "unit_result",
    "grid_state_of_outcome",
    "market_day",
]


@dataclass(frozen=True)
class DayConfig:
    """What a market day runs.

    Parameters
    ----------
    day_type
        ``"weekday"`` or ``"weekend"``.
    mtu_min
        Length of a market time unit (15, 30 or 60 minutes).
    n_points, point_method
        Linearization points per unit's package and how the DSO places them
        (:data:`optim.dso.points.POINT_METHODS`; default ``digiplat linearize``'s 9 merit levels,
        without its bisection: a day has 96 units, and the README's day figures are for 9 points).
    solver
        MILP solver (``"highs"`` or ``"pyomo:NAME"``).
    scenario
        Further :class:`~optim.dso.scenario.ScenarioConfig` options as a dict (seed, shares, ...);
        the time frame fields are set per unit.
    districts
        Split the grid into districts, one package each, cleared jointly per unit.
    grid_state
        Keep each validated dispatch's AC grid state in the unit's results (``grid_state``, see
        :func:`grid_state_of_outcome`; ~16 kB per unit and method on Bergwald), for a map of the
        day (the app's Market day page). DSO-side data: the CLI leaves it out.
    """

    day_type: str = "weekday"
    mtu_min: int = 15
    n_points: int = 9
    point_method: str = "merit-levels"
    solver: str = "highs"
    scenario: dict[str, Any] = field(default_factory=dict)
    districts: bool = False
    grid_state: bool = False

    def __post_init__(self) -> None:
        if self.day_type not in ("weekday", "weekend"):
            raise InputError(f"day type must be weekday or weekend, got {self.day_type!r}")
        if self.mtu_min not in MTU_CHOICES:
            raise InputError(f"--mtu-min must be one of {', '.join(map(str, MTU_CHOICES))}, got {self.mtu_min!r}")
        if not isinstance(self.n_points, (int, np.integer)) or not 1 <= int(self.n_points) <= 64:
            raise InputError(f"the number of linearization points must be 1..64, got {self.n_points!r}")
        from optim.dso.points import POINT_METHODS

        if self.point_method not in POINT_METHODS:
            raise InputError(f"unknown point method {self.point_method!r}: use one of {', '.join(POINT_METHODS)}")
        if self.grid_state and self.districts:
            raise InputError("the grid state of a unit is kept for the whole grid only, not per district")
        clash = {"day_type", "hour", "minute", "duration_min"} & set(self.scenario)
        if clash:
            raise InputError(f"the day sets the time frame itself; remove {sorted(clash)} from the scenario options")

    def to_dict(self) -> dict[str, Any]:
        return {"day_type": self.day_type, "mtu_min": int(self.mtu_min), "n_points": int(self.n_points),
                "point_method": self.point_method, "solver": self.solver, "scenario": dict(self.scenario),
                "districts": bool(self.districts), "grid_state": bool(self.grid_state)}


@dataclass(frozen=True)
class MarketDay:
    """The day's results: one dict per unit for the MILP and for the merit order.

    Attributes
    ----------
    units, merit_order
        Per unit ``{start, request_mw, status, delivered_mw, cost_eur, chosen_point, validation:
        {violations, vm_mae_pu, loading_mae_percent, ...}, linearize_s, clearing_s}``.
    totals
        Day sums: requested, delivered (MW and MWh), cost, units with violations, infeasible units.
    runtime_s, workers
        Wall time of the whole day and the number of worker processes (0 = serial).
    """

    config: DayConfig
    units: tuple[dict[str, Any], ...]
    merit_order: tuple[dict[str, Any], ...]
    totals: dict[str, Any]
    runtime_s: float
    workers: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``digiplat day --json`` and of ``day.json``."""
        return {"config": self.config.to_dict(), "units": [dict(u) for u in self.units],
                "merit_order": [dict(u) for u in self.merit_order], "totals": dict(self.totals),
                "runtime_s": round(self.runtime_s, 3), "workers": self.workers}

    def units_frame(self) -> pd.DataFrame:
        """One row per unit, MILP and merit order side by side (``units.csv``)."""
        rows = []
        for milp, mo in zip(self.units, self.merit_order):
            row = {"start": milp["start"], "request_mw": milp["request_mw"]}
            for prefix, unit in (("milp", milp), ("merit_order", mo)):
                v = unit.get("validation") or {}
                row.update({
                    f"{prefix}_status": unit["status"], f"{prefix}_delivered_mw": unit["delivered_mw"],
                    f"{prefix}_cost_eur": unit["cost_eur"], f"{prefix}_violations": v.get("violations"),
                    f"{prefix}_vm_mae_pu": v.get("vm_mae_pu"),
                    f"{prefix}_loading_mae_percent": v.get("loading_mae_percent"),
                })
            row["milp_chosen_point"] = milp["chosen_point"]
            row["max_deliverable_mw"] = milp.get("max_deliverable_mw")
            rows.append(row)
        return pd.DataFrame(rows)


def unit_starts(mtu_min: int) -> tuple[str, ...]:
    """Starts ``HH:MM`` of the day's market time units (96 for 15 minutes)."""
    if mtu_min not in MTU_CHOICES:
        raise InputError(f"--mtu-min must be one of {', '.join(map(str, MTU_CHOICES))}, got {mtu_min!r}")
    return tuple(f"{m // 60:02d}:{m % 60:02d}" for m in range(0, 24 * 60, mtu_min))


def _start_minutes(text: str) -> int | None:
    parts = str(text).strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    hour, minute = int(parts[0]), int(parts[1])
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return 60 * hour + minute


def request_profile_from_csv(path: str | Path, mtu_min: int = 15) -> pd.DataFrame:
    """Read a request profile: CSV with columns ``start`` (``HH:MM``) and ``request_mw``.

    Every row names the start of one market time unit of ``mtu_min`` minutes; units the file does
    not name are not traded. Rows come back sorted by start.

    Raises
    ------
    InputError
        Missing or unreadable file, over 1 MB, missing columns, a start that is not ``HH:MM`` on the
        unit grid, a duplicate start, a request that is not a finite number (the message names the
        line of the file).
    """
    path = Path(path)
    allowed = set(unit_starts(mtu_min))
    if not path.is_file():
        raise InputError(f"request profile {path} does not exist; give a CSV with columns start,request_mw")
    if path.stat().st_size > MAX_PROFILE_BYTES:
        raise InputError(f"request profile {path} is larger than {MAX_PROFILE_BYTES // 1000} kB; a day has at most 96 rows")
    try:
        # plain text whatever the file is called (pandas would unzip a ".zip" name)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, compression=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise InputError(f"cannot read request profile {path}: {str(exc).splitlines()[0]}") from None
    missing = {"start", "request_mw"} - set(frame.columns)
    if missing:
        raise InputError(f"request profile {path} lacks column(s) {', '.join(sorted(missing))}; "
                         "it needs start (HH:MM) and request_mw")
    if frame.empty:
        raise InputError(f"request profile {path} has no rows")
    starts, requests, seen = [], [], set()
    for line, (start, req) in enumerate(zip(frame["start"], frame["request_mw"]), start=2):
        minutes = _start_minutes(start)
        if minutes is None or f"{minutes // 60:02d}:{minutes % 60:02d}" not in allowed:
            raise InputError(f"request profile {path}, line {line}: start {start!r} is not the HH:MM start of a "
                             f"{mtu_min}-minute unit")
        name = f"{minutes // 60:02d}:{minutes % 60:02d}"
        if name in seen:
            raise InputError(f"request profile {path}, line {line}: start {name} appears twice")
        try:
            value = float(req)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InputError(f"request profile {path}, line {line}: request_mw {req!r} is not a finite number of MW")
        seen.add(name)
        starts.append(name)
        requests.append(value)
    out = pd.DataFrame({"start": starts, "request_mw": requests}).sort_values("start", ignore_index=True)
    logger.info("request profile %s: %d units, %.3f MW mean", path.name, len(out), float(out.request_mw.mean()))
    return out


def constant_request_profile(request_mw: float, mtu_min: int = 15) -> pd.DataFrame:
    """The same request in every unit of the day."""
    value = float(request_mw)
    if not math.isfinite(value):
        raise InputError(f"--request-mw must be finite, got {request_mw!r}")
    starts = unit_starts(mtu_min)
    return pd.DataFrame({"start": list(starts), "request_mw": [value] * len(starts)})


def default_request_profile(mtu_min: int = 15) -> pd.DataFrame:
    """The shipped weekday profile (``assets/profiles/request_weekday.csv``), at ``mtu_min``.

    The file has 15-minute units; for 30 or 60 minutes the units that start on the coarser grid
    are kept.
    """
    from gridgen.paths import assets_dir

    frame = request_profile_from_csv(assets_dir().joinpath(*DEFAULT_PROFILE), 15)
    keep = frame.start.isin(unit_starts(mtu_min))
    return frame[keep].reset_index(drop=True)


@functools.lru_cache(maxsize=4)
def _grid(grid_dir: str) -> Any:
    """The grid folder, loaded once per process (each dask worker pays the JSON load once)."""
    from gridgen.grid import Grid

    return Grid.load(Path(grid_dir))


@functools.lru_cache(maxsize=4)
def _districts(grid_dir: str) -> tuple[Any, ...]:
    """The grid's districts, split once per process."""
    from optim.dso.districts import districts_of_grid

    return districts_of_grid(_grid(grid_dir))


def _round_float(value: Any, digits: int = 12) -> Any:
    return None if value is None else round(float(value), digits)


def _unit_summary(start: str, request_mw: float, outcome: Any) -> dict[str, Any]:
    clearing, validation = outcome.clearing, outcome.validation
    v = None
    if validation is not None:
        s = validation.summary()
        v = {k: s.get(k) for k in ("violations", "vm_mae_pu", "vm_rmse_pu", "loading_mae_percent",
                                   "loading_rmse_percent", "vm_min_pu", "vm_max_pu", "max_loading_percent")}
    return {
        "start": start,
        "request_mw": float(request_mw),
        "status": clearing.status.value,
        "delivered_mw": _round_float(clearing.delivered_mw, 9),
        "cost_eur": _round_float(clearing.cost_eur, 9),
        "chosen_point": clearing.chosen_point,
        "chosen_point_label": clearing.chosen_point_label,
        "max_deliverable_mw": _round_float(clearing.max_deliverable_mw, 9),
        "validation": v,
        "message": clearing.message or "",
        "clearing_s": round(float(clearing.runtime_s), 4),
    }


def grid_state_of_outcome(outcome: Any, bids: Any) -> dict[str, Any] | None:
    """The AC grid state of a validated dispatch, compact, for drawing it on the DSO's map.

    Parameters
    ----------
    outcome
        A :class:`optim.market.MarketOutcome` (None without a validation: nothing dispatched).
    bids
        The unit's bids (for the activation per building).

    Returns
    -------
    dict or None
        ``bus``, ``vm_pu``: pandapower bus indices (ascending) and their voltages; ``line``,
        ``line_loading_percent`` and ``trafo``, ``trafo_loading_percent``: branch indices and their
        signed loadings; ``buildings``: ``{building_id: [offered_mw, activated_mw]}``. Parallel
        lists instead of dicts keep a day of 96 units small (the key's order is shuffled per unit,
        so the indices are stored with each unit rather than once per day).
    """
    from optim.market import building_activations

    validation, key = getattr(outcome, "validation", None), getattr(outcome, "key", None)
    if validation is None or key is None:
        return None
    order = np.argsort(np.asarray(key.buses))
    out: dict[str, Any] = {"bus": [int(key.buses[i]) for i in order],
                           "vm_pu": [round(float(validation.vm_pf_pu[i]), 6) for i in order]}
    elements = np.asarray(key.branch_elements)
    indices = np.asarray(key.branch_indices)
    loading = np.asarray(validation.loading_pf_percent, dtype=float)
    for element in ("line", "trafo"):
        rows = np.flatnonzero(elements == element)
        rows = rows[np.argsort(indices[rows])]
        out[element] = [int(indices[i]) for i in rows]
        out[f"{element}_loading_percent"] = [round(float(loading[i]), 3) for i in rows]
    out["buildings"] = {b: [round(a["offered_mw"], 6), round(a["activated_mw"], 6)]
                        for b, a in building_activations(outcome, bids).items()}
    return out


def _idle_unit(start: str, method: str) -> dict[str, Any]:
    return {"start": start, "request_mw": 0.0, "status": "no request", "delivered_mw": 0.0, "cost_eur": 0.0,
            "chosen_point": None, "chosen_point_label": None, "max_deliverable_mw": None, "validation": None,
            "message": f"no balancing energy requested in this unit ({method})", "clearing_s": 0.0}


def unit_result(grid: Any, config: DayConfig, start: str, request_mw: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Linearize, clear (MILP and merit order) and validate one market time unit.

    Parameters
    ----------
    grid
        :class:`gridgen.grid.Grid` of the DSO.
    config
        The day's options.
    start
        ``HH:MM`` start of the unit.
    request_mw
        The unit's request ``P_E`` (MW, + = upward); 0 means no trade in the unit.

    Returns
    -------
    (dict, dict)
        The MILP's and the merit order's unit summaries (see :class:`MarketDay`), each with
        ``linearize_s`` (the MILP's: the package of the unit; the merit order reuses it).
    """
    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.market import clear_market

    minutes = _start_minutes(start)
    if minutes is None:
        raise InputError(f"unit start {start!r} is not HH:MM")
    scenario_config = ScenarioConfig.from_dict({**config.scenario, "day_type": config.day_type,
                                                "hour": minutes // 60, "minute": minutes % 60,
                                                "duration_min": int(config.mtu_min)})
    if request_mw == 0.0:
        idle = _idle_unit(start, "milp"), _idle_unit(start, "merit-order")
        if config.grid_state:
            for unit in idle:
                unit["grid_state"] = None
        return idle
    t0 = time.perf_counter()
    scenario = scenario_from_grid(grid, scenario_config)
    lin = linearize(grid, scenario, config=LinearizationConfig(n_points=int(config.n_points),
                                                               point_method=config.point_method))
    linearize_s = time.perf_counter() - t0
    milp = clear_market(grid, scenario, request_mw=request_mw, method="milp", solver=config.solver,
                        linearization=lin)
    merit = clear_market(grid, scenario, request_mw=request_mw, method="merit-order", linearization=lin)
    out_milp = {**_unit_summary(start, request_mw, milp), "linearize_s": round(linearize_s, 4)}
    out_merit = {**_unit_summary(start, request_mw, merit), "linearize_s": 0.0}
    if config.grid_state:
        out_milp["grid_state"] = grid_state_of_outcome(milp, scenario.bids)
        out_merit["grid_state"] = grid_state_of_outcome(merit, scenario.bids)
    return out_milp, out_merit


def _combined_validation(validations: Sequence[Any]) -> dict[str, Any] | None:
    """The districts' validations as one: violations summed, MAE and RMSE over all their elements."""
    if not validations:
        return None
    out: dict[str, Any] = {"violations": int(sum(v.n_violations for v in validations)),
                           "vm_min_pu": min(v.vm_min_pu for v in validations),
                           "vm_max_pu": max(v.vm_max_pu for v in validations),
                           "max_loading_percent": max(v.max_loading_percent for v in validations)}
    for name, count in (("vm", lambda v: len(v.vm_pf_pu)), ("loading", lambda v: len(v.loading_pf_percent))):
        unit = "pu" if name == "vm" else "percent"
        mae = [getattr(v, f"{name}_mae_{unit}") for v in validations]
        rmse = [getattr(v, f"{name}_rmse_{unit}") for v in validations]
        n = [count(v) for v in validations]
        if any(x is None for x in mae):
            out[f"{name}_mae_{unit}"] = out[f"{name}_rmse_{unit}"] = None
            continue
        total = sum(n)
        out[f"{name}_mae_{unit}"] = sum(a * k for a, k in zip(mae, n)) / total
        out[f"{name}_rmse_{unit}"] = math.sqrt(sum(r * r * k for r, k in zip(rmse, n)) / total)
    return out


def district_unit_result(grid: Any, districts: Sequence[Any], config: DayConfig, start: str,
                         request_mw: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """One unit over all districts: a package per district, one joint clearing, per-district validation.

    Returns the MILP's and the merit order's unit summaries like :func:`unit_result`, with
    ``chosen_point`` per district and a ``districts`` object (delivered, cost, point, violations).
    """
    from optim.dso.districts import scenario_of_district
    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.market import validation_of_clearing
    from optim.tso.bids import bids_from_frame
    from optim.tso.districts import bids_of_district, clear_districts_merit_order, clear_districts_milp

    minutes = _start_minutes(start)
    if minutes is None:
        raise InputError(f"unit start {start!r} is not HH:MM")
    if request_mw == 0.0:
        return _idle_unit(start, "milp"), _idle_unit(start, "merit-order")
    scenario_config = ScenarioConfig.from_dict({**config.scenario, "day_type": config.day_type,
                                                "hour": minutes // 60, "minute": minutes % 60,
                                                "duration_min": int(config.mtu_min)})
    t0 = time.perf_counter()
    scenario = scenario_from_grid(grid, scenario_config)  # drawn once for the whole grid (seeded)
    lin_config = LinearizationConfig(n_points=int(config.n_points), point_method=config.point_method)
    by_name, parts, lins = {d.name: d for d in districts}, {}, {}
    for d in districts:
        part = scenario_of_district(scenario, d)
        if len(part.bids):
            parts[d.name] = part
            lins[d.name] = linearize(d.grid, part, config=lin_config)
    linearize_s = time.perf_counter() - t0
    packages = {name: lin.package for name, lin in lins.items()}
    bids = bids_from_frame(scenario.bids)
    out = []
    for method, clear in (("milp", clear_districts_milp), ("merit-order", clear_districts_merit_order)):
        result = clear(packages, bids, request_mw)
        validations, per_district = [], {}
        for name, r in result.districts.items():
            v, _ = validation_of_clearing(by_name[name].grid, parts[name], lins[name], packages[name],
                                          bids_of_district(bids, packages[name]), r, method=method)
            validations.append(v)
            per_district[name] = {"delivered_mw": _round_float(r.delivered_mw, 9),
                                  "cost_eur": _round_float(r.cost_eur, 9), "chosen_point": r.chosen_point,
                                  "violations": v.n_violations}
        out.append({
            "start": start, "request_mw": float(request_mw), "status": result.status.value,
            "delivered_mw": _round_float(result.delivered_mw, 9), "cost_eur": _round_float(result.cost_eur, 9),
            "chosen_point": {n: r.chosen_point for n, r in result.districts.items()} if method == "milp" else None,
            "chosen_point_label": None,
            "max_deliverable_mw": _round_float(result.max_deliverable_mw, 9),
            "validation": _combined_validation(validations), "districts": per_district,
            "message": result.message or "", "clearing_s": round(float(result.runtime_s), 4),
            "linearize_s": round(linearize_s, 4) if method == "milp" else 0.0,
        })
    return out[0], out[1]


def _unit_task(grid_dir: str, config: dict[str, Any], start: str, request_mw: float) -> tuple[dict, dict]:
    """One unit on a worker: plain arguments in, plain dicts out (picklable, no package ids)."""
    logging.getLogger("optim").setLevel(logging.WARNING)
    day = DayConfig(**config)
    if day.districts:
        return district_unit_result(_grid(grid_dir), _districts(grid_dir), day, start, float(request_mw))
    return unit_result(_grid(grid_dir), day, start, float(request_mw))


def _totals(units: Sequence[dict[str, Any]], mtu_min: int) -> dict[str, Any]:
    hours = mtu_min / 60.0
    traded = [u for u in units if u["status"] != "no request"]
    optimal = [u for u in traded if u["status"] == "optimal"]
    validated = [u for u in optimal if u["validation"] is not None]
    return {
        "units": len(units),
        "units_traded": len(traded),
        "units_optimal": len(optimal),
        "units_infeasible": sum(u["status"] == "infeasible" for u in traded),
        "units_with_violations": sum((u["validation"]["violations"] or 0) > 0 for u in validated),
        "violations": int(sum(u["validation"]["violations"] or 0 for u in validated)),
        "requested_mwh": round(sum(abs(u["request_mw"]) for u in traded) * hours, 9),
        "delivered_mwh": round(sum(abs(u["delivered_mw"] or 0.0) for u in optimal) * hours, 9),
        # cost_eur of a unit is for a 1-hour activation (price x MW); an MTU lasts mtu_min minutes
        "cost_eur": round(sum(u["cost_eur"] or 0.0 for u in optimal) * hours, 6),
        # None for the merit order: it predicts nothing, so there is no prediction error
        "max_vm_mae_pu": _max_of(u["validation"]["vm_mae_pu"] for u in validated),
        "max_loading_mae_percent": _max_of(u["validation"]["loading_mae_percent"] for u in validated),
    }


def _max_of(values: Any) -> float | None:
    present = [float(v) for v in values if v is not None]
    return max(present) if present else None


def _run_serial(grid_dir: str, config: DayConfig, profile: pd.DataFrame, progress: ProgressFn | None) -> list:
    out = []
    for k, (start, req) in enumerate(zip(profile.start, profile.request_mw)):
        out.append(_unit_task(grid_dir, config.to_dict(), start, float(req)))
        if progress:
            progress(k + 1, len(profile), f"unit {start} done")
    return out


def _run_dask(grid_dir: str, config: DayConfig, profile: pd.DataFrame, *, workers: int, scheduler: str | None,
              progress: ProgressFn | None) -> tuple[list, int]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise InputError(f"cannot reach the dask scheduler {scheduler}: {exc}; start it or drop --scheduler") from None
        else:
            # processes, one thread each: power flows and HiGHS hold the GIL or use one core each
            # the scheduler always serves HTTP (health, metrics): a free loopback port, never :8787 on all interfaces
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address="127.0.0.1:0",
                                   host="127.0.0.1")
            client = Client(cluster)
        with client:
            n_workers = len(client.scheduler_info().get("workers", {}))
            futures = client.map(_unit_task, [grid_dir] * len(profile), [config.to_dict()] * len(profile),
                                 list(profile.start), [float(r) for r in profile.request_mw], pure=False)
            index = {f.key: k for k, f in enumerate(futures)}
            results: list[Any] = [None] * len(futures)
            for done, fut in enumerate(as_completed(futures), start=1):
                results[index[fut.key]] = fut.result()
                if progress:
                    progress(done, len(futures), f"unit {profile.start.iloc[index[fut.key]]} done")
        return results, n_workers
    finally:
        if cluster is not None:
            cluster.close()


def market_day(
    grid_dir: str | Path,
    profile: pd.DataFrame,
    *,
    config: DayConfig = DayConfig(),
    workers: int = 0,
    scheduler: str | None = None,
    progress: ProgressFn | None = None,
) -> MarketDay:
    """Run every unit of ``profile`` (columns ``start``, ``request_mw``) on the grid folder.

    Parameters
    ----------
    grid_dir
        Grid folder (``digiplat grid build`` output); each worker loads it once.
    profile
        The day's requests, one row per unit (:func:`request_profile_from_csv`).
    config
        Day type, MTU length, points, solver, scenario options.
    workers
        0: serial in this process; N >= 1: an embedded dask ``LocalCluster`` of N processes.
    scheduler
        Address of an existing dask scheduler (``tcp://host:8786``); overrides ``workers``.
    progress
        ``progress(done, total, message)`` after each unit.

    Returns
    -------
    MarketDay
    """
    if not isinstance(workers, (int, np.integer)) or not 0 <= int(workers) <= 256:
        raise InputError(f"--workers must be 0..256, got {workers!r}")
    grid_dir = str(Path(grid_dir).resolve())
    _grid(grid_dir)  # fail here, once, on a bad folder (and warm the serial path)
    if config.districts:
        _districts(grid_dir)
    t0 = time.perf_counter()
    if scheduler or workers >= 1:
        pairs, used = _run_dask(grid_dir, config, profile, workers=int(workers), scheduler=scheduler,
                                progress=progress)
    else:
        pairs, used = _run_serial(grid_dir, config, profile, progress), 0
    units = tuple(p[0] for p in pairs)
    merit = tuple(p[1] for p in pairs)
    totals = {"milp": _totals(units, config.mtu_min), "merit_order": _totals(merit, config.mtu_min)}
    day = MarketDay(config=config, units=units, merit_order=merit, totals=totals,
                    runtime_s=time.perf_counter() - t0, workers=used)
    logger.info("market day %s, %d units on %d worker(s) in %.1f s: MILP %d with violations, merit order %d",
                config.day_type, len(units), used, day.runtime_s, totals["milp"]["units_with_violations"],
                totals["merit_order"]["units_with_violations"])
    return day
