"""Operating points, AC power flows and the SensitivityPackage of a time frame (paper A, III-B).

The DSO's side of the market, in three steps:

1. :func:`net_at_time_frame` copies the grid's pandapower net and sets the market-independent
   injections ``P_fix`` of the time frame: each building's household load (``p_load_mw``,
   ``q_load_mvar``) on its load, its PV output as a static generator (``type="PV"``). One further
   static generator per flexible bus (``name="flex"``, column ``flex_id``) carries the activated
   flexibility ``P_flex`` with ``q_mvar = 0``: the reactive injection is held at its value when the
   flexibility moves, as in paper A ("only dP is considered"), and the sensitivities use the same
   convention (``dq_dp = 0``).
2. :func:`linearize` runs an AC power flow at each of ``m`` operating points
   ``P_i = P_fix + P_flex,i``. Point ``i`` activates every bid at the fraction ``f_i`` of its offered
   volume: ``P_flex,i = f_i * P_M`` with ``f = linspace(1, 0, m)``. For the default ``m = 3`` these are
   paper A's points "all bids activated" (``f = 1``), "half" (every bid at 50 % of its volume, both
   signs, at every bus) and "none" (``f = 0``). At each point the analytic VTDF/LTDF of
   :mod:`optim.dso.sensitivity` (one sparse LU of the Jacobian, one multi-right-hand-side solve).
3. The result is a :class:`~optim.package.SensitivityPackage` with opaque, shuffled ids
   (``F0001`` flexible buses, ``V0001`` voltages, ``L0001`` branches, lines and transformers
   alike) and a private :class:`DsoKey` that maps them back to pandapower buses and branches. The
   key never leaves the DSO: validation and the map use it.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from optim._errors import InputError, PowerFlowError
from optim.package import SensitivityPackage, OperatingPoint

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]

#: Labels of the default three points (paper A, IV).
DEFAULT_LABELS = {1.0: "all bids", 0.5: "half of each bid", 0.0: "no bids"}
#: Power-flow options used for every AC power flow of the DSO side (and validation).
PF_OPTIONS: dict[str, Any] = {"algorithm": "nr", "calculate_voltage_angles": True, "init": "auto",
                              "trafo_loading": "current", "numba": False}

__all__ = [
    "LinearizationConfig",
    "DsoKey",
    "Linearization",
    "point_fractions",
    "net_at_time_frame",
    "apply_flex",
    "run_power_flow",
    "flex_table",
    "linearize",
]


@dataclass(frozen=True)
class LinearizationConfig:
    """Options of :func:`linearize`.

    Parameters
    ----------
    n_points
        Number of operating points ``m`` (>= 1); fractions ``linspace(1, 0, m)`` of every bid.
    vm_min_pu, vm_max_pu, loading_min_percent, loading_max_percent
        Limits written into the package (paper A: 0.95/1.05 p.u., -100/100 %).
    tolerance_mva, max_iteration
        Newton-Raphson options of every power flow.
    random_state
        Seed of the permutation that shuffles the opaque ids (so their order says nothing about
        the feeder structure).
    """

    n_points: int = 3
    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05
    loading_min_percent: float = -100.0
    loading_max_percent: float = 100.0
    tolerance_mva: float = 1e-9
    max_iteration: int = 30
    random_state: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_points, (int, np.integer)) or self.n_points < 1:
            raise InputError(f"the number of operating points must be a positive integer, got {self.n_points!r}")
        for name in ("vm_min_pu", "vm_max_pu", "loading_min_percent", "loading_max_percent", "tolerance_mva"):
            if not np.isfinite(float(getattr(self, name))):
                raise InputError(f"{name} must be finite")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LinearizationConfig":
        return cls(**data)


@dataclass(frozen=True)
class DsoKey:
    """The DSO's private map from the package's opaque ids to its grid. Never given to the TSO.

    Parameters
    ----------
    flex_ids, flex_buses
        Opaque flexible-bus id and pandapower bus index, in package column order.
    bus_ids, buses
        Opaque voltage id and pandapower bus index, in package row order.
    branch_ids, branch_elements, branch_indices
        Opaque branch id, element table (``"line"``/``"trafo"``) and pandapower index.
    buildings_of_flex
        Building ids behind each flexible bus.
    point_labels, point_fractions
        The operating points (label, fraction of every bid activated).
    time_frame
        The scenario's time frame (day type, hour, timestamp) and its seed.
    """

    flex_ids: tuple[str, ...]
    flex_buses: tuple[int, ...]
    bus_ids: tuple[str, ...]
    buses: tuple[int, ...]
    branch_ids: tuple[str, ...]
    branch_elements: tuple[str, ...]
    branch_indices: tuple[int, ...]
    buildings_of_flex: dict[str, tuple[str, ...]] = field(default_factory=dict)
    point_labels: tuple[str, ...] = ()
    point_fractions: tuple[float, ...] = ()
    time_frame: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "digiplat-dso-key",
            "flex_ids": list(self.flex_ids),
            "flex_buses": [int(b) for b in self.flex_buses],
            "bus_ids": list(self.bus_ids),
            "buses": [int(b) for b in self.buses],
            "branch_ids": list(self.branch_ids),
            "branch_elements": list(self.branch_elements),
            "branch_indices": [int(b) for b in self.branch_indices],
            "buildings_of_flex": {k: list(v) for k, v in self.buildings_of_flex.items()},
            "point_labels": list(self.point_labels),
            "point_fractions": [float(f) for f in self.point_fractions],
            "time_frame": dict(self.time_frame),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DsoKey":
        if not isinstance(data, dict) or data.get("format") != "digiplat-dso-key":
            raise InputError("not a DigIPlat DSO key (missing 'format' marker)")
        try:
            return cls(
                flex_ids=tuple(data["flex_ids"]),
                flex_buses=tuple(int(b) for b in data["flex_buses"]),
                bus_ids=tuple(data["bus_ids"]),
                buses=tuple(int(b) for b in data["buses"]),
                branch_ids=tuple(data["branch_ids"]),
                branch_elements=tuple(data["branch_elements"]),
                branch_indices=tuple(int(b) for b in data["branch_indices"]),
                buildings_of_flex={k: tuple(v) for k, v in data.get("buildings_of_flex", {}).items()},
                point_labels=tuple(data.get("point_labels", ())),
                point_fractions=tuple(float(f) for f in data.get("point_fractions", ())),
                time_frame=dict(data.get("time_frame", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed DSO key: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write the key as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DsoKey":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read DSO key {path}: {exc}") from exc

    def flex_bus_of(self) -> dict[str, int]:
        """Opaque flexible id -> pandapower bus."""
        return dict(zip(self.flex_ids, self.flex_buses))


@dataclass(frozen=True)
class Linearization:
    """What :func:`linearize` returns: the package for the TSO, the key for the DSO, timings."""

    package: SensitivityPackage
    key: DsoKey
    runtime_s: float
    power_flow_s: float
    sensitivity_s: float

    def summary(self) -> dict[str, Any]:
        """The figures ``digiplat linearize --json`` prints."""
        return {
            "points": self.package.n_points,
            "point_labels": [p.label for p in self.package.points],
            "flex_buses": len(self.package.flex_ids),
            "monitored_buses": len(self.package.bus_ids),
            "monitored_branches": len(self.package.branch_ids),
            "assets": len(self.package.flex_of_asset),
            "runtime_s": round(self.runtime_s, 4),
            "power_flow_s": round(self.power_flow_s, 4),
            "sensitivity_s": round(self.sensitivity_s, 4),
        }


def point_fractions(n_points: int) -> tuple[float, ...]:
    """Fractions of every bid activated at the ``n_points`` operating points: ``linspace(1, 0, m)``.

    ``m = 1`` gives the single point "no bids" (``0.0``).
    """
    if n_points < 1:
        raise InputError("at least one operating point is needed")
    if n_points == 1:
        return (0.0,)
    return tuple(float(f) for f in np.linspace(1.0, 0.0, n_points))


def _label(fraction: float) -> str:
    return DEFAULT_LABELS.get(round(fraction, 12), f"{100 * fraction:.0f} % of each bid")


def _finite_column(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    if column not in frame:
        raise InputError(f"{what} has no column {column!r}")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(f"{what}: {column} is NaN or infinite for {list(frame.index[bad][:5])}")
    return values


def flex_table(grid: Any, bids: pd.DataFrame) -> pd.DataFrame:
    """Offered signed volume ``P_M`` per flexible bus, from the bid table.

    Parameters
    ----------
    grid
        The :class:`gridgen.grid.Grid` (its ``buildings.bus`` places each building).
    bids
        Bid table (columns ``bid_id, aggregator, building_id, p_mw, price_eur_per_mwh[, fpu]``).

    Returns
    -------
    pandas.DataFrame
        Index pandapower bus (sorted), columns ``p_offered_mw`` (sum of the signed volumes),
        ``buildings`` (tuple of building ids with a bid there).
    """
    if len(bids) == 0:
        raise InputError("the bid table is empty: no flexible buses")
    p = _finite_column(bids, "p_mw", "bid table")
    unknown = sorted(set(bids.building_id.astype(str)) - set(grid.buildings.index.astype(str)))
    if unknown:
        raise InputError(f"bids name buildings that are not in the grid: {unknown[:5]}")
    bus_of = grid.buildings.bus.astype(int)
    bus_of.index = bus_of.index.astype(str)
    frame = pd.DataFrame({"bus": bus_of.loc[bids.building_id.astype(str)].to_numpy(), "p_mw": p,
                          "building_id": bids.building_id.astype(str).to_numpy()})
    frame = frame[frame.p_mw != 0.0]
    if frame.empty:
        raise InputError("every bid offers 0 MW: no flexible buses")
    out = frame.groupby("bus").agg(p_offered_mw=("p_mw", "sum"),
                                   buildings=("building_id", lambda s: tuple(sorted(set(s)))))
    logger.info("flex table: %d flexible buses, %.3f MW offered in total", len(out), float(out.p_offered_mw.sum()))
    return out.sort_index()


def net_at_time_frame(grid: Any, scenario: Any, *, flex_buses: Sequence[int] = ()) -> Any:
    """Return a copy of the grid's net with the time frame's ``P_fix`` and zero flexibility.

    Parameters
    ----------
    grid
        :class:`gridgen.grid.Grid`.
    scenario
        Object with a ``buildings`` frame (index building id, columns ``p_load_mw``,
        ``q_load_mvar``, ``p_pv_mw``), e.g. :class:`optim.dso.scenario.Scenario`.
    flex_buses
        Buses that get a flexibility static generator (``name="flex"``, ``p_mw = 0``).

    Returns
    -------
    pandapowerNet
        The copy; the original net is not modified.
    """
    import pandapower as pp

    net = copy.deepcopy(grid.net)
    frame = scenario.buildings
    p_load = _finite_column(frame, "p_load_mw", "scenario")
    q_load = _finite_column(frame, "q_load_mvar", "scenario")
    p_pv = _finite_column(frame, "p_pv_mw", "scenario")
    if "building_id" not in net.load:
        raise InputError("the grid's loads have no building_id column")
    row_of = pd.Series(net.load.index, index=net.load.building_id.astype(str))
    if row_of.index.duplicated().any():
        raise InputError("the grid has several loads for one building")
    ids = frame.index.astype(str)
    missing = sorted(set(ids) - set(row_of.index))
    if missing:
        raise InputError(f"scenario buildings without a load in the grid: {missing[:5]}")
    rows = row_of.loc[ids].to_numpy()
    net.load.loc[rows, "p_mw"] = p_load
    net.load.loc[rows, "q_mvar"] = q_load
    bus_of = grid.buildings.bus.astype(int)
    bus_of.index = bus_of.index.astype(str)
    # One vectorised create_sgens call per kind: create_sgen in a loop costs ~6 ms per unit.
    pv_ids = ids[p_pv > 0]
    if len(pv_ids):
        pp.create_sgens(net, bus_of.loc[pv_ids].to_numpy(int), p_mw=p_pv[p_pv > 0].astype(float), q_mvar=0.0,
                        name=[f"pv {bid}" for bid in pv_ids], type="PV")
    net.sgen["flex_bus"] = -1 if "flex_bus" not in net.sgen else net.sgen["flex_bus"].fillna(-1)
    if len(flex_buses):
        new = pp.create_sgens(net, np.asarray(flex_buses, dtype=int), p_mw=0.0, q_mvar=0.0, name="flex", type="flex")
        net.sgen.loc[new, "flex_bus"] = np.asarray(flex_buses, dtype=int)
    net.sgen["flex_bus"] = net.sgen["flex_bus"].fillna(-1).astype(int)
    logger.info("net at time frame: %d loads set, %d PV units, %d flexibility units",
                len(rows), int((p_pv > 0).sum()), len(flex_buses))
    return net


def apply_flex(net: Any, flex_buses: Sequence[int], p_flex_mw: Sequence[float]) -> None:
    """Set the flexibility static generators of ``flex_buses`` to ``p_flex_mw`` (in place).

    Raises
    ------
    InputError
        Non-finite values, wrong length, or a bus without a flexibility unit.
    """
    p = np.asarray(p_flex_mw, dtype=float)
    buses = np.asarray(flex_buses, dtype=np.int64)
    if p.shape != buses.shape:
        raise InputError(f"p_flex_mw has {p.size} values for {buses.size} flexible buses")
    if not np.all(np.isfinite(p)):
        raise InputError("p_flex_mw contains NaN or infinite values")
    flex = net.sgen[net.sgen.get("flex_bus", pd.Series(-1, index=net.sgen.index)) >= 0]
    row_of = pd.Series(flex.index, index=flex.flex_bus.astype(int))
    missing = sorted(set(buses.tolist()) - set(row_of.index))
    if missing:
        raise InputError(f"buses {missing[:5]} have no flexibility unit in this net")
    net.sgen.loc[row_of.loc[buses].to_numpy(), "p_mw"] = p
    logger.debug("flexibility set at %d buses: %.4f MW", len(buses), float(p.sum()))


def run_power_flow(net: Any, *, where: str, tolerance_mva: float = 1e-9, max_iteration: int = 30) -> None:
    """Run pandapower's AC Newton-Raphson power flow; raise :class:`PowerFlowError` naming ``where``."""
    import pandapower as pp

    for table, cols in (("load", ("p_mw", "q_mvar")), ("sgen", ("p_mw", "q_mvar"))):
        values = net[table].loc[net[table].in_service, list(cols)].to_numpy(dtype=float)
        if values.size and not np.all(np.isfinite(values)):
            raise InputError(f"{where}: the {table} injections contain NaN or infinite values")
    t0 = time.perf_counter()
    try:
        pp.runpp(net, tolerance_mva=tolerance_mva, max_iteration=max_iteration, **PF_OPTIONS)
    except pp.LoadflowNotConverged as exc:
        raise PowerFlowError(f"the AC power flow did not converge at {where}") from exc
    if not net.converged:
        raise PowerFlowError(f"the AC power flow did not converge at {where}")
    logger.info("AC power flow at %s converged in %.3f s", where, time.perf_counter() - t0)


