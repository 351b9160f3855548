"""Operating envelopes: per-asset boxes that replace every grid row of the package (issue 10, DSO side).

**What the TSO receives.** Instead of constraint rows ``a dP <= b`` (whose support names the
congested feeder, see :mod:`optim.privacy.hardening`), the package holds ``B`` boxes, one per
request band: per flexible bus an upper and a lower bound on its dispatch, ``lo_j <= x_j <= hi_j``.
A bound is shipped only where it cuts into the offers (the rest is the bids' own box). Each box
is one operating point of the package, with ``P_flex = 0`` and unit rows, so the TSO's clearing
is unchanged: its per-point decomposition picks the cheapest box that delivers the request. No
row couples two buses, so nothing says which buses share a feeder, a transformer or a branch.

**Why it is safe.** Two checks, the second the one that counts. (1) In the design LP, every row
``r`` of point ``i`` that can bind within the offers (the screening of
:mod:`~optim.privacy.hardening`) and whose worst corner of the box lies in the Voronoi cell of
``i`` (the point paper A's MILP would choose there, so the linearization that applies) must hold
at that corner: ``sum_j max(a_rj (hi_j - P_ij), a_rj (lo_j - P_ij)) <= b_r``, linear in
``lo, hi``. The set of such ``(i, r)`` is iterated to a fixed point. This picks the applicable
linearization by the corner's cell, not by every dispatch's: sampled, 3 of 8,000 dispatches in
the weekday 18:00 boxes exceed a row of their nearest point by at most 7e-4 (all three clean in
the AC power flow). (2) The DSO runs the AC power flow (the units' physical Q following P) at
every distinct worst corner of those rows and at the two extreme corners; if one violates a
limit, the box is shrunk towards zero by a margin until none does (``stats["shrink"]``). In a
radial grid voltages and branch flows are monotone in the injections, so the corners are the
worst cases; ``tests/unit/test_privacy_envelope.py`` runs the AC power flow at random corners
and interior dispatches of every box.

**How the boxes are chosen (the design LP).** The DSO knows its grid and, at gate closure, the
bids (volumes and prices; the same table its paper-style points are chosen from), never the
request. For band ``[R_a, R_b]`` it samples requests ``R_t`` and runs its own grid-aware clearing
of each (cost ``C_t``; the LPs of the two points nearest the request's level, ``cost_candidates``:
an upper bound, the optimum whenever one of the two wins, which ``benchmarks/bench_envelope.py``
counts on Bergwald's frames). The LP has the box ``(lo, hi)``, one piece dispatch ``y_t`` per request
(``sum y_t = R_t``, ``lo <= M y_t <= hi``, within the offers) and the safety rows above; it
minimises the largest relative cost increase ``max_t (c.y_t / C_t - 1)``, then (with small
weights) the mean cost and the box's width given up. So the box contains cheap dispatches for
every request of its band, and the TSO's clearing within it costs little more than the exact
package's (``benchmarks/bench_privacy.py`` measures it at requests off the sampled ones).

**What it costs and reveals.** A box cannot express "either this bus or that one" on a congested
feeder, which is why the price is not zero; bands keep each box close to the dispatches of its
requests, and a band whose box still costs more than ``max_increase`` (0.4 %) at its sampled
requests is split in two (down to ``2 min_band_mw``; near the largest deliverable volume the exact
package's coupling matters most). What remains visible is which buses are capped, and by how
much, per band: the audit's cap attack (:func:`optim.privacy.attacks.cap_groups`) scores it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from optim._errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["Envelope", "EnvelopeConfig", "operating_envelopes", "envelope_rows", "request_bands", "band_requests",
           "deliverable_range"]

#: Tolerance (row units) above which a worst corner counts as outside a row.
ROW_TOL = 1e-7
#: Shrink factors tried, in order, when the AC power flow finds a box's corner outside a limit.
SHRINKS = (0.02, 0.05, 0.1, 0.2, 0.4)


@dataclass(frozen=True)
class EnvelopeConfig:
    """Options of :func:`operating_envelopes`.

    Parameters
    ----------
    band_mw
        Width of a request band (MW); one box per band over what the offers can deliver.
    requests_per_band
        Requests sampled in each band for the design LP (the band's edges included).
    max_increase
        A band whose box costs more than this (relative, at its sampled requests) is split in two.
    min_band_mw
        Bands are not split below twice this width.
    cost_candidates
        The DSO's own cost of a sampled request (the design's reference ``C_t``) from the LPs of
        this many points nearest the request's level (:class:`~optim.tso.clearing.OptimalCosts`);
        None: every point (the exact optimum, ~6x the time on Bergwald's frames).
    """

    band_mw: float = 0.25
    requests_per_band: int = 6
    max_increase: float = 0.004
    min_band_mw: float = 0.02
    cost_candidates: int | None = 2

    def __post_init__(self) -> None:
        if not np.isfinite(self.band_mw) or self.band_mw <= 0:
            raise InputError(f"the envelope band must be a positive width in MW, got {self.band_mw}")
        if not np.isfinite(self.max_increase) or self.max_increase < 0 or not self.min_band_mw > 0:
            raise InputError("the envelope's max_increase must be >= 0 and min_band_mw > 0")
        if self.cost_candidates is not None and (isinstance(self.cost_candidates, bool) or not float(
                self.cost_candidates).is_integer() or int(self.cost_candidates) < 1):
            raise InputError(f"the envelope's cost_candidates must be at least 1 point or None, got {self.cost_candidates}")
        if int(self.requests_per_band) < 2:
            raise InputError(f"an envelope band needs at least 2 sampled requests, got {self.requests_per_band}")


@dataclass(frozen=True)
class Envelope:
    """One box: per flexible bus (package column order) the dispatch bounds, MW."""

    lower_mw: np.ndarray
    upper_mw: np.ndarray
    band_mw: tuple[float, float]
    design_max_increase: float
    stats: dict[str, Any] = field(default_factory=dict)


def request_bands(down_mw: float, up_mw: float, band_mw: float) -> list[tuple[float, float]]:
    """Bands of width ``band_mw`` from 0 outwards to the deliverable ``down_mw <= 0 <= up_mw``."""
    bands = []
    for limit, sign in ((up_mw, 1.0), (-down_mw, -1.0)):
        start = 0.0
        while start < limit - 1e-9:
            end = min(start + band_mw, limit)
            band = (sign * start, sign * end) if sign > 0 else (sign * end, sign * start)
            bands.append((band[0] + 0.0, band[1] + 0.0))  # + 0.0: no -0.0 edge in the stats
            start = end
    return sorted(bands)


def deliverable_range(package: Any, bids: Any) -> tuple[float, float]:
    """``(down, up)``: the largest downward (<= 0) and upward volume (MW) the offers can deliver
    within the grid's limits on ``package`` (the range the bands cover)."""
    from optim.tso.bcm import pieces_from_bids

    pieces = pieces_from_bids(bids, package)
    offered_up, offered_down = pieces.p_flex_mw(pieces.upper_mw).sum(), -pieces.p_flex_mw(pieces.lower_mw).sum()
    return -_deliverable(package, bids, -1.0, float(offered_down)), _deliverable(package, bids, 1.0, float(offered_up))


def band_requests(band: tuple[float, float], requests_per_band: int) -> np.ndarray:
    """The requests the design samples in ``band``: evenly spaced, its edges included, 0 left out."""
    return np.array([r for r in np.linspace(band[0], band[1], int(requests_per_band)) if abs(r) > 1e-9])


def _deliverable(package: Any, bids: Any, sign: float, offered_mw: float) -> float:
    from optim.tso.clearing import clear_milp

    if offered_mw <= 1e-9:
        return 0.0
    res = clear_milp(package, bids, sign * offered_mw)
    value = res.delivered_mw if res.ok else (res.max_deliverable_mw or 0.0)
    return abs(float(value))


def _worst(a: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Worst corners of the box for the rows ``a`` (deviation from ``p``) and the rows' values there."""
    corner = np.where(a > 0, hi[None, :], lo[None, :])
    return corner, np.einsum("rj,rj->r", a, corner - p[None, :])


def _nearest(corners: np.ndarray, points: np.ndarray) -> np.ndarray:
    d = (corners ** 2).sum(1)[:, None] - 2.0 * corners @ points.T + (points ** 2).sum(1)[None, :]
    return np.argmin(d, axis=1)


def _active_pairs(rows: list[tuple[np.ndarray, np.ndarray]], points: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray) -> set[tuple[int, int]]:
    """``(i, r)`` whose worst corner lies in point ``i``'s cell (or is sent there by another point's) and is outside."""
    # a row that holds at its own worst corner at every point holds at every corner of the box, so
    # none can flag it: only the few rows some point's box can violate are followed through the cells
    possible = np.zeros(len(rows[0][1]) if rows else 0, dtype=bool)
    for j, (a, b) in enumerate(rows):
        if len(b):
            possible |= _worst(a, points[j], lo, hi)[1] > b + ROW_TOL
    kept = np.flatnonzero(possible)
    rows = [(a[kept], b[kept]) for a, b in rows]
    out: set[tuple[int, int]] = set()
    for i, (a, b) in enumerate(rows):
        if not len(b):
            continue
        corner, _ = _worst(a, points[i], lo, hi)
        near = _nearest(corner, points)
        for j in np.unique(near):
            idx = np.flatnonzero(near == j)
            aj, bj = rows[j]
            _, value = _worst(aj[idx], points[j], lo, hi)
            out |= {(int(j), int(kept[r])) for r in idx[value > bj[idx] + ROW_TOL]}
    return out


def _design_lp(pieces: Any, n: int, requests: np.ndarray, base_eur: np.ndarray, safety: list[tuple[np.ndarray, float]],
               box_lo: np.ndarray, box_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The box minimising the largest relative cost increase over ``requests`` (see the module docstring)."""
    K, T = pieces.n_pieces, len(requests)
    cost = pieces.price_eur_per_mwh * np.sign(pieces.p_mw)
    fi = pieces.flex_index
    n_var = 2 * n + T * K + 1
    t_col = n_var - 1
    scale = float(np.mean(np.abs(base_eur))) or 1.0
    # primary: the worst relative increase t; then the mean cost and the width given up, small
    c = np.concatenate([1e-4 * np.ones(n), -1e-4 * np.ones(n), np.tile(cost, T) * 1e-3 / (T * scale), [1.0]])
    bounds = ([(float(v), 0.0) for v in np.minimum(box_lo, 0.0)] + [(0.0, float(v)) for v in np.maximum(box_hi, 0.0)]
              + list(zip(pieces.lower_mw, pieces.upper_mw)) * T + [(None, None)])
    # the constraint matrix straight from its triplets (rows per request: n upper, n lower, one
    # cost row; then the safety rows): the blocks stacked one by one were a third of the LP's time
    rows_i, cols_i, vals = [], [], []
    rhs = []
    bus = np.arange(n)
    for t in range(T):
        top, y0 = t * (2 * n + 1), 2 * n + t * K
        # up: M y_t - hi <= 0; low: lo - M y_t <= 0
        rows_i += [top + bus, top + fi, top + n + bus, top + n + fi]
        cols_i += [n + bus, y0 + np.arange(K), bus, y0 + np.arange(K)]
        vals += [-np.ones(n), np.ones(K), np.ones(n), -np.ones(K)]
        if base_eur[t]:
            rows_i.append(np.full(K, top + 2 * n))
            cols_i.append(y0 + np.arange(K))
            vals.append(cost / base_eur[t])
        rows_i.append(np.array([top + 2 * n]))
        cols_i.append(np.array([t_col]))
        vals.append(np.array([-1.0]))
        rhs += [np.zeros(2 * n), np.array([1.0 if base_eur[t] else 0.0])]
    if safety:
        coef = np.array([np.concatenate([np.clip(a, None, 0.0), np.clip(a, 0.0, None)]) for a, _ in safety])
        row, col = np.nonzero(coef)
        rows_i.append(T * (2 * n + 1) + row)
        cols_i.append(col)
        vals.append(coef[row, col])
        rhs.append(np.array([b for _, b in safety]))
    rows_all, cols_all, vals_all = np.concatenate(rows_i), np.concatenate(cols_i), np.concatenate(vals)
    nonzero = vals_all != 0.0
    a_ub = sp.csr_matrix((vals_all[nonzero], (rows_all[nonzero], cols_all[nonzero])),
                         shape=(T * (2 * n + 1) + len(safety), n_var))
    a_ub.sort_indices()
    eq = sp.csr_matrix((np.ones(T * K), (np.repeat(np.arange(T), K), 2 * n + np.arange(T * K))), shape=(T, n_var))
    from scipy.optimize import linprog  # here: the rows mechanism's CLI runs need no scipy.optimize (0.15 s)

    res = linprog(c, A_ub=a_ub, b_ub=np.concatenate(rhs), A_eq=eq, b_eq=requests,
                  bounds=bounds, method="highs")
    if res.status != 0:
        return None
    return res.x[:n].copy(), res.x[n:2 * n].copy(), float(res.x[t_col])


def _band_box(pieces: Any, n: int, rows: Sequence[tuple[np.ndarray, np.ndarray]], points: np.ndarray,
              requests: np.ndarray, base_eur: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray) -> tuple | None:
    """The design LP iterated until its safety rows hold every row outside at its worst corner."""
    lo, hi = np.minimum(box_lo, 0.0), np.maximum(box_hi, 0.0)
    pairs: set[tuple[int, int]] = set()
    design = None
    for _ in range(12):
        new = _active_pairs(list(rows), points, lo, hi) - pairs
        if not new:
            return lo, hi, pairs, design
        pairs |= new
        safety = []
        for i, r in sorted(pairs):
            a, b = rows[i][0][r], rows[i][1][r]
            safety.append((a, float(b + np.clip(a, None, 0.0) @ points[i] + np.clip(a, 0.0, None) @ points[i])))
        design = _design_lp(pieces, n, requests, base_eur, safety, box_lo, box_hi)
        if design is None:
            return None
        lo, hi = design[0], design[1]
    logger.warning("the envelope's safety rows did not settle in 12 rounds")
    return None


def _shrunk(lo: np.ndarray, hi: np.ndarray, corners: list[np.ndarray], verify: Callable[[np.ndarray], int]
            ) -> tuple[np.ndarray, np.ndarray, float, int] | None:
    """The box, shrunk towards zero until the AC power flow finds no violation at its corners."""
    checked = 0
    for factor in (0.0,) + SHRINKS:
        s = 1.0 - factor
        bad = False
        for corner in corners:
            checked += 1
            if verify(corner * s) > 0:
                bad = True
                break
        if not bad:
            return lo * s, hi * s, factor, checked
    return None


def operating_envelopes(package: Any, rows: Sequence[tuple[np.ndarray, np.ndarray]], bids: Any, *,
                        config: EnvelopeConfig = EnvelopeConfig(),
                        verify: Callable[[np.ndarray], int] | None = None,
                        progress: Callable[[int, int, str], None] | None = None) -> tuple[Envelope, ...]:
    """The boxes of a paper-style package, one per request band (DSO side; see the module docstring).

    Parameters
    ----------
    package
        The DSO's paper-style :class:`~optim.package.SensitivityPackage`.
    rows
        Per point the rows ``(a, b)`` in the deviation from the point (the DSO's paper rows), the
        ones that cannot bind within the offers already left out.
    bids
        The :class:`~optim.tso.bids.BidTable` of gate closure (volumes and prices).
    config
        Band width and sampled requests.
    verify
        The DSO's AC check: dispatch per flexible bus (package column order) -> number of
        violations. None: no AC check (the boxes then rest on the linear model alone).
    progress
        Called as ``progress(done, total, message)`` after each band (a split band adds one).

    Returns
    -------
    tuple of Envelope
        One box per band that can deliver something, in band order.
    """
    from optim.tso.bcm import pieces_from_bids
    from optim.tso.clearing import OptimalCosts

    t0 = time.perf_counter()
    pieces = pieces_from_bids(bids, package)
    n = len(package.flex_ids)
    box_lo, box_hi = pieces.p_flex_mw(pieces.lower_mw), pieces.p_flex_mw(pieces.upper_mw)
    points = np.array([np.asarray(p.p_flex_mw, dtype=float) for p in package.points])
    optimal_costs = OptimalCosts(package, bids, candidates=config.cost_candidates)  # LPs built once for every band
    down, up = deliverable_range(package, bids)
    out = []
    queue = request_bands(down, up, float(config.band_mw))
    done = 0
    while queue:
        if progress is not None and done:
            progress(done, done + len(queue), f"{len(out)} boxes")
        done += 1
        band = queue.pop(0)
        requests = band_requests(band, config.requests_per_band)
        base = optimal_costs(requests) if len(requests) else np.zeros(0)
        keep = np.isfinite(base)
        requests, base_eur = requests[keep], base[keep]
        if not len(requests):
            continue
        found = None
        while len(requests):
            found = _band_box(pieces, n, rows, points, requests, base_eur, box_lo, box_hi)
            if found is not None:
                break
            # the band's largest request needs the exact rows' coupling: serve the rest of the band
            far = int(np.argmax(np.abs(requests)))
            requests, base_eur = np.delete(requests, far), np.delete(base_eur, far)
        if found is None:
            logger.warning("no safe box for the band %s MW: left out", band)
            continue
        lo, hi, pairs, design = found
        t_max = 0.0 if design is None else design[2]
        if t_max > config.max_increase and band[1] - band[0] > 2 * config.min_band_mw:
            # one box cannot serve the whole band cheaply enough: two narrower boxes
            middle = 0.5 * (band[0] + band[1])
            queue[:0] = [(band[0], middle), (middle, band[1])]
            continue
        stats: dict[str, Any] = {"design_rows": len(pairs), "shrink": 0.0, "corners_checked": 0,
                                 "requests": [float(r) for r in requests]}
        if verify is not None:
            corners = {np.where(rows[i][0][r] > 0, hi, lo).tobytes(): np.where(rows[i][0][r] > 0, hi, lo)
                       for i, r in sorted(pairs)}
            corners.setdefault(hi.tobytes(), hi)
            corners.setdefault(lo.tobytes(), lo)
            checked = _shrunk(lo, hi, list(corners.values()), verify)
            if checked is None:
                logger.warning("the band %s MW fails the AC check even shrunk by %g: left out", band, SHRINKS[-1])
                continue
            lo, hi, stats["shrink"], stats["corners_checked"] = checked
        stats["capped_upper"] = int(np.sum(hi < box_hi - 1e-9))
        stats["capped_lower"] = int(np.sum(lo > box_lo + 1e-9))
        out.append(Envelope(lower_mw=lo, upper_mw=hi, band_mw=band, design_max_increase=t_max, stats=stats))
    if progress is not None:
        progress(done, done, f"{len(out)} boxes")
    logger.info("operating envelopes: %d boxes over %.2f..%.2f MW in %.2f s", len(out), down, up,
                time.perf_counter() - t0)
    return tuple(out)


def envelope_rows(envelope: Envelope, box_lo: np.ndarray, box_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Unit rows ``x_j <= hi_j`` and ``-x_j <= -lo_j`` where the box cuts into the offers.

    Returns the rows ``a``, ``b`` and per row ``(column, "upper" | "lower")``.
    """
    n = len(box_lo)
    a, b, what = [], [], []
    for j in np.flatnonzero(envelope.upper_mw < box_hi - 1e-9):
        row = np.zeros(n)
        row[j] = 1.0
        a.append(row)
        b.append(float(envelope.upper_mw[j]))
        what.append((int(j), "upper"))
    for j in np.flatnonzero(envelope.lower_mw > box_lo + 1e-9):
        row = np.zeros(n)
        row[j] = -1.0
        a.append(row)
        b.append(float(-envelope.lower_mw[j]))
        what.append((int(j), "lower"))
    return np.array(a, dtype=float).reshape(len(b), n), np.array(b, dtype=float), what
