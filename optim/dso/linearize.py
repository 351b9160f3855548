"""Operating points, AC power flows and the SensitivityPackage of a time frame (paper A, III-B).

The DSO's side of the market, in three steps:

1. :func:`net_at_time_frame` copies the grid's pandapower net and sets the market-independent
   injections ``P_fix`` of the time frame: each building's household load (``p_load_mw``,
   ``q_load_mvar``) on its load, its PV output as a static generator (``type="PV"``, with the
   PV inverters' reactive power ``q_pv_mvar``). One further static generator per flexible bus
   (``name="flex"``, column ``flex_bus``) carries the activated flexibility ``P_flex`` and its
   reactive power ``Q_flex = dq_dp * P_flex``: Q follows the units' power factors (see
   :mod:`optim.dso.scenario`), and the sensitivities use the same ratio (``dV/dP + tan(phi) dV/dQ``);
   ``reactive=False`` gives paper A's convention (Q held, ``dq_dp = 0``) for comparison.
2. :func:`linearize` runs an AC power flow at each of ``m`` operating points
   ``P_i = P_fix + P_flex,i`` chosen by ``point_method`` (:mod:`optim.dso.points`): paper A's
   ``"all-half-none"`` (every bid at the fraction ``f_i`` of its volume, ``f = linspace(1, 0, m)``)
   or the DSO's pre-market choices. At each point the analytic sensitivities of
   :mod:`optim.dso.sensitivity` (one sparse LU of the Jacobian, one multi-right-hand-side solve):
   voltages, signed loadings and the complex branch currents.

   **How the power flows are run** (issue 12): pandapower's ``runpp`` runs once per grid and
   process, with the grid's own loads, to compile the topology (admittances, bus types, the
   monitored rows: :func:`_grid_model`, cached while the net is unchanged). A time frame changes
   only constant-power injections, so its specified ``S_bus`` is the grid run's plus the changes
   (:func:`frame_model`), and every point is pandapower's own Newton-Raphson iteration and
   stopping rule on those matrices, started from the previous point's voltages with the LU of the
   Jacobian there (:class:`FrameModel`). The result is pandapower's within the power-flow
   tolerance (tests/unit/test_dso_flow_model.py); the validation keeps pandapower's ``runpp``.
3. The result is a paper-style :class:`~optim.package.SensitivityPackage` (physical blocks and the
   constraint rows, the current limits as an inscribed polygon) with opaque, shuffled ids
   (``F0001`` flexible buses, ``V0001`` voltages, ``L0001`` branches, lines and transformers
   alike) and a private :class:`DsoKey` that maps them back to pandapower buses and branches. The
   key never leaves the DSO: validation and the map use it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from optim._errors import InputError, PowerFlowError
from optim.dso.points import DEFAULT_LABELS, POINT_METHODS, point_fractions  # noqa: F401 - re-exported
from optim.package import OperatingPoint, SensitivityPackage, all_finite

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]

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
    "save_pair",
    "load_pair",
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
    point_method
        How the points are chosen (:data:`optim.dso.points.POINT_METHODS`).
    polygon_sides
        ``N`` of the inscribed polygon of the current limit (at most ``1 - cos(pi/N)`` of a rating lost).
    branch_rows
        ``"current"`` (polygon on the linearized complex current) or ``"signed-loading"`` (paper A's
        rows on the P-signed loading; kept for comparison).
    reactive
        Q follows P at each unit's power factor (default); False: Q held (paper A).
    screen_rows
        Leave out rows that cannot bind for any dispatch within the offers (the box is stored).
    point_passes
        Passes of the ``merit-levels`` selection (1: levels cleared on the all/half/none package;
        2: cleared again on the first pass' package).
    max_points, point_gap
        ``merit-levels`` only: bisect level intervals whose end points' tangents miss each other's
        AC state by more than ``point_gap`` times paper A's Table I errors, until ``max_points``
        points (None: the ``n_points`` levels only; :mod:`optim.dso.points`).
    """

    n_points: int = 3
    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05
    loading_min_percent: float = -100.0
    loading_max_percent: float = 100.0
    tolerance_mva: float = 1e-9
    max_iteration: int = 30
    random_state: int = 0
    point_method: str = "all-half-none"
    polygon_sides: int = 16
    branch_rows: str = "current"
    reactive: bool = True
    screen_rows: bool = True
    point_passes: int = 1
    max_points: int | None = None
    point_gap: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.n_points, (int, np.integer)) or self.n_points < 1:
            raise InputError(f"the number of operating points must be a positive integer, got {self.n_points!r}")
        if self.point_method not in POINT_METHODS:
            raise InputError(f"unknown point method {self.point_method!r}: use one of {', '.join(POINT_METHODS)}")
        if not isinstance(self.polygon_sides, (int, np.integer)) or not 4 <= self.polygon_sides <= 720:
            raise InputError(f"--polygon-sides must be an integer from 4 to 720, got {self.polygon_sides!r}")
        if not isinstance(self.point_passes, (int, np.integer)) or not 1 <= self.point_passes <= 4:
            raise InputError(f"point_passes must be 1..4, got {self.point_passes!r}")
        if self.max_points is not None and (not isinstance(self.max_points, (int, np.integer))
                                            or not self.n_points <= self.max_points <= 64):
            raise InputError(f"--max-points must be an integer from --points ({self.n_points}) to 64, "
                             f"got {self.max_points!r}")
        if not (isinstance(self.point_gap, (int, float, np.number)) and np.isfinite(self.point_gap)
                and self.point_gap > 0):
            raise InputError(f"--point-gap must be a positive number, got {self.point_gap!r}")
        if self.branch_rows not in ("current", "signed-loading"):
            raise InputError(f"branch_rows must be 'current' or 'signed-loading', got {self.branch_rows!r}")
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
    dq_dp
        Reactive per active injection of the flexibility at each flexible bus (MVAr/MW, column order).
    dq_dp_of_building
        Per building with a bid: the ratio of its upward and of its downward offer.
    package_fingerprint
        :meth:`SensitivityPackage.fingerprint` of the package this key belongs to.
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
    dq_dp: tuple[float, ...] = ()
    dq_dp_of_building: dict[str, tuple[float, float]] = field(default_factory=dict)
    package_fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "digiplat-dso-key",
            "package_fingerprint": self.package_fingerprint,
            "dq_dp": [float(x) for x in self.dq_dp],
            "dq_dp_of_building": {k: [float(v[0]), float(v[1])] for k, v in self.dq_dp_of_building.items()},
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
                dq_dp=tuple(float(x) for x in data.get("dq_dp", ())),
                dq_dp_of_building={str(k): (float(v[0]), float(v[1]))
                                   for k, v in data.get("dq_dp_of_building", {}).items()},
                package_fingerprint=str(data.get("package_fingerprint", "")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(f"malformed DSO key: {exc}") from exc

    def write(self, path: str | Path) -> Path:
        """Write the key as JSON to exactly ``path`` (not atomic by itself, see :func:`save_pair`)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
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
    #: The points ``(label, P_flex per bus of the flex table)`` and their meta, as :func:`linearize`
    #: chose them: ``linearize(..., points=this)`` builds the same package again without choosing.
    point_selection: tuple[tuple[tuple[str, np.ndarray], ...], dict[str, Any]] | None = None

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


def _finite_column(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    if column not in frame:
        raise InputError(f"{what} has no column {column!r}")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(f"{what}: {column} is NaN or infinite for {list(frame.index[bad][:5])}")
    return values


def flex_table(grid: Any, bids: pd.DataFrame, buildings: pd.DataFrame | None = None) -> pd.DataFrame:
    """Offered signed volume ``P_M`` per flexible bus, from the bid table.

    Parameters
    ----------
    grid
        The :class:`gridgen.grid.Grid` (its ``buildings.bus`` places each building).
    bids
        Bid table (columns ``bid_id, aggregator, building_id, p_mw, price_eur_per_mwh[, fpu]``).
    buildings
        The scenario's building table with ``dq_dp_up``/``dq_dp_down`` (default: Q held, ratio 0).

    Returns
    -------
    pandas.DataFrame
        Index pandapower bus (sorted), columns ``p_offered_mw`` (sum of the signed volumes),
        ``p_up_mw`` and ``p_down_mw`` (sums of the upward and downward volumes), ``dq_dp`` (the
        reactive-per-active ratio of the bus' offers, weighted by their volume; exact when a bus
        hosts one kind of offer, as every bus of the shipped scenario does) and ``buildings``.
    """
    if len(bids) == 0:
        raise InputError("the bid table is empty: no flexible buses")
    p = _finite_column(bids, "p_mw", "bid table")
    unknown = sorted(set(bids.building_id.astype(str)) - set(grid.buildings.index.astype(str)))
    if unknown:
        raise InputError(f"bids name buildings that are not in the grid: {unknown[:5]}")
    bus_of = grid.buildings.bus.astype(int)
    bus_of.index = bus_of.index.astype(str)
    ids = bids.building_id.astype(str).to_numpy()
    ratio = np.zeros(len(p))
    if buildings is not None and {"dq_dp_up", "dq_dp_down"} <= set(buildings.columns):
        frame_b = buildings.copy()
        frame_b.index = frame_b.index.astype(str)
        up = frame_b.dq_dp_up.reindex(ids).fillna(0.0).to_numpy(float)
        down = frame_b.dq_dp_down.reindex(ids).fillna(0.0).to_numpy(float)
        ratio = np.where(p > 0, up, down)
    frame = pd.DataFrame({"bus": bus_of.loc[ids].to_numpy(), "p_mw": p, "building_id": ids,
                          "p_up_mw": np.clip(p, 0.0, None), "p_down_mw": np.clip(p, None, 0.0),
                          "abs_mw": np.abs(p), "q_weight": np.abs(p) * ratio})
    frame = frame[frame.p_mw != 0.0]
    if frame.empty:
        raise InputError("every bid offers 0 MW: no flexible buses")
    out = frame.groupby("bus").agg(p_offered_mw=("p_mw", "sum"), p_up_mw=("p_up_mw", "sum"),
                                   p_down_mw=("p_down_mw", "sum"), abs_mw=("abs_mw", "sum"),
                                   q_weight=("q_weight", "sum"),
                                   buildings=("building_id", lambda s: tuple(sorted(set(s)))))
    out["dq_dp"] = out.q_weight / out.abs_mw
    out = out.drop(columns=["abs_mw", "q_weight"])
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

    rows, p_load, q_load, pv_ids, pv_buses, p_pv, q_pv = _frame_injections(grid, scenario)
    net = copy.deepcopy(grid.net)
    net.load.loc[rows, "p_mw"] = p_load
    net.load.loc[rows, "q_mvar"] = q_load
    # One vectorised create_sgens call per kind: create_sgen in a loop costs ~6 ms per unit.
    if len(pv_ids):
        pp.create_sgens(net, pv_buses, p_mw=p_pv, q_mvar=q_pv, name=[f"pv {bid}" for bid in pv_ids], type="PV")
    net.sgen["flex_bus"] = -1 if "flex_bus" not in net.sgen else net.sgen["flex_bus"].fillna(-1)
    if len(flex_buses):
        new = pp.create_sgens(net, np.asarray(flex_buses, dtype=int), p_mw=0.0, q_mvar=0.0, name="flex", type="flex")
        net.sgen.loc[new, "flex_bus"] = np.asarray(flex_buses, dtype=int)
    net.sgen["flex_bus"] = net.sgen["flex_bus"].fillna(-1).astype(int)
    logger.info("net at time frame: %d loads set, %d PV units, %d flexibility units",
                len(rows), len(pv_ids), len(flex_buses))
    return net


def _frame_injections(grid: Any, scenario: Any, *, pristine: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                         np.ndarray, np.ndarray]:
    """The time frame's load rows with their P and Q, and the PV units (ids, buses, P, Q); checked.

    Raises
    ------
    InputError
        NaN/inf in the scenario, loads without building ids or several per building, buildings
        without a load.
    """
    frame = scenario.buildings
    p_load = _finite_column(frame, "p_load_mw", "scenario")
    q_load = _finite_column(frame, "q_load_mvar", "scenario")
    p_pv = _finite_column(frame, "p_pv_mw", "scenario")
    q_pv = _finite_column(frame, "q_pv_mvar", "scenario") if "q_pv_mvar" in frame else np.zeros(len(p_pv))
    from optim.dso.compiled_grid import load_table

    load = load_table(grid, pristine=pristine)
    if "building_id" not in load:
        raise InputError("the grid's loads have no building_id column")
    row_of = pd.Series(load.index, index=load.building_id.astype(str))
    if row_of.index.duplicated().any():
        raise InputError("the grid has several loads for one building")
    ids = frame.index.astype(str)
    missing = sorted(set(ids) - set(row_of.index))
    if missing:
        raise InputError(f"scenario buildings without a load in the grid: {missing[:5]}")
    rows = row_of.loc[ids].to_numpy()
    bus_of = grid.buildings.bus.astype(int)
    bus_of.index = bus_of.index.astype(str)
    has_pv = p_pv > 0
    pv_ids = np.asarray(ids[has_pv])
    pv_buses = bus_of.loc[pv_ids].to_numpy(int) if len(pv_ids) else np.zeros(0, dtype=int)
    return rows, p_load, q_load, pv_ids, pv_buses, p_pv[has_pv].astype(float), q_pv[has_pv].astype(float)


def apply_flex(net: Any, flex_buses: Sequence[int], p_flex_mw: Sequence[float],
               q_flex_mvar: Sequence[float] | None = None) -> None:
    """Set the flexibility static generators of ``flex_buses`` to ``p_flex_mw`` and ``q_flex_mvar``
    (default 0: Q held) in place.

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
    q = np.zeros(len(p)) if q_flex_mvar is None else np.asarray(q_flex_mvar, dtype=float)
    if q.shape != p.shape or not np.all(np.isfinite(q)):
        raise InputError(f"q_flex_mvar must hold {p.size} finite values")
    rows = row_of.loc[buses].to_numpy()
    net.sgen.loc[rows, "p_mw"] = p
    net.sgen.loc[rows, "q_mvar"] = q
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


class FrameModel:
    """One time frame's net, its solved zero-flexibility power flow and the points solved so far.

    ``pandapower.runpp`` runs once, with no flexibility activated; every operating point is then a
    Newton-Raphson on pandapower's internal matrices (:class:`optim.dso.sensitivity.FlowModel`),
    warm-started from the last solved point (voltages and the LU of the Jacobian there). A point
    asked for again (the point selection's "no bids" in every pass) is taken from the store.

    Parameters
    ----------
    flex_buses
        pandapower indices of the flexible buses (``flex``'s order).
    dq_physical
        The units' reactive-per-active ratios per flexible bus.
    p_fix_mw
        ``P_fix`` at the flexible buses.
    monitored
        ``(buses, branch elements, branch indices)`` of :func:`monitored_elements_of_net`.
    model
        The compiled grid.
    power_flow_s
        Time of the one pandapower power flow.
    """

    def __init__(self, flex_buses: np.ndarray, dq_physical: np.ndarray, p_fix_mw: np.ndarray,
                 monitored: tuple[np.ndarray, tuple[str, ...], np.ndarray], model: Any, power_flow_s: float) -> None:
        self.flex_buses = flex_buses
        self.dq_physical = dq_physical
        self.p_fix_mw = p_fix_mw
        self.monitored = monitored
        self.model = model
        self.power_flow_s = power_flow_s
        self._solved: dict[bytes, Any] = {}
        self._ordered: dict[bytes, Any] = {}
        self._frame_lu: Any = None  # LU of the Jacobian at the frame's solved voltages (flow_state)

    def sensitivities(self, p_flex_mw: np.ndarray, dq_dp: np.ndarray, *, where: str, tolerance_mva: float,
                      max_iteration: int, order: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[Any, float]:
        """Sensitivities at ``P_fix + p_flex_mw`` (flexibility's Q ``dq_dp * P``) and the power-flow time.

        ``p_flex_mw`` and ``dq_dp`` are in ``flex_buses``' order; the sensitivities' columns and
        rows come in ``order`` = (flexible buses, monitored buses, branches).
        """
        order_key = b"".join(np.asarray(o, dtype=np.int64).tobytes() + b"|" for o in order)
        key = np.r_[p_flex_mw, dq_dp, tolerance_mva, max_iteration].tobytes() + order_key
        if key in self._solved:
            return self._solved[key], 0.0
        if order_key not in self._ordered:
            self._ordered[order_key] = self.model.reordered(*order)
        ordered = self._ordered[order_key]
        t0 = time.perf_counter()
        # every point's Newton starts at the frame's solved state (not at the previous point's), so
        # its voltages, to the last bit, depend on its dispatch only and not on the order points are
        # asked in: a worker that rebuilds a frame from its stored dispatches gets the same package
        if self._frame_lu is None:
            self._frame_lu = self.model._lu(self.model.v_solved)
        v_start, lu_start = self.model.v_solved, self._frame_lu
        s_extra = self.model.injection_pu(p_flex_mw, dq_dp * p_flex_mw)
        v, iterations = self.model.solved_voltages(s_extra, v_start, lu_start=lu_start, tolerance_mva=tolerance_mva,
                                                   max_iteration=max_iteration, where=where)
        t_pf = time.perf_counter() - t0
        logger.info("AC power flow at %s converged in %d iterations (%.3f s)", where, iterations, t_pf)
        # no iteration: v is v_start, whose Jacobian LU is at hand
        sens, _ = ordered.sensitivities_at(v, dq_dp=np.asarray(dq_dp)[order[0]],
                                            lu=lu_start if iterations == 0 else None)
        self._solved[key] = sens
        return sens, t_pf

    def flow_state(self, p_flex_mw: np.ndarray, q_flex_mvar: np.ndarray, *, where: str, tolerance_mva: float = 1e-9,
                   max_iteration: int = 30) -> tuple[np.ndarray, np.ndarray]:
        """Voltages (monitored buses) and signed loadings (branches) of the AC power flow at
        ``P_fix + p_flex_mw`` with the flexibility's reactive power ``q_flex_mvar`` given per bus.

        The validation's power flow on the compiled grid: Newton-Raphson from the frame's solved
        zero-flexibility voltages, no sensitivities, nothing stored (``flex_buses``' and
        ``monitored``'s order).
        """
        s_extra = self.model.injection_pu(np.asarray(p_flex_mw, dtype=float), np.asarray(q_flex_mvar, dtype=float))
        if self._frame_lu is None:  # the Jacobian's LU at the start, shared by every check of the frame
            self._frame_lu = self.model._lu(self.model.v_solved)
        v, iterations = self.model.solved_voltages(s_extra, self.model.v_solved, lu_start=self._frame_lu,
                                                   tolerance_mva=tolerance_mva, max_iteration=max_iteration,
                                                   where=where)
        logger.debug("AC power flow at %s converged in %d iterations on the compiled grid", where, iterations)
        return self.model.state_at(v)


#: Compiled grids of this process, by ``id(grid)`` (the grid object is kept with its entry, so
#: an id is never reused while cached): a market day or the app linearizes many time frames of
#: one grid, and the topology's pandapower run is then paid once.
_GRID_MODELS: dict[int, tuple[Any, tuple[float, int, str], Any, tuple[np.ndarray, tuple[str, ...], np.ndarray], float]] = {}
_GRID_MODELS_MAX = 4


def _grid_model(grid: Any, tolerance_mva: float, max_iteration: int, *,
                pristine: bool | None = None) -> tuple[Any, tuple, float]:
    """The grid's compiled model from one pandapower power flow with its own loads, cached.

    A grid as read from its folder takes it from the compiled-grid store
    (:mod:`optim.dso.compiled_grid`: once per grid file, no pandapower import); a net built or
    changed in memory is compiled from itself, kept per grid object while unchanged.
    """
    from gridgen.grid import net_signature
    from optim.dso.compiled_grid import compiled

    if grid.pristine() if pristine is None else pristine:
        stored = compiled(grid, f"flow-model-{tolerance_mva!r}-{int(max_iteration)}",
                          lambda: _compiled_grid_model(grid, tolerance_mva, max_iteration), pristine=True)
        return stored[0], stored[1], 0.0
    signature = (tolerance_mva, max_iteration, net_signature(grid.net))
    entry = _GRID_MODELS.get(id(grid))
    if entry is not None and entry[0] is grid and entry[1] == signature:
        return entry[2], entry[3], 0.0
    model, monitored, power_flow_s = _compiled_grid_model(grid, tolerance_mva, max_iteration)
    while len(_GRID_MODELS) >= _GRID_MODELS_MAX:
        _GRID_MODELS.pop(next(iter(_GRID_MODELS)))
    _GRID_MODELS[id(grid)] = (grid, signature, model, monitored, power_flow_s)
    return model, monitored, power_flow_s


def _compiled_grid_model(grid: Any, tolerance_mva: float, max_iteration: int) -> tuple[Any, tuple, float]:
    """Run pandapower on the grid with its own loads and compile the model (topology, monitored rows)."""
    from optim.dso.sensitivity import flow_model_of_net, monitored_elements_of_net

    net = copy.deepcopy(grid.net)
    t0 = time.perf_counter()
    run_power_flow(net, where="the grid with its own loads (to compile its topology)", tolerance_mva=tolerance_mva,
                   max_iteration=max_iteration)
    power_flow_s = time.perf_counter() - t0
    monitored = monitored_elements_of_net(net)
    candidates = np.unique(grid.buildings.bus.to_numpy(dtype=np.int64))
    model = flow_model_of_net(net, candidates, monitored_buses=monitored[0], branches=(monitored[1], monitored[2]))
    load = grid.net.load
    model.load_s_pu = ((load.p_mw.to_numpy(float) + 1j * load.q_mvar.to_numpy(float)) * load.scaling.to_numpy(float)
                       * load.in_service.to_numpy(bool) / model.base_mva)
    return model, monitored, power_flow_s


def frame_model(grid: Any, scenario: Any, flex: pd.DataFrame, config: LinearizationConfig) -> FrameModel:
    """The time frame's compiled grid and injections, solved with no flexibility (see :class:`FrameModel`).

    The time frame changes only injections (loads, PV units, the zero flexibility units of
    :func:`net_at_time_frame`), and pandapower's specified injections are linear in them, so the
    frame's ``S_bus`` is the grid run's plus the changes at the internal buses; it is solved by
    Newton-Raphson from the grid run's voltages. Equal to pandapower on the frame's net within
    the power-flow tolerance (tests/unit/test_dso_linearize.py).
    """
    flex_buses = flex.index.to_numpy(dtype=np.int64)
    # the key always carries the units' physical ratios (validation applies them); the points and
    # the sensitivities hold Q when reactive=False (paper A's convention, kept for comparison)
    dq_physical = flex.dq_dp.to_numpy(dtype=float) if "dq_dp" in flex else np.zeros(len(flex_buses))
    from optim.dso.compiled_grid import load_table

    pristine = grid.pristine()  # once: it hashes a parsed net's tables
    rows, p_load, q_load, _pv_ids, pv_buses, p_pv, q_pv = _frame_injections(grid, scenario, pristine=pristine)
    p_fix = _p_fix_at_buses(grid, scenario, flex_buses)
    grid_model, monitored, power_flow_s = _grid_model(grid, config.tolerance_mva, config.max_iteration,
                                                      pristine=pristine)
    t0 = time.perf_counter()
    load = load_table(grid, pristine=pristine)
    position = load.index.get_indexer(rows)
    new_load = ((p_load + 1j * q_load) * load.scaling.to_numpy(float)[position]
                * load.in_service.to_numpy(bool)[position] / grid_model.base_mva)
    sbus = grid_model.sbus_pu.copy()
    lookup = grid_model.bus_lookup
    np.add.at(sbus, lookup[load.bus.to_numpy(np.int64)[position]], grid_model.load_s_pu[position] - new_load)
    np.add.at(sbus, lookup[pv_buses], (p_pv + 1j * q_pv) / grid_model.base_mva)
    model = grid_model.with_flex(flex_buses, sbus, grid_model.v_solved)
    where = "the time frame with no flexibility activated"
    try:
        v, iterations = model.solved_voltages(np.zeros_like(sbus), grid_model.v_solved,
                                              tolerance_mva=config.tolerance_mva, max_iteration=config.max_iteration,
                                              where=where)
        model.v_solved = v
    except PowerFlowError:
        # far from the grid run's voltages: pandapower's own start (its init="auto") on the frame's net
        from optim.dso.sensitivity import flow_model_of_net

        net = net_at_time_frame(grid, scenario, flex_buses=flex_buses)
        run_power_flow(net, where=where, tolerance_mva=config.tolerance_mva, max_iteration=config.max_iteration)
        model = flow_model_of_net(net, flex_buses, monitored_buses=monitored[0], branches=(monitored[1], monitored[2]))
        iterations = -1
    power_flow_s += time.perf_counter() - t0
    logger.info("time frame solved %s", f"from the grid's run in {iterations} iterations" if iterations >= 0
                else "by pandapower (no convergence from the grid's run)")
    return FrameModel(flex_buses, dq_physical, p_fix, monitored, model, power_flow_s)


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
    bound_key: bool = True,
    points: tuple[Sequence[tuple[str, np.ndarray]], dict[str, Any]] | None = None,
) -> Linearization:
    """Build the SensitivityPackage of a time frame: ``m`` operating points, AC power flow and
    analytic sensitivities at each (paper A, III-B).

    Parameters
    ----------
    grid
        :class:`gridgen.grid.Grid` of the DSO.
    scenario
        :class:`optim.dso.scenario.Scenario` (``buildings`` with ``P_fix``, ``bids``, ``time_frame``).
    config
        Number of points and how they are chosen, limits, polygon, power-flow options, id seed.
    progress
        Called as ``progress(done, total, message)`` after each step (for the CLI's progress bar).
    bound_key
        Put the package's fingerprint in the key, as :func:`save_pair` needs to write the pair.
        Callers that never write this paper-style package (the app, a hardened package's
        linearization: it gets its own key) skip hashing its blocks (70 ms at 33 points).
    points
        A :attr:`Linearization.point_selection` of an earlier call with the same grid, scenario
        and config: its points are linearized as they are (no selection run). Each point's power
        flow starts at the frame's solved state, so the package is the same to the last bit (the
        app's workers share a frame this way: the selection is a few kB, the package 60-85 MB).

    Returns
    -------
    Linearization
        ``package`` (paper style, opaque, for the TSO), ``key`` (private, bound to the package by
        its fingerprint unless ``bound_key`` is false), timings.

    Raises
    ------
    PowerFlowError
        The power flow did not converge at a point (the message names the point).
    InputError
        NaN/inf in the scenario or bids, bids at unknown buildings, no flexibility.
    """
    from optim.dso.points import points_for

    t0 = time.perf_counter()
    flex = flex_table(grid, scenario.bids, scenario.buildings)
    frame = frame_model(grid, scenario, flex, config)
    if points is None:
        chosen, meta = points_for(grid, scenario, flex, config, progress=progress, frame=frame)
    else:
        chosen, meta = points
        if any(np.shape(p) != (len(flex),) for _, p in chosen):
            raise InputError(f"the stored points do not fit this time frame's {len(flex)} flexible buses: "
                             "choose them again (linearize without points)")
    lin = linearize_at(grid, scenario, flex, chosen, config=config, progress=progress, extra_meta=meta, frame=frame,
                       bound_key=bound_key)
    runtime = time.perf_counter() - t0
    selection = (tuple((str(label), np.array(p, dtype=float)) for label, p in chosen), dict(meta))
    return dataclasses.replace(lin, runtime_s=runtime, point_selection=selection)


def linearize_at(
    grid: Any,
    scenario: Any,
    flex: pd.DataFrame,
    chosen: Sequence[tuple[str, np.ndarray]],
    *,
    config: LinearizationConfig = LinearizationConfig(),
    progress: ProgressFn | None = None,
    extra_meta: dict[str, Any] | None = None,
    frame: "FrameModel | None" = None,
    bound_key: bool = True,
) -> Linearization:
    """Power flow and sensitivities at given points ``(label, P_flex per bus of flex)``.

    The flexibility at each point has its physical reactive power (``dq_dp * P_flex``) and the
    sensitivities combine ``dV/dP + dq_dp dV/dQ``; ids, key and package as in :func:`linearize`.
    ``frame`` (:func:`frame_model`) shares the time frame's net, first power flow and solved
    points between calls (the point selection linearizes the same frame several times).
    ``bound_key=False`` leaves the key's package fingerprint empty: for the point selection's
    intermediate packages, which are never shared (hashing one cost 13 ms).
    """
    from gridgen.grid import credit

    t0 = time.perf_counter()
    total = len(chosen) + 1
    if frame is None:
        frame = frame_model(grid, scenario, flex, config)
    flex_buses, p_fix, monitored = frame.flex_buses, frame.p_fix_mw, frame.monitored
    dq_physical = frame.dq_physical
    dq_dp = dq_physical if config.reactive else np.zeros(len(flex_buses))
    if progress:
        progress(1, total, f"time frame set: {len(flex_buses)} flexible buses")

    rng = np.random.default_rng(config.random_state)
    buses, elements, indices = monitored
    flex_order, flex_ids = _opaque("F", len(flex_buses), rng)
    bus_order, bus_ids = _opaque("V", len(buses), rng)
    branch_order, branch_ids = _opaque("L", len(indices), rng)
    results = []
    pf_s, sens_s = frame.power_flow_s, 0.0
    for i, (label, p_flex) in enumerate(chosen):
        where = f"operating point {i} ({label})"
        p_flex = np.asarray(p_flex, dtype=float)
        if p_flex.shape != flex_buses.shape or not np.all(np.isfinite(p_flex)):
            raise InputError(f"{where}: P_flex must hold {len(flex_buses)} finite values")
        t1 = time.perf_counter()
        sens, t_pf = frame.sensitivities(p_flex, dq_dp, where=where, tolerance_mva=config.tolerance_mva,
                                         max_iteration=config.max_iteration,
                                         order=(flex_order, bus_order, branch_order))
        for name in ("vm_pu", "loading_percent", "vtdf_pu_per_mw", "ltdf_percent_per_mw", "i_re_percent",
                     "itdf_re_percent_per_mw", "itdf_im_percent_per_mw"):
            if not all_finite(getattr(sens, name)):
                raise PowerFlowError(f"{where}: {name} is not finite (isolated bus or zero rating?)")
        pf_s += t_pf
        sens_s += time.perf_counter() - t1 - t_pf
        results.append((label, p_flex, sens))
        if progress:
            progress(i + 2, total, f"{where}: power flow and sensitivities done")

    # the sensitivities are in the opaque order already: only the flexibility vectors are permuted
    points = tuple(_point_of(label, p_fix[flex_order], p_flex[flex_order], sens, None, None, None, config)
                   for label, p_flex, sens in results)
    flex_id_of_bus = dict(zip(flex_buses[flex_order].tolist(), flex_ids))
    buildings_of_flex = {flex_id_of_bus[int(b)]: tuple(blds) for b, blds in zip(flex_buses.tolist(), flex.buildings)}
    flex_of_asset = {bld: fid for fid, blds in buildings_of_flex.items() for bld in blds}
    time_frame = dict(getattr(scenario, "time_frame", {}) or {})
    box = {}
    if config.screen_rows:
        box = {"row_box_lower_mw": flex.p_down_mw.to_numpy(float)[flex_order],
               "row_box_upper_mw": flex.p_up_mw.to_numpy(float)[flex_order]}
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
        polygon_sides=int(config.polygon_sides),
        style="paper",
        meta={
            "time_frame": {k: time_frame[k] for k in ("day_type", "hour", "timestamp") if k in time_frame},
            "point_method": config.point_method,
            **(extra_meta or {}),
            "branch_rows": "current-polygon" if config.branch_rows == "current" else "signed-loading",
            "units": {"p": "MW", "vm": "p.u.", "loading": "% signed by flow direction", "vtdf": "p.u./MW",
                      "ltdf": "%/MW", "i": "% of the rated current, in the frame of its end bus' voltage"},
            "reactive_power": ("follows P at each unit's power factor (dq_dp per flexible bus)" if config.reactive
                               else "held constant when the flexibility moves (dQ = 0)"),
            "credit": credit(),
        },
        **box,
    )
    buildings = scenario.buildings
    ratios: dict[str, tuple[float, float]] = {}
    if {"dq_dp_up", "dq_dp_down"} <= set(buildings.columns):
        assets = list(flex_of_asset)
        up = buildings.dq_dp_up.loc[assets].to_numpy(float)
        down = buildings.dq_dp_down.loc[assets].to_numpy(float)
        ratios = {bld: (float(u), float(d)) for bld, u, d in zip(assets, up, down)}
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
        point_fractions=tuple(float(f) for f in (extra_meta or {}).get("point_fractions", ())),
        time_frame=time_frame,
        dq_dp=tuple(float(x) for x in dq_physical[flex_order]),
        dq_dp_of_building=ratios,
        package_fingerprint=package.fingerprint() if bound_key else "",
    )
    runtime = time.perf_counter() - t0
    logger.info("linearized %d points: %d flexible buses, %d voltages, %d branches in %.2f s",
                len(points), len(flex_ids), len(bus_ids), len(branch_ids), runtime)
    return Linearization(package=package, key=key, runtime_s=runtime, power_flow_s=pf_s, sensitivity_s=sens_s)


