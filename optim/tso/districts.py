"""One request cleared across several districts' packages: the piecewise MILP of paper A, per district.

A DSO with many districts shares one :class:`~optim.package.SensitivityPackage` per district
(:mod:`optim.dso.districts`: the districts are radial feeders from a common feed-in, so an injection
in one changes nothing in another). The TSO clears the request ``P_E`` over all of them at once.
District ``d`` has its pieces ``k`` (its bids' shares on its flexible buses), its points ``i`` with
binaries ``b_d,i`` and piece dispatches ``y_d,i``; everything of :mod:`optim.tso.clearing` holds per
district:

- (14b,c) ``P_LB,k b_d,i <= y_d,i,k <= P_UB,k b_d,i``;
- (14d-g) district ``d``'s constraint rows of point ``i``, homogeneous in ``(y_d,i, b_d,i)``;
- (14h) its Voronoi rows; (14i) ``sum_i b_d,i = 1`` for every district;

and the districts are coupled by the one balance (14j) ``sum_d sum_i sum_k y_d,i,k = P_E``.
Minimise the price times the activated volume (14a). Each district picks its own linearization
point: the product of the districts' Voronoi cells is the joint grid's piecewise model, exact
because the districts do not interact. The per-point decomposition of a single package does not
apply (the balance couples the districts' choices), so this is solved as one MILP by HiGHS, with
``sum_d m_d`` binaries; each district's rows are screened exactly as in :mod:`optim.tso.clearing`
(rows that cannot bind within the box of the district's offers are left out: they are implied by
(14b,c) for every ``0 <= b <= 1``). A request that cannot be delivered returns ``INFEASIBLE`` with
the largest deliverable volume in its direction (the same MILP with (14j) relaxed to a bound).

The grid-blind merit order across districts takes the cheapest pieces of all districts until
``P_E`` (partial activation of the marginal piece), as :mod:`optim.tso.merit_order` does for one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from optim._errors import InputError
from optim.package import SensitivityPackage
from optim.tso.bids import BidTable
from optim.tso.clearing import (
    ClearingResult,
    ClearingStatus,
    HIGHS_OPTIONS,
    _check_request,
    _new_highs,
    _optimal_result,
    _pieces,
    _point_rows,
    _PointRows,
    _Solution,
)

log = logging.getLogger(__name__)

__all__ = ["DistrictClearing", "bids_of_district", "clear_districts_milp", "clear_districts_merit_order"]


@dataclass(frozen=True, eq=False)
class DistrictClearing:
    """A request cleared across districts.

    Attributes
    ----------
    status, method
        As :class:`~optim.tso.clearing.ClearingResult`.
    requested_mw, delivered_mw, cost_eur, max_deliverable_mw
        For the whole request (``max_deliverable_mw`` when INFEASIBLE).
    districts
        District name -> its :class:`~optim.tso.clearing.ClearingResult` (its chosen point, its
        pieces' activations and dispatch per flexible bus, in that package's column order); only
        districts with offers; empty unless OPTIMAL.
    activations
        Per bid (aggregated across districts): ``{bid_id, aggregator, offered_mw, activated_mw}``.
    runtime_s, message, stats
        Wall time, a note (why infeasible), model size.
    """

    status: ClearingStatus
    method: str
    requested_mw: float
    delivered_mw: float = 0.0
    cost_eur: float = 0.0
    max_deliverable_mw: float | None = None
    districts: Mapping[str, ClearingResult] = field(default_factory=dict)
    activations: tuple[dict[str, Any], ...] = ()
    runtime_s: float = 0.0
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is ClearingStatus.OPTIMAL

    def summary(self) -> dict[str, Any]:
        """Figures without per-piece detail (names bids and districts, never package row ids)."""
        return {
            "status": self.status.value, "method": self.method, "requested_mw": self.requested_mw,
            "delivered_mw": self.delivered_mw, "cost_eur": self.cost_eur,
            "max_deliverable_mw": self.max_deliverable_mw, "message": self.message,
            "districts": {name: {"delivered_mw": r.delivered_mw, "cost_eur": r.cost_eur,
                                 "chosen_point": r.chosen_point, "chosen_point_label": r.chosen_point_label}
                          for name, r in self.districts.items()},
        }


def bids_of_district(bids: BidTable, package: SensitivityPackage) -> BidTable | None:
    """The rows of ``bids`` whose asset is connected in ``package``'s district (None if none)."""
    rows = tuple(r for r in bids.rows if r.building_id in package.flex_of_asset)
    if not rows:
        return None
    return BidTable(rows=rows, source=bids.source)


