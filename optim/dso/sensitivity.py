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
Loadings are *signed* by the active-power flow direction at the from (HV) end, so ``-100 %`` is
the limit of reversed flow; the sign is held fixed in the derivative.

Voltage-dependent loads (``const_z_percent``/``const_i_percent``) are rejected: their Jacobian
terms are not modelled here.
"""

from __future__ import annotations

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

__all__ = ["Sensitivities", "sensitivities_from_net", "monitored_elements_of_net", "signed_loading_percent"]


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
        Signed loadings of the monitored branches at the point (sign of the from/HV-end P flow).
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
    """Return pandapower's ``loading_percent`` signed by the from/HV-end active-power flow.

    Parameters
    ----------
    net
        pandapower net with power-flow results.
    branch_elements, branch_indices
        Element table and index of each branch (``"line"`` or ``"trafo"``).

    Returns
    -------
    numpy.ndarray
        Signed loadings in %, ``+`` where active power flows from the from (HV) bus.
    """
    out = np.empty(len(branch_indices))
    elements = np.asarray(branch_elements)
    for element, p_col in (("line", "p_from_mw"), ("trafo", "p_hv_mw")):
        mask = elements == element
        if not mask.any():
            continue
        res = net[f"res_{element}"].loc[branch_indices[mask]]
        sign = np.where(res[p_col].values < 0.0, -1.0, 1.0)
        out[mask] = sign * res.loading_percent.values
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
    from pandapower.pypower.dIbr_dV import dIbr_dV
    from pandapower.pypower.dSbus_dV import dSbus_dV
    from pandapower.pypower.idx_brch import F_BUS, PF, T_BUS
    from pandapower.pypower.idx_bus import BASE_KV

    t0 = time.perf_counter()
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
    dq = np.zeros(len(flex_buses)) if dq_dp is None else np.asarray(dq_dp, dtype=float)
    if dq.shape != flex_buses.shape or not np.all(np.isfinite(dq)):
        raise InputError("dq_dp must be finite, one value per flexible bus")

    internal = net._ppc["internal"]
    ybus = sp.csr_matrix(internal["Ybus"])
    yf = sp.csr_matrix(internal["Yf"])
    yt = sp.csr_matrix(internal["Yt"])
    v = np.asarray(internal["V"], dtype=complex)
    base_mva = float(internal["baseMVA"])
    pv = np.asarray(internal["pv"], dtype=np.int64)
    pq = np.asarray(internal["pq"], dtype=np.int64)
    pvpq = np.r_[pv, pq]
    n_bus = len(v)
    lookup = np.asarray(net._pd2ppc_lookups["bus"])

    # --- Jacobian at the solution, one LU ---------------------------------------------------
    ds_dvm, ds_dva = dSbus_dV(ybus, v)
    ds_dvm, ds_dva = sp.csr_matrix(ds_dvm), sp.csr_matrix(ds_dva)
    j11 = ds_dva[pvpq][:, pvpq].real
    j12 = ds_dvm[pvpq][:, pq].real
    j21 = ds_dva[pq][:, pvpq].imag
    j22 = ds_dvm[pq][:, pq].imag
    jac = sp.bmat([[j11, j12], [j21, j22]], format="csc")

    # --- right-hand sides: unit P (and optional Q) injection per MW at each flexible bus -------
    ppci_flex = lookup[flex_buses]
    pos_pvpq = np.full(n_bus, -1, dtype=np.int64)
    pos_pvpq[pvpq] = np.arange(len(pvpq))
    pos_pq = np.full(n_bus, -1, dtype=np.int64)
    pos_pq[pq] = np.arange(len(pq))
    if np.any(pos_pq[ppci_flex] < 0):
        bad = flex_buses[pos_pq[ppci_flex] < 0][:5].tolist()
        raise InputError(f"flexible buses must be PQ buses (not slack or voltage-controlled): {bad}")
    n_flex = len(flex_buses)
    cols = np.arange(n_flex)
    rows = np.r_[pos_pvpq[ppci_flex], len(pvpq) + pos_pq[ppci_flex]]
    vals = np.r_[np.ones(n_flex), dq] / base_mva
    rhs = sp.csc_matrix((vals, (rows, np.r_[cols, cols])), shape=(jac.shape[0], n_flex)).toarray()
    try:
        lu = splu(jac)
    except RuntimeError as exc:
        raise PowerFlowError(f"the power-flow Jacobian is singular at this operating point: {exc}") from exc
    x = lu.solve(rhs)

    dva = np.zeros((n_bus, n_flex))
    dvm = np.zeros((n_bus, n_flex))
    dva[pvpq] = x[: len(pvpq)]
    dvm[pq] = x[len(pvpq):]

    # --- voltages --------------------------------------------------------------------------
    ppci_mon = lookup[monitored_buses]
    vtdf = dvm[ppci_mon]
    vm = np.abs(v[ppci_mon])

    # --- branch loadings by the chain rule ---------------------------------------------------
    rows_br = np.empty(len(indices), dtype=np.int64)
    for element in ("line", "trafo"):
        mask = elements == element
        if mask.any():
            rows_br[mask] = _branch_rows(net, element, indices[mask])
    if np.any((elements != "line") & (elements != "trafo")):
        raise InputError("monitored branches must be lines or trafos")
    branch = internal["branch"]
    f_bus = branch[rows_br, F_BUS].real.astype(np.int64)
    t_bus = branch[rows_br, T_BUS].real.astype(np.int64)
    base_kv = internal["bus"][:, BASE_KV].real
    k, _is_trafo, power_mode = _loading_factors(net, elements, indices, base_kv, f_bus, t_bus, base_mva)

    yf_m, yt_m = yf[rows_br], yt[rows_br]
    dif_dva, dif_dvm, dit_dva, dit_dvm, i_f, i_t = dIbr_dV(None, yf_m, yt_m, v)
    loading_ends = np.empty((len(indices), 2))
    dloading_ends = []
    for end, (d_va, d_vm, cur, bus) in enumerate(((dif_dva, dif_dvm, i_f, f_bus), (dit_dva, dit_dvm, i_t, t_bus))):
        d_i = sp.csr_matrix(d_va) @ dva + sp.csr_matrix(d_vm) @ dvm  # complex (n_l, n_flex)
        mag = np.abs(cur)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(mag > 0, np.conj(cur) / np.where(mag > 0, mag, 1.0), 0.0)
        d_mag = (unit[:, None] * d_i).real
        if power_mode:
            vm_end = np.abs(v[bus])
            trafo_rows = elements == "trafo"
            d_mag[trafo_rows] = vm_end[trafo_rows, None] * d_mag[trafo_rows] + mag[trafo_rows, None] * dvm[bus[trafo_rows]]
            mag = np.where(trafo_rows, mag * vm_end, mag)
        loading_ends[:, end] = k[:, end] * mag
        dloading_ends.append(k[:, end][:, None] * d_mag)
    use_to = loading_ends[:, 1] > loading_ends[:, 0]
    loading = np.where(use_to, loading_ends[:, 1], loading_ends[:, 0])
    dloading = np.where(use_to[:, None], dloading_ends[1], dloading_ends[0])
    pf = branch[rows_br, PF].real  # active power at the from end (MW)
    sign = np.where(pf < 0.0, -1.0, 1.0)
    ltdf = sign[:, None] * dloading

    # --- complex branch current (real/imag) in the frame of its end bus' voltage ----------------
    # I_loc = o I e^{-j theta_end} (o = +1 at the from end, -1 at the to end, so both point from ->
    # to): Re(I_loc) |V| is the active power in the flow direction, |I_loc| = |I|, and the
    # rotation makes the derivative smooth where P changes sign while Q flows:
    # dI_loc = o e^{-j theta} (dI - j I dtheta).
    k_cur = k if not power_mode else _loading_factors(net, elements, indices, base_kv, f_bus, t_bus, base_mva,
                                                      mode="current")[0]
    cur_ends = np.c_[k_cur[:, 0] * np.abs(i_f), k_cur[:, 1] * np.abs(i_t)]
    use_to_cur = cur_ends[:, 1] > cur_ends[:, 0]
    i_loc = np.empty(len(indices), dtype=complex)
    di_loc = np.empty((len(indices), n_flex), dtype=complex)
    for end, (d_va, d_vm, cur, bus, orient) in enumerate(((dif_dva, dif_dvm, i_f, f_bus, 1.0),
                                                          (dit_dva, dit_dvm, i_t, t_bus, -1.0))):
        rows_end = use_to_cur if end == 1 else ~use_to_cur
        if not rows_end.any():
            continue
        r = np.flatnonzero(rows_end)
        d_i = sp.csr_matrix(d_va)[r] @ dva + sp.csr_matrix(d_vm)[r] @ dvm
        rot = orient * np.exp(-1j * np.angle(v[bus[r]]))
        scale = k_cur[r, end]
        i_loc[r] = scale * rot * cur[r]
        di_loc[r] = (scale * rot)[:, None] * (d_i - 1j * cur[r, None] * dva[bus[r]])
    runtime = time.perf_counter() - t0
    logger.info("sensitivities: %d flexible buses x (%d voltages, %d branches) in %.3f s",
                n_flex, len(monitored_buses), len(indices), runtime)
    return Sensitivities(
        flex_buses=flex_buses,
        monitored_buses=monitored_buses,
        branch_elements=tuple(str(e) for e in elements),
        branch_indices=indices,
        vm_pu=vm,
        loading_percent=sign * loading,
        vtdf_pu_per_mw=vtdf,
        ltdf_percent_per_mw=ltdf,
        runtime_s=runtime,
        i_re_percent=i_loc.real.copy(),
        i_im_percent=i_loc.imag.copy(),
        itdf_re_percent_per_mw=di_loc.real.copy(),
        itdf_im_percent_per_mw=di_loc.imag.copy(),
    )
