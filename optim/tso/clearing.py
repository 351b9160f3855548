"""Grid-aware clearing of balancing-energy bids: the piecewise MILP of paper A (eq. 14a-14j).

The TSO sees only the :class:`~optim.package.SensitivityPackage`. The bids are split by the BCM
into pieces ``k`` (one per bid and flexible bus, volume ``P_M,k``, price ``c_k``, map ``M``:
pieces -> flexible buses). For every operating point ``i`` there is a binary ``b_i`` and a piece
dispatch ``y_i`` (MW); the paper's adjustment is ``dP_i = M y_i - P_flex,i b_i``, so that the
dispatched flexibility ``x = sum_i (P_flex,i b_i + dP_i) = sum_i M y_i``. With ``P_LB = min(0, P_M)``
and ``P_UB = max(0, P_M)`` per piece:

- (14b,c)  ``P_LB,k b_i <= y_i,k <= P_UB,k b_i``: nothing is dispatched under inactive points,
  and each piece stays within its offer (partial activation allowed; the per-bus bounds of the
  paper follow by summation);
- (14d-g)  the package's constraint rows of point ``i``, ``a_i dP_i <= b_i`` (voltage bands and
  the inscribed polygon of each branch current, see :mod:`optim.package`), written homogeneous
  in ``(y_i, b_i)``: ``a_i M y_i - (b_i + a_i P_flex,i) b_i <= 0``; with ``b_i = 0`` they hold by
  (14b,c), with ``b_i = 1`` they are the paper's ``G_i`` within the limits;
- (14h)  ``H_ij b_i >= 0`` with ``H_ij = (P_i - P_j)^T (P_i + dP_i - (P_i + P_j)/2)``: the update
  stays in the Voronoi cell of its point. Since ``dP_i = 0`` when ``b_i = 0``, ``H_ij b_i`` is
  linear: ``(P_i - P_j)^T M y_i + (|P_i - P_j|^2 / 2 - (P_i - P_j)^T P_flex,i) b_i >= 0``;
  no big-M is needed;
- (14i)  ``sum_i b_i = 1``;  (14j)  written per point, ``sum_k y_i,k = P_E b_i``: summed over
  ``i`` with (14i) it is the paper's ``sum_i sum_k y_i,k = P_E`` and admits the same integer
  solutions, but every constraint is now homogeneous in ``(y_i, b_i)``, so the LP relaxation is
  the convex hull of the ``m`` linearizations (Balas' disjunctive formulation);
- (14a)  minimise ``sum_i sum_k c_k y_i,k / sign(P_M,k) * duration_h``: the price times the
  activated volume, in EUR for an activation of ``duration_h`` hours (default 1 h, so the cost
  of a MW is its price in EUR/MWh).

**Per-point decomposition** (``solver="highs"``, the default): ``b`` is one-hot and ``y_j = 0``
for ``j != i``, so the MILP is exactly the minimum over the points of one LP each (``b_i = 1``).
The ``m`` LPs are solved with highspy and the cheapest feasible one wins (ties: see below);
this is the same optimum (a test compares it with the joint MILP) and 3-36x faster. The joint
MILP stays: ``solver="highs-milp"`` (highspy) and ``solver="pyomo:NAME"``.

**Pruning by cell bounds**: point ``i``'s LP without its grid rows (only the bids' box, (14h)
and (14j): ``m`` rows) is a relaxation, so its cost bounds the full LP from below. The points are
solved in the order of these bounds, and the search stops when the next bound exceeds the best
cost found (by ``PRUNE_MARGIN``, relative, far above the LP tolerances): those LPs cannot win or
tie, so the optimum and the chosen point are the same as with every LP solved (a test checks
it on Bergwald). A cell whose bound LP is infeasible cannot deliver the request at all. A point
solved once a cost is known runs with that cost (plus the margin) as HiGHS' ``objective_bound``:
the dual simplex's objective is a lower bound of the LP's optimum at every dual feasible
iterate, so when it passes the bound the LP cannot win or tie and is stopped ("cut off"); HiGHS
checks the bound with the unperturbed costs, and an LP that finishes is unaffected. The LPs
run on ``$DIGIPLAT_LP_THREADS`` threads (default: the cores, up to 2; HiGHS releases the GIL),
the next points in bound order side by side: a point started before a cheaper one finished may
be solved needlessly, which costs time but cannot change the winner, so results do not depend on
the thread count (tested); only ``stats["lps_solved"]``, ``stats["lps_cut_off"]`` and
``stats["nonzeros"]`` (of the LPs built) may. Each LP is built in its worker thread from the
point's rows as CSR (the rows of a district are sparse: 8 % nonzeros on the whole shared file).
For a package the DSO screened (hardened) the TSO keeps every row, and the CSR is cached on the
package's point, so its dense rows are scanned once per package, not once per request; rows the
TSO screens itself (a paper-style package) are gathered and scanned per request.

**Ties** (per-point path): the pieces of an aggregated bid share its price, so the optimum is
often a whole face of dispatches, and a simplex vertex of it may lie far from the point the LP
was linearized at (at weekday 18:00, 0.135 MW, the LP of "no bids" returned a vertex as far from
it as from the next level, and the tie between the two points went to the lower index: V MAE
8.9e-5 p.u. instead of 1.2e-6). The clearing is therefore lexicographic: among the points whose
cost ties with the best (``TIE_TOLERANCE``, relative, far below ``PRUNE_MARGIN``, so each was
solved in full), each LP is continued from its optimal basis with the row ``cost <= best +
FACE_SLACK max(1, |best|)`` and the objective of :func:`_face_weights` (the L1 distance to its
point for the all-or-nothing points), and the point whose dispatch is nearest wins (then the lower
index). The
cost stays the optimum within ``FACE_SLACK`` (1e-8 relative), the choice depends on the bids (and
the order of their rows) and the package's points only (not on the column order or the thread
count), and it is the dispatch the DSO's linearization predicts best. The joint MILP paths
(``highs-milp``, Pyomo) keep the solver's vertex: the same cost, possibly another dispatch among
the tied ones.

**Screening** (``screen=True``, the default): a row of (14d-g) or (14h) whose left-hand side
stays within its limit for every ``y_i`` in the box ``[P_LB, P_UB]`` cannot bind and is left out.
The box bound ``min_y a^T y = a^+ . P_LB + a^- . P_UB`` makes the dropped row implied by
(14b,c) for every ``0 <= b_i <= 1`` (it scales with ``b_i``), so the feasible set, the optimum and
even the LP relaxation are unchanged; only rows with a margin above ``1e-9`` (relative) are
dropped. In a low-voltage grid most elements are far from their limits, so this removes most of
the dense sensitivity rows. A hardened package arrives screened by the DSO within its
``row_box`` (:mod:`optim.privacy.hardening`); when the bids' box is that box, the TSO's screening
of its grid rows would keep every one and is skipped (keeping a row is always exact).

The joint MILP through highspy: the whole constraint matrix is built with numpy/scipy
as one CSR and passed in one ``passModel`` call. HiGHS first solves the LP relaxation; if its
``b`` is integral (the usual case, see (14j)) that is the MILP optimum, otherwise the MILP is
solved (same model, same HiGHS instance). ``stats["relaxation_integral"]`` says which. ``solver="pyomo:NAME"`` builds the same model with
Pyomo (independently, from the formulation above) and solves it with Pyomo's solver ``NAME``
(``appsi_highs``, ``highs``, ``gurobi``, ``cbc``, ``glpk``, ...).

A request the grid cannot deliver returns status ``INFEASIBLE`` with ``max_deliverable_mw``: the
largest volume in the request's direction (at most the request) that a second MILP, without
(14j), can deliver.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator, Mapping

import numpy as np
import scipy.sparse as sp

from optim._errors import InputError
from optim.package import OperatingPoint, SensitivityPackage, predicted_state, sparse_rows
from optim.tso.bcm import PieceSet, aggregator_activations, bid_activations, pieces_from_bids
from optim.tso.bids import BidTable

log = logging.getLogger(__name__)

#: Relative margin below which a row is kept by the screening (it might bind).
SCREEN_MARGIN = 1e-9
#: HiGHS options of the highspy path. The model has one binary per operating point and a few
#: hundred dense rows, so HiGHS' presolve, symmetry detection and feasibility-jump heuristic cost
#: more than they save (measured on the Bergwald-size benchmark: 0.78 s -> 0.37 s per solve).
HIGHS_OPTIONS: dict[str, Any] = {
    "presolve": "off",
    "mip_detect_symmetry": False,
    "mip_heuristic_run_feasibility_jump": False,
}
#: A relaxation's ``b`` this close to 0 or 1 is integral (then the relaxation solves the MILP).
INTEGRALITY_TOL = 1e-9
#: Volumes are reported rounded to this (MW); 1e-9 MW = 1 mW.
_ROUND_MW = 9


class ClearingStatus(str, Enum):
    """Outcome of a clearing."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    SOLVER_ERROR = "solver_error"


