"""AC-OPFs of paper B with casadi and its bundled IPOPT: the TSO's OPF with DS surrogates (eq. 2/4)
and the standard AC-OPF of the integrated system (eq. 1), plus the full-system feasibility check.

Both are polar-form NLPs built once; the quadratic cost coefficients are NLP parameters, so a new
cost set is a re-solve without rebuilding. Units inside the NLP are per unit (100 MVA); costs are
in EUR/h with powers in MW.

Surrogate OPF: the TS buses only; each DS is a P/Q injection at its PCCs given by the quadratic
regressions of ``x_d = (V_PCC, P_DG, Q_DG)`` (PCC voltage magnitudes are TS variables), subject to
the polytope ``A x_d <= b``, the DG bounding boxes and PQ charts ``C [P; Q] <= d``. Optionally the
voltage-angle difference of the PCCs of one DS is bounded (``OpfConfig.max_pcc_angle_diff_deg``),
because the DS models were trained with equal PCC angles (see ``optim.mlopf.systems``).

Security margins of the surrogate OPF (``OpfConfig``): generator Q limits and TS line ratings are
tightened by ``ts_margin_pu`` (1e-3 p.u.) against the loop flows through two-PCC DSs, and every
polytope facet is moved inwards by ``polytope_margin`` (0.01 in the scaled input) against the
polytope's boundary error. Both are TSO-side choices; they cost little (see the README figures).

Full OPF: every bus of the integrated network, DS voltage limits and DS line currents explicit.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from optim._errors import InputError
from optim.mlopf.polytope import Polytope
from optim.mlopf.regression import QuadraticModel
from optim.mlopf.systems import BASE_MVA, IntegratedSystem, MergedNetwork, Network, merged_network_from_system

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpfConfig:
    """Options of both OPFs.

    Attributes
    ----------
    max_pcc_angle_diff_deg : bound on the angle difference of the PCCs of one DS (surrogate OPF
        only; None: free).
    ts_margin_pu : TSO security margin of the surrogate OPF: generator Q limits and TS line
        ratings are tightened by this much (per unit), which absorbs the small PCC-flow error of the
        surrogates (loop flows through two-PCC DSs, regression error).
    polytope_margin : every facet of every polytope is moved inwards by this distance, measured
        in the input scaled to [0, 1] by the sampling box (``A x <= b - margin * ||W_k||``).
    ipopt_tol : IPOPT convergence tolerance.
    max_iter : IPOPT iteration limit.
    """

    max_pcc_angle_diff_deg: float | None = None
    ts_margin_pu: float = 1e-3
    polytope_margin: float = 0.01
    ipopt_tol: float = 1e-8
    max_iter: int = 500

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OpfConfig":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class DsSurrogate:
    """What the TSO receives from one DSO: the polytope and the PCC-flow regression."""

    ds_name: str
    polytope: Polytope
    regression: QuadraticModel

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"ds_name": self.ds_name, "polytope": self.polytope.to_dict(), "regression": self.regression.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DsSurrogate":
        """Inverse of :meth:`to_dict`."""
        return cls(data["ds_name"], Polytope.from_dict(data["polytope"]), QuadraticModel.from_dict(data["regression"]))


@dataclass(frozen=True)
class CostSet:
    """Quadratic costs ``c2 P^2 + c1 P`` (P in MW, EUR/h) of the TS generators and of all DGs (DS order)."""

    ts_c1_eur_per_mwh: np.ndarray
    ts_c2_eur_per_mw2h: np.ndarray
    dg_c1_eur_per_mwh: np.ndarray
    dg_c2_eur_per_mw2h: np.ndarray

    def vector(self) -> np.ndarray:
        """Return the NLP parameter vector ``[ts_c1, ts_c2, dg_c1, dg_c2]``."""
        return np.concatenate([self.ts_c1_eur_per_mwh, self.ts_c2_eur_per_mw2h, self.dg_c1_eur_per_mwh, self.dg_c2_eur_per_mw2h])

    def cost_eur_per_h(self, pg_mw: np.ndarray, p_dg_mw: np.ndarray) -> float:
        """Return the total cost of a dispatch."""
        return float(np.sum(self.ts_c2_eur_per_mw2h * pg_mw**2 + self.ts_c1_eur_per_mwh * pg_mw)
                     + np.sum(self.dg_c2_eur_per_mw2h * p_dg_mw**2 + self.dg_c1_eur_per_mwh * p_dg_mw))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {k: v.tolist() for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CostSet":
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: np.asarray(v, float) for k, v in data.items()})


def base_cost_set(system: IntegratedSystem, *, dg_c1_eur_per_mwh: float = 2.0, dg_c2_eur_per_mw2h: float = 0.02) -> CostSet:
    """Return case30's own generator costs with one uniform DG cost."""
    n_dg = sum(d.n_dg for d in system.ds)
    return CostSet(np.array([g.c1_eur_per_mwh for g in system.generators]), np.array([g.c2_eur_per_mw2h for g in system.generators]),
                   np.full(n_dg, dg_c1_eur_per_mwh), np.full(n_dg, dg_c2_eur_per_mw2h))


