"""AC power-flow validation of a dispatch (paper A, IV; Table I, Fig. 4 and 5). DSO-side knowledge.

The dispatch (flexibility per flexible bus, MW, + = more injection) is applied to the full grid at
the time frame (:func:`optim.dso.linearize.net_at_time_frame`) with the **physical reactive power
of every activated unit** (``q_flex_mvar``: each activated bid row's P times its units' ratio
``dq_dp``, see :mod:`optim.dso.scenario`; by default the key's per-bus ratio times the dispatch),
an AC power flow is run, and the result is compared with the prediction ``G_V``, ``G_L`` at the
chosen point. The DSO computes that prediction itself from its own paper-style point and the
dispatch (:func:`optim.package.predicted_state`), so Table I measures the method even when the
shared package is hardened:

- MAE and RMSE of the monitored bus voltages (p.u.) and of the signed branch loadings (%, lines and
  transformers), over all monitored elements;
- the same over the **critical** elements: the ``critical_share`` (default 10 %, at least one) of
  the buses and of the branches closest to their limits in the power flow: for buses the margin
  ``min(vm - vm_min, vm_max - vm)``, for branches ``loading_max - |loading|`` (paper A, Fig. 4/5
  show such critical buses and branches);
- limit violations (element, value, limit) with a tolerance of 1e-6 p.u. / 1e-4 %, the voltage
  extremes and the largest loading.

A merit-order dispatch has no prediction: then only violations and extremes are reported and the
error fields are None.

**Two engines, one power flow.** ``engine="pandapower"`` (the default; the CLI, the benchmarks,
Table I) runs ``pandapower.runpp`` on a copy of the time frame's net and can return the solved
net. ``engine="compiled"`` (:func:`compiled_state`; the app's rounds and the envelopes' AC checks)
solves pandapower's own internal model of the same net (its admittance matrices, bus types and
rating factors, as the linearization uses them) with the same Newton-Raphson iteration and
stopping rule, from the frame's solved voltages: the same voltages and loadings within the
power-flow tolerance (tests compare both with and without violations), 4-5 ms instead of
45-50 ms on Bergwald, because none of pandapower's table bookkeeping, DC initialisation or result
extraction runs. It returns no net; :func:`optim.market.with_solved_net` adds pandapower's when a
round is exported.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from optim._errors import InputError

logger = logging.getLogger(__name__)

VM_TOLERANCE_PU = 1e-6
#: Power flows of the validation (see "Two engines, one power flow" above).
ENGINES = ("pandapower", "compiled")
LOADING_TOLERANCE_PERCENT = 1e-4

__all__ = ["ENGINES", "Violation", "ValidationResult", "validate_dispatch", "compiled_state", "critical_mask",
           "p_flex_from_buildings", "q_flex_from_pieces"]


@dataclass(frozen=True)
class Violation:
    """One limit violation found by the power flow.

    Parameters
    ----------
    element
        ``"bus"``, ``"line"`` or ``"trafo"``.
    index
        pandapower index (DSO-private).
    opaque_id
        The package's id of the row (``V...``/``L...``).
    quantity
        ``"vm_pu"`` or ``"loading_percent"`` (loading as pandapower reports it, unsigned).
    value, limit
        The power-flow value and the limit it breaks.
    """

    element: str
    index: int
    opaque_id: str
    quantity: str
    value: float
    limit: float

    def to_dict(self) -> dict[str, Any]:
        return {"element": self.element, "index": int(self.index), "id": self.opaque_id, "quantity": self.quantity,
                "value": float(self.value), "limit": float(self.limit)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Violation":
        return cls(element=data["element"], index=int(data["index"]), opaque_id=data["id"], quantity=data["quantity"],
                   value=float(data["value"]), limit=float(data["limit"]))


def _metrics(pf: np.ndarray, pred: np.ndarray | None) -> tuple[float | None, float | None]:
    if pred is None or pf.size == 0:
        return None, None
    err = pf - pred
    return float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err ** 2)))


def critical_mask(margin: np.ndarray, share: float) -> np.ndarray:
    """Mask of the ``share`` (at least one) of elements with the smallest margin to their limit."""
    n = margin.size
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    k = max(1, int(np.ceil(share * n)))
    mask[np.argsort(margin, kind="stable")[:k]] = True
    return mask


@dataclass(frozen=True)
class ValidationResult:
    """AC power flow at a dispatch compared with the prediction (paper A, Table I).

    Attributes
    ----------
    method
        ``"milp"`` or ``"merit-order"`` (or what the caller says).
    vm_mae_pu, vm_rmse_pu, loading_mae_percent, loading_rmse_percent
        Errors over all monitored elements; None without a prediction.
    critical_vm_mae_pu, critical_vm_rmse_pu, critical_loading_mae_percent, critical_loading_rmse_percent
        Errors over the critical elements (see module docstring); None without a prediction.
    violations
        Every violated limit.
    vm_min_pu, vm_max_pu, max_loading_percent
        Extremes of the power flow over the monitored elements (loading unsigned).
    delivered_mw
        Sum of the applied dispatch.
    bus_ids, vm_pf_pu, vm_pred_pu, critical_buses
        Per monitored bus (package order): power flow, prediction (or None), critical flag.
    branch_ids, branch_elements, loading_pf_percent, loading_pred_percent, critical_branches
        Per monitored branch (package order), signed loadings.
    runtime_s
        Wall time (power flow included).
    """

    method: str
    vm_mae_pu: float | None
    vm_rmse_pu: float | None
    loading_mae_percent: float | None
    loading_rmse_percent: float | None
    critical_vm_mae_pu: float | None
    critical_vm_rmse_pu: float | None
    critical_loading_mae_percent: float | None
    critical_loading_rmse_percent: float | None
    violations: tuple[Violation, ...]
    vm_min_pu: float
    vm_max_pu: float
    max_loading_percent: float
    delivered_mw: float
    bus_ids: tuple[str, ...] = ()
    vm_pf_pu: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vm_pred_pu: np.ndarray | None = None
    critical_buses: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    branch_ids: tuple[str, ...] = ()
    branch_elements: tuple[str, ...] = ()
    loading_pf_percent: np.ndarray = field(default_factory=lambda: np.zeros(0))
    loading_pred_percent: np.ndarray | None = None
    critical_branches: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    runtime_s: float = 0.0

    @property
    def n_violations(self) -> int:
        return len(self.violations)

    def summary(self) -> dict[str, Any]:
        """The ``validation`` object of ``digiplat clear --json`` (no per-element arrays)."""
        return {
            "vm_mae_pu": self.vm_mae_pu,
            "vm_rmse_pu": self.vm_rmse_pu,
            "loading_mae_percent": self.loading_mae_percent,
            "loading_rmse_percent": self.loading_rmse_percent,
            "critical_vm_mae_pu": self.critical_vm_mae_pu,
            "critical_vm_rmse_pu": self.critical_vm_rmse_pu,
            "critical_loading_mae_percent": self.critical_loading_mae_percent,
            "critical_loading_rmse_percent": self.critical_loading_rmse_percent,
            "violations": self.n_violations,
            "violation_list": [v.to_dict() for v in self.violations],
            "vm_min_pu": self.vm_min_pu,
            "vm_max_pu": self.vm_max_pu,
            "max_loading_percent": self.max_loading_percent,
            "delivered_mw": self.delivered_mw,
            "runtime_s": self.runtime_s,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, arrays as lists (for the browser store and files)."""
        def arr(a: np.ndarray | None) -> list | None:
            return None if a is None else np.asarray(a).tolist()

        out = self.summary()
        out.pop("violations")
        out.pop("violation_list")
        out.update({
            "method": self.method,
            "violations": [v.to_dict() for v in self.violations],
            "bus_ids": list(self.bus_ids), "vm_pf_pu": arr(self.vm_pf_pu), "vm_pred_pu": arr(self.vm_pred_pu),
            "critical_buses": arr(self.critical_buses), "branch_ids": list(self.branch_ids),
            "branch_elements": list(self.branch_elements), "loading_pf_percent": arr(self.loading_pf_percent),
            "loading_pred_percent": arr(self.loading_pred_percent), "critical_branches": arr(self.critical_branches),
        })
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ValidationResult":
        def arr(v: Any, dtype: Any = float) -> np.ndarray | None:
            return None if v is None else np.asarray(v, dtype=dtype)

        d = dict(data)
        return cls(
            method=d["method"],
            **{k: d.get(k) for k in ("vm_mae_pu", "vm_rmse_pu", "loading_mae_percent", "loading_rmse_percent",
                                     "critical_vm_mae_pu", "critical_vm_rmse_pu", "critical_loading_mae_percent",
                                     "critical_loading_rmse_percent")},
            violations=tuple(Violation.from_dict(v) for v in d.get("violations", [])),
            vm_min_pu=float(d["vm_min_pu"]), vm_max_pu=float(d["vm_max_pu"]),
            max_loading_percent=float(d["max_loading_percent"]), delivered_mw=float(d["delivered_mw"]),
            bus_ids=tuple(d.get("bus_ids", ())), vm_pf_pu=arr(d.get("vm_pf_pu", [])),
            vm_pred_pu=arr(d.get("vm_pred_pu")), critical_buses=arr(d.get("critical_buses", []), bool),
            branch_ids=tuple(d.get("branch_ids", ())), branch_elements=tuple(d.get("branch_elements", ())),
            loading_pf_percent=arr(d.get("loading_pf_percent", [])),
            loading_pred_percent=arr(d.get("loading_pred_percent")),
            critical_branches=arr(d.get("critical_branches", []), bool),
            runtime_s=float(d.get("runtime_s", 0.0)),
        )