def _ro(values: Any) -> np.ndarray | None:
    if values is None:
        return None
    array = np.array(values, dtype=float)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class ClearingResult:
    """Result of a clearing (MILP or merit order).

    Attributes
    ----------
    status
        OPTIMAL (request delivered), INFEASIBLE (not deliverable; see ``max_deliverable_mw``) or
        SOLVER_ERROR (see ``message``).
    method, solver
        ``"milp"`` or ``"merit-order"``; the solver used (``"highs"``, ``"pyomo:appsi_highs"``...).
    requested_mw, delivered_mw
        ``P_E`` and the dispatched total (signed, MW); 0 unless OPTIMAL.
    cost_eur, duration_h
        Price times activated volume times ``duration_h``.
    chosen_point, chosen_point_label
        Index and label of the linearization point with ``b_i = 1`` (None for the merit order).
    max_deliverable_mw
        For INFEASIBLE: the largest volume in the request's direction that can be delivered,
        signed like the request (0 if none); None otherwise.
    activations
        Per bid: ``{bid_id, aggregator, offered_mw, activated_mw}``, in bid-table order.
    aggregators
        Per aggregator: ``{aggregator, offered_mw, activated_mw}``.
    piece_activations
        Per piece (bid x flexible bus): ``{bid_id, flex_id, offered_mw, activated_mw}``.
    flex_ids, p_flex_mw
        The dispatch per flexible bus (MW, + = more injection); what validation applies.
    bus_ids, vm_pu, branch_ids, loading_percent
        Predicted ``G_V`` and ``G_L`` at the chosen point (None for the merit order).
    build_s, solve_s, runtime_s
        Model build time, solver time (both MILPs), and wall time of the whole call.
    message
        Human-readable note (why infeasible, solver message).
    stats
        Model size: ``cols``, ``rows``, ``nonzeros``, ``rows_screened``, ``pieces``.
    """

    status: ClearingStatus
    method: str
    solver: str
    requested_mw: float
    delivered_mw: float
    cost_eur: float
    duration_h: float = 1.0
    chosen_point: int | None = None
    chosen_point_label: str | None = None
    max_deliverable_mw: float | None = None
    activations: tuple[dict[str, Any], ...] = ()
    aggregators: tuple[dict[str, Any], ...] = ()
    piece_activations: tuple[dict[str, Any], ...] = ()
    flex_ids: tuple[str, ...] = ()
    p_flex_mw: np.ndarray | None = None
    bus_ids: tuple[str, ...] = ()
    vm_pu: np.ndarray | None = None
    branch_ids: tuple[str, ...] = ()
    loading_percent: np.ndarray | None = None
    build_s: float = 0.0
    solve_s: float = 0.0
    runtime_s: float = 0.0
    message: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ClearingStatus(self.status))
        for name in ("p_flex_mw", "vm_pu", "loading_percent"):
            object.__setattr__(self, name, _ro(getattr(self, name)))
        for name in ("flex_ids", "bus_ids", "branch_ids"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("activations", "aggregators", "piece_activations"):
            object.__setattr__(self, name, tuple(dict(d) for d in getattr(self, name)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClearingResult) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def ok(self) -> bool:
        return self.status is ClearingStatus.OPTIMAL

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict (arrays as lists, status as its value)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, ClearingStatus):
                value = value.value
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = [dict(v) if isinstance(v, dict) else v for v in value]
            elif isinstance(value, dict):
                value = dict(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClearingResult":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            raise InputError("a clearing result must be a dict")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown clearing result field(s): {sorted(unknown)}")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            raise InputError(f"malformed clearing result: {exc}") from exc


# --- input checks --------------------------------------------------------------------------------


def _check_request(request_mw: Any) -> float:
    try:
        value = float(request_mw)
    except (TypeError, ValueError):
        raise InputError(f"the request must be a number of MW, got {request_mw!r}") from None
    if not math.isfinite(value):
        raise InputError(f"the request must be finite, got {value}")
    if value == 0.0:
        raise InputError("the request is 0 MW: nothing to clear")
    return value


def _check_duration(duration_h: Any) -> float:
    value = float(duration_h)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"duration_h must be positive and finite, got {duration_h!r}")
    return value


def _pieces(package: SensitivityPackage, bids: BidTable) -> PieceSet:
    if not isinstance(package, SensitivityPackage):
        raise InputError(f"expected a SensitivityPackage, got {type(package).__name__}")
    pieces = pieces_from_bids(bids, package)
    if not (np.all(np.isfinite(pieces.p_mw)) and np.all(np.isfinite(pieces.price_eur_per_mwh))):
        raise InputError("bid volumes and prices must be finite")
    return pieces


# --- the model as arrays -------------------------------------------------------------------------


@dataclass(frozen=True)
class _PointRows:
    """Per operating point: the kept grid rows and Voronoi rows in piece space.

    Grid rows ``a @ dP <= b`` with ``dP = M y - P_flex,i`` become ``g y + h b_i <= 0`` with
    ``g = a M`` and ``h = -(b + a P_flex,i)``; Voronoi rows ``vor_a y + vor_c b_i >= 0``.
    ``g`` is given (``g_pieces``, rows the TSO screened) or gathered from the package's point
    (all its rows, columns of the flexible buses) on first use: the per-point search solves few
    points in full, and on the whole shared file's m = 20 package gathering every point's rows
    was 0.1 s. ``g_csr`` is the same matrix sparse, gathered from the point's cached CSR
    (:attr:`~optim.package.OperatingPoint.a_csr`): the per-point LPs are built from it.
    """

    h: np.ndarray  # (n_kept,)
    n_rows: int  # rows in the package before the TSO's screening
    vor_j: tuple[int, ...]  # the kept neighbours j of (14h)
    vor_a: np.ndarray  # (len(vor_j), K) rows (P_i - P_j)^T M
    vor_c: np.ndarray  # (len(vor_j),) coefficient of b_i
    g_pieces: np.ndarray | None = None  # (n_kept, K), or None: gathered from point
    point: OperatingPoint | None = None  # the package's point, every row kept
    flex_index: np.ndarray | None = None  # (K,) flexible bus of each piece
    p_flex_mw: np.ndarray | None = None  # the point's dispatch per flexible bus (the tie-break's target)

    # caches written straight into __dict__ (frozen dataclass): functools.cached_property's lock
    # is shared by every instance on Python 3.11 and would make the LP threads gather one at a time
    @property
    def g(self) -> np.ndarray:
        if self.g_pieces is not None:
            return self.g_pieces
        cached = self.__dict__.get("_g")
        if cached is None:
            # np.take gives C order at once; a[:, fi] gave a strided copy that was copied again
            cached = self.__dict__["_g"] = np.take(self.point.a_per_mw, self.flex_index, axis=1)
        return cached

    @property
    def g_csr(self) -> sp.csr_matrix:
        cached = self.__dict__.get("_g_csr")
        if cached is None:
            if self.g_pieces is not None:
                cached = sparse_rows(self.g_pieces)
            else:  # a column gather of the cached CSR: its own arrays, the package's are untouched
                cached = self.point.a_csr[:, self.flex_index]
            self.__dict__["_g_csr"] = cached
        return cached