def cost_sets_from_seed(system: IntegratedSystem, n_sets: int, *, random_state: int = 0) -> list[CostSet]:
    """Return ``n_sets`` random cost sets: every c1 ~ U(1, 4) EUR/MWh and c2 ~ U(0, 0.07) EUR/MW^2h."""
    if int(n_sets) <= 0:
        raise InputError(f"number of cost sets must be positive, got {n_sets}")
    rng = np.random.default_rng(random_state)
    ng = len(system.generators)
    n_dg = sum(d.n_dg for d in system.ds)
    out = [CostSet(rng.uniform(1.0, 4.0, ng), rng.uniform(0.0, 0.07, ng), rng.uniform(1.0, 4.0, n_dg), rng.uniform(0.0, 0.07, n_dg))
           for _ in range(int(n_sets))]
    logger.info("%d random cost sets (seed %d)", len(out), random_state)
    return out


class OpfStatus(enum.Enum):
    """Outcome of an OPF solve."""

    OPTIMAL = "optimal"
    FAILED = "failed"


@dataclass(frozen=True)
class OpfResult:
    """Solution of one OPF (TS quantities for the TS buses; ``vm_pu``/``va_deg`` of the NLP's buses)."""

    status: OpfStatus
    cost_eur_per_h: float
    solve_time_s: float
    pg_mw: np.ndarray
    qg_mvar: np.ndarray
    vm_pu: np.ndarray
    va_deg: np.ndarray
    p_dg_mw: np.ndarray
    q_dg_mvar: np.ndarray
    solver_status: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OpfResult":
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        d["status"] = OpfStatus(d["status"])
        for k in ("pg_mw", "qg_mvar", "vm_pu", "va_deg", "p_dg_mw", "q_dg_mvar"):
            d[k] = np.asarray(d[k], float)
        return cls(**d)


def _branch_flows(ca: Any, net: Network, vm: Any, va: Any, idx: np.ndarray) -> tuple[Any, Any, Any, Any]:
    """Return symbolic ``(pf, qf, pt, qt)`` of the branches ``idx``."""
    yff, yft, ytf, ytt = (y[idx] for y in net.branch_admittances)
    f = net.from_bus[idx].tolist()
    t = net.to_bus[idx].tolist()
    vf, vt = vm[f], vm[t]
    dth = va[f] - va[t]
    c, s = ca.cos(dth), ca.sin(dth)
    vv = vf * vt
    pf = yff.real * vf**2 + vv * (yft.real * c + yft.imag * s)
    qf = -yff.imag * vf**2 + vv * (yft.real * s - yft.imag * c)
    pt = ytt.real * vt**2 + vv * (ytf.real * c - ytf.imag * s)
    qt = -ytt.imag * vt**2 + vv * (-ytf.real * s - ytf.imag * c)
    return pf, qf, pt, qt