def p_flex_from_buildings(key: Any, p_building_mw: dict[str, float]) -> np.ndarray:
    """Sum a per-building dispatch (MW) onto the key's flexible buses (package column order)."""
    flex_of = {bld: fid for fid, blds in key.buildings_of_flex.items() for bld in blds}
    out = dict.fromkeys(key.flex_ids, 0.0)
    for bld, p in p_building_mw.items():
        if str(bld) not in flex_of:
            raise InputError(f"building {bld!r} has no flexible bus in this linearization")
        if not np.isfinite(p):
            raise InputError(f"the dispatch of building {bld!r} is not finite")
        out[flex_of[str(bld)]] += float(p)
    return np.array([out[f] for f in key.flex_ids])


def q_flex_from_pieces(key: Any, piece_activations: Sequence[dict[str, Any]], bids: Any) -> np.ndarray:
    """Physical reactive power (MVAr) per flexible bus of a cleared dispatch, package column order.

    Each piece (bid x flexible bus) is spread over its bid rows pro rata to their volume (as the
    BCM does), each row's units pro rata within the row; a row's Q is its activated P times its
    building's ratio (``key.dq_dp_of_building``: upward offer or PV curtailment).
    """
    col = {fid: k for k, fid in enumerate(key.flex_ids)}
    flex_of = {bld: fid for fid, blds in key.buildings_of_flex.items() for bld in blds}
    share = {(a["bid_id"], a["flex_id"]): (a["activated_mw"] / a["offered_mw"] if a["offered_mw"] else 0.0)
             for a in piece_activations}
    q = np.zeros(len(key.flex_ids))
    ratios = getattr(key, "dq_dp_of_building", {}) or {}
    for row in bids.rows:
        fid = flex_of.get(str(row.building_id))
        if fid is None:
            continue
        up, down = ratios.get(str(row.building_id), (0.0, 0.0))
        p_row = float(row.p_mw) * share.get((row.bid_id, fid), 0.0)
        q[col[fid]] += p_row * (up if row.p_mw > 0 else down)
    return q