def _box_range(a: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``a @ y`` over ``lower <= y <= upper`` (row-wise)."""
    pos, neg = np.clip(a, 0.0, None), np.clip(a, None, 0.0)
    return pos @ lower + neg @ upper, pos @ upper + neg @ lower


def _keep(value: np.ndarray, limit: float, *, above: bool) -> np.ndarray:
    """Rows that might violate ``limit`` (kept): ``value`` not safely above / below it."""
    margin = SCREEN_MARGIN * max(1.0, abs(limit))
    return value < limit + margin if above else value > limit - margin


def _check_box(package: SensitivityPackage, pieces: PieceSet) -> None:
    """Bids must stay inside the dispatch box the package's rows were screened for."""
    if package.row_box_lower_mw is None:
        return
    n_f = len(package.flex_ids)
    low, up = pieces.p_flex_mw(pieces.lower_mw), pieces.p_flex_mw(pieces.upper_mw)
    tol = 1e-9 + 1e-9 * np.abs(package.row_box_upper_mw - package.row_box_lower_mw)
    bad = np.flatnonzero((low < package.row_box_lower_mw - tol) | (up > package.row_box_upper_mw + tol))
    if len(bad):
        raise InputError(f"the bids offer more at {len(bad)} flexible bus(es) (e.g. {package.flex_ids[bad[0]]}) than "
                         "the package was linearized for; re-run 'digiplat linearize' with these bids")


def _screened_by_the_dso(package: SensitivityPackage, pieces: PieceSet) -> bool:
    """True if the package's rows were screened by the DSO within exactly the bids' box (a hardened package).

    The TSO's screening of such rows keeps every one of them (same box, same margin), so it is
    skipped: on the whole shared file's package it was half of the clearing, and keeping a row is
    always exact.
    """
    if package.style != "hardened" or package.row_box_lower_mw is None:
        return False
    n_f = len(package.flex_ids)
    low, up = pieces.p_flex_mw(pieces.lower_mw), pieces.p_flex_mw(pieces.upper_mw)
    tol = 1e-12 + 1e-12 * np.abs(package.row_box_upper_mw - package.row_box_lower_mw)
    return bool(np.all(np.abs(low - package.row_box_lower_mw) <= tol) and np.all(np.abs(up - package.row_box_upper_mw) <= tol))


def _point_rows(package: SensitivityPackage, pieces: PieceSet, *, screen: bool) -> list[_PointRows]:
    lower, upper = pieces.lower_mw, pieces.upper_mw
    fi = pieces.flex_index
    _check_box(package, pieces)
    screen_grid_rows = screen and not _screened_by_the_dso(package, pieces)
    p_all = np.array([np.asarray(p.p_flex_mw, dtype=float) for p in package.points]).reshape(package.n_points, -1)
    out = []
    for i, pt in enumerate(package.points):
        h = -(pt.b + pt.a_per_mw @ pt.p_flex_mw)
        grid: dict[str, Any] = {"point": pt, "flex_index": fi}
        if screen_grid_rows and len(h):
            g = np.take(pt.a_per_mw, fi, axis=1)
            keep = _box_range(g, lower, upper)[1] + h > -SCREEN_MARGIN * np.maximum(1.0, np.abs(h))
            grid = {"g_pieces": np.ascontiguousarray(g[keep])}
            h = h[keep]
        # (14h) against every other point at once: one box range per point, not one per pair
        others = np.array([j for j in range(len(package.points)) if j != i], dtype=np.int64)
        d = pt.p_flex_mw[None, :] - p_all[others]  # rows P_i - P_j: P_fix cancels
        vor_a = np.take(d, fi, axis=1)
        vor_c = 0.5 * np.einsum("ij,ij->i", d, d) - d @ pt.p_flex_mw
        if screen and len(others):
            lo = _box_range(vor_a, lower, upper)[0] if len(fi) else np.zeros(len(others))
            kept = _keep(lo + vor_c, 0.0, above=True)
            others, vor_a, vor_c = others[kept], vor_a[kept], vor_c[kept]
        out.append(
            _PointRows(
                h=np.asarray(h, dtype=float),
                n_rows=pt.n_rows,
                vor_j=tuple(int(j) for j in others),
                vor_a=np.ascontiguousarray(vor_a, dtype=float).reshape(len(others), len(fi)),
                vor_c=np.asarray(vor_c, dtype=float),
                p_flex_mw=np.asarray(pt.p_flex_mw, dtype=float),
                **grid,
            )
        )
    return out


@dataclass
class _Arrays:
    """The MILP in HiGHS' array form. Columns: y_0 (K), ..., y_{m-1} (K), b_0..b_{m-1}."""

    cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    stats: dict[str, Any]


def _screen_stats(rows: list[_PointRows], n_pieces: int) -> dict[str, int]:
    m = len(rows)
    possible = sum(pr.n_rows + (m - 1) for pr in rows)
    kept = sum(len(pr.h) + len(pr.vor_j) for pr in rows)
    return {"pieces": n_pieces, "points": m, "rows_screened": possible - kept, "rows_sensitivity_kept": kept}


def _block(dense: np.ndarray, point: int, n_pieces: int, n_points: int) -> sp.csr_matrix:
    """CSR of a dense ``[A | c]`` block, columns moved to ``y_point`` and ``b_point``."""
    block = sp.csr_matrix(dense)
    idx = block.indices
    block.indices = np.where(idx < n_pieces, point * n_pieces + idx, n_points * n_pieces + point).astype(idx.dtype)
    block._shape = (dense.shape[0], n_points * (n_pieces + 1))  # noqa: SLF001 - same data, wider
    return block


def _arrays(
    package: SensitivityPackage,
    pieces: PieceSet,
    rows: list[_PointRows],
    request_mw: float,
    duration_h: float,
    *,
    maximise: bool = False,
) -> _Arrays:
    """The clearing MILP; with ``maximise``, the largest delivery towards ``request_mw`` instead."""
    m, K = package.n_points, pieces.n_pieces
    n_cols = m * (K + 1)
    sign = np.sign(pieces.p_mw)
    s = 1.0 if request_mw > 0 else -1.0
    if maximise:
        cost = np.concatenate([np.full(m * K, -s), np.zeros(m)])
    else:
        cost = np.concatenate([np.tile(pieces.price_eur_per_mwh * sign * duration_h, m), np.zeros(m)])
    col_lower = np.concatenate([np.tile(pieces.lower_mw, m), np.zeros(m)])
    col_upper = np.concatenate([np.tile(pieces.upper_mw, m), np.ones(m)])
    integrality = np.concatenate([np.zeros(m * K, np.int32), np.ones(m, np.int32)])

    blocks: list[sp.csr_matrix] = []
    lows: list[np.ndarray] = []
    ups: list[np.ndarray] = []

    def add(block: sp.csr_matrix, low: np.ndarray, up: np.ndarray) -> None:
        blocks.append(block)
        lows.append(np.asarray(low, float))
        ups.append(np.asarray(up, float))

    # (14b,c): y_ik - P_M,k b_i <= 0 (upward pieces) or >= 0 (downward); zero pieces are fixed at 0
    nz = np.flatnonzero(pieces.p_mw)
    for i in range(m):
        r = np.arange(len(nz))
        link = sp.csr_matrix(
            (
                np.concatenate([np.ones(len(nz)), -pieces.p_mw[nz]]),
                (np.concatenate([r, r]), np.concatenate([i * K + nz, np.full(len(nz), m * K + i)])),
            ),
            shape=(len(nz), n_cols),
        )
        up = pieces.p_mw[nz] > 0
        add(link, np.where(up, -np.inf, 0.0), np.where(up, 0.0, np.inf))
    for i, pr in enumerate(rows):
        # (14d-g) the package's rows, homogeneous in (y_i, b_i): g y_i + h b_i <= 0
        if len(pr.h):
            dense = np.hstack([pr.g, pr.h[:, None]])
            add(_block(dense, i, K, m), np.full(len(pr.h), -np.inf), np.zeros(len(pr.h)))
        # (14h) Voronoi cells
        if len(pr.vor_j):
            dense = np.hstack([pr.vor_a, pr.vor_c[:, None]])
            add(_block(dense, i, K, m), np.zeros(len(pr.vor_j)), np.full(len(pr.vor_j), np.inf))
    # (14i) one point
    add(sp.csr_matrix((np.ones(m), (np.zeros(m, int), m * K + np.arange(m))), shape=(1, n_cols)), [1.0], [1.0])
    # (14j) per point: sum_k y_ik - P_E b_i = 0 (summed over i with (14i): the paper's (14j))
    r = np.repeat(np.arange(m), K + 1)
    c = np.concatenate([np.append(i * K + np.arange(K), m * K + i) for i in range(m)])
    if not maximise:
        v = np.tile(np.append(np.ones(K), -request_mw), m)
        add(sp.csr_matrix((v, (r, c)), shape=(m, n_cols)), np.zeros(m), np.zeros(m))
    else:  # 0 <= s sum_k y_ik <= |P_E| b_i
        v = np.tile(np.append(np.full(K, s), -abs(request_mw)), m)
        add(sp.csr_matrix((v, (r, c)), shape=(m, n_cols)), np.full(m, -np.inf), np.zeros(m))
        add(sp.csr_matrix((np.full(m * K, s), (np.repeat(np.arange(m), K), np.arange(m * K))), shape=(m, n_cols)),
            np.zeros(m), np.full(m, np.inf))
    matrix = sp.vstack(blocks, format="csr")
    matrix.sort_indices()
    stats = {"cols": n_cols, "rows": matrix.shape[0], "nonzeros": int(matrix.nnz), **_screen_stats(rows, K)}
    return _Arrays(
        cost=cost,
        col_lower=col_lower,
        col_upper=col_upper,
        integrality=integrality,
        matrix=matrix,
        row_lower=np.concatenate(lows),
        row_upper=np.concatenate(ups),
        stats=stats,
    )


# --- solvers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence C-level stdout (HiGHS prints a banner when its first instance is created)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # pytest capture, notebooks: nothing to do
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


_BANNER_SHOWN = False
_BANNER_LOCK = threading.Lock()


def _new_highs() -> Any:
    """A ``highspy.Highs``; the first one of the process is created with stdout silenced.

    HiGHS prints its banner on stdout once per process, when the first instance is created, before
    any option can be set; it would spoil the JSON line of ``digiplat clear --json``. Pyomo's HiGHS
    interfaces create their own instances, so this is called before them too.
    """
    import highspy

    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        return highspy.Highs()
    # one thread at a time: two LP threads silencing fd 1 at once restored it to /dev/null
    # (digiplat day --json lost its JSON line)
    with _BANNER_LOCK:
        if _BANNER_SHOWN:
            return highspy.Highs()
        with _quiet_stdout():
            h = highspy.Highs()
        _BANNER_SHOWN = True
    return h


@dataclass
class _Solution:
    status: ClearingStatus
    y: np.ndarray | None = None  # (m, K)
    b: np.ndarray | None = None  # (m,)
    objective: float = float("nan")
    message: str = ""
    relaxation_integral: bool = False  # solved by the LP relaxation alone
    nonzeros: int = 0  # of the per-point LPs' matrices
    lps_solved: int = 0  # full per-point LPs solved (the others were pruned by their cell's bound)
    lps_cut_off: int = 0  # of these, LPs the dual simplex stopped once they could not beat the best


def _solve_highs(arr: _Arrays, *, mip_rel_gap: float, time_limit_s: float, m: int, K: int,
                 options: Mapping[str, Any] | None = None) -> _Solution:
    import highspy

    h = _new_highs()
    h.setOptionValue("output_flag", False)
    for name, value in {**HIGHS_OPTIONS, **(options or {})}.items():
        h.setOptionValue(name, value)
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("time_limit", float(time_limit_s))
    A = arr.matrix
    status = h.passModel(
        int(A.shape[1]),
        int(A.shape[0]),
        int(A.nnz),
        int(highspy.MatrixFormat.kRowwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        arr.cost,
        arr.col_lower,
        arr.col_upper,
        arr.row_lower,
        arr.row_upper,
        A.indptr[:-1].astype(np.int32),
        A.indices.astype(np.int32),
        A.data.astype(float),
        arr.integrality,
    )
    if status == highspy.HighsStatus.kError:
        return _Solution(ClearingStatus.SOLVER_ERROR, message="HiGHS rejected the model")
    infeasible = (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible)
    # The LP relaxation first: with (14b-h,j) homogeneous in (y_i, b_i) it is the convex hull of the
    # m linearizations, so its vertex optimum usually has integral b, and is then the MILP optimum.
    h.setOptionValue("solve_relaxation", True)
    h.run()
    model_status = h.getModelStatus()
    if model_status in infeasible:  # the relaxation is infeasible, so is the MILP
        return _Solution(ClearingStatus.INFEASIBLE, message="infeasible", relaxation_integral=True)
    if model_status == highspy.HighsModelStatus.kOptimal:
        x = np.asarray(h.getSolution().col_value, dtype=float)
        b = x[m * K :]
        if np.all(np.minimum(np.abs(b), np.abs(1.0 - b)) <= INTEGRALITY_TOL):
            return _Solution(ClearingStatus.OPTIMAL, y=x[: m * K].reshape(m, K), b=np.round(b),
                             objective=h.getInfo().objective_function_value, relaxation_integral=True)
    h.setOptionValue("solve_relaxation", False)
    h.run()
    model_status = h.getModelStatus()
    if model_status in infeasible:
        return _Solution(ClearingStatus.INFEASIBLE, message="infeasible")
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    if model_status != highspy.HighsModelStatus.kOptimal and not has_solution:
        return _Solution(ClearingStatus.SOLVER_ERROR, message=f"HiGHS: {h.modelStatusToString(model_status)}")
    x = np.asarray(h.getSolution().col_value, dtype=float)
    note = "" if model_status == highspy.HighsModelStatus.kOptimal else f"HiGHS: {h.modelStatusToString(model_status)}"
    return _Solution(
        ClearingStatus.OPTIMAL, y=x[: m * K].reshape(m, K), b=x[m * K :], objective=info.objective_function_value, message=note
    )


def _pyomo_model(
    package: SensitivityPackage,
    pieces: PieceSet,
    rows: list[_PointRows],
    request_mw: float | None,
    duration_h: float,
    *,
    maximise_direction: float | None = None,
) -> Any:
    """The same MILP written in Pyomo from the formulation (not from the CSR)."""
    import pyomo.environ as pyo

    m, K = package.n_points, pieces.n_pieces
    P = pieces.p_mw
    model = pyo.ConcreteModel(name="paper_a_eq14")
    model.I = pyo.RangeSet(0, m - 1)
    model.K = pyo.RangeSet(0, K - 1)
    model.y = pyo.Var(model.I, model.K, bounds=lambda _m, i, k: (min(0.0, P[k]), max(0.0, P[k])))
    model.b = pyo.Var(model.I, domain=pyo.Binary)
    y, b = model.y, model.b
    quicksum = pyo.quicksum

    # (14b,c)
    def link(_m: Any, i: int, k: int) -> Any:
        if P[k] > 0:
            return y[i, k] <= P[k] * b[i]
        if P[k] < 0:
            return y[i, k] >= P[k] * b[i]
        return pyo.Constraint.Skip

    model.link = pyo.Constraint(model.I, model.K, rule=link)
    model.grid = pyo.ConstraintList()
    for i, pr in enumerate(rows):
        # (14d-g): a (M y_i - P_flex,i b_i) <= b b_i, i.e. g y_i + h b_i <= 0
        for e in range(len(pr.h)):
            g = quicksum(float(pr.g[e, k]) * y[i, k] for k in range(K) if pr.g[e, k] != 0.0)
            model.grid.add(g + float(pr.h[e]) * b[i] <= 0)
        for r, _j in enumerate(pr.vor_j):
            h = quicksum(float(pr.vor_a[r, k]) * y[i, k] for k in range(K) if pr.vor_a[r, k] != 0.0)
            model.grid.add(h + float(pr.vor_c[r]) * b[i] >= 0)
    model.one_point = pyo.Constraint(expr=quicksum(b[i] for i in range(m)) == 1)
    total = quicksum(y[i, k] for i in range(m) for k in range(K))

    def delivered(i: int) -> Any:
        return quicksum(y[i, k] for k in range(K))

    if maximise_direction is None:
        # (14j) per point; summed over i with (14i) it is sum_i sum_k y_ik = P_E
        model.request = pyo.Constraint(model.I, rule=lambda _m, i: delivered(i) == request_mw * b[i])
        sign = np.sign(P)
        model.cost = pyo.Objective(
            expr=quicksum(
                float(pieces.price_eur_per_mwh[k] * sign[k] * duration_h) * y[i, k]
                for i in range(m)
                for k in range(K)
                if sign[k] != 0
            ),
            sense=pyo.minimize,
        )
    else:
        s = float(maximise_direction)
        model.request = pyo.Constraint(model.I, rule=lambda _m, i: s * delivered(i) <= abs(request_mw) * b[i])
        model.request_sign = pyo.Constraint(model.I, rule=lambda _m, i: s * delivered(i) >= 0)
        model.cost = pyo.Objective(expr=s * total, sense=pyo.maximize)
    return model


_GAP_OPTION = {"appsi_highs": "mip_rel_gap", "highs": "mip_rel_gap", "gurobi": "MIPGap", "gurobi_direct": "MIPGap",
               "gurobi_persistent": "MIPGap", "cbc": "ratioGap", "glpk": "mipgap", "cplex": "mip_tolerances_mipgap"}
_TIME_OPTION = {"appsi_highs": "time_limit", "highs": "time_limit", "gurobi": "TimeLimit", "gurobi_direct": "TimeLimit",
                "gurobi_persistent": "TimeLimit", "cbc": "seconds", "glpk": "tmlim"}


def _solve_pyomo(model: Any, name: str, *, mip_rel_gap: float, time_limit_s: float, m: int, K: int) -> _Solution:
    import pyomo.environ as pyo
    from pyomo.opt import SolverStatus, TerminationCondition

    try:
        solver = pyo.SolverFactory(name)
        available = solver.available(exception_flag=False)
    except Exception as exc:  # noqa: BLE001 - Pyomo raises various errors for unknown names
        raise InputError(f"Pyomo solver {name!r} is not usable: {exc}") from exc
    if not available:
        raise InputError(f"Pyomo solver {name!r} is not available on this machine")
    if name in _GAP_OPTION:
        solver.options[_GAP_OPTION[name]] = float(mip_rel_gap)
    if name in _TIME_OPTION:
        solver.options[_TIME_OPTION[name]] = float(time_limit_s) if name != "glpk" else int(time_limit_s)
    if "highs" in name:
        _new_highs()  # the banner, silenced, before Pyomo creates its instance
    try:
        results = solver.solve(model, load_solutions=False)
    except Exception as exc:  # noqa: BLE001 - report any solver failure as a status
        return _Solution(ClearingStatus.SOLVER_ERROR, message=f"{name}: {exc}")
    tc = results.solver.termination_condition
    if tc in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded):
        return _Solution(ClearingStatus.INFEASIBLE, message="infeasible")
    if tc != TerminationCondition.optimal and results.solver.status != SolverStatus.ok:
        return _Solution(ClearingStatus.SOLVER_ERROR, message=f"{name}: {tc}")
    try:
        model.solutions.load_from(results)
    except Exception as exc:  # noqa: BLE001
        return _Solution(ClearingStatus.SOLVER_ERROR, message=f"{name}: no solution to load ({exc})")
    y = np.array([[pyo.value(model.y[i, k], exception=False) or 0.0 for k in range(K)] for i in range(m)]).reshape(m, K)
    b = np.array([pyo.value(model.b[i], exception=False) or 0.0 for i in range(m)])
    return _Solution(ClearingStatus.OPTIMAL, y=y, b=b, objective=float(pyo.value(model.cost)),
                     message="" if tc == TerminationCondition.optimal else f"{name}: {tc}")


def _parse_solver(solver: str) -> tuple[str, str | None]:
    if not isinstance(solver, str):
        raise InputError(f"solver must be a string, got {solver!r}")
    if solver in ("highs", "highspy"):
        return "per-point", None
    if solver == "highs-milp":
        return "highs", None
    if solver.startswith("pyomo:") and len(solver) > len("pyomo:"):
        return "pyomo", solver[len("pyomo:") :]
    raise InputError(f"unknown solver {solver!r}: use 'highs', 'highs-milp' or 'pyomo:NAME' (e.g. 'pyomo:appsi_highs')")


# --- the exact per-point decomposition -------------------------------------------------------------


def _point_lp(pr: _PointRows, pieces: PieceSet, request_mw: float, duration_h: float, *,
              maximise: bool) -> tuple[Any, ...]:
    """Point ``i``'s LP (``b_i = 1``) in HiGHS' array form: costs, bounds, CSR rows and row bounds."""
    K = pieces.n_pieces
    s = 1.0 if request_mw > 0 else -1.0
    sign = np.sign(pieces.p_mw)
    cost = np.full(K, -s) if maximise else pieces.price_eur_per_mwh * sign * duration_h
    small = [pr.vor_a, np.full((1, K), s) if maximise else np.ones((1, K))]
    low = [np.full(len(pr.h), -np.inf), -pr.vor_c]
    up = [-pr.h, np.full(len(pr.vor_c), np.inf)]
    if maximise:  # 0 <= s sum_k y_k <= |P_E|
        low.append(np.array([0.0]))
        up.append(np.array([abs(request_mw)]))
    else:  # (14j)
        low.append(np.array([request_mw]))
        up.append(np.array([request_mw]))
    # the grid rows sparse (8 % nonzeros on the whole shared file), the m dense rows appended:
    # building the dense stack and scanning it for nonzeros was 10 of the 35 ms of a point's LP
    matrix = sp.vstack([pr.g_csr, sparse_rows(np.vstack(small))], format="csr")
    return cost, pieces.lower_mw, pieces.upper_mw, matrix, np.concatenate(low), np.concatenate(up)


def _point_highs(lp: tuple[Any, ...], *, time_limit_s: float) -> Any:
    """A HiGHS instance holding point ``i``'s LP (None if HiGHS refuses the model)."""
    import highspy

    cost, col_lower, col_upper, A, row_lower, row_upper = lp
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", "off")
    h.setOptionValue("time_limit", float(time_limit_s))
    status = h.passModel(int(A.shape[1]), int(A.shape[0]), int(A.nnz), int(highspy.MatrixFormat.kRowwise),
                         int(highspy.ObjSense.kMinimize), 0.0, np.asarray(cost, float), col_lower, col_upper,
                         row_lower, row_upper, np.asarray(A.indptr[:-1], np.int32), np.asarray(A.indices, np.int32),
                         np.asarray(A.data, float), np.zeros(int(A.shape[1]), np.int32))
    return None if status == highspy.HighsStatus.kError else h


def _lp_result(h: Any) -> tuple[str, np.ndarray | None, float]:
    """Run a HiGHS instance: ``(status, column values, objective)``."""
    import highspy

    h.run()
    model_status = h.getModelStatus()
    if model_status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        return "infeasible", None, float("nan")
    if model_status == highspy.HighsModelStatus.kObjectiveBound:
        return "cut off", None, float("nan")
    if model_status != highspy.HighsModelStatus.kOptimal:
        return h.modelStatusToString(model_status), None, float("nan")
    return "optimal", np.asarray(h.getSolution().col_value, dtype=float), float(h.getInfo().objective_function_value)


def _solve_point_lp(lp: tuple[Any, ...], *, time_limit_s: float,
                    cutoff: float = math.inf) -> tuple[str, np.ndarray | None, float]:
    """Solve one point's LP; with a finite ``cutoff`` the dual simplex stops as ``"cut off"`` once
    its objective (a lower bound of the optimum at every dual feasible iterate) exceeds it."""
    h = _point_highs(lp, time_limit_s=time_limit_s)
    if h is None:
        return "error", None, float("nan")
    if math.isfinite(cutoff):
        h.setOptionValue("objective_bound", float(cutoff))
    return _lp_result(h)


#: Below this many coefficients (pieces x rows, summed over the points' LPs) the LPs run on the
#: calling thread: a Bergwald LP (~200 x 150) solves in about a millisecond, so for a few of them
#: the handoff to a thread and back under the GIL costs more than it saves (a two-point clearing:
#: 7.9-8.2 ms inline, 9.8 ms on two threads); 25 Bergwald points (0.7 M) and the whole shared
#: file's 20 (~1,700 x 1,100 each) gain from two.
LP_THREADS_MIN_WORK = 200_000


def _lp_threads(work: int | None = None) -> int:
    """Threads that solve per-point LPs side by side: ``$DIGIPLAT_LP_THREADS``, default the
    cores up to 2 (HiGHS releases the GIL while it solves; the LPs are independent), and 1 (the
    calling thread) for less ``work`` (pieces x rows of all the LPs) than :data:`LP_THREADS_MIN_WORK`."""
    value = os.environ.get("DIGIPLAT_LP_THREADS", "")
    try:
        threads = int(value) if value else min(2, os.cpu_count() or 1)
        if not value and work is not None and work < LP_THREADS_MIN_WORK:
            threads = 1
    except ValueError:
        raise InputError(f"DIGIPLAT_LP_THREADS must be a whole number of threads, got {value!r}") from None
    if threads < 1:
        raise InputError(f"DIGIPLAT_LP_THREADS must be at least 1, got {threads}")
    return threads


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


class _Inline:
    """The pool's interface on the calling thread (one LP thread: no handoff at all)."""

    @staticmethod
    def submit(fn: Any, *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised by future.result(), as a pool would
            future.set_exception(exc)
        return future

    @staticmethod
    def map(fn: Any, items: Any) -> Iterator[Any]:
        return map(fn, items)


def _lp_pool(threads: int) -> "ThreadPoolExecutor | _Inline":
    if threads == 1:
        return _Inline()
    return _thread_pool(threads)


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """The process' pool of ``threads`` LP threads, made once (starting two threads per clearing
    was 2.6 ms of a Bergwald clearing of 16 ms). Its tasks are single LPs that never wait on the
    pool, so clearings from several threads share it without deadlock; a forked child (gunicorn,
    Celery, dask workers) has none of its parent's threads and makes its own."""
    key = (os.getpid(), threads)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            for other in [k for k in _POOLS if k[0] != key[0]]:
                del _POOLS[other]  # a parent's pool: its threads do not exist in this process
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="digiplat-lp")
        return pool


#: A point is pruned only when its cell's bound exceeds the best LP cost by this much (relative):
#: far above the LPs' tolerances, so a point that could tie is always solved.
PRUNE_MARGIN = 1e-6


def _cell_bounds(rows: list[_PointRows], pieces: PieceSet, request_mw: float, duration_h: float, *,
                 time_limit_s: float, pool: "ThreadPoolExecutor | _Inline") -> np.ndarray:
    """A lower bound of each point's LP: the same LP without its grid rows (14d-g).

    Only the bids' box, (14j) and the point's Voronoi rows (14h) remain, ``m - 1`` rows instead
    of hundreds of dense ones, so it solves in a fraction of the time. ``inf``: the cell cannot
    deliver the request (nor can the full LP); ``-inf``: no bound (the solver failed), the point
    is solved in full.
    """
    K = pieces.n_pieces

    def bound(pr: _PointRows) -> float:
        cell = _PointRows(h=np.empty(0), n_rows=pr.n_rows, vor_j=pr.vor_j, vor_a=pr.vor_a, vor_c=pr.vor_c,
                          g_pieces=np.empty((0, K)))
        status, _, objective = _solve_point_lp(_point_lp(cell, pieces, request_mw, duration_h, maximise=False),
                                               time_limit_s=time_limit_s)
        return objective if status == "optimal" else (np.inf if status == "infeasible" else -np.inf)

    return np.array(list(pool.map(bound, rows)), dtype=float)


def _tie_break(rows: list[_PointRows], pieces: PieceSet, solved: dict, instances: dict,
               best: tuple[float, int, np.ndarray]) -> tuple[float, int, np.ndarray]:
    """The optimum's dispatch nearest its point, among the points that tie (module docstring, "Ties")."""
    tol = TIE_TOLERANCE * max(1.0, abs(best[0]))
    candidates = []
    for i in sorted(solved):
        status, y, objective = solved[i]
        if status != "optimal" or objective > best[0] + tol or i not in instances or rows[i].p_flex_mw is None:
            continue
        h, cost = instances[i]
        # capped at the best cost, not the point's own: every tied dispatch stays within FACE_SLACK of it
        y_i = _nearest_on_face(h, rows[i], pieces, cost, best[0], y)
        x = np.bincount(pieces.flex_index, weights=y_i, minlength=len(rows[i].p_flex_mw))
        candidates.append((round(float(np.abs(x - rows[i].p_flex_mw).sum()), 9), i, y_i))
    if not candidates:
        return best
    _, i, y = min(candidates, key=lambda c: (c[0], c[1]))
    return best[0], i, y


def _solve_per_point(rows: list[_PointRows], pieces: PieceSet, request_mw: float, duration_h: float, *,
                     time_limit_s: float, maximise: bool = False) -> _Solution:
    """The MILP as the minimum over the points of one LP each (exact: ``b`` is one-hot and
    ``y_j = 0`` for ``j != i``, so fixing ``b_i = 1`` leaves point ``i``'s LP).

    Minimising, the points are taken in the order of their cells' bounds (:func:`_cell_bounds`)
    and the search stops at the first point whose bound exceeds the best cost found by
    ``PRUNE_MARGIN``: every later point's LP costs at least its bound, so none of them could win
    or tie. The Voronoi rows keep each LP in its own cell, so the cells far from the cheap
    dispatches have bounds well above the optimum; on the whole shared file's m = 20 package 1 of
    the 20 LPs is solved at 1.8 MW, 12 at 10 MW. The winner is then chosen among the solved points
    exactly as among all of them, then :func:`_tie_break` picks among the tied points.
    """
    m, K = len(rows), pieces.n_pieces
    best: tuple[float, int, np.ndarray] | None = None
    errors = []
    nonzeros = 0
    solved: dict[int, tuple[str, np.ndarray | None, float]] = {}

    def cutoff() -> float:
        """The cost above which an LP can neither win nor tie: the best found plus the margin."""
        found = [obj for status, _, obj in solved.values() if status == "optimal"]
        return min(found) + PRUNE_MARGIN * max(1.0, abs(min(found))) if found else math.inf

    instances: dict[int, tuple[Any, np.ndarray]] = {}  # optimal LPs kept for the tie-break: (HiGHS, cost)

    def build_and_solve(i: int, limit: float) -> tuple[int, tuple[str, np.ndarray | None, float]]:
        # built in the worker: numpy's gathers release the GIL, so building overlaps the other solve
        lp = _point_lp(rows[i], pieces, request_mw, duration_h, maximise=maximise)
        h = _point_highs(lp, time_limit_s=time_limit_s)
        if h is None:
            return int(lp[3].nnz), ("error", None, float("nan"))
        if math.isfinite(limit):
            h.setOptionValue("objective_bound", float(limit))
        result = _lp_result(h)
        if result[0] == "optimal" and not maximise:
            instances[i] = (h, lp[0])  # one writer per key; read after the pool is done
        return int(lp[3].nnz), result

    threads = _lp_threads(K * sum(len(pr.h) + len(pr.vor_j) + 1 for pr in rows))
    pool = _lp_pool(threads)
    if maximise or m == 1:
        order = np.arange(m)
        bounds = np.full(m, -np.inf)
    else:
        bounds = _cell_bounds(rows, pieces, request_mw, duration_h, time_limit_s=time_limit_s, pool=pool)
        order = np.argsort(bounds, kind="stable")
    pending = [int(i) for i in order]
    running: dict[Future, int] = {}
    while pending or running:
        # keep every thread busy with the next points in bound order; a point started while a
        # cheaper one was still running costs time but never changes the winner (its bound,
        # hence its cost, is above that one's by more than the tie tolerance or it is compared)
        while pending and len(running) < threads:
            if bounds[pending[0]] == np.inf or bounds[pending[0]] > cutoff():
                pending.clear()  # this cell and every later one cannot deliver the request, or win
                break
            i = pending.pop(0)
            # the dual simplex stops once it proves this LP above the best cost found so far
            limit = math.inf if maximise else cutoff()
            running[pool.submit(build_and_solve, i, limit)] = i
        if running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                nnz, solved[running.pop(future)] = future.result()
                nonzeros += nnz
    for i in sorted(solved):
        status, y, objective = solved[i]
        if status == "optimal":
            # the first of the cheapest (within the solver's tolerance); _tie_break then chooses
            # among every point that ties with it
            if best is None or objective < best[0] - 1e-9 * max(1.0, abs(best[0])):
                best = (objective, i, y)
        elif status not in ("infeasible", "cut off"):
            errors.append(f"point {i}: {status}")
    if best is not None and not maximise:
        best = _tie_break(rows, pieces, solved, instances, best)
    if best is None:
        if errors:
            return _Solution(ClearingStatus.SOLVER_ERROR, message="HiGHS: " + "; ".join(errors), nonzeros=nonzeros,
                             lps_solved=len(solved))
        return _Solution(ClearingStatus.INFEASIBLE, message="infeasible", nonzeros=nonzeros, lps_solved=len(solved))
    objective, i, y = best
    y_all = np.zeros((m, K))
    y_all[i] = y
    b = np.zeros(m)
    b[i] = 1.0
    return _Solution(ClearingStatus.OPTIMAL, y=y_all, b=b, objective=objective, relaxation_integral=True,
                     nonzeros=nonzeros, lps_solved=len(solved),
                     lps_cut_off=sum(status == "cut off" for status, _, _ in solved.values()))


#: Points whose LP costs are within this (relative) of the best tie; far below ``PRUNE_MARGIN``, so
#: every tied point was solved in full and none was cut off.
TIE_TOLERANCE = 1e-8
#: The second stage keeps the cost within this (relative) of the best over the tied points: above
#: HiGHS' primal feasibility tolerance on a cost row of ~100 EUR, below anything a price can express.
#: At least ``TIE_TOLERANCE``, so every tied point's own optimum satisfies the row it is given.
FACE_SLACK = 1e-8
assert TIE_TOLERANCE <= FACE_SLACK


def _face_weights(point_mw: np.ndarray, pieces: PieceSet) -> np.ndarray:
    """Per piece, the cost of the second stage: a linear measure of the distance to the point.

    With ``f`` the fraction of its bus's offer (in the piece's direction) that the point
    dispatches, the weight ``sign(P_M) (1 - 2 f)`` is ``+|y|`` where the point has nothing,
    ``-|y|`` where it has the whole offer: minimised, the dispatch keeps off what is off at the
    point and on what is on (exactly the L1 distance for the all-or-nothing points of
    ``merit-levels``, up to a constant). At a bus the point dispatches in part it is only a
    preference by side (``f < 1/2``: less, ``f > 1/2``: more, ``f = 1/2``: none), not the distance:
    paper A's all/half/none points get no tie-break at their half point, and a marginal bus of a
    level may be moved past its point's value. The exact L1 (one more column and two rows per bus)
    was tried on 2026-12-03 and is not used: its optimum is itself a face (any split of the
    deviation among buses off at the point), the simplex vertex it returns changed with the secret
    row scales of hardened packages, and halfway between the bisected levels of weekday 18:00 it
    met Table I at 7 of 10 requests against 9 of 10 with these weights
    (``tests/unit/test_dso_linearize.py::test_bisected_levels_meet_table_i_where_nine_levels_missed``).
    """
    fi = pieces.flex_index
    n = len(point_mw)
    sign = np.sign(pieces.p_mw)
    weights = np.zeros(pieces.n_pieces)
    for s in (1.0, -1.0):
        mask = sign == s
        if not mask.any():
            continue
        offered = np.bincount(fi[mask], weights=np.abs(pieces.p_mw[mask]), minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.clip(np.where(offered > 0, s * point_mw / offered, 0.0), 0.0, 1.0)
        weights[mask] = s * (1.0 - 2.0 * f[fi[mask]])
    return weights


def _nearest_on_face(h: Any, pr: _PointRows, pieces: PieceSet, cost: np.ndarray, objective: float,
                     y: np.ndarray) -> np.ndarray:
    """Among point ``i``'s dispatches of cost at most ``objective``, the one nearest its point (second stage).

    ``objective`` is the best cost over the points (point ``i``'s own is within ``TIE_TOLERANCE``
    of it, so its optimal basis stays feasible). The solved instance ``h`` gets the row
    ``cost . y <= objective + slack`` and the weights of
    :func:`_face_weights` as costs; the simplex restarts from the optimal basis (the new row basic).
    """
    import highspy

    K = pieces.n_pieces
    cols = np.arange(K, dtype=np.int32)
    upper = objective + FACE_SLACK * max(1.0, abs(objective))
    h.setOptionValue("objective_bound", math.inf)
    h.addRow(-math.inf, upper, K, cols, np.asarray(cost, dtype=float))
    h.changeColsCost(K, cols, _face_weights(pr.p_flex_mw, pieces))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return y  # the first stage's optimum stands
    return np.asarray(h.getSolution().col_value, dtype=float)


# --- public API ----------------------------------------------------------------------------------


def clear_milp(
    package: SensitivityPackage,
    bids: BidTable,
    request_mw: float,
    *,
    solver: str = "highs",
    duration_h: float = 1.0,
    screen: bool = True,
    mip_rel_gap: float = 1e-6,
    time_limit_s: float = 60.0,
) -> ClearingResult:
    """Clear the bids against the request with the piecewise MILP of paper A (eq. 14).

    Parameters
    ----------
    package
        The DSO's sensitivity package (all the TSO sees of the grid).
    bids
        The checked bid table; split onto flexible buses by the BCM.
    request_mw
        ``P_E``, signed: ``+`` = upward balancing energy (more injection from the DS).
    solver
        ``"highs"`` (default: the exact per-point decomposition, one highspy LP per point),
        ``"highs-milp"`` (the joint MILP, one CSR, highspy) or ``"pyomo:NAME"`` (the joint MILP
        written in Pyomo).
    duration_h
        Activation duration for the cost (EUR = EUR/MWh x MW x h).
    screen
        Leave out rows that cannot bind within the bid bounds (same optimum, smaller model).
    mip_rel_gap, time_limit_s
        Solver options.

    Returns
    -------
    ClearingResult
        OPTIMAL with the dispatch, the chosen point and the predicted V and L; INFEASIBLE with
        ``max_deliverable_mw``; SOLVER_ERROR with a message.

    Raises
    ------
    InputError
        Non-finite or zero request, bids on buildings unknown to the package, unknown solver.
    """
    t0 = time.perf_counter()
    request = _check_request(request_mw)
    duration = _check_duration(duration_h)
    kind, pyomo_name = _parse_solver(solver)
    pieces = _pieces(package, bids)
    m, K = package.n_points, pieces.n_pieces
    rows = _point_rows(package, pieces, screen=bool(screen))
    if kind == "per-point":
        stats = {"cols": m * K, "rows": sum(len(pr.h) + len(pr.vor_j) + 1 for pr in rows),
                 "lps": m, **_screen_stats(rows, K)}
        t1 = time.perf_counter()
        sol = _solve_per_point(rows, pieces, request, duration, time_limit_s=time_limit_s)
        stats["nonzeros"] = sol.nonzeros  # counted in the LPs' own matrices (a second pass cost 7 %)
        stats["lps_solved"] = sol.lps_solved
        stats["lps_cut_off"] = sol.lps_cut_off
    elif kind == "highs":
        arr = _arrays(package, pieces, rows, request, duration)
        stats = dict(arr.stats)
        t1 = time.perf_counter()
        sol = _solve_highs(arr, mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s, m=m, K=K)
        stats["relaxation_integral"] = sol.relaxation_integral
    else:
        model = _pyomo_model(package, pieces, rows, request, duration)
        stats = {"cols": m * (K + 1), "rows": int(model.nconstraints()), **_screen_stats(rows, K)}
        t1 = time.perf_counter()
        sol = _solve_pyomo(model, pyomo_name, mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s, m=m, K=K)
    build_s = t1 - t0
    solve_s = time.perf_counter() - t1
    solver_name = {"per-point": "highs", "highs": "highs-milp"}.get(kind, f"pyomo:{pyomo_name}")
    paper = package.style == "paper"
    common = dict(method="milp", solver=solver_name, requested_mw=request, duration_h=duration, stats=stats,
                  flex_ids=package.flex_ids, bus_ids=package.bus_ids if paper else (),
                  branch_ids=package.branch_ids if paper else ())

    if sol.status is ClearingStatus.INFEASIBLE:
        t2 = time.perf_counter()
        best, note = _max_deliverable(package, pieces, rows, request, duration, kind, pyomo_name,
                                      mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s)
        solve_s += time.perf_counter() - t2
        zero = np.zeros(K)
        result = ClearingResult(
            status=ClearingStatus.INFEASIBLE, delivered_mw=0.0, cost_eur=0.0, max_deliverable_mw=best,
            activations=bid_activations(pieces, zero), aggregators=aggregator_activations(pieces, zero),
            piece_activations=_piece_rows(pieces, zero), p_flex_mw=np.zeros(len(package.flex_ids)),
            build_s=build_s, solve_s=solve_s, runtime_s=time.perf_counter() - t0,
            message=f"{_why_infeasible(pieces, request)}; {note}", **common,
        )
        log.info("cleared %g MW: infeasible, at most %g MW deliverable", request, best)
        return result
    if sol.status is ClearingStatus.SOLVER_ERROR:
        log.info("clearing %g MW failed: %s", request, sol.message)
        zero = np.zeros(K)
        return ClearingResult(
            status=ClearingStatus.SOLVER_ERROR, delivered_mw=0.0, cost_eur=0.0,
            activations=bid_activations(pieces, zero), aggregators=aggregator_activations(pieces, zero),
            piece_activations=_piece_rows(pieces, zero), p_flex_mw=np.zeros(len(package.flex_ids)),
            build_s=build_s, solve_s=solve_s, runtime_s=time.perf_counter() - t0, message=sol.message, **common,
        )
    return _optimal_result(package, pieces, sol, common, duration, build_s, solve_s, t0)


class OptimalCosts:
    """The MILP's optimal cost (EUR) at many requests on one package and bid table, called again and again.

    The per-point decomposition of :func:`clear_milp`, each point's LP built once (on first use)
    and solved again, warm, for every request: only the bounds of the row ``sum_k y_k = P_E``
    (14j) change. For pricing many requests (the DSO's design of the operating envelopes,
    :mod:`optim.privacy.envelope`, prices six requests in each of a dozen bands); the same optima
    as one :func:`clear_milp` each (tested).

    Per call, each request is first solved at the point whose level (total flexibility) is
    nearest it, usually the winner; every other point then runs with that cost plus
    ``PRUNE_MARGIN`` as HiGHS' ``objective_bound`` (as in :func:`clear_milp`): an LP cut off
    costs more than a cost already found, so the minimum is unchanged. The other points run on
    the ``$DIGIPLAT_LP_THREADS`` threads, each sweeping the requests in order on its own instance
    (so calls are serialized by a lock: one HiGHS instance per point).

    With ``candidates=k`` only the ``k`` points whose levels are nearest each request are solved
    (the points of one merit path cost nearly the same, so the cut-offs save little and 30 points
    cost 30 LPs a request); a request none of them can deliver is solved at every other point.
    The result is an upper bound of the optimum, the optimum whenever one of the ``k`` wins:
    ``benchmarks/bench_envelope.py`` counts how often that holds on Bergwald's frames.
    """

    def __init__(self, package: SensitivityPackage, bids: BidTable, *, duration_h: float = 1.0,
                 screen: bool = True, time_limit_s: float = 60.0, candidates: int | None = None) -> None:
        if candidates is not None and (isinstance(candidates, bool) or not float(candidates).is_integer()
                                       or int(candidates) < 1):
            raise InputError(f"candidates must be a whole number of points >= 1 (or None: every point), got {candidates}")
        self._candidates = None if candidates is None else int(candidates)
        self._duration = _check_duration(duration_h)
        self._pieces = _pieces(package, bids)
        self._rows = _point_rows(package, self._pieces, screen=bool(screen))
        self._time_limit_s = float(time_limit_s)
        self._levels = np.array([float(np.sum(pr.p_flex_mw)) if pr.p_flex_mw is not None else 0.0
                                 for pr in self._rows])
        self._instances: dict[int, tuple[Any, int] | None] = {}
        self._work = self._pieces.n_pieces * sum(len(pr.h) + len(pr.vor_j) + 1 for pr in self._rows)
        self._lock = threading.Lock()

    def _cost(self, i: int, request: float, cutoff: float = math.inf) -> float:
        """Point ``i``'s LP at ``request``: its optimum, ``inf`` if infeasible, cut off or refused."""
        instance = self._instances.get(i)
        if i not in self._instances:  # one task per point at a time: no two threads build the same one
            lp = _point_lp(self._rows[i], self._pieces, request, self._duration, maximise=False)
            h = _point_highs(lp, time_limit_s=self._time_limit_s)
            instance = self._instances[i] = None if h is None else (h, int(lp[3].shape[0]) - 1)
        if instance is None:
            log.warning("optimal costs: HiGHS refused point %d's LP", i)
            return math.inf
        h, last = instance
        h.changeRowBounds(last, request, request)
        h.setOptionValue("objective_bound", float(cutoff))
        # HiGHS' time limit counts the instance's whole run time: this solve gets its own
        h.setOptionValue("time_limit", float(h.getRunTime()) + self._time_limit_s)
        status, _, objective = _lp_result(h)
        if status not in ("optimal", "infeasible", "cut off"):
            # a warm re-solve can end "Unknown" (seen at weekday 00:00, two of ~1,800 solves):
            # once more from no basis, as a fresh LP would be solved
            h.clearSolver()
            h.setOptionValue("time_limit", float(h.getRunTime()) + self._time_limit_s)
            status, _, objective = _lp_result(h)
            if status not in ("optimal", "infeasible", "cut off"):
                log.warning("optimal costs: point %d at %g MW: %s", i, request, status)
        return objective if status == "optimal" else math.inf

    def __call__(self, requests_mw: Any) -> np.ndarray:
        """Costs at ``requests_mw`` (EUR); NaN where a request cannot be delivered.

        Raises
        ------
        InputError
            A zero or non-finite request.
        """
        requests = [_check_request(r) for r in np.atleast_1d(np.asarray(requests_mw, dtype=float))]
        if not requests or not self._rows:
            return np.full(len(requests), np.nan)
        with self._lock:
            return self._costs(requests)

    def _costs(self, requests: list[float]) -> np.ndarray:
        m, T = len(self._rows), len(requests)
        pool = _lp_pool(_lp_threads(self._work))  # per call: a forked child has none of its parent's threads
        guess = [int(np.argmin(np.abs(self._levels - r))) for r in requests]
        found = [self._cost(g, r) for g, r in zip(guess, requests)]
        solve = np.ones((T, m), dtype=bool)
        if self._candidates is not None:
            for t, r in enumerate(requests):
                solve[t] = False
                solve[t, np.argsort(np.abs(self._levels - r), kind="stable")[:self._candidates]] = True
        solve[np.arange(T), guess] = False  # solved above

        def sweep_all(mask: np.ndarray, cutoffs: list[float]) -> np.ndarray:
            def sweep(i: int) -> np.ndarray:
                return np.array([self._cost(i, r, cutoffs[t]) if mask[t, i] else math.inf
                                 for t, r in enumerate(requests)])

            return np.min(list(pool.map(sweep, range(m))), axis=0)

        def cutoffs_of(costs: np.ndarray) -> list[float]:
            return [c + PRUNE_MARGIN * max(1.0, abs(c)) if math.isfinite(c) else math.inf for c in costs]

        best = np.minimum(np.array(found), sweep_all(solve, cutoffs_of(np.array(found))))
        if self._candidates is not None:
            # a request no candidate can deliver: every other point, before calling it undeliverable
            rest = ~np.isfinite(best)[:, None] & ~solve
            rest[np.arange(T), guess] = False
            if rest.any():
                best = np.minimum(best, sweep_all(rest, cutoffs_of(best)))
        return np.where(np.isfinite(best), best, np.nan)


def optimal_costs(package: SensitivityPackage, bids: BidTable, requests_mw: Any, *, duration_h: float = 1.0,
                  screen: bool = True, time_limit_s: float = 60.0) -> np.ndarray:
    """The MILP's optimal cost (EUR) at each of many requests; NaN where a request cannot be delivered.

    One call of :class:`OptimalCosts` (the same optima as one :func:`clear_milp` each).

    Raises
    ------
    InputError
        A zero or non-finite request, bad duration, bids the package does not know.
    """
    return OptimalCosts(package, bids, duration_h=duration_h, screen=screen, time_limit_s=time_limit_s)(requests_mw)


def _why_infeasible(pieces: PieceSet, request: float) -> str:
    s = 1.0 if request > 0 else -1.0
    offered = float(np.sum(np.clip(s * pieces.p_mw, 0.0, None)))
    direction = "upward" if s > 0 else "downward"
    if offered < abs(request):
        return f"the bids offer only {offered:g} MW {direction}, {abs(request):g} MW requested"
    return f"the grid cannot take {abs(request):g} MW {direction} from these bids without congestion"


def _piece_rows(pieces: PieceSet, piece_mw: np.ndarray) -> tuple[dict[str, Any], ...]:
    return tuple(
        {"bid_id": p.bid_id, "flex_id": p.flex_id, "offered_mw": p.p_mw, "activated_mw": float(x)}
        for p, x in zip(pieces.pieces, piece_mw)
    )


def _clean(values: np.ndarray, pieces: PieceSet) -> np.ndarray:
    """Clip solver noise: into the piece bounds, and round to 1e-9 MW."""
    return np.round(np.clip(values, pieces.lower_mw, pieces.upper_mw), _ROUND_MW) + 0.0


def _optimal_result(package: SensitivityPackage, pieces: PieceSet, sol: _Solution, common: dict[str, Any],
                    duration: float, build_s: float, solve_s: float, t0: float) -> ClearingResult:
    point = int(np.argmax(sol.b))
    piece_mw = _clean(sol.y[point], pieces)
    pt = package.points[point]
    dispatch = pieces.p_flex_mw(piece_mw)
    vm = loading = None
    if package.style == "paper":  # G_V, G_L at dP_i = x - P_flex,i (a hardened package has no blocks)
        vm, loading = predicted_state(pt, dispatch)
    cost = float(np.sum(pieces.price_eur_per_mwh * np.abs(piece_mw)) * duration)
    result = ClearingResult(
        status=ClearingStatus.OPTIMAL,
        delivered_mw=round(float(math.fsum(piece_mw)), _ROUND_MW),
        cost_eur=cost,
        chosen_point=point,
        chosen_point_label=pt.label,
        activations=bid_activations(pieces, piece_mw),
        aggregators=aggregator_activations(pieces, piece_mw),
        piece_activations=_piece_rows(pieces, piece_mw),
        p_flex_mw=dispatch,
        vm_pu=vm,
        loading_percent=loading,
        build_s=build_s,
        solve_s=solve_s,
        runtime_s=time.perf_counter() - t0,
        message=sol.message,
        **common,
    )
    log.info("cleared %g MW at point %d (%s) for %.2f EUR in %.3f s", result.delivered_mw, point, pt.label,
             cost, result.runtime_s)
    return result


def _max_deliverable(package: SensitivityPackage, pieces: PieceSet, rows: list[_PointRows], request: float,
                     duration: float, kind: str, pyomo_name: str | None, *, mip_rel_gap: float,
                     time_limit_s: float) -> tuple[float, str]:
    """Largest volume in the request's direction, at most ``|P_E|``: (14j) replaced by a bound."""
    m, K = package.n_points, pieces.n_pieces
    s = 1.0 if request > 0 else -1.0
    if kind == "per-point":
        sol = _solve_per_point(rows, pieces, request, duration, time_limit_s=time_limit_s, maximise=True)
    elif kind == "highs":
        arr = _arrays(package, pieces, rows, request, duration, maximise=True)
        # primal simplex: at the largest delivery many limits bind (measured 1.05 s -> 0.65 s)
        sol = _solve_highs(arr, mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s, m=m, K=K,
                           options={"simplex_strategy": 4})
    else:
        model = _pyomo_model(package, pieces, rows, request, duration, maximise_direction=s)
        sol = _solve_pyomo(model, pyomo_name, mip_rel_gap=mip_rel_gap, time_limit_s=time_limit_s, m=m, K=K)
    if sol.status is not ClearingStatus.OPTIMAL:
        return 0.0, "no operating point admits any delivery in the request's direction"
    point = int(np.argmax(sol.b))
    total = abs(math.fsum(_clean(sol.y[point], pieces)))
    best = math.floor(total * 1e6) / 1e6  # 1 W below the solver's value at most, so it is deliverable
    where = f"at point {point}, {package.points[point].label}"
    return s * best + 0.0, f"at most {best:g} MW {'upward' if s > 0 else 'downward'} can be delivered ({where})"
