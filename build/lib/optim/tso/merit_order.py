"""Grid-blind merit-order clearing, the baseline of paper A's comparison.

Bids offering in the request's direction are taken cheapest first (ties in bid-table order)
until ``|P_E|`` is reached; the last one is activated partially. A partially activated bid is
spread over its pieces (flexible buses) pro rata to their volume. No grid constraint is checked
and no voltage or loading is predicted: validation shows the congestion this would cause.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from optim.package import SensitivityPackage
from optim.tso.bcm import aggregator_activations, bid_activations
from optim.tso.bids import BidTable
from optim.tso.clearing import (
    ClearingResult,
    ClearingStatus,
    _check_duration,
    _check_request,
    _piece_rows,
    _pieces,
)

log = logging.getLogger(__name__)


def clear_merit_order(
    package: SensitivityPackage,
    bids: BidTable,
    request_mw: float,
    *,
    duration_h: float = 1.0,
) -> ClearingResult:
    """Clear the request by price alone (grid-blind).

    Parameters
    ----------
    package
        Used only to place the bids on flexible buses (the dispatch ``p_flex_mw``).
    bids
        The checked bid table.
    request_mw
        ``P_E``, signed (+ = upward).
    duration_h
        Activation duration for the cost.

    Returns
    -------
    ClearingResult
        ``method="merit-order"``; OPTIMAL if the bids in the request's direction cover it,
        otherwise INFEASIBLE with ``max_deliverable_mw`` = their total (signed).
    """
    t0 = time.perf_counter()
    request = _check_request(request_mw)
    duration = _check_duration(duration_h)
    pieces = _pieces(package, bids)
    s = 1.0 if request > 0 else -1.0
    offered = pieces.bid_p_mw * s  # > 0 for bids in the request's direction
    price = np.array([bids.bids[b].price_eur_per_mwh for b in range(len(pieces.bid_ids))], dtype=float)
    candidates = [b for b in np.lexsort((np.arange(len(price)), price)) if offered[b] > 0]
    available = math.fsum(offered[b] for b in candidates)
    common = dict(
        method="merit-order", solver="merit-order", requested_mw=request, duration_h=duration,
        flex_ids=package.flex_ids, stats={"pieces": pieces.n_pieces, "bids": len(pieces.bid_ids)},
    )
    if available < abs(request) - 1e-9:
        zero = np.zeros(pieces.n_pieces)
        best = s * available + 0.0
        direction = "upward" if s > 0 else "downward"
        log.info("merit order: %g MW requested, only %g MW offered", request, best)
        return ClearingResult(
            status=ClearingStatus.INFEASIBLE, delivered_mw=0.0, cost_eur=0.0, max_deliverable_mw=best,
            activations=bid_activations(pieces, zero), aggregators=aggregator_activations(pieces, zero),
            piece_activations=_piece_rows(pieces, zero), p_flex_mw=np.zeros(len(package.flex_ids)),
            runtime_s=time.perf_counter() - t0,
            message=f"the bids offer only {available:g} MW {direction}, {abs(request):g} MW requested",
            **common,
        )
    share = np.zeros(len(pieces.bid_ids))  # activated fraction of each bid
    left = abs(request)
    for b in candidates:
        if left <= 0:
            break
        take = min(offered[b], left)
        share[b] = 1.0 if take >= offered[b] else take / offered[b]
        left -= take
    piece_mw = pieces.p_mw * share[pieces.bid_index]
    cost = float(np.sum(pieces.price_eur_per_mwh * np.abs(piece_mw)) * duration)
    result = ClearingResult(
        status=ClearingStatus.OPTIMAL,
        delivered_mw=round(math.fsum(piece_mw), 9),
        cost_eur=cost,
        activations=bid_activations(pieces, piece_mw),
        aggregators=aggregator_activations(pieces, piece_mw),
        piece_activations=_piece_rows(pieces, piece_mw),
        p_flex_mw=pieces.p_flex_mw(piece_mw),
        runtime_s=time.perf_counter() - t0,
        **common,
    )
    log.info("merit order: cleared %g MW for %.2f EUR", result.delivered_mw, cost)
    return result