_TEMPLATES: dict[tuple, tuple[Any, Any]] = {}
_MAX_TEMPLATES = 8


def _time_frame_net(grid: Any, scenario: Any, flex_buses: Sequence[int]) -> Any:
    """A fresh copy of the time frame's net with its flexibility units (``net_at_time_frame``).

    The template of a (grid, time frame, flexible buses) is built once and copied per validation:
    building it sets every load and creates the PV and flexibility units (``create_sgens``, about as
    long as the copy itself), and a market round validates two dispatches of the same frame. The
    entry holds the grid's net, so its ``id`` cannot be reused while it is cached.
    """
    import copy

    from optim.dso.linearize import net_at_time_frame

    frame = scenario.buildings
    key = (id(grid.net), getattr(scenario, "timestamp", None), hash(getattr(scenario, "config", None)),
           tuple(frame.index), tuple(frame.p_load_mw), tuple(frame.q_load_mvar), tuple(frame.p_pv_mw),
           tuple(int(b) for b in flex_buses))
    entry = _TEMPLATES.get(key)
    if entry is None or entry[0] is not grid.net:
        if len(_TEMPLATES) >= _MAX_TEMPLATES:
            _TEMPLATES.pop(next(iter(_TEMPLATES)))
        entry = (grid.net, net_at_time_frame(grid, scenario, flex_buses=flex_buses))
        _TEMPLATES[key] = entry
    return copy.deepcopy(entry[1])


