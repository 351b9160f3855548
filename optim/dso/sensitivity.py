"""Analytic AC sensitivities (VTDF, LTDF) from the converged power-flow Jacobian (paper A, III-B).

At a converged AC power flow the polar Newton-Raphson equations ``S(V) - S_spec = 0`` (active power
at PV and PQ buses, reactive power at PQ buses) hold. A small change ``dP`` of the specified active
injection at a PQ bus ``k`` moves the state ``x = (Va[pv, pq], Vm[pq])`` by ``J dx = e_k dP`` where
``J`` is the power-flow Jacobian at the solution. So for all flexible buses at once::

    J X = E / baseMVA          (one sparse LU of J, one multi-right-hand-side solve)

with ``E`` the unit columns of the flexible buses' P rows. The reactive injection at the flexible
bus is held at its value (``dq_dp = 0``, paper A: "only dP is considered"); optionally a per-bus
ratio ``dq_dp`` moves Q with P (e.g. a load's power factor), which puts ``dq_dp[k]`` in the Q row.

``VTDF = dVm/dP`` are the rows of ``X`` of the monitored buses (zero at the slack and PV buses).
Branch loadings follow by the chain rule through the branch currents ``I_f = Y_f V``,
``I_t = Y_t V``::

    dI_f = dI_f/dVa dVa + dI_f/dVm dVm,     d|I_f| = Re(conj(I_f) dI_f) / |I_f|

and pandapower's loading definitions, reproduced exactly so the sensitivities predict
``res_line.loading_percent`` and ``res_trafo.loading_percent``:

- line: ``i_ka = max(i_from_ka, i_to_ka)``, ``loading = i_ka / (max_i_ka * df * parallel) * 100``
  with ``i_end_ka = |I_end| * baseMVA / (sqrt(3) * vn_kv(end bus))``;
- trafo, ``trafo_loading="current"`` (pandapower's default): ``loading = max_end(i_end_ka *
  vn_end_kv * sqrt(3) / sn_mva) * 100 / (parallel * df)`` with the trafo's own rated voltages;
- trafo, ``trafo_loading="power"``: ``loading = max_end(|S_end|) / sn_mva * 100 / (parallel * df)``,
  ``|S_end| = |V_end| |I_end| baseMVA``.

The derivative of the ``max`` is taken at the end that is larger at the operating point.
Loadings are *signed* by the direction of the active power at the end that sets the loading
(:func:`signed_loading_percent`), so ``-100 %`` is the limit of reversed flow; the sign is held
fixed in the derivative.

**Complex branch currents** (for the current polygon of the package): at the end that is larger
at the point, the current in % of the rating, rotated into the frame of that end's voltage and
oriented from -> to, ``I_loc = o I e^{-j theta}`` (``o = +1`` at the from end, ``-1`` at the to
end), and ``dI_loc = o e^{-j theta} (dI - j I dtheta)``. Then ``|I_loc|`` is the unsigned loading,
``Re(I_loc) |V|`` is the active power in the flow direction (so ``sign(Re) |I_loc|`` is the paper's
signed loading), and, unlike the P-signed magnitude, both parts are smooth where P changes sign
while Q flows.

Voltage-dependent loads (``const_z_percent``/``const_i_percent``) are rejected: their Jacobian
terms are not modelled here.

**Cost** (issue 12): :class:`FlowModel` keeps pandapower's compiled matrices of one topology, so
further points need no ``runpp``: the Jacobian is filled on a pattern laid out once, the
multi-right-hand-side solve runs with one BLAS thread (a cached ``threadpoolctl`` controller),
and the chain rule is one sparse product ``[dI_loc/dVa | dI_loc/dVm] X`` at the end that is used
(real and imaginary parts stacked), whose rows already give the signed loading's derivative
``Re(conj(I_loc) dI_loc) / |I_loc|`` in current mode; only trafos by power take both ends.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from optim._errors import InputError, PowerFlowError

logger = logging.getLogger(__name__)

SQRT3 = float(np.sqrt(3.0))
_CURRENT_FIELDS = ("i_re_percent", "i_im_percent", "itdf_re_percent_per_mw", "itdf_im_percent_per_mw")

__all__ = ["Sensitivities", "FlowModel", "flow_model_of_net", "sensitivities_from_net", "monitored_elements_of_net", "signed_loading_percent"]


@dataclass(frozen=True)
class Sensitivities:
    """VTDF and LTDF of one converged operating point, with pandapower indices (DSO-private).

    Parameters
    ----------
    flex_buses
        pandapower bus indices of the flexible buses (columns), shape ``(n_flex,)``.
    monitored_buses
        pandapower bus indices of the monitored voltages (rows of ``vtdf_pu_per_mw``).
    branch_elements, branch_indices
        Element table (``"line"`` or ``"trafo"``) and pandapower index of each monitored branch.
    vm_pu
        Voltage magnitudes of the monitored buses at the point.
    loading_percent
        Signed loadings of the monitored branches at the point (:func:`signed_loading_percent`).
    vtdf_pu_per_mw
        ``dVm/dP``, shape ``(n_v, n_flex)``.
    ltdf_percent_per_mw
        ``d loading/dP`` of the signed loadings, shape ``(n_l, n_flex)``.
    i_re_percent, i_im_percent, itdf_re_percent_per_mw, itdf_im_percent_per_mw
        Complex branch current in % of the rating (at the end that is larger at the point, in the
        frame of that end's voltage, oriented from -> to) and its derivatives; ``|I|`` is the
        unsigned loading and the real part has the sign of the active power.
    runtime_s
        Wall time of the computation (Jacobian, LU, solve, chain rule).
    """

    flex_buses: np.ndarray
    monitored_buses: np.ndarray
    branch_elements: tuple[str, ...]
    branch_indices: np.ndarray
    vm_pu: np.ndarray
    loading_percent: np.ndarray
    vtdf_pu_per_mw: np.ndarray
    ltdf_percent_per_mw: np.ndarray
    runtime_s: float = 0.0
    i_re_percent: np.ndarray | None = None
    i_im_percent: np.ndarray | None = None
    itdf_re_percent_per_mw: np.ndarray | None = None
    itdf_im_percent_per_mw: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict (arrays as lists)."""
        return {
            "flex_buses": self.flex_buses.tolist(),
            "monitored_buses": self.monitored_buses.tolist(),
            "branch_elements": list(self.branch_elements),
            "branch_indices": self.branch_indices.tolist(),
            "vm_pu": self.vm_pu.tolist(),
            "loading_percent": self.loading_percent.tolist(),
            "vtdf_pu_per_mw": self.vtdf_pu_per_mw.tolist(),
            "ltdf_percent_per_mw": self.ltdf_percent_per_mw.tolist(),
            "runtime_s": self.runtime_s,
            **{n: (None if getattr(self, n) is None else getattr(self, n).tolist()) for n in _CURRENT_FIELDS},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sensitivities":
        """Inverse of :meth:`to_dict`."""
        return cls(
            flex_buses=np.asarray(data["flex_buses"], dtype=np.int64),
            monitored_buses=np.asarray(data["monitored_buses"], dtype=np.int64),
            branch_elements=tuple(data["branch_elements"]),
            branch_indices=np.asarray(data["branch_indices"], dtype=np.int64),
            vm_pu=np.asarray(data["vm_pu"], dtype=float),
            loading_percent=np.asarray(data["loading_percent"], dtype=float),
            vtdf_pu_per_mw=np.asarray(data["vtdf_pu_per_mw"], dtype=float),
            ltdf_percent_per_mw=np.asarray(data["ltdf_percent_per_mw"], dtype=float),
            runtime_s=float(data.get("runtime_s", 0.0)),
            **{n: (None if data.get(n) is None else np.asarray(data[n], dtype=float)) for n in _CURRENT_FIELDS},
        )


def monitored_elements_of_net(net: Any) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Return the monitored buses and branches of a net after a converged power flow.

    Monitored buses are the in-service buses with a finite result that are not held at a fixed
    voltage (no ext_grid, no voltage-controlling gen). Monitored branches are the in-service lines
    and two-winding transformers with finite loading (an open ring's open line is not monitored).

    Parameters
    ----------
    net
        pandapower net with results of a converged AC power flow.

    Returns
    -------
    buses, branch_elements, branch_indices
    """
    fixed = set(net.ext_grid.bus[net.ext_grid.in_service].tolist())
    if len(net.gen):
        fixed |= set(net.gen.bus[net.gen.in_service].tolist())
    vm = net.res_bus.vm_pu.reindex(net.bus.index)
    ok = net.bus.in_service.values & np.isfinite(vm.values) & ~net.bus.index.isin(list(fixed))
    buses = net.bus.index.values[ok].astype(np.int64)
    elements: list[str] = []
    indices: list[int] = []
    for element in ("line", "trafo"):
        table = net[element]
        if not len(table):
            continue
        res = net[f"res_{element}"].reindex(table.index)
        good = table.in_service.values & np.isfinite(res.loading_percent.values)
        lookups = getattr(net, "_pd2ppc_lookups", {}).get("branch", {})
        internal = getattr(net, "_ppc", {}) or {}
        if element in lookups and "internal" in internal:  # drop branches the power flow left out (isolated)
            start = lookups[element][0]
            branch_is = np.asarray(internal["internal"]["branch_is"], dtype=bool)
            good &= branch_is[start + np.arange(len(table))]
        idx = table.index.values[good]
        elements += [element] * len(idx)
        indices += idx.tolist()
    logger.info("monitored elements: %d buses, %d branches", len(buses), len(indices))
    return buses, tuple(elements), np.asarray(indices, dtype=np.int64)


def signed_loading_percent(net: Any, branch_elements: Sequence[str], branch_indices: np.ndarray) -> np.ndarray:
    """Return pandapower's ``loading_percent`` signed by the active power at the end that sets it.

    The loading is the larger end's current; its sign is that of the active power flowing from the
    from (HV) end towards the to (LV) end *at that end*: ``sign(P_from)`` where the from end sets
    the loading, ``sign(-P_to)`` where the to end does. For a branch that power flows through the
    two agree; they differ only where both ends feed the branch's losses (|P| below the losses, a
    mostly reactive current), and there the sign at the loading's own end is the one the package's
    current rows predict (``Re(I_loc)`` at that end), so prediction and power flow use one
    definition.

    Parameters
    ----------
    net
        pandapower net with power-flow results.
    branch_elements, branch_indices
        Element table and index of each branch (``"line"`` or ``"trafo"``).

    Returns
    -------
    numpy.ndarray
        Signed loadings in %, ``+`` where active power flows from the from (HV) towards the to bus.
    """
    out = np.empty(len(branch_indices))
    elements = np.asarray(branch_elements)
    for element in ("line", "trafo"):
        mask = elements == element
        if not mask.any():
            continue
        res = net[f"res_{element}"].loc[branch_indices[mask]]
        if element == "line":
            p_from, p_to = res.p_from_mw.to_numpy(float), res.p_to_mw.to_numpy(float)
            to_end = res.i_to_ka.to_numpy(float) > res.i_from_ka.to_numpy(float)
        else:  # current-based loading: each end's current over its rated current sn / (sqrt(3) vn)
            table = net.trafo.loc[branch_indices[mask]]
            p_from, p_to = res.p_hv_mw.to_numpy(float), res.p_lv_mw.to_numpy(float)
            to_end = (res.i_lv_ka.to_numpy(float) * table.vn_lv_kv.to_numpy(float)
                      > res.i_hv_ka.to_numpy(float) * table.vn_hv_kv.to_numpy(float))
        p_end = np.where(to_end, -p_to, p_from)
        out[mask] = np.where(p_end < 0.0, -1.0, 1.0) * res.loading_percent.to_numpy(float)
    return out


def _branch_rows(net: Any, element: str, indices: np.ndarray) -> np.ndarray:
    """Rows of the internal (in-service) branch matrix of pandapower branches."""
    start, _stop = net._pd2ppc_lookups["branch"][element]
    branch_is = np.asarray(net._ppc["internal"]["branch_is"], dtype=bool)
    internal_row = np.cumsum(branch_is) - 1
    ppc_rows = start + net[element].index.get_indexer(indices)
    if np.any(~branch_is[ppc_rows]):
        raise InputError(f"some monitored {element}s are out of service in the power flow")
    return internal_row[ppc_rows]


def _loading_factors(net: Any, elements: np.ndarray, indices: np.ndarray, base_kv: np.ndarray,
                     f_bus: np.ndarray, t_bus: np.ndarray, base_mva: float,
                     mode: str | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-end factors ``k`` with ``loading_end = k_end * |I_end| (* |V_end| in power mode)``.

    ``mode`` overrides the net's ``trafo_loading`` (``"current"`` gives the current in % of rating).
    """
    k = np.zeros((len(indices), 2))
    power_mode = (mode or net._options.get("trafo_loading", "current")) == "power"
    is_line = elements == "line"
    if is_line.any():
        line = net.line.loc[indices[is_line]]
        i_max_ka = line.max_i_ka.values * line.df.values * line.parallel.values
        for end, bus in ((0, f_bus), (1, t_bus)):
            i_base_ka = base_mva / (SQRT3 * base_kv[bus[is_line]])
            k[is_line, end] = i_base_ka / i_max_ka * 100.0
    is_trafo = elements == "trafo"
    if is_trafo.any():
        trafo = net.trafo.loc[indices[is_trafo]]
        scale = 100.0 / (trafo.sn_mva.values * trafo.parallel.values * trafo.df.values)
        for end, bus, vn_col in ((0, f_bus, "vn_hv_kv"), (1, t_bus, "vn_lv_kv")):
            if power_mode:
                k[is_trafo, end] = base_mva * scale
            else:
                i_base_ka = base_mva / (SQRT3 * base_kv[bus[is_trafo]])
                k[is_trafo, end] = i_base_ka * trafo[vn_col].values * SQRT3 * scale
    return k, is_trafo, power_mode


def sensitivities_from_net(
    net: Any,
    flex_buses: Sequence[int],
    *,
    monitored_buses: Sequence[int] | None = None,
    branches: tuple[Sequence[str], Sequence[int]] | None = None,
    dq_dp: Sequence[float] | None = None,
) -> Sensitivities:
    """Compute VTDF and LTDF at the converged power flow stored in ``net``.

    Parameters
    ----------
    net
        pandapower net on which ``pandapower.runpp`` (AC, Newton-Raphson) has just converged; its
        internal matrices (``net._ppc["internal"]``) are used, nothing is re-solved.
    flex_buses
        pandapower indices of the flexible buses (must be PQ buses).
    monitored_buses, branches
        Rows; default :func:`monitored_elements_of_net`.
    dq_dp
        Reactive injection change per active injection change at each flexible bus (default 0:
        Q held at its value, as in paper A).

    Returns
    -------
    Sensitivities
        ``vtdf_pu_per_mw`` and ``ltdf_percent_per_mw`` per MW of injection at each flexible bus.
    """
    t0 = time.perf_counter()
    model = flow_model_of_net(net, flex_buses, monitored_buses=monitored_buses, branches=branches)
    sens, _lu = model.sensitivities_at(model.v_solved, dq_dp=dq_dp)
    return dataclasses.replace(sens, runtime_s=time.perf_counter() - t0)


_THREADS: Any = None


#: Values per block of the multi-right-hand-side solve (2 MB: reused from the heap, and cache-friendlier than larger blocks).
_SOLVE_BLOCK_VALUES = 1 << 18

#: Rows per block of a row-wise dense update (a few MB of temporaries, reused).
_ROW_BLOCK_VALUES = 1 << 19


def _weighted_sum(a: np.ndarray, x: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``a[:, None] * x + b[:, None] * y`` with one fresh array (the result) instead of three."""
    out = np.multiply(a[:, None], x)
    rows = max(1, _ROW_BLOCK_VALUES // max(x.shape[1], 1))
    for start in range(0, x.shape[0], rows):
        block = slice(start, start + rows)
        out[block] += b[block, None] * y[block]
    return out


def _one_blas_thread() -> Any:
    """A context with one BLAS thread (a cached ThreadpoolController: building one costs ms).

    With 2 OpenBLAS threads on a loaded 2-core machine the multi-right-hand-side solve was
    measured 6-30x slower than with one (issue 12).
    """
    global _THREADS
    if _THREADS is None:
        from threadpoolctl import ThreadpoolController

        _THREADS = ThreadpoolController()
    return _THREADS.limit(limits=1, user_api="blas")


def flow_model_of_net(net: Any, flex_buses: Sequence[int], *, monitored_buses: Sequence[int] | None = None,
                      branches: tuple[Sequence[str], Sequence[int]] | None = None) -> "FlowModel":
    """Return the :class:`FlowModel` of a net on which ``pandapower.runpp`` has just converged.

    Raises
    ------
    PowerFlowError
        No converged AC power flow on the net.
    InputError
        DC power flow, voltage-dependent loads, no or non-PQ flexible buses, unknown branches.
    """
    from pandapower.pypower.idx_brch import F_BUS, T_BUS
    from pandapower.pypower.idx_bus import BASE_KV

    if not getattr(net, "converged", False) or "internal" not in getattr(net, "_ppc", {}):
        raise PowerFlowError("sensitivities need a converged AC power flow on the net (run pandapower.runpp first)")
    if not net._options.get("ac", True):
        raise InputError("sensitivities need an AC power flow, not DC")
    load = net.load[net.load.in_service]
    for col in ("const_z_percent", "const_i_percent", "const_z_p_percent", "const_i_p_percent", "const_z_q_percent",
                "const_i_q_percent"):
        if col in load and np.any(np.abs(load[col].fillna(0.0).values) > 0):
            raise InputError("voltage-dependent loads (const_z/const_i) are not supported by the sensitivities")
    flex_buses = np.asarray(flex_buses, dtype=np.int64)
    if flex_buses.size == 0:
        raise InputError("no flexible buses given")
    if monitored_buses is None or branches is None:
        mb, be, bi = monitored_elements_of_net(net)
        monitored_buses = mb if monitored_buses is None else monitored_buses
        branches = (be, bi) if branches is None else branches
    monitored_buses = np.asarray(monitored_buses, dtype=np.int64)
    elements = np.asarray(tuple(branches[0]), dtype=object)
    indices = np.asarray(branches[1], dtype=np.int64)
    if np.any((elements != "line") & (elements != "trafo")):
        raise InputError("monitored branches must be lines or trafos")

    internal = net._ppc["internal"]
    base_mva = float(internal["baseMVA"])
    lookup = np.asarray(net._pd2ppc_lookups["bus"])
    rows_br = np.empty(len(indices), dtype=np.int64)
    for element in ("line", "trafo"):
        mask = elements == element
        if mask.any():
            rows_br[mask] = _branch_rows(net, element, indices[mask])
    branch = internal["branch"]
    f_bus = branch[rows_br, F_BUS].real.astype(np.int64)
    t_bus = branch[rows_br, T_BUS].real.astype(np.int64)
    base_kv = internal["bus"][:, BASE_KV].real
    k, _is_trafo, power_mode = _loading_factors(net, elements, indices, base_kv, f_bus, t_bus, base_mva)
    k_cur = k if not power_mode else _loading_factors(net, elements, indices, base_kv, f_bus, t_bus, base_mva,
                                                      mode="current")[0]
    model = FlowModel(
        ybus=sp.csr_matrix(internal["Ybus"]),
        yf=sp.csr_matrix(internal["Yf"])[rows_br],
        yt=sp.csr_matrix(internal["Yt"])[rows_br],
        sbus_pu=np.asarray(internal["Sbus"], dtype=complex).copy(),
        v_solved=np.asarray(internal["V"], dtype=complex).copy(),
        base_mva=base_mva,
        pv=np.asarray(internal["pv"], dtype=np.int64),
        pq=np.asarray(internal["pq"], dtype=np.int64),
        bus_lookup=lookup,
        flex_buses=flex_buses,
        ppci_flex=lookup[flex_buses],
        monitored_buses=monitored_buses,
        ppci_monitored=lookup[monitored_buses],
        elements=elements,
        indices=indices,
        f_bus=f_bus,
        t_bus=t_bus,
        k=k,
        k_cur=k_cur,
        power_mode=power_mode,
    )
    if np.any(model.pos_pq[model.ppci_flex] < 0):
        bad = flex_buses[model.pos_pq[model.ppci_flex] < 0][:5].tolist()
        raise InputError(f"flexible buses must be PQ buses (not slack or voltage-controlled): {bad}")
    return model


@dataclass
class FlowModel:
    """pandapower's compiled grid of one time frame, for warm-started power flows and sensitivities.

    Built once from a net on which ``pandapower.runpp`` converged (:func:`flow_model_of_net`);
    the admittances, bus types, monitored rows and rating factors stay fixed while only the
    flexible injections change, so every further operating point is a Newton-Raphson on the
    internal matrices (started from the previous point's voltages, the first iteration on the
    previous point's LU factors, which are those of the Jacobian at that start) instead of a
    new ``runpp`` (whose pandas bookkeeping was 2/3 of its time on Bergwald).

    Parameters
    ----------
    ybus, yf, yt
        Bus admittance matrix and the from/to branch admittance rows of the monitored branches.
    sbus_pu
        Specified complex injections of the solved run (p.u.; PV and PQ buses).
    v_solved
        Complex bus voltages of the solved run (p.u.).
    base_mva, pv, pq
        pandapower's internal base and bus types.
    bus_lookup
        pandapower bus index -> internal bus.
    flex_buses, ppci_flex, monitored_buses, ppci_monitored
        pandapower and internal indices of the flexible and monitored buses.
    elements, indices, f_bus, t_bus
        Monitored branches (table, pandapower index) and their internal end buses.
    k, k_cur, power_mode
        Loading factors per end (see :func:`_loading_factors`), those of the current, and whether
        trafo loadings are by power.
    """

    ybus: sp.csr_matrix
    yf: sp.csr_matrix
    yt: sp.csr_matrix
    sbus_pu: np.ndarray
    v_solved: np.ndarray
    base_mva: float
    pv: np.ndarray
    pq: np.ndarray
    bus_lookup: np.ndarray
    flex_buses: np.ndarray
    ppci_flex: np.ndarray
    monitored_buses: np.ndarray
    ppci_monitored: np.ndarray
    elements: np.ndarray
    indices: np.ndarray
    f_bus: np.ndarray
    t_bus: np.ndarray
    k: np.ndarray
    k_cur: np.ndarray
    power_mode: bool

    def __post_init__(self) -> None:
        n_bus = self.ybus.shape[0]
        self.pvpq = np.r_[self.pv, self.pq]
        self.pos_pvpq = np.full(n_bus, -1, dtype=np.int64)
        self.pos_pvpq[self.pvpq] = np.arange(len(self.pvpq))
        self.pos_pq = np.full(n_bus, -1, dtype=np.int64)
        self.pos_pq[self.pq] = np.arange(len(self.pq))

    def with_flex(self, flex_buses: Sequence[int], sbus_pu: np.ndarray, v_solved: np.ndarray) -> "FlowModel":
        """A copy for other flexible buses and injections (the topology's arrays are shared, read-only).

        Raises
        ------
        InputError
            No flexible buses, or one that is not a PQ bus.
        """
        flex_buses = np.asarray(flex_buses, dtype=np.int64)
        if flex_buses.size == 0:
            raise InputError("no flexible buses given")
        new = copy.copy(self)
        new.flex_buses, new.ppci_flex = flex_buses, self.bus_lookup[flex_buses]
        new.sbus_pu, new.v_solved = np.asarray(sbus_pu, dtype=complex), np.asarray(v_solved, dtype=complex)
        if np.any(new.pos_pq[new.ppci_flex] < 0):
            bad = flex_buses[new.pos_pq[new.ppci_flex] < 0][:5].tolist()
            raise InputError(f"flexible buses must be PQ buses (not slack or voltage-controlled): {bad}")
        return new

    def reordered(self, flex_order: np.ndarray, bus_order: np.ndarray, branch_order: np.ndarray) -> "FlowModel":
        """A copy whose columns and rows come in the given orders (the package's opaque order), so
        that the sensitivities need no permuted copies of their (rows x flexible buses) blocks."""
        new = copy.copy(self)
        new.flex_buses, new.ppci_flex = self.flex_buses[flex_order], self.ppci_flex[flex_order]
        new.monitored_buses, new.ppci_monitored = self.monitored_buses[bus_order], self.ppci_monitored[bus_order]
        for name in ("elements", "indices", "f_bus", "t_bus", "k", "k_cur"):
            setattr(new, name, getattr(self, name)[branch_order])
        new.yf, new.yt = self.yf[branch_order], self.yt[branch_order]
        return new

    def _jacobian_pattern(self) -> None:
        """Where each entry of ``dS/dVa`` and ``dS/dVm`` on Ybus' pattern (plus the diagonal) goes in J.

        The Jacobian's pattern is fixed by the topology, so it is laid out once and every
        Jacobian only computes its values (pandapower's ``dSbus_dV`` plus block slicing built
        four sparse matrices per call).
        """
        n_bus = self.ybus.shape[0]
        pattern = (self.ybus + sp.eye(n_bus, format="csr", dtype=complex)).tocoo()
        rows, cols = pattern.row.astype(np.int64), pattern.col.astype(np.int64)
        y = np.asarray(self.ybus[rows, cols]).ravel()
        n_a = len(self.pvpq)
        ra, rm = self.pos_pvpq[rows], self.pos_pq[rows]
        ca, cm = self.pos_pvpq[cols], self.pos_pq[cols]
        # (entry mask, J row, J column, derivative: 0 dS/dVa, 1 dS/dVm; part: real for P, imag for Q rows)
        blocks = [(ra >= 0) & (ca >= 0), (ra >= 0) & (cm >= 0), (rm >= 0) & (ca >= 0), (rm >= 0) & (cm >= 0)]
        j_rows = np.r_[ra[blocks[0]], ra[blocks[1]], n_a + rm[blocks[2]], n_a + rm[blocks[3]]]
        j_cols = np.r_[ca[blocks[0]], n_a + cm[blocks[1]], ca[blocks[2]], n_a + cm[blocks[3]]]
        self._jac_entries = [np.flatnonzero(b) for b in blocks]
        n_j = n_a + len(self.pq)
        order = sp.csc_matrix((np.arange(1, len(j_rows) + 1, dtype=float), (j_rows, j_cols)), shape=(n_j, n_j))
        order.sort_indices()
        self._jac_perm = order.data.astype(np.int64) - 1
        self._jac_shape = (n_j, n_j)
        self._jac_indices, self._jac_indptr = order.indices.copy(), order.indptr.copy()
        self._pattern = (rows, cols, y, rows == cols)

    def jacobian(self, v: np.ndarray) -> sp.csc_matrix:
        """The polar Newton-Raphson Jacobian at ``v`` (rows/columns ``[Va(pv, pq), Vm(pq)]``).

        Entry-wise on the fixed pattern: ``dS/dVm = diag(V) conj(Y diag(V/|V|)) + diag(conj(I) V/|V|)``
        and ``dS/dVa = j diag(V) conj(diag(I) - Y diag(V))`` with ``I = Y V`` (pandapower's
        ``dSbus_dV``).
        """
        if not hasattr(self, "_jac_perm"):
            self._jacobian_pattern()
        rows, cols, y, diag = self._pattern
        i_bus = self.ybus @ v
        v_norm = v / np.abs(v)
        ds_dvm = v[rows] * np.conj(y * v_norm[cols]) + np.where(diag, np.conj(i_bus[rows]) * v_norm[rows], 0.0)
        ds_dva = 1j * v[rows] * np.conj(np.where(diag, i_bus[rows], 0.0) - y * v[cols])
        e = self._jac_entries
        values = np.r_[ds_dva[e[0]].real, ds_dvm[e[1]].real, ds_dva[e[2]].imag, ds_dvm[e[3]].imag]
        return sp.csc_matrix((values[self._jac_perm], self._jac_indices, self._jac_indptr), shape=self._jac_shape)

    def _lu(self, v: np.ndarray) -> Any:
        try:
            return splu(self.jacobian(v))
        except RuntimeError as exc:
            raise PowerFlowError(f"the power-flow Jacobian is singular at this operating point: {exc}") from exc

    def injection_pu(self, p_mw: np.ndarray, q_mvar: np.ndarray) -> np.ndarray:
        """Complex injection per internal bus (p.u.) of ``p_mw + j q_mvar`` at the flexible buses."""
        s = np.zeros(self.ybus.shape[0], dtype=complex)
        np.add.at(s, self.ppci_flex, (np.asarray(p_mw, float) + 1j * np.asarray(q_mvar, float)) / self.base_mva)
        return s

    def solved_voltages(self, s_extra_pu: np.ndarray, v_start: np.ndarray, *, lu_start: Any = None,
                        tolerance_mva: float = 1e-9, max_iteration: int = 30,
                        where: str = "the operating point") -> tuple[np.ndarray, int]:
        """Newton-Raphson for ``S(V) = sbus_pu + s_extra_pu`` from ``v_start``.

        The same iteration and stopping rule as pandapower's ``newtonpf`` (``max |F| <
        tolerance_mva`` on the p.u. mismatch); ``lu_start`` (the LU of the Jacobian at
        ``v_start``) saves the first factorization.

        Returns
        -------
        v, iterations
        """
        sbus = self.sbus_pu + s_extra_pu
        pvpq, pq, n_a = self.pvpq, self.pq, len(self.pvpq)
        v = np.asarray(v_start, dtype=complex).copy()
        vm, va = np.abs(v), np.angle(v)
        for it in range(max_iteration + 1):
            mis = v * np.conj(self.ybus @ v) - sbus
            f = np.r_[mis[pvpq].real, mis[pq].imag]
            if not np.all(np.isfinite(f)):
                break
            if np.max(np.abs(f), initial=0.0) < tolerance_mva:
                return v, it
            if it == max_iteration:
                break
            lu = lu_start if (it == 0 and lu_start is not None) else self._lu(v)
            dx = -lu.solve(f)
            va[pvpq] += dx[:n_a]
            vm[pq] += dx[n_a:]
            v = vm * np.exp(1j * va)
            vm, va = np.abs(v), np.angle(v)
        raise PowerFlowError(f"the AC power flow did not converge at {where}")

    def sensitivities_at(self, v: np.ndarray, *, dq_dp: Sequence[float] | None = None,
                         lu: Any = None) -> tuple[Sensitivities, Any]:
        """Sensitivities at the solved voltages ``v`` and the LU of the Jacobian there.

        ``lu`` may pass the LU of the Jacobian at exactly ``v`` (saves the factorization).
        """
        t0 = time.perf_counter()
        n_flex = len(self.flex_buses)
        dq = np.zeros(n_flex) if dq_dp is None else np.asarray(dq_dp, dtype=float)
        if dq.shape != self.flex_buses.shape or not np.all(np.isfinite(dq)):
            raise InputError("dq_dp must be finite, one value per flexible bus")
        v = np.asarray(v, dtype=complex)
        pvpq, pq, n_a = self.pvpq, self.pq, len(self.pvpq)
        if lu is None:
            lu = self._lu(v)
        x = self._unit_injection_solutions(lu, dq)
        xm = x[n_a:]

        # voltages: dVm rows of the monitored (PQ) buses; zero at buses held at a fixed voltage
        pos_m = self.pos_pq[self.ppci_monitored]
        vtdf = xm.take(np.maximum(pos_m, 0), axis=0)
        vtdf[pos_m < 0] = 0.0
        vm = np.abs(v[self.ppci_monitored])

        # branch currents at both ends; the chain rule only at the end that is used
        i_f, i_t, use_to, bus, scale, i_loc, sign = self._branch_ends(v)
        y_end = sp.diags(np.where(use_to, 0.0, 1.0)) @ self.yf + sp.diags(np.where(use_to, 1.0, 0.0)) @ self.yt
        # I_loc = o k e^{-j theta} I; dI_loc = o k e^{-j theta} (dI - j I dtheta), with
        # dI = Y diag(V) j dtheta + Y diag(V/|V|) dVm (pandapower's dIbr_dV), so both parts are
        # sparse matrices applied to the solve's angle and magnitude rows
        y_end = sp.diags(scale) @ y_end.tocsr()
        d_va = (y_end @ sp.diags(1j * v)).tocsc()
        d_vm = (y_end @ sp.diags(v / np.abs(v))).tocsc()
        rot_col = self.pos_pvpq[bus]
        ok = rot_col >= 0
        rot = sp.csc_matrix((-1j * i_loc[ok], (np.flatnonzero(ok), rot_col[ok])), shape=(len(bus), n_a))
        m_x = sp.hstack([d_va[:, pvpq] + rot, d_vm[:, pq]], format="csr")  # columns as the rows of x
        # two products, not one of the stacked parts: each block then owns its memory and the
        # package keeps it without a copy
        itdf_re, itdf_im = m_x.real @ x, m_x.imag @ x

        if self.power_mode:
            loading, dloading = self._loading_both_ends(v, x, i_f, i_t)
            ltdf = sign[:, None] * dloading
        else:
            # current loadings: |I_loc| is the larger end's loading and d|I_loc| = Re(conj(I_loc) dI_loc) / |I_loc|
            loading = np.abs(i_loc)
            with np.errstate(invalid="ignore", divide="ignore"):
                inv = np.where(loading > 0, 1.0 / np.where(loading > 0, loading, 1.0), 0.0)
            ltdf = _weighted_sum(sign * i_loc.real * inv, itdf_re, sign * i_loc.imag * inv, itdf_im)
        runtime = time.perf_counter() - t0
        logger.info("sensitivities: %d flexible buses x (%d voltages, %d branches) in %.3f s",
                    n_flex, len(self.monitored_buses), len(self.indices), runtime)
        return Sensitivities(
            flex_buses=self.flex_buses,
            monitored_buses=self.monitored_buses,
            branch_elements=tuple(str(e) for e in self.elements),
            branch_indices=self.indices,
            vm_pu=vm,
            loading_percent=sign * loading,
            vtdf_pu_per_mw=vtdf,
            ltdf_percent_per_mw=ltdf,
            runtime_s=runtime,
            i_re_percent=i_loc.real.copy(),
            i_im_percent=i_loc.imag.copy(),
            itdf_re_percent_per_mw=itdf_re,
            itdf_im_percent_per_mw=itdf_im,
        ), lu

    def _branch_ends(self, v: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per monitored branch at voltages ``v``: both ends' currents, the end that sets the
        loading (the larger current loading), its bus, the factor ``o k e^{-j theta}`` that makes
        its current ``I_loc`` (in % of the rating, in the end's voltage angle), ``I_loc``, and the
        sign of the active power towards the to end at that end (``signed_loading_percent``'s)."""
        i_f, i_t = self.yf @ v, self.yt @ v
        use_to = self.k_cur[:, 1] * np.abs(i_t) > self.k_cur[:, 0] * np.abs(i_f)
        bus = np.where(use_to, self.t_bus, self.f_bus)
        scale = np.where(use_to, -1.0, 1.0) * np.where(use_to, self.k_cur[:, 1], self.k_cur[:, 0]) \
            * np.exp(-1j * np.angle(v[bus]))
        i_loc = scale * np.where(use_to, i_t, i_f)
        p_end_mw = np.where(use_to, -(v[self.t_bus] * np.conj(i_t)).real, (v[self.f_bus] * np.conj(i_f)).real) * self.base_mva
        return i_f, i_t, use_to, bus, scale, i_loc, np.where(p_end_mw < 0.0, -1.0, 1.0)

    def state_at(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voltage magnitudes of the monitored buses and signed loadings (%) of the monitored
        branches at the solved voltages ``v``: what :meth:`sensitivities_at` reports as ``vm_pu``
        and ``loading_percent``, without the sensitivities (an AC check needs only the state)."""
        v = np.asarray(v, dtype=complex)
        if self.power_mode:  # loadings by power need the chain rule's pieces: take them from there
            sens, _ = self.sensitivities_at(v)
            return np.asarray(sens.vm_pu), np.asarray(sens.loading_percent)
        *_, i_loc, sign = self._branch_ends(v)
        return np.abs(v[self.ppci_monitored]), sign * np.abs(i_loc)

    def _unit_injection_solutions(self, lu: Any, dq: np.ndarray) -> np.ndarray:
        """``J^-1`` applied to a unit P (and the Q ``dq`` that follows it) per MW at each flexible
        bus: rows as the Jacobian's (angles of ``pvpq``, then magnitudes of ``pq``), one column per
        flexible bus, in C order (every product after it reads rows).

        Solved in blocks of columns whose right-hand side and SuperLU result stay below glibc's
        mmap threshold, so their memory is reused from block to block: on the whole grid one
        8,000 x 1,495 right-hand side, its solution and a C-order copy were three fresh 96 MB
        arrays per point, and the page faults of fresh memory cost more than the solve.
        """
        n_a, n_flex = len(self.pvpq), len(self.flex_buses)
        n_rows = n_a + len(self.pq)
        p_rows, q_rows = self.pos_pvpq[self.ppci_flex], n_a + self.pos_pq[self.ppci_flex]
        x = np.empty((n_rows, n_flex))
        width = max(1, _SOLVE_BLOCK_VALUES // max(n_rows, 1))
        with _one_blas_thread():
            for start in range(0, n_flex, width):
                cols = np.arange(start, min(start + width, n_flex))
                rhs = np.zeros((n_rows, len(cols)), order="F")
                rhs[p_rows[cols], cols - start] = 1.0 / self.base_mva
                rhs[q_rows[cols], cols - start] += dq[cols] / self.base_mva
                x[:, start:start + len(cols)] = lu.solve(rhs)  # SuperLU works on Fortran order
        return x

    def _loading_both_ends(self, v: np.ndarray, x: np.ndarray, i_f: np.ndarray,
                           i_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loadings and their derivatives with trafos by power: the end is chosen on ``|V||I|``."""
        from pandapower.pypower.dIbr_dV import dIbr_dV

        n_bus, n_flex, n_a = len(v), x.shape[1], len(self.pvpq)
        dva = np.zeros((n_bus, n_flex))
        dvm = np.zeros((n_bus, n_flex))
        dva[self.pvpq] = x[:n_a]
        dvm[self.pq] = x[n_a:]
        dif_dva, dif_dvm, dit_dva, dit_dvm, _i_f, _i_t = dIbr_dV(None, self.yf, self.yt, v)
        trafo_rows = self.elements == "trafo"
        loading_ends = np.empty((len(self.indices), 2))
        dloading_ends = []
        for end, (d_va, d_vm, cur, bus) in enumerate(((dif_dva, dif_dvm, i_f, self.f_bus),
                                                      (dit_dva, dit_dvm, i_t, self.t_bus))):
            d_i = sp.csr_matrix(d_va) @ dva + sp.csr_matrix(d_vm) @ dvm
            mag = np.abs(cur)
            with np.errstate(invalid="ignore", divide="ignore"):
                unit = np.where(mag > 0, np.conj(cur) / np.where(mag > 0, mag, 1.0), 0.0)
            d_mag = (unit[:, None] * d_i).real
            vm_end = np.abs(v[bus])
            d_mag[trafo_rows] = vm_end[trafo_rows, None] * d_mag[trafo_rows] + mag[trafo_rows, None] * dvm[bus[trafo_rows]]
            mag = np.where(trafo_rows, mag * vm_end, mag)
            loading_ends[:, end] = self.k[:, end] * mag
            dloading_ends.append(self.k[:, end][:, None] * d_mag)
        use_to = loading_ends[:, 1] > loading_ends[:, 0]
        loading = np.where(use_to, loading_ends[:, 1], loading_ends[:, 0])
        return loading, np.where(use_to[:, None], dloading_ends[1], dloading_ends[0])