def _point_of(label: str, p_fix: np.ndarray, p_flex: np.ndarray, sens: Any, flex_order: np.ndarray | None,
              bus_order: np.ndarray | None, branch_order: np.ndarray | None,
              config: LinearizationConfig) -> OperatingPoint:
    """The package's point (opaque order) from the sensitivities; rows derived by the package.

    An order of None: the sensitivities are in that order already (no copy). The arrays are
    handed over read-only, so the package need not copy them.
    """
    def rows(a: np.ndarray, order: np.ndarray | None) -> np.ndarray:
        return a if order is None else a[order]

    def block(a: np.ndarray, row_order: np.ndarray | None) -> np.ndarray:
        if row_order is None and flex_order is None:
            return a
        return a[np.ix_(np.arange(a.shape[0]) if row_order is None else row_order,
                        np.arange(a.shape[1]) if flex_order is None else flex_order)]

    currents = {}
    if config.branch_rows == "current":
        currents = dict(
            i_re_percent=rows(sens.i_re_percent, branch_order),
            i_im_percent=rows(sens.i_im_percent, branch_order),
            itdf_re_percent_per_mw=block(sens.itdf_re_percent_per_mw, branch_order),
            itdf_im_percent_per_mw=block(sens.itdf_im_percent_per_mw, branch_order),
        )
    arrays = dict(
        p_flex_mw=rows(p_flex, flex_order),
        p_mw=rows(p_fix + p_flex, flex_order),
        vm_pu=rows(sens.vm_pu, bus_order),
        vtdf_pu_per_mw=block(sens.vtdf_pu_per_mw, bus_order),
        loading_percent=rows(sens.loading_percent, branch_order),
        ltdf_percent_per_mw=block(sens.ltdf_percent_per_mw, branch_order),
        **currents,
    )
    for name, value in arrays.items():
        if value.base is None and value.flags.c_contiguous:
            value.setflags(write=False)
    return OperatingPoint(label=label, **arrays)