_FRAMES: dict[tuple, tuple[Any, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]] = {}
_MAX_FRAMES = 8
_FRAMES_GUARD = threading.Lock()


def compiled_state(grid: Any, scenario: Any, key: Any) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The AC power flow of a time frame on the compiled grid: ``(p_flex_mw, q_flex_mvar) ->
    (vm_pu, signed loading_percent)``, dispatch in the key's column order, results in its row order.

    The compiled grid is pandapower's own internal model of the net (admittances, bus types,
    rating factors: :class:`optim.dso.sensitivity.FlowModel`), solved by the same Newton-Raphson
    and stopping rule as ``pandapower.runpp``, so it agrees with :func:`validate_dispatch`'s
    pandapower run within the power-flow tolerance (tested) in 4-5 ms instead of 45-50 ms on
    Bergwald (no pandas tables, no DC initialisation, no result tables). Kept per (grid and its
    net's state, time frame, key) for the last :data:`_MAX_FRAMES`.

    Raises
    ------
    InputError
        The key's flexible or monitored buses or branches are not this grid's.
    """
    import pandas as pd

    from gridgen.grid import net_signature
    from optim.dso.compiled_grid import load_table
    from optim.dso.linearize import LinearizationConfig, frame_model

    frame = scenario.buildings
    flex_buses = np.asarray(key.flex_buses, dtype=np.int64)
    pristine = grid.pristine()
    # a net changed in memory is keyed by its tables (as the compiled grid model is)
    cache_key = (id(grid), None if pristine else net_signature(grid.net), getattr(scenario, "timestamp", None),
                 hash(getattr(scenario, "config", None)), tuple(frame.index), tuple(frame.p_load_mw),
                 tuple(frame.q_load_mvar), tuple(frame.p_pv_mw),
                 tuple(frame.q_pv_mvar) if "q_pv_mvar" in frame else (),
                 flex_buses.tobytes(), np.asarray(key.buses, dtype=np.int64).tobytes(), tuple(key.branch_elements),
                 np.asarray(key.branch_indices, dtype=np.int64).tobytes())
    with _FRAMES_GUARD:
        entry = _FRAMES.get(cache_key)
    if entry is not None and entry[0] is grid:
        return entry[1]
    unknown = sorted(set(flex_buses.tolist()) - set(load_table(grid, pristine=pristine).bus.astype(int).tolist()))
    if unknown:
        raise InputError(f"the key's flexible bus {unknown[0]} has no load in this grid: wrong grid for the key")
    config = LinearizationConfig()
    model = frame_model(grid, scenario, pd.DataFrame(index=pd.Index(flex_buses)), config)
    buses, elements, indices = model.monitored
    bus_row = {int(b): k for k, b in enumerate(buses)}
    branch_row = {(str(e), int(i)): k for k, (e, i) in enumerate(zip(elements, indices))}
    try:
        bus_order = np.array([bus_row[int(b)] for b in key.buses], dtype=np.int64)
        branch_order = np.array([branch_row[(str(e), int(i))] for e, i in zip(key.branch_elements, key.branch_indices)],
                                dtype=np.int64)
    except KeyError as exc:
        raise InputError(f"the key's monitored element {exc.args[0]} is not in this grid: wrong grid for the key") from None

    def state(p_flex_mw: np.ndarray, q_flex_mvar: np.ndarray, where: str = "the dispatch") -> tuple[np.ndarray, np.ndarray]:
        vm, loading = model.flow_state(p_flex_mw, q_flex_mvar, where=where, tolerance_mva=config.tolerance_mva,
                                       max_iteration=config.max_iteration)
        return vm[bus_order], loading[branch_order]

    with _FRAMES_GUARD:  # the app's threads validate at once
        while len(_FRAMES) >= _MAX_FRAMES:
            _FRAMES.pop(next(iter(_FRAMES)))
        _FRAMES[cache_key] = (grid, state)
    return state


def validate_dispatch(
    grid: Any,
    scenario: Any,
    key: Any,
    p_flex_mw: Sequence[float] | np.ndarray,
    *,
    predicted_vm_pu: Sequence[float] | None = None,
    predicted_loading_percent: Sequence[float] | None = None,
    point: Any = None,
    q_flex_mvar: Sequence[float] | None = None,
    method: str = "milp",
    vm_min_pu: float = 0.95,
    vm_max_pu: float = 1.05,
    loading_max_percent: float = 100.0,
    critical_share: float = 0.1,
    return_net: bool = False,
    engine: str = "pandapower",
) -> ValidationResult | tuple[ValidationResult, Any]:
    """Run the AC power flow at a dispatch and compare it with the prediction.

    Parameters
    ----------
    grid, scenario
        The DSO's grid and the time frame the package was built for.
    key
        :class:`optim.dso.linearize.DsoKey` of the package (maps opaque ids to the grid).
    p_flex_mw
        Dispatch per flexible bus in the key's (package's) column order, MW, + = more injection.
    predicted_vm_pu, predicted_loading_percent
        ``G_V`` and ``G_L`` of the chosen point, in package row order (None: merit order).
    point
        The DSO's paper-style :class:`~optim.package.OperatingPoint` chosen by the clearing: the
        prediction is computed from it (instead of ``predicted_*``).
    q_flex_mvar
        Reactive power of the activated flexibility per flexible bus (MVAr, package column order);
        default ``key.dq_dp * p_flex_mw``.
    method
        Label stored in the result.
    vm_min_pu, vm_max_pu, loading_max_percent
        Limits (the package's).
    critical_share
        Share of buses and of branches counted as critical (closest to their limits).
    return_net
        Also return the solved pandapower net (for a refinement point or the map); with
        ``engine="compiled"`` there is none (None is returned in its place).
    engine
        ``"pandapower"`` (default): ``pandapower.runpp`` on a copy of the time frame's net;
        ``"compiled"``: the same power flow on the compiled grid (:func:`compiled_state`, equal
        within the power-flow tolerance, 4-5 instead of 45-50 ms on Bergwald; the app's rounds use it).

    Returns
    -------
    ValidationResult
        (and the net if ``return_net``).

    Raises
    ------
    InputError
        Wrong length or non-finite dispatch or prediction.
    PowerFlowError
        The power flow at the dispatch does not converge.
    """
    from optim.dso.linearize import apply_flex, run_power_flow
    from optim.dso.sensitivity import signed_loading_percent

    t0 = time.perf_counter()
    p = np.asarray(p_flex_mw, dtype=float)
    if p.shape != (len(key.flex_ids),):
        raise InputError(f"the dispatch has {p.size} values for {len(key.flex_ids)} flexible buses")
    if not np.all(np.isfinite(p)):
        raise InputError("the dispatch contains NaN or infinite values")
    if not 0.0 < critical_share <= 1.0:
        raise InputError("critical_share must be within (0, 1]")
    if engine not in ENGINES:
        raise InputError(f"unknown power-flow engine {engine!r}: use {' or '.join(ENGINES)}")
    if point is not None:
        from optim.package import predicted_state

        if getattr(point, "p_flex_mw", np.zeros(0)).shape != p.shape:
            raise InputError("the operating point does not match the dispatch's flexible buses")
        predicted_vm_pu, predicted_loading_percent = predicted_state(point, p)
    vm_pred = None if predicted_vm_pu is None else np.asarray(predicted_vm_pu, dtype=float)
    ld_pred = None if predicted_loading_percent is None else np.asarray(predicted_loading_percent, dtype=float)
    if q_flex_mvar is None:
        ratio = np.asarray(getattr(key, "dq_dp", ()) or np.zeros(len(p)), dtype=float)
        q = ratio * p
    else:
        q = np.asarray(q_flex_mvar, dtype=float)
    if q.shape != p.shape or not np.all(np.isfinite(q)):
        raise InputError(f"q_flex_mvar must hold {p.size} finite values")
    for name, arr, n in (("predicted_vm_pu", vm_pred, len(key.bus_ids)),
                         ("predicted_loading_percent", ld_pred, len(key.branch_ids))):
        if arr is not None and (arr.shape != (n,) or not np.all(np.isfinite(arr))):
            raise InputError(f"{name} must hold {n} finite values")

    buses = np.asarray(key.buses, dtype=np.int64)
    elements = tuple(key.branch_elements)
    indices = np.asarray(key.branch_indices, dtype=np.int64)
    where = f"the {method} dispatch ({p.sum():.4g} MW)"
    net = None
    if engine == "compiled":
        vm, loading = compiled_state(grid, scenario, key)(p, q, where)
    else:  # pandapower (checked above)
        net = _time_frame_net(grid, scenario, key.flex_buses)
        apply_flex(net, key.flex_buses, p, q)
        run_power_flow(net, where=where)
        vm = net.res_bus.vm_pu.loc[buses].to_numpy(dtype=float)
        loading = signed_loading_percent(net, elements, indices)

    violations: list[Violation] = []
    for k in np.flatnonzero(vm < vm_min_pu - VM_TOLERANCE_PU):
        violations.append(Violation("bus", int(buses[k]), key.bus_ids[k], "vm_pu", float(vm[k]), vm_min_pu))
    for k in np.flatnonzero(vm > vm_max_pu + VM_TOLERANCE_PU):
        violations.append(Violation("bus", int(buses[k]), key.bus_ids[k], "vm_pu", float(vm[k]), vm_max_pu))
    for k in np.flatnonzero(np.abs(loading) > loading_max_percent + LOADING_TOLERANCE_PERCENT):
        violations.append(Violation(elements[k], int(indices[k]), key.branch_ids[k], "loading_percent",
                                    float(abs(loading[k])), loading_max_percent))

    crit_bus = critical_mask(np.minimum(vm - vm_min_pu, vm_max_pu - vm), critical_share)
    crit_branch = critical_mask(loading_max_percent - np.abs(loading), critical_share)
    vm_mae, vm_rmse = _metrics(vm, vm_pred)
    ld_mae, ld_rmse = _metrics(loading, ld_pred)
    cvm_mae, cvm_rmse = _metrics(vm[crit_bus], None if vm_pred is None else vm_pred[crit_bus])
    cld_mae, cld_rmse = _metrics(loading[crit_branch], None if ld_pred is None else ld_pred[crit_branch])
    result = ValidationResult(
        method=method,
        vm_mae_pu=vm_mae, vm_rmse_pu=vm_rmse, loading_mae_percent=ld_mae, loading_rmse_percent=ld_rmse,
        critical_vm_mae_pu=cvm_mae, critical_vm_rmse_pu=cvm_rmse,
        critical_loading_mae_percent=cld_mae, critical_loading_rmse_percent=cld_rmse,
        violations=tuple(violations),
        vm_min_pu=float(vm.min()) if vm.size else float("nan"),
        vm_max_pu=float(vm.max()) if vm.size else float("nan"),
        max_loading_percent=float(np.abs(loading).max()) if loading.size else 0.0,
        delivered_mw=float(p.sum()),
        bus_ids=tuple(key.bus_ids), vm_pf_pu=vm, vm_pred_pu=vm_pred, critical_buses=crit_bus,
        branch_ids=tuple(key.branch_ids), branch_elements=elements, loading_pf_percent=loading,
        loading_pred_percent=ld_pred, critical_branches=crit_branch,
        runtime_s=time.perf_counter() - t0,
    )
    logger.info("validated %s dispatch of %.4f MW: %d violations, vm %.4f..%.4f p.u., max loading %.1f %%%s",
                method, result.delivered_mw, result.n_violations, result.vm_min_pu, result.vm_max_pu,
                result.max_loading_percent,
                "" if vm_mae is None else f", MAE {vm_mae:.2e} p.u. / {ld_mae:.2e} %")
    return (result, net) if return_net else result