def _opaque(prefix: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """A random order of ``n`` rows and their ids ``prefix0001...`` in that order."""
    order = rng.permutation(n)
    width = max(4, len(str(n)))
    return order, [f"{prefix}{k + 1:0{width}d}" for k in range(n)]


def linearize(
    grid: Any,
    scenario: Any,
    *,
    config: LinearizationConfig = LinearizationConfig(),
    progress: ProgressFn | None = None,
) -> Linearization:
    """Build the SensitivityPackage of a time frame: ``m`` operating points, AC power flow and
    analytic VTDF/LTDF at each (paper A, III-B).

    Parameters
    ----------
    grid
        :class:`gridgen.grid.Grid` of the DSO.
    scenario
        :class:`optim.dso.scenario.Scenario` (``buildings`` with ``P_fix``, ``bids``, ``time_frame``).
    config
        Number of points, limits, power-flow options, id seed.
    progress
        Called as ``progress(done, total, message)`` after each step (for the CLI's progress bar).

    Returns
    -------
    Linearization
        ``package`` (opaque, for the TSO), ``key`` (private), timings.

    Raises
    ------
    PowerFlowError
        The power flow did not converge at a point (the message names the point).
    InputError
        NaN/inf in the scenario or bids, bids at unknown buildings, no flexibility.
    """
    from gridgen.grid import credit
    from optim.dso.sensitivity import monitored_elements_of_net, sensitivities_from_net

    t0 = time.perf_counter()
    fractions = point_fractions(config.n_points)
    total = len(fractions) + 1
    flex = flex_table(grid, scenario.bids)
    flex_buses = flex.index.to_numpy(dtype=np.int64)
    p_offered = flex.p_offered_mw.to_numpy(dtype=float)
    net = net_at_time_frame(grid, scenario, flex_buses=flex_buses)

    # P_fix at the flexible buses: PV minus household load of every building on the bus
    frame = scenario.buildings
    bus_of = grid.buildings.bus.astype(int)
    bus_of.index = bus_of.index.astype(str)
    buses_of_buildings = bus_of.loc[frame.index.astype(str)].to_numpy()
    p_fix_bus = pd.Series(frame.p_pv_mw.to_numpy(float) - frame.p_load_mw.to_numpy(float)).groupby(buses_of_buildings).sum()
    p_fix = p_fix_bus.reindex(flex_buses, fill_value=0.0).to_numpy()
    if progress:
        progress(1, total, f"time frame set: {len(flex_buses)} flexible buses")

    rng = np.random.default_rng(config.random_state)
    results = []
    monitored = None
    pf_s = sens_s = 0.0
    for i, f in enumerate(fractions):
        label = _label(f)
        where = f"operating point {i} ({label})"
        p_flex = f * p_offered
        apply_flex(net, flex_buses, p_flex)
        t1 = time.perf_counter()
        run_power_flow(net, where=where, tolerance_mva=config.tolerance_mva, max_iteration=config.max_iteration)
        t2 = time.perf_counter()
        if monitored is None:
            monitored = monitored_elements_of_net(net)
        sens = sensitivities_from_net(net, flex_buses, monitored_buses=monitored[0],
                                      branches=(monitored[1], monitored[2]))
        for name in ("vm_pu", "loading_percent", "vtdf_pu_per_mw", "ltdf_percent_per_mw"):
            if not np.all(np.isfinite(getattr(sens, name))):
                raise PowerFlowError(f"{where}: {name} is not finite (isolated bus or zero rating?)")
        sens_s += time.perf_counter() - t2
        pf_s += t2 - t1
        results.append((label, p_flex, sens))
        if progress:
            progress(i + 2, total, f"{where}: power flow and sensitivities done")

    buses, elements, indices = monitored
    flex_order, flex_ids = _opaque("F", len(flex_buses), rng)
    bus_order, bus_ids = _opaque("V", len(buses), rng)
    branch_order, branch_ids = _opaque("L", len(indices), rng)
    points = tuple(
        OperatingPoint(
            label=label,
            p_mw=(p_fix + p_flex)[flex_order],
            p_flex_mw=p_flex[flex_order],
            vm_pu=sens.vm_pu[bus_order],
            loading_percent=sens.loading_percent[branch_order],
            vtdf_pu_per_mw=sens.vtdf_pu_per_mw[np.ix_(bus_order, flex_order)],
            ltdf_percent_per_mw=sens.ltdf_percent_per_mw[np.ix_(branch_order, flex_order)],
        )
        for label, p_flex, sens in results
    )
    flex_id_of_bus = dict(zip(flex_buses[flex_order].tolist(), flex_ids))
    buildings_of_flex = {flex_id_of_bus[int(b)]: tuple(flex.buildings.loc[b]) for b in flex_buses}
    flex_of_asset = {bld: fid for fid, blds in buildings_of_flex.items() for bld in blds}
    time_frame = dict(getattr(scenario, "time_frame", {}) or {})
    package = SensitivityPackage(
        flex_ids=tuple(flex_ids),
        bus_ids=tuple(bus_ids),
        branch_ids=tuple(branch_ids),
        points=points,
        flex_of_asset=flex_of_asset,
        vm_min_pu=float(config.vm_min_pu),
        vm_max_pu=float(config.vm_max_pu),
        loading_min_percent=float(config.loading_min_percent),
        loading_max_percent=float(config.loading_max_percent),
        meta={
            "time_frame": {k: time_frame[k] for k in ("day_type", "hour", "timestamp") if k in time_frame},
            "point_fractions": [float(f) for f in fractions],
            "point_definition": "point i activates every bid at fraction f_i of its offered volume, f = linspace(1, 0, m)",
            "units": {"p": "MW", "vm": "p.u.", "loading": "% signed by flow direction", "vtdf": "p.u./MW",
                      "ltdf": "%/MW"},
            "reactive_power": "held constant when the flexibility moves (dQ = 0)",
            "credit": credit(),
        },
    )
    key = DsoKey(
        flex_ids=tuple(flex_ids),
        flex_buses=tuple(int(b) for b in flex_buses[flex_order]),
        bus_ids=tuple(bus_ids),
        buses=tuple(int(b) for b in buses[bus_order]),
        branch_ids=tuple(branch_ids),
        branch_elements=tuple(elements[k] for k in branch_order),
        branch_indices=tuple(int(b) for b in indices[branch_order]),
        buildings_of_flex=buildings_of_flex,
        point_labels=tuple(p.label for p in points),
        point_fractions=tuple(fractions),
        time_frame=time_frame,
    )
    runtime = time.perf_counter() - t0
    logger.info("linearized %d points: %d flexible buses, %d voltages, %d branches in %.2f s",
                len(points), len(flex_ids), len(bus_ids), len(branch_ids), runtime)
    return Linearization(package=package, key=key, runtime_s=runtime, power_flow_s=pf_s, sensitivity_s=sens_s)


def operating_point_from_net(net: Any, key: DsoKey, p_fix_mw: np.ndarray, p_flex_mw: np.ndarray, *,
                             label: str) -> OperatingPoint:
    """Sensitivities at a solved net (``run_power_flow`` done), in the key's opaque order.

    Parameters
    ----------
    net
        Net of :func:`net_at_time_frame` with the flexibility ``p_flex_mw`` applied and a converged
        power flow.
    key
        The package's key (column and row order).
    p_fix_mw, p_flex_mw
        ``P_fix`` and ``P_flex`` at the flexible buses, package column order.
    label
        Name of the new point.

    Returns
    -------
    OperatingPoint
    """
    from optim.dso.sensitivity import sensitivities_from_net

    sens = sensitivities_from_net(net, np.asarray(key.flex_buses), monitored_buses=np.asarray(key.buses),
                                  branches=(key.branch_elements, np.asarray(key.branch_indices)))
    point = OperatingPoint(label=label, p_mw=np.asarray(p_fix_mw) + np.asarray(p_flex_mw),
                           p_flex_mw=np.asarray(p_flex_mw, dtype=float), vm_pu=sens.vm_pu,
                           loading_percent=sens.loading_percent, vtdf_pu_per_mw=sens.vtdf_pu_per_mw,
                           ltdf_percent_per_mw=sens.ltdf_percent_per_mw)
    logger.info("operating point %r: %d flexible buses", label, len(key.flex_ids))
    return point


def package_with_point(package: SensitivityPackage, point: OperatingPoint) -> SensitivityPackage:
    """Return a copy of ``package`` with one more operating point (same ids, limits and meta)."""
    import dataclasses

    meta = dict(package.meta)
    meta["added_points"] = list(meta.get("added_points", [])) + [point.label]
    new = dataclasses.replace(package, points=tuple(package.points) + (point,), meta=meta)
    logger.info("package extended to %d points", new.n_points)
    return new


def p_fix_at_flex(grid: Any, scenario: Any, key: DsoKey) -> np.ndarray:
    """``P_fix`` (PV minus load, MW) at the key's flexible buses, package column order."""
    frame = scenario.buildings
    bus_of = grid.buildings.bus.astype(int)
    bus_of.index = bus_of.index.astype(str)
    buses = bus_of.loc[frame.index.astype(str)].to_numpy()
    per_bus = pd.Series(frame.p_pv_mw.to_numpy(float) - frame.p_load_mw.to_numpy(float)).groupby(buses).sum()
    out = per_bus.reindex(np.asarray(key.flex_buses), fill_value=0.0).to_numpy()
    logger.info("P_fix at %d flexible buses: %.4f MW net", len(out), float(out.sum()))
    return out