class _Opf:
    """An AC-OPF NLP built once; :meth:`solve` re-solves it for a cost set."""

    def __init__(self, system: IntegratedSystem, network: Network, *, dg_buses: Sequence[int] | None,
                 surrogates: Sequence[DsSurrogate] | None, config: OpfConfig, name: str) -> None:
        import casadi as ca

        self.system, self.network, self.config, self.name = system, network, config, name
        net = network
        nb, ng = net.n_bus, len(system.generators)
        charts = [c for d in system.ds for c in d.charts]
        ndg = len(charts)
        self.n_dg = ndg
        va, vm = ca.SX.sym("va", nb), ca.SX.sym("vm", nb)
        pg, qg = ca.SX.sym("pg", ng), ca.SX.sym("qg", ng)
        pd_, qd_ = ca.SX.sym("pdg", ndg), ca.SX.sym("qdg", ndg)
        par = ca.SX.sym("c", 2 * ng + 2 * ndg)
        x = ca.vertcat(va, vm, pg, qg, pd_, qd_)
        lbx, ubx, x0 = [], [], []
        # bounds: angles (reference fixed), voltages, generators, DG bounding boxes
        va_lo = np.full(nb, -np.pi / 2)
        va_hi = np.full(nb, np.pi / 2)
        va_lo[system.slack_bus] = va_hi[system.slack_bus] = 0.0
        box = np.array([c.bounds for c in charts]) / BASE_MVA
        lbx = np.concatenate([va_lo, net.vmin_pu, [g.pmin_pu for g in system.generators], [g.qmin_pu for g in system.generators], box[:, 0], box[:, 2]])
        ubx = np.concatenate([va_hi, net.vmax_pu, [g.pmax_pu for g in system.generators], [g.qmax_pu for g in system.generators], box[:, 1], box[:, 3]])
        if surrogates is not None and config.ts_margin_pu > 0:
            m = config.ts_margin_pu
            gsl = slice(2 * nb + ng, 2 * nb + 2 * ng)  # reactive power limits only
            lo_g, hi_g = lbx[gsl].copy(), ubx[gsl].copy()
            mid = 0.5 * (lo_g + hi_g)
            lbx[gsl] = np.minimum(lo_g + m, mid)
            ubx[gsl] = np.maximum(hi_g - m, mid)
        x0 = np.concatenate([np.zeros(nb), np.ones(nb), 0.5 * (lbx[2 * nb: 2 * nb + ng] + ubx[2 * nb: 2 * nb + ng]), np.zeros(ng),
                             0.5 * (box[:, 0] + box[:, 1]), 0.5 * (box[:, 2] + box[:, 3])])
        # bus injections from the network
        allbr = np.arange(net.n_branch)
        pf, qf, pt, qt = _branch_flows(ca, net, vm, va, allbr)
        cf = ca.DM(ca.Sparsity.triplet(nb, net.n_branch, net.from_bus.tolist(), allbr.tolist()), 1.0)
        ct = ca.DM(ca.Sparsity.triplet(nb, net.n_branch, net.to_bus.tolist(), allbr.tolist()), 1.0)
        p_inj = ca.mtimes(cf, pf) + ca.mtimes(ct, pt) + net.gs_pu * vm**2
        q_inj = ca.mtimes(cf, qf) + ca.mtimes(ct, qt) - net.bs_pu * vm**2
        p_bal = p_inj + net.pd_pu
        q_bal = q_inj + net.qd_pu
        gbus = [g.bus for g in system.generators]
        cg = ca.DM(ca.Sparsity.triplet(nb, ng, gbus, list(range(ng))), 1.0)
        p_bal = p_bal - ca.mtimes(cg, pg)
        q_bal = q_bal - ca.mtimes(cg, qg)
        g_list, lbg, ubg = [p_bal, q_bal], [np.zeros(nb), np.zeros(nb)], [np.zeros(nb), np.zeros(nb)]
        if dg_buses is not None:
            cd = ca.DM(ca.Sparsity.triplet(nb, ndg, list(dg_buses), list(range(ndg))), 1.0)
            g_list[0] = g_list[0] - ca.mtimes(cd, pd_)
            g_list[1] = g_list[1] - ca.mtimes(cd, qd_)
        # branch limits: apparent power (TS lines) and current (DS lines, as |S|^2 <= I^2 |V|^2)
        for rate, kind in ((net.rate_s_pu, "s"), (net.rate_i_pu, "i")):
            idx = np.flatnonzero(rate > 0)
            if idx.size == 0:
                continue
            bf = _branch_flows(ca, net, vm, va, idx)
            margin = config.ts_margin_pu if (surrogates is not None and kind == "s") else 0.0
            r2 = np.maximum(rate[idx] - margin, 0.5 * rate[idx]) ** 2
            if kind == "s":
                g_list += [bf[0] ** 2 + bf[1] ** 2 - r2, bf[2] ** 2 + bf[3] ** 2 - r2]
            else:
                g_list += [bf[0] ** 2 + bf[1] ** 2 - r2 * vm[net.from_bus[idx].tolist()] ** 2,
                           bf[2] ** 2 + bf[3] ** 2 - r2 * vm[net.to_bus[idx].tolist()] ** 2]
            lbg += [np.full(idx.size, -np.inf)] * 2
            ubg += [np.zeros(idx.size)] * 2
        # PQ charts as linear inequalities (MW, MVAr)
        for k, ch in enumerate(charts):
            g_list.append(ca.mtimes(ca.DM(ch.c), ca.vertcat(pd_[k], qd_[k]) * BASE_MVA))
            lbg.append(np.full(ch.d.size, -np.inf))
            ubg.append(ch.d)
        # surrogates: PCC injections, polytope, PCC angle bounds
        if surrogates is not None:
            by_name = {s.ds_name: s for s in surrogates}
            off = 0
            inj_p, inj_q = [0] * nb, [0] * nb
            for d in system.ds:
                sur = by_name[d.model_name or d.name]
                pcc = [b - 1 for b in d.pcc_ts_buses_1based]
                xd = ca.vertcat(vm[pcc], pd_[off: off + d.n_dg] * BASE_MVA, qd_[off: off + d.n_dg] * BASE_MVA)
                for k, bus in enumerate(pcc):
                    inj_p[bus] = inj_p[bus] + sur.regression.evaluate(xd, k)
                    inj_q[bus] = inj_q[bus] + sur.regression.evaluate(xd, d.n_pcc + k)
                g_list.append(ca.mtimes(ca.DM(sur.polytope.a), xd))
                lbg.append(np.full(sur.polytope.n_facets, -np.inf))
                ubg.append(sur.polytope.b - config.polytope_margin * np.linalg.norm(sur.polytope.w_hidden, axis=1))
                if config.max_pcc_angle_diff_deg is not None and len(pcc) > 1:
                    g_list.append(va[pcc[1]] - va[pcc[0]])
                    lim = np.deg2rad(config.max_pcc_angle_diff_deg)
                    lbg.append(np.array([-lim]))
                    ubg.append(np.array([lim]))
                off += d.n_dg
            g_list[0] = g_list[0] - ca.vertcat(*inj_p)
            g_list[1] = g_list[1] - ca.vertcat(*inj_q)
        pgm, pdm = pg * BASE_MVA, pd_ * BASE_MVA
        c1g, c2g = par[:ng], par[ng: 2 * ng]
        c1d, c2d = par[2 * ng: 2 * ng + ndg], par[2 * ng + ndg:]
        obj = ca.dot(c2g, pgm**2) + ca.dot(c1g, pgm) + ca.dot(c2d, pdm**2) + ca.dot(c1d, pdm)
        g = ca.vertcat(*g_list)
        opts = {"ipopt.print_level": 0, "print_time": False, "ipopt.sb": "yes", "ipopt.tol": config.ipopt_tol,
                "ipopt.max_iter": config.max_iter}
        self._solver = ca.nlpsol(f"opf_{name}", "ipopt", {"x": x, "p": par, "f": obj, "g": g}, opts)
        self._lbx, self._ubx, self._x0 = lbx, ubx, x0
        self._lbg, self._ubg = np.concatenate(lbg), np.concatenate(ubg)
        self._nb, self._ng = nb, ng

    def solve(self, costs: CostSet) -> OpfResult:
        """Solve the OPF for one cost set (flat start); return an :class:`OpfResult`."""
        p = costs.vector()
        if p.size != 2 * self._ng + 2 * self.n_dg or not np.isfinite(p).all():
            raise InputError(f"cost set has {p.size} coefficients, expected {2 * self._ng + 2 * self.n_dg}")
        t0 = time.perf_counter()
        sol = self._solver(x0=self._x0, p=p, lbx=self._lbx, ubx=self._ubx, lbg=self._lbg, ubg=self._ubg)
        dt = time.perf_counter() - t0
        stats = self._solver.stats()
        ok = bool(stats.get("success", False))
        xs = np.asarray(sol["x"]).ravel()
        nb, ng, nd = self._nb, self._ng, self.n_dg
        va, vm = xs[:nb], xs[nb: 2 * nb]
        pg, qg = xs[2 * nb: 2 * nb + ng], xs[2 * nb + ng: 2 * nb + 2 * ng]
        pdg, qdg = xs[2 * nb + 2 * ng: 2 * nb + 2 * ng + nd], xs[2 * nb + 2 * ng + nd:]
        res = OpfResult(OpfStatus.OPTIMAL if ok else OpfStatus.FAILED, float(np.asarray(sol["f"]).item()), dt,
                        pg * BASE_MVA, qg * BASE_MVA, vm, np.rad2deg(va), pdg * BASE_MVA, qdg * BASE_MVA,
                        str(stats.get("return_status", "")))
        logger.info("%s OPF: %s, cost %.2f EUR/h in %.3f s", self.name, res.status.value, res.cost_eur_per_h, dt)
        return res