def operating_point_from_net(net: Any, key: DsoKey, p_fix_mw: np.ndarray, p_flex_mw: np.ndarray, *,
                             label: str, branch_rows: str = "current") -> OperatingPoint:
    """Sensitivities at a solved net (``run_power_flow`` done), in the key's opaque order.

    Parameters
    ----------
    net
        Net of :func:`net_at_time_frame` with the flexibility ``p_flex_mw`` (and its reactive
        power) applied and a converged power flow.
    key
        The package's key (column and row order, ``dq_dp``).
    p_fix_mw, p_flex_mw
        ``P_fix`` and ``P_flex`` at the flexible buses, package column order.
    label
        Name of the new point.
    branch_rows
        ``"current"`` (current blocks) or ``"signed-loading"``.

    Returns
    -------
    OperatingPoint
        Without rows: :func:`package_with_point` derives them with the package's limits.
    """
    from optim.dso.sensitivity import sensitivities_from_net

    dq = np.asarray(key.dq_dp, dtype=float) if key.dq_dp else None
    sens = sensitivities_from_net(net, np.asarray(key.flex_buses), monitored_buses=np.asarray(key.buses),
                                  branches=(key.branch_elements, np.asarray(key.branch_indices)), dq_dp=dq)
    n_f, n_v, n_l = len(key.flex_ids), len(key.bus_ids), len(key.branch_ids)
    config = LinearizationConfig(branch_rows=branch_rows)
    point = _point_of(label, np.asarray(p_fix_mw, dtype=float), np.asarray(p_flex_mw, dtype=float), sens,
                      np.arange(n_f), np.arange(n_v), np.arange(n_l), config)
    logger.info("operating point %r: %d flexible buses", label, n_f)
    return point