def _check_assignment(bids: BidTable, packages: Mapping[str, SensitivityPackage]) -> None:
    owner: dict[str, str] = {}
    for name, package in packages.items():
        for building in package.flex_of_asset:
            if building in owner:
                raise InputError(f"building {building!r} is in two district packages ({owner[building]}, {name})")
            owner[building] = name
    unknown = sorted({r.building_id for r in bids.rows} - set(owner))
    if unknown:
        raise InputError(f"{len(unknown)} building(s) in the bids are in no district package: "
                         + ", ".join(repr(u) for u in unknown[:10]))


@dataclass
class _District:
    name: str
    package: SensitivityPackage
    pieces: Any
    rows: list[_PointRows]
    col0: int  # first column: y_0 (K), ..., y_{m-1} (K), b_0..b_{m-1}

    @property
    def m(self) -> int:
        return self.package.n_points

    @property
    def K(self) -> int:
        return self.pieces.n_pieces

    @property
    def n_cols(self) -> int:
        return self.m * (self.K + 1)


def _districts(packages: Mapping[str, SensitivityPackage], bids: BidTable) -> list[_District]:
    out, col = [], 0
    for name in sorted(packages):
        table = bids_of_district(bids, packages[name])
        if table is None:
            continue
        pieces = _pieces(packages[name], table)
        rows = _point_rows(packages[name], pieces, screen=True)
        out.append(_District(name=name, package=packages[name], pieces=pieces, rows=rows, col0=col))
        col += out[-1].n_cols
    if not out:
        raise InputError("no district has offers: nothing to clear")
    return out


def _model(ds: list[_District], request_mw: float, *, maximise: bool) -> tuple[Any, ...]:
    """The joint MILP in HiGHS' array form (columns of district d from ``d.col0``)."""
    n = sum(d.n_cols for d in ds)
    s = 1.0 if request_mw > 0 else -1.0
    cost, lo, up, integ = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, np.int32)
    r_rows, r_cols, r_vals, r_lo, r_up = [], [], [], [], []
    row = 0

    def add(cols: np.ndarray, vals: np.ndarray, low: float, high: float) -> None:
        nonlocal row
        r_rows.append(np.full(len(cols), row))
        r_cols.append(cols)
        r_vals.append(vals)
        r_lo.append(low)
        r_up.append(high)
        row += 1

    def add_block(dense: np.ndarray, y0: int, b: int, low: np.ndarray, high: np.ndarray) -> None:
        nonlocal row
        block = sp.coo_matrix(dense)
        K = dense.shape[1] - 1
        cols = np.where(block.col < K, y0 + block.col, b)
        r_rows.append(row + block.row)
        r_cols.append(cols)
        r_vals.append(block.data)
        r_lo.extend(np.asarray(low, float).tolist())
        r_up.extend(np.asarray(high, float).tolist())
        row += dense.shape[0]

    balance_cols = []
    for d in ds:
        K, m = d.K, d.m
        p = d.pieces.p_mw
        b0 = d.col0 + m * K
        for i in range(m):
            y0 = d.col0 + i * K
            cols = slice(y0, y0 + K)
            cost[cols] = -s if maximise else d.pieces.price_eur_per_mwh * np.sign(p)
            lo[cols], up[cols] = d.pieces.lower_mw, d.pieces.upper_mw
            for k in np.flatnonzero(p):  # (14b,c): y - P_M b <= 0 (up) or >= 0 (down)
                if p[k] > 0:
                    add(np.array([y0 + k, b0 + i]), np.array([1.0, -p[k]]), -np.inf, 0.0)
                else:
                    add(np.array([y0 + k, b0 + i]), np.array([1.0, -p[k]]), 0.0, np.inf)
            pr = d.rows[i]
            if len(pr.h):  # (14d-g)
                add_block(np.hstack([pr.g, pr.h[:, None]]), y0, b0 + i, np.full(len(pr.h), -np.inf),
                          np.zeros(len(pr.h)))
            if len(pr.vor_j):  # (14h)
                add_block(np.hstack([pr.vor_a, pr.vor_c[:, None]]), y0, b0 + i, np.zeros(len(pr.vor_j)),
                          np.full(len(pr.vor_j), np.inf))
            balance_cols.append(np.arange(y0, y0 + K))
        lo[b0:b0 + m], up[b0:b0 + m], integ[b0:b0 + m] = 0.0, 1.0, 1
        add(np.arange(b0, b0 + m), np.ones(m), 1.0, 1.0)  # (14i) per district
    cols = np.concatenate(balance_cols)
    if maximise:  # 0 <= s sum y <= |P_E|
        add(cols, np.full(len(cols), s), 0.0, abs(request_mw))
    else:  # (14j)
        add(cols, np.ones(len(cols)), request_mw, request_mw)
    matrix = sp.csr_matrix((np.concatenate(r_vals), (np.concatenate(r_rows), np.concatenate(r_cols))),
                           shape=(row, n))
    matrix.sum_duplicates()
    matrix.sort_indices()
    return cost, lo, up, integ, matrix, np.asarray(r_lo, float), np.asarray(r_up, float)