class SurrogateOpf(_Opf):
    """The TSO's AC-OPF with the DS surrogates (paper B, eq. 2 with the PQ charts of eq. 4)."""


class FullOpf(_Opf):
    """The standard AC-OPF of the integrated system (paper B, eq. 1)."""

    merged: MergedNetwork


def surrogate_opf_from_system(system: IntegratedSystem, surrogates: Sequence[DsSurrogate], *, config: OpfConfig = OpfConfig()) -> SurrogateOpf:
    """Build the TSO's OPF with the surrogates of every DS (DS3 uses the surrogate named by its ``model_name``)."""
    names = {s.ds_name for s in surrogates}
    missing = [d.name for d in system.ds if (d.model_name or d.name) not in names]
    if missing:
        raise InputError(f"no surrogate for {', '.join(missing)}")
    opf = SurrogateOpf(system, system.ts, dg_buses=None, surrogates=surrogates, config=config, name="surrogate")
    logger.info("surrogate OPF built: %d TS buses, %d DGs", system.ts.n_bus, opf.n_dg)
    return opf


def full_opf_from_system(system: IntegratedSystem, *, config: OpfConfig = OpfConfig(), merged: MergedNetwork | None = None) -> FullOpf:
    """Build the standard AC-OPF of the integrated system."""
    merged = merged or merged_network_from_system(system)
    dg_buses = [int(m[b]) for d, m in zip(system.ds, merged.ds_bus_maps) for b in d.dg_buses]
    opf = FullOpf(system, merged.network, dg_buses=dg_buses, surrogates=None, config=config, name="full")
    opf.merged = merged
    logger.info("full OPF built: %d buses, %d DGs", merged.network.n_bus, opf.n_dg)
    return opf


