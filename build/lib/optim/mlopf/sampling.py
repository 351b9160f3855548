"""Datasets of paper B: Latin hypercube samples of ``x = (V_PCC, P_DG, Q_DG)`` labelled by AC power flow.

The power flows are batched in numpy over chunks of samples. All samples of one DS share the grid,
so with only slack (PCC) and PQ buses the first stage is the implicit Z-bus (current-injection)
iteration ``V_L = W + Z_LL conj(S_L / V_L)``: one shared inverse, one matrix product per iteration
for the whole chunk. With PV buses (the full-system check) the first stage is a chord Newton method
with one shared Jacobian. Samples that have not converged then finish with a batched full
Newton-Raphson (polar form, one Jacobian per sample); samples that still fail are reported as not
converged (labelled infeasible).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from optim._errors import InputError
from optim.mlopf.systems import BASE_MVA, DistributionSystem

logger = logging.getLogger(__name__)


def _jacobian(ybus: np.ndarray, v: np.ndarray, pvpq: np.ndarray, pq: np.ndarray) -> np.ndarray:
    """Return the batched polar Jacobian ``(B, m, m)`` for voltages ``v`` of shape ``(B, n)``."""
    i = v @ ybus.T
    vn = v / np.abs(v)
    ydiag = np.conj(ybus)[None, :, :]
    # dS/dVm = diag(V) conj(Y diag(Vn)) + diag(conj(I) Vn); dS/dVa = j diag(V) conj(diag(I) - Y diag(V))
    ds_dvm = v[:, :, None] * ydiag * np.conj(vn)[:, None, :]
    ds_dva = -1j * v[:, :, None] * ydiag * np.conj(v)[:, None, :]
    idx = np.arange(v.shape[1])
    ds_dvm[:, idx, idx] += np.conj(i) * vn
    ds_dva[:, idx, idx] += 1j * v * np.conj(i)
    j11 = ds_dva[:, pvpq][:, :, pvpq].real
    j12 = ds_dvm[:, pvpq][:, :, pq].real
    j21 = ds_dva[:, pq][:, :, pvpq].imag
    j22 = ds_dvm[:, pq][:, :, pq].imag
    return np.concatenate([np.concatenate([j11, j12], axis=2), np.concatenate([j21, j22], axis=2)], axis=1)


def power_flow_batch(ybus: np.ndarray, *, ref: np.ndarray, pv: np.ndarray, pq: np.ndarray, vm_pu: np.ndarray,
                     va_rad: np.ndarray, p_spec_pu: np.ndarray, q_spec_pu: np.ndarray, tol_pu: float = 1e-8,
                     chord_iter: int = 30, newton_iter: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Solve many AC power flows of one grid at once.

    Parameters
    ----------
    ybus : (n, n) complex bus admittance matrix (per unit).
    ref, pv, pq : bus index arrays (reference: fixed V and angle; PV: fixed P and V; PQ: fixed P, Q).
    vm_pu, va_rad : (B, n) initial voltages; the fixed magnitudes/angles are taken from here.
    p_spec_pu, q_spec_pu : (B, n) net injections (generation minus demand).

    Returns
    -------
    v : (B, n) complex bus voltages.
    converged : (B,) boolean.
    """
    ref, pv, pq = (np.asarray(a, dtype=int) for a in (ref, pv, pq))
    pvpq = np.concatenate([pv, pq])
    n_a = pvpq.size
    vm = np.array(vm_pu, dtype=float, copy=True)
    va = np.array(va_rad, dtype=float, copy=True)
    s_spec = p_spec_pu + 1j * q_spec_pu
    bsz = vm.shape[0]

    def mismatch(vm_: np.ndarray, va_: np.ndarray, s_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v_ = vm_ * np.exp(1j * va_)
        mis = v_ * np.conj(v_ @ ybus.T) - s_
        return v_, np.concatenate([mis.real[:, pvpq], mis.imag[:, pq]], axis=1)

    converged = np.zeros(bsz, dtype=bool)
    if pv.size == 0 and chord_iter > 0:
        # 1a) no PV buses: implicit Z-bus (current-injection) iterations, one matrix product each
        v_l = _zbus_iterations(ybus, ref, pq, vm[:, ref] * np.exp(1j * va[:, ref]), s_spec[:, pq], max_iter=chord_iter)
        ok_l = np.isfinite(v_l).all(axis=1)
        vm[np.ix_(ok_l, pq)] = np.abs(v_l[ok_l])
        va[np.ix_(ok_l, pq)] = np.angle(v_l[ok_l])
        _, f = mismatch(vm, va, s_spec)
        converged = np.max(np.abs(f), axis=1) < tol_pu
        chord_iter = 0
    # 1b) chord iterations with the Jacobian of the first sample at its start point
    active = np.flatnonzero(~converged)
    if chord_iter > 0:
        v0 = vm[:1] * np.exp(1j * va[:1])
        j0inv_t = np.linalg.inv(_jacobian(ybus, v0, pvpq, pq)[0]).T
    for _ in range(chord_iter):
        _, f = mismatch(vm[active], va[active], s_spec[active])
        ok = np.max(np.abs(f), axis=1) < tol_pu
        converged[active[ok]] = True
        bad = ~np.isfinite(f).all(axis=1)
        keep = ~ok & ~bad
        active, f = active[keep], f[keep]
        if active.size == 0:
            break
        dx = -f @ j0inv_t
        va[np.ix_(active, pvpq)] += dx[:, :n_a]
        vm[np.ix_(active, pq)] += dx[:, n_a:]
    # 2) full Newton for the rest (fresh start where the chord diverged)
    rest = np.flatnonzero(~converged)
    if rest.size:
        div = ~np.isfinite(vm[rest]).all(axis=1) | ~np.isfinite(va[rest]).all(axis=1) | (np.abs(vm[rest]).max(axis=1) > 3)
        if div.any():
            r = rest[div]
            vm[np.ix_(r, pq)] = 1.0
            va[np.ix_(r, pvpq)] = 0.0
            va[np.ix_(r, pvpq)] = va[r][:, ref[:1]]
        active = rest
        for _ in range(newton_iter):
            v, f = mismatch(vm[active], va[active], s_spec[active])
            ok = np.max(np.abs(f), axis=1) < tol_pu
            converged[active[ok]] = True
            keep = ~ok & np.isfinite(f).all(axis=1)
            active, f, v = active[keep], f[keep], v[keep]
            if active.size == 0:
                break
            jac = _jacobian(ybus, v, pvpq, pq)
            try:
                dx = -np.linalg.solve(jac, f[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                break
            va[np.ix_(active, pvpq)] += dx[:, :n_a]
            vm[np.ix_(active, pq)] += dx[:, n_a:]
    return vm * np.exp(1j * va), converged


def _zbus_iterations(ybus: np.ndarray, ref: np.ndarray, pq: np.ndarray, v_ref: np.ndarray, s_pq: np.ndarray, *, max_iter: int,
                     tol_pu: float = 1e-10) -> np.ndarray:
    """Return PQ-bus voltages from ``V_L = W + Z_LL conj(S_L / V_L)`` iterated for all samples at once."""
    z_t = np.linalg.inv(ybus[np.ix_(pq, pq)]).T
    w = -(v_ref @ ybus[np.ix_(pq, ref)].T) @ z_t
    v = w.copy()
    with np.errstate(all="ignore"):
        for _ in range(max_iter):
            v_new = w + np.conj(s_pq / v) @ z_t
            step = np.max(np.abs(v_new - v))
            v = v_new
            if not np.isfinite(step) or step < tol_pu:
                break
    return v


@dataclass(frozen=True)
class Dataset:
    """Labelled samples of one DS.

    Attributes
    ----------
    x : (N, n_x) samples ``(V_PCC [p.u.], P_DG [MW], Q_DG [MVAr])``.
    feasible : (N,) label (True: feasible, class 0 of paper B).
    p_pcc_pu, q_pcc_pu : (N, n_pcc) PCC flows from the DS towards the TS (per unit, 100 MVA), NaN
        where the power flow did not converge.
    """

    ds_name: str
    x: np.ndarray
    feasible: np.ndarray
    p_pcc_pu: np.ndarray
    q_pcc_pu: np.ndarray

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.x.shape[0])

    def to_npz(self, path: Any) -> None:
        """Write the dataset to a compressed ``.npz`` file."""
        np.savez_compressed(path, ds_name=self.ds_name, x=self.x, feasible=self.feasible, p_pcc_pu=self.p_pcc_pu,
                            q_pcc_pu=self.q_pcc_pu)

    @classmethod
    def from_npz(cls, path: Any) -> "Dataset":
        """Read a dataset written by :meth:`to_npz`."""
        with np.load(path) as z:
            return cls(str(z["ds_name"]), z["x"], z["feasible"], z["p_pcc_pu"], z["q_pcc_pu"])

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Dataset":
        """Inverse of :meth:`to_dict`."""
        return cls(data["ds_name"], np.asarray(data["x"], float), np.asarray(data["feasible"], bool),
                   np.asarray(data["p_pcc_pu"], float), np.asarray(data["q_pcc_pu"], float))


def latin_hypercube_samples(ds: DistributionSystem, n_samples: int, *, random_state: int = 0) -> np.ndarray:
    """Return ``n_samples`` Latin hypercube samples of ``x`` inside its bounding box (seeded)."""
    from scipy.stats import qmc

    if int(n_samples) <= 0:
        raise InputError(f"number of samples must be positive, got {n_samples}")
    sampler = qmc.LatinHypercube(d=ds.n_x, seed=np.random.default_rng(random_state))
    x = qmc.scale(sampler.random(int(n_samples)), ds.x_lower, ds.x_upper)
    logger.info("%s: %d Latin hypercube samples of %d variables", ds.name, x.shape[0], ds.n_x)
    return x


@dataclass(frozen=True)
class PowerFlowResult:
    """Result of the batched DS power flows (per unit)."""

    v: np.ndarray
    converged: np.ndarray
    p_pcc_pu: np.ndarray
    q_pcc_pu: np.ndarray


def ds_power_flows(ds: DistributionSystem, x: np.ndarray) -> PowerFlowResult:
    """Run the AC power flow of ``ds`` for every row of ``x`` (PCC voltages fixed, angle 0)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    if x.shape[1] != ds.n_x or not np.isfinite(x).all():
        raise InputError(f"{ds.name}: x must be finite with {ds.n_x} columns, got shape {x.shape}")
    net = ds.network
    n = net.n_bus
    ref = np.asarray(ds.pcc_ds_buses)
    pq = np.setdiff1d(np.arange(n), ref)
    bsz = x.shape[0]
    vm = np.ones((bsz, n))
    vm[:, ref] = x[:, : ds.n_pcc]
    va = np.zeros((bsz, n))
    p = np.broadcast_to(-net.pd_pu, (bsz, n)).copy()
    q = np.broadcast_to(-net.qd_pu, (bsz, n)).copy()
    dg = np.asarray(ds.dg_buses)
    np.add.at(p, (slice(None), dg), x[:, ds.n_pcc: ds.n_pcc + ds.n_dg] / BASE_MVA)
    np.add.at(q, (slice(None), dg), x[:, ds.n_pcc + ds.n_dg:] / BASE_MVA)
    v, conv = power_flow_batch(net.ybus, ref=ref, pv=np.array([], int), pq=pq, vm_pu=vm, va_rad=va,
                               p_spec_pu=p, q_spec_pu=q)
    s_ref = v[:, ref] * np.conj(v @ net.ybus[ref].T)
    # net injection at a PCC bus = supply from the TS + local DG - local demand; DS->TS is -supply
    s_pcc = -(s_ref - (p[:, ref] + 1j * q[:, ref]))
    s_pcc[~conv] = np.nan
    return PowerFlowResult(v=v, converged=conv, p_pcc_pu=s_pcc.real, q_pcc_pu=s_pcc.imag)


def feasible_from_power_flows(ds: DistributionSystem, x: np.ndarray, pf: PowerFlowResult, *, tol_pu: float = 1e-6,
                              margin_vm_pu: float = 0.0, margin_current_fraction: float = 0.0) -> np.ndarray:
    """Return the labels: converged, voltage and branch-current limits, and PQ charts.

    ``margin_vm_pu`` and ``margin_current_fraction`` tighten the limits (a DSO security margin that
    absorbs the polytope's approximation error at its boundary).
    """
    net = ds.network
    vm = np.abs(pf.v)
    ok = pf.converged & np.isfinite(vm).all(axis=1)
    is_pcc = np.isin(np.arange(net.n_bus), ds.pcc_ds_buses)
    ok &= np.all((vm >= net.vmin_pu + margin_vm_pu - tol_pu) | is_pcc, axis=1)
    ok &= np.all((vm <= net.vmax_pu - margin_vm_pu + tol_pu) | is_pcc, axis=1)
    lim = net.rate_i_pu > 0
    if lim.any():
        yff, yft, ytf, ytt = net.branch_admittances
        f, t = net.from_bus[lim], net.to_bus[lim]
        i_f = np.abs(yff[lim] * pf.v[:, f] + yft[lim] * pf.v[:, t])
        i_t = np.abs(ytf[lim] * pf.v[:, f] + ytt[lim] * pf.v[:, t])
        ok &= np.all(np.maximum(i_f, i_t) <= (1.0 - margin_current_fraction) * net.rate_i_pu[lim] + tol_pu, axis=1)
    ok &= ds.charts_contain(x)
    return ok


def dataset_from_samples(ds: DistributionSystem, x: np.ndarray, *, chunk_size: int = 20_000, progress: bool = True,
                         margin_vm_pu: float = 0.0, margin_current_fraction: float = 0.0) -> Dataset:
    """Label the samples ``x`` of ``ds`` by batched AC power flow (chunks, tqdm progress bar on stderr)."""
    from tqdm import tqdm

    x = np.atleast_2d(np.asarray(x, dtype=float))
    feas = np.zeros(x.shape[0], dtype=bool)
    pp = np.full((x.shape[0], ds.n_pcc), np.nan)
    qq = np.full((x.shape[0], ds.n_pcc), np.nan)
    starts = range(0, x.shape[0], chunk_size)
    for s in tqdm(starts, desc=f"labelling {ds.name}", unit="chunk", disable=not progress, leave=False):
        xs = x[s: s + chunk_size]
        pf = ds_power_flows(ds, xs)
        feas[s: s + len(xs)] = feasible_from_power_flows(ds, xs, pf, margin_vm_pu=margin_vm_pu,
                                                         margin_current_fraction=margin_current_fraction)
        pp[s: s + len(xs)] = pf.p_pcc_pu
        qq[s: s + len(xs)] = pf.q_pcc_pu
    out = Dataset(ds.name, x, feas, pp, qq)
    logger.info("%s: labelled %d samples, %.1f %% feasible", ds.name, x.shape[0], 100 * feas.mean())
    return out


def dataset_from_system(ds: DistributionSystem, n_samples: int, *, random_state: int = 0, progress: bool = True,
                        margin_vm_pu: float = 0.0, margin_current_fraction: float = 0.0) -> Dataset:
    """Return a labelled Latin hypercube dataset of ``n_samples`` samples for ``ds``."""
    x = latin_hypercube_samples(ds, n_samples, random_state=random_state)
    return dataset_from_samples(ds, x, progress=progress, margin_vm_pu=margin_vm_pu, margin_current_fraction=margin_current_fraction)


def relabel_for_charts(ds: DistributionSystem, data: Dataset) -> Dataset:
    """Return ``data`` relabelled with the PQ charts of ``ds`` (same grid, e.g. DS3 from DS2's data)."""
    if data.x.shape[1] != ds.n_x:
        raise InputError(f"{ds.name}: dataset has {data.x.shape[1]} columns, expected {ds.n_x}")
    feas = data.feasible & ds.charts_contain(data.x)
    logger.info("%s: relabelled %d samples with its PQ charts, %.1f %% feasible", ds.name, data.n_samples, 100 * feas.mean())
    return Dataset(ds.name, data.x, feas, data.p_pcc_pu, data.q_pcc_pu)