def _solve(model: tuple[Any, ...], *, mip_rel_gap: float, time_limit_s: float) -> tuple[str, np.ndarray | None]:
    import highspy

    cost, lo, up, integ, A, r_lo, r_up = model
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    for name, value in HIGHS_OPTIONS.items():
        h.setOptionValue(name, value)
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("time_limit", float(time_limit_s))
    status = h.passModel(int(A.shape[1]), int(A.shape[0]), int(A.nnz), int(highspy.MatrixFormat.kRowwise),
                         int(highspy.ObjSense.kMinimize), 0.0, cost, lo, up, r_lo, r_up,
                         A.indptr[:-1].astype(np.int32), A.indices.astype(np.int32), A.data.astype(float), integ)
    if status == highspy.HighsStatus.kError:
        return "error", None
    h.run()
    ms = h.getModelStatus()
    if ms in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        return "infeasible", None
    if ms != highspy.HighsModelStatus.kOptimal and h.getInfo().primal_solution_status != 2:
        return h.modelStatusToString(ms), None
    return "optimal", np.asarray(h.getSolution().col_value, dtype=float)


def _solution_of(d: _District, x: np.ndarray) -> _Solution:
    K, m = d.K, d.m
    y = x[d.col0:d.col0 + m * K].reshape(m, K)
    b = np.round(x[d.col0 + m * K:d.col0 + m * (K + 1)])
    return _Solution(ClearingStatus.OPTIMAL, y=y, b=b, relaxation_integral=False)


def _merge_activations(results: Sequence[ClearingResult]) -> tuple[dict[str, Any], ...]:
    merged: dict[str, dict[str, Any]] = {}
    for result in results:
        for a in result.activations:
            row = merged.setdefault(a["bid_id"], {"bid_id": a["bid_id"], "aggregator": a.get("aggregator"),
                                                  "offered_mw": 0.0, "activated_mw": 0.0})
            row["offered_mw"] += a["offered_mw"]
            row["activated_mw"] += a["activated_mw"]
    return tuple({**r, "offered_mw": round(r["offered_mw"], 9), "activated_mw": round(r["activated_mw"], 9)}
                 for r in merged.values())