@dataclass(frozen=True)
class FeasibilityResult:
    """AC power flow of the integrated system at a dispatch, and its limit violations.

    ``violations`` maps a constraint group to its largest violation (per unit, 0 if none).
    """

    feasible: bool
    converged: bool
    cost_eur_per_h: float
    violations: dict[str, float] = field(default_factory=dict)
    slack_p_mw: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeasibilityResult":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def feasibility_from_dispatch(system: IntegratedSystem, dispatch: OpfResult, costs: CostSet, *, merged: MergedNetwork | None = None,
                              tol_pu: float = 1e-4) -> FeasibilityResult:
    """Check a dispatch by AC power flow of the full integrated system.

    The generators keep their active power (except the slack) and voltage set-points, the DGs their
    P and Q; then voltage limits of all buses, TS line MVA and DS line current limits, generator P
    and Q limits and the PQ charts are checked with tolerance ``tol_pu``.
    """
    from optim.mlopf.sampling import power_flow_batch

    merged = merged or merged_network_from_system(system)
    net = merged.network
    nb = net.n_bus
    gens = system.generators
    gbus = np.array([g.bus for g in gens])
    ref = np.array([system.slack_bus])
    pv = np.setdiff1d(np.unique(gbus), ref)
    pq = np.setdiff1d(np.arange(nb), np.concatenate([ref, pv]))
    ts_vm = dispatch.vm_pu[: merged.ts_n_bus]
    vm0 = np.ones((1, nb))
    vm0[0, gbus] = ts_vm[gbus]
    p = -net.pd_pu.copy()
    q = -net.qd_pu.copy()
    np.add.at(p, gbus, dispatch.pg_mw / BASE_MVA)
    dg_bus = np.array([int(m[b]) for d, m in zip(system.ds, merged.ds_bus_maps) for b in d.dg_buses])
    np.add.at(p, dg_bus, dispatch.p_dg_mw / BASE_MVA)
    np.add.at(q, dg_bus, dispatch.q_dg_mvar / BASE_MVA)
    v, conv = power_flow_batch(net.ybus, ref=ref, pv=pv, pq=pq, vm_pu=vm0, va_rad=np.zeros((1, nb)), p_spec_pu=p[None], q_spec_pu=q[None],
                               chord_iter=0)
    v = v[0]
    if not conv[0]:
        return FeasibilityResult(False, False, float("nan"), {"power_flow": float("inf")})
    s_bus = v * np.conj(net.ybus @ v)
    s_gen_bus = s_bus + net.pd_pu + 1j * net.qd_pu
    np.subtract.at(s_gen_bus, dg_bus, (dispatch.p_dg_mw + 1j * dispatch.q_dg_mvar) / BASE_MVA)
    pg = dispatch.pg_mw / BASE_MVA
    qg = np.zeros(len(gens))
    for k, g in enumerate(gens):
        same = np.flatnonzero(gbus == g.bus)
        qg[k] = s_gen_bus[g.bus].imag / same.size
        if g.bus == system.slack_bus:
            pg = pg.copy()
            pg[k] = s_gen_bus[g.bus].real - sum(pg[j] for j in same if j != k)
    vm = np.abs(v)
    viol: dict[str, float] = {}
    viol["vm_pu"] = float(max(0.0, np.max(net.vmin_pu - vm), np.max(vm - net.vmax_pu)))
    yff, yft, ytf, ytt = net.branch_admittances
    i_f = yff * v[net.from_bus] + yft * v[net.to_bus]
    i_t = ytf * v[net.from_bus] + ytt * v[net.to_bus]
    s_f, s_t = np.abs(v[net.from_bus] * np.conj(i_f)), np.abs(v[net.to_bus] * np.conj(i_t))
    lim_s = net.rate_s_pu > 0
    viol["ts_line_mva_pu"] = float(max(0.0, np.max(np.maximum(s_f, s_t)[lim_s] - net.rate_s_pu[lim_s]))) if lim_s.any() else 0.0
    lim_i = net.rate_i_pu > 0
    viol["ds_line_current_pu"] = float(max(0.0, np.max(np.maximum(np.abs(i_f), np.abs(i_t))[lim_i] - net.rate_i_pu[lim_i]))) if lim_i.any() else 0.0
    pmin = np.array([g.pmin_pu for g in gens]); pmax = np.array([g.pmax_pu for g in gens])
    qmin = np.array([g.qmin_pu for g in gens]); qmax = np.array([g.qmax_pu for g in gens])
    viol["gen_p_pu"] = float(max(0.0, np.max(pmin - pg), np.max(pg - pmax)))
    viol["gen_q_pu"] = float(max(0.0, np.max(qmin - qg), np.max(qg - qmax)))
    x_ok = True
    off = 0
    for d in system.ds:
        x = np.concatenate([[1.0] * d.n_pcc, dispatch.p_dg_mw[off: off + d.n_dg], dispatch.q_dg_mvar[off: off + d.n_dg]])
        x_ok &= bool(d.charts_contain(x[None], tol=tol_pu * BASE_MVA)[0])
        off += d.n_dg
    viol["pq_chart"] = 0.0 if x_ok else 1.0
    feasible = all(val <= tol_pu for val in viol.values())
    cost = costs.cost_eur_per_h(pg * BASE_MVA, dispatch.p_dg_mw)
    res = FeasibilityResult(feasible, True, cost, viol, float(pg[0] * BASE_MVA))
    logger.info("feasibility check: %s (largest violation %.2e p.u.)", "feasible" if feasible else "infeasible", max(viol.values()))
    return res