def package_with_point(package: SensitivityPackage, point: OperatingPoint) -> SensitivityPackage:
    """Return a copy of ``package`` with one more operating point (same ids, limits and meta)."""
    meta = dict(package.meta)
    meta["added_points"] = list(meta.get("added_points", [])) + [point.label]
    new = package.with_points(tuple(package.points) + (point,), meta=meta)
    logger.info("package extended to %d points", new.n_points)
    return new


def _p_fix_at_buses(grid: Any, scenario: Any, flex_buses: np.ndarray) -> np.ndarray:
    frame = scenario.buildings
    bus_of = grid.buildings.bus.astype(int)
    bus_of.index = bus_of.index.astype(str)
    buses = bus_of.loc[frame.index.astype(str)].to_numpy()
    per_bus = pd.Series(frame.p_pv_mw.to_numpy(float) - frame.p_load_mw.to_numpy(float)).groupby(buses).sum()
    return per_bus.reindex(np.asarray(flex_buses), fill_value=0.0).to_numpy()


def save_pair(package: SensitivityPackage, key: DsoKey, package_path: str | Path, key_path: str | Path) -> None:
    """Write the package and its key as a pair, atomically: both to temporary siblings, then swapped in.

    On any failure the previous pair (if any) stays as it was and no temporary file remains. The
    key must carry the package's fingerprint.
    """
    package_path, key_path = Path(package_path), Path(key_path)
    if key.package_fingerprint != package.fingerprint():
        raise InputError("the DSO key does not carry this package's fingerprint; build both with linearize")
    package_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.tmp"
    tmp_p = package_path.with_name(f".{package_path.name}.{tag}")
    tmp_k = key_path.with_name(f".{key_path.name}.{tag}")
    old_p = package_path.with_name(f".{package_path.name}.{tag}.old")
    old_k = key_path.with_name(f".{key_path.name}.{tag}.old")
    moved: list[tuple[Path, Path]] = []  # (backup, original) of the previous pair
    placed: list[Path] = []
    try:
        package.write(tmp_p)
        key.write(tmp_k)
        for original, backup in ((package_path, old_p), (key_path, old_k)):
            if original.exists():
                os.replace(original, backup)
                moved.append((backup, original))
        os.replace(tmp_p, package_path)
        placed.append(package_path)
        os.replace(tmp_k, key_path)
        placed.append(key_path)
    except BaseException:
        restored = {original for _backup, original in moved}
        for path in placed:  # a new file with no old one to put back: remove it
            if path not in restored:
                path.unlink(missing_ok=True)
        for backup, original in moved:
            os.replace(backup, original)
        moved.clear()
        raise
    finally:
        for path in (tmp_p, tmp_k):
            path.unlink(missing_ok=True)
        for backup, _original in moved:
            backup.unlink(missing_ok=True)
    logger.info("package and key written: %s, %s", package_path, key_path)


def load_pair(package_path: str | Path, key_path: str | Path) -> tuple[SensitivityPackage, DsoKey | None]:
    """Read a package and, if present, its key; a key of another package is refused.

    Raises
    ------
    InputError
        Unreadable files, or a key whose fingerprint differs from the package's.
    """
    package = SensitivityPackage.load(package_path)
    key_path = Path(key_path)
    if not key_path.is_file():
        return package, None
    key = DsoKey.load(key_path)
    if key.package_fingerprint != package.fingerprint():
        raise InputError(f"the DSO key {key_path} belongs to another package than {package_path} "
                         "(fingerprint mismatch): re-run 'digiplat linearize' to write both again")
    return package, key


def p_fix_at_flex(grid: Any, scenario: Any, key: DsoKey) -> np.ndarray:
    """``P_fix`` (PV minus load, MW) at the key's flexible buses, package column order."""
    out = _p_fix_at_buses(grid, scenario, np.asarray(key.flex_buses))
    logger.info("P_fix at %d flexible buses: %.4f MW net", len(out), float(out.sum()))
    return out