def clear_districts_milp(
    packages: Mapping[str, SensitivityPackage],
    bids: BidTable,
    request_mw: float,
    *,
    mip_rel_gap: float = 1e-7,
    time_limit_s: float = 120.0,
) -> DistrictClearing:
    """Clear ``request_mw`` across the districts' packages (see the module docstring).

    Parameters
    ----------
    packages
        District name -> its package (all the TSO receives).
    bids
        The bid table of all districts; each row belongs to the district whose package connects
        its building.
    request_mw
        ``P_E`` (MW, + = upward).
    mip_rel_gap, time_limit_s
        HiGHS options.

    Returns
    -------
    DistrictClearing
    """
    t0 = time.perf_counter()
    request = _check_request(request_mw)
    _check_assignment(bids, packages)
    ds = _districts(packages, bids)
    model = _model(ds, request, maximise=False)
    status, x = _solve(model, mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s)
    stats = {"districts": len(ds), "binaries": int(sum(d.m for d in ds)), "cols": int(model[4].shape[1]),
             "rows": int(model[4].shape[0]), "nonzeros": int(model[4].nnz)}
    if status == "optimal":
        results = {}
        for d in ds:
            paper = d.package.style == "paper"
            # a district's share of the request is what it delivers (the balance is joint)
            common = dict(method="milp", solver="highs-districts", requested_mw=request, duration_h=1.0,
                          stats=stats, flex_ids=d.package.flex_ids, bus_ids=d.package.bus_ids if paper else (),
                          branch_ids=d.package.branch_ids if paper else ())
            results[d.name] = _optimal_result(d.package, d.pieces, _solution_of(d, x), common, 1.0, 0.0, 0.0, t0)
        delivered = round(math.fsum(r.delivered_mw for r in results.values()), 9)
        cost = math.fsum(r.cost_eur for r in results.values())
        out = DistrictClearing(ClearingStatus.OPTIMAL, "milp", request, delivered_mw=delivered, cost_eur=cost,
                               districts=results, activations=_merge_activations(list(results.values())),
                               runtime_s=time.perf_counter() - t0, stats=stats)
        log.info("cleared %g MW across %d districts for %.2f EUR in %.3f s", delivered, len(ds), cost, out.runtime_s)
        return out
    if status != "infeasible":
        return DistrictClearing(ClearingStatus.SOLVER_ERROR, "milp", request, message=f"HiGHS: {status}",
                                runtime_s=time.perf_counter() - t0, stats=stats)
    status, x = _solve(_model(ds, request, maximise=True), mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s)
    s = 1.0 if request > 0 else -1.0
    best = 0.0
    if status == "optimal":
        total = sum(abs(float(np.sum(np.clip(_solution_of(d, x).y, d.pieces.lower_mw, d.pieces.upper_mw))))
                    for d in ds)
        best = math.floor(total * 1e6) / 1e6
    return DistrictClearing(ClearingStatus.INFEASIBLE, "milp", request, max_deliverable_mw=s * best + 0.0,
                            message=f"at most {best:g} MW {'upward' if s > 0 else 'downward'} can be delivered "
                                    f"across {len(ds)} districts without congestion",
                            runtime_s=time.perf_counter() - t0, stats=stats)


def clear_districts_merit_order(packages: Mapping[str, SensitivityPackage], bids: BidTable,
                                request_mw: float) -> DistrictClearing:
    """The grid-blind merit order across districts: cheapest pieces first until ``P_E``."""
    from optim.tso.merit_order import clear_merit_order

    t0 = time.perf_counter()
    request = _check_request(request_mw)
    _check_assignment(bids, packages)
    ds = _districts(packages, bids)
    s = 1.0 if request > 0 else -1.0
    order = []  # (price, district, piece)
    for di, d in enumerate(ds):
        for k, p in enumerate(d.pieces.p_mw):
            if p * s > 0:
                order.append((float(d.pieces.price_eur_per_mwh[k]), di, k))
    order.sort()
    remaining = abs(request)
    take = [np.zeros(d.K) for d in ds]
    for _, di, k in order:
        if remaining <= 1e-12:
            break
        x = min(abs(float(ds[di].pieces.p_mw[k])), remaining)
        take[di][k] = s * x
        remaining -= x
    if remaining > 1e-9:
        offered = abs(request) - remaining
        return DistrictClearing(ClearingStatus.INFEASIBLE, "merit-order", request, max_deliverable_mw=s * offered,
                                message=f"the bids offer only {offered:g} MW in the request's direction",
                                runtime_s=time.perf_counter() - t0)
    results = {}
    for d, y in zip(ds, take):
        share = float(np.sum(y))
        if abs(share) <= 1e-12:
            continue
        # the district's part is a merit order of its own at its share (same cheapest pieces, same split)
        table = bids_of_district(bids, d.package)
        results[d.name] = clear_merit_order(d.package, table, share)
    delivered = round(math.fsum(r.delivered_mw for r in results.values()), 9)
    return DistrictClearing(ClearingStatus.OPTIMAL, "merit-order", request, delivered_mw=delivered,
                            cost_eur=math.fsum(r.cost_eur for r in results.values()), districts=results,
                            activations=_merge_activations(list(results.values())), runtime_s=time.perf_counter() - t0)
