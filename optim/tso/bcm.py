"""Bid congestion manager (paper A, Fig. 1): split bids onto flexible buses, re-aggregate results.

An aggregated bid (one aggregator's offer over several buildings' assets) is split by asset
location: its rows are mapped to flexible buses through ``SensitivityPackage.flex_of_asset`` and
summed per bus, giving one **piece** per (bid, flexible bus). The clearing dispatches pieces; the
BCM then sums the pieces' activations back per bid, per aggregator and (pro rata within a piece)
per building, which is what the market sees.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from optim._errors import InputError
from optim.package import SensitivityPackage
from optim.tso.bids import BidTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    """The part of one bid located at one flexible bus."""

    bid_id: str
    aggregator: str
    flex_id: str
    p_mw: float
    price_eur_per_mwh: float
    building_ids: tuple[str, ...]
    building_p_mw: tuple[float, ...]


@dataclass(frozen=True)
class PieceSet:
    """The pieces of a bid table on a package's flexible buses, with array views for the MILP.

    Attributes
    ----------
    pieces
        One per (bid, flexible bus), bids in table order, buses within a bid in the order of its
        first row there (not the package's column order, which a hardened package shuffles with a
        secret seed: the LP's column order, and so its choice among equal-cost dispatches, would
        depend on it).
    flex_ids
        The package's flexible buses (column order of the sensitivities).
    flex_index
        ``(n_pieces,)`` column of each piece's bus in ``flex_ids`` (the map ``M``).
    p_mw, price_eur_per_mwh
        ``(n_pieces,)`` signed offered volume and price of each piece.
    bid_index
        ``(n_pieces,)`` index of each piece's bid in ``bid_ids``.
    bid_ids, bid_aggregators, bid_p_mw
        Per bid, in table order.
    """

    pieces: tuple[Piece, ...]
    flex_ids: tuple[str, ...]
    flex_index: np.ndarray
    p_mw: np.ndarray
    price_eur_per_mwh: np.ndarray
    bid_index: np.ndarray
    bid_ids: tuple[str, ...]
    bid_aggregators: tuple[str, ...]
    bid_p_mw: np.ndarray

    @property
    def n_pieces(self) -> int:
        return len(self.pieces)

    @property
    def lower_mw(self) -> np.ndarray:
        """``P_LB = min(0, P_M)`` per piece."""
        return np.minimum(0.0, self.p_mw)

    @property
    def upper_mw(self) -> np.ndarray:
        """``P_UB = max(0, P_M)`` per piece."""
        return np.maximum(0.0, self.p_mw)

    def p_flex_mw(self, piece_mw: np.ndarray) -> np.ndarray:
        """Sum piece values onto the flexible buses: ``M @ piece_mw``, shape ``(n_flex,)``."""
        return np.bincount(self.flex_index, weights=np.asarray(piece_mw, float), minlength=len(self.flex_ids))


def pieces_from_bids(bids: BidTable, package: SensitivityPackage) -> PieceSet:
    """Split the bids by asset location onto the package's flexible buses.

    Parameters
    ----------
    bids
        The checked bid table.
    package
        Gives ``flex_of_asset`` (building id -> flexible bus) and the column of each bus.

    Returns
    -------
    PieceSet

    Raises
    ------
    InputError
        If a bid row's building has no flexible bus in the package (all such rows listed).
    """
    if not isinstance(bids, BidTable):
        raise InputError(f"expected a BidTable (read_bids / bids_from_frame), got {type(bids).__name__}")
    column = {f: j for j, f in enumerate(package.flex_ids)}
    unknown = sorted({r.building_id for r in bids.rows if r.building_id not in package.flex_of_asset})
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise InputError(
            f"{len(unknown)} building(s) in the bids have no flexible bus in the sensitivity package: {shown}"
        )
    pieces: list[Piece] = []
    flex_index, bid_index = [], []
    for b, bid in enumerate(bids.bids):
        per_bus: dict[str, list[tuple[str, float]]] = {}
        for row in bid.rows:
            per_bus.setdefault(package.flex_of_asset[row.building_id], []).append((row.building_id, row.p_mw))
        for flex_id in per_bus:  # in the bid rows' order: not the package's (secret, shuffled) column order
            shares = per_bus[flex_id]
            pieces.append(
                Piece(
                    bid_id=bid.bid_id,
                    aggregator=bid.aggregator,
                    flex_id=flex_id,
                    p_mw=math.fsum(p for _, p in shares),
                    price_eur_per_mwh=bid.price_eur_per_mwh,
                    building_ids=tuple(s for s, _ in shares),
                    building_p_mw=tuple(p for _, p in shares),
                )
            )
            flex_index.append(column[flex_id])
            bid_index.append(b)
    result = PieceSet(
        pieces=tuple(pieces),
        flex_ids=package.flex_ids,
        flex_index=_frozen(np.asarray(flex_index, dtype=np.int64)),
        p_mw=_frozen(np.array([p.p_mw for p in pieces], dtype=float)),
        price_eur_per_mwh=_frozen(np.array([p.price_eur_per_mwh for p in pieces], dtype=float)),
        bid_index=_frozen(np.asarray(bid_index, dtype=np.int64)),
        bid_ids=tuple(b.bid_id for b in bids.bids),
        bid_aggregators=tuple(b.aggregator for b in bids.bids),
        bid_p_mw=_frozen(np.array([b.p_mw for b in bids.bids], dtype=float)),
    )
    log.info("split %d bids into %d pieces on %d flexible buses", bids.n_bids, len(pieces), len(set(flex_index)))
    return result


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _checked_activation(pieces: PieceSet, piece_mw: Any) -> np.ndarray:
    values = np.asarray(piece_mw, dtype=float)
    if values.shape != (pieces.n_pieces,):
        raise InputError(f"piece activations have shape {values.shape}, expected ({pieces.n_pieces},)")
    if not np.all(np.isfinite(values)):
        raise InputError("piece activations contain NaN or infinite values")
    return values


def bid_activations(pieces: PieceSet, piece_mw: Any) -> tuple[dict[str, Any], ...]:
    """Re-aggregate piece activations per bid.

    Returns
    -------
    tuple of dict
        ``{bid_id, aggregator, offered_mw, activated_mw}`` per bid, in bid-table order.
    """
    values = _checked_activation(pieces, piece_mw)
    per_bid = np.bincount(pieces.bid_index, weights=values, minlength=len(pieces.bid_ids))
    return tuple(
        {"bid_id": b, "aggregator": a, "offered_mw": float(o), "activated_mw": float(x)}
        for b, a, o, x in zip(pieces.bid_ids, pieces.bid_aggregators, pieces.bid_p_mw, per_bid)
    )


def aggregator_activations(pieces: PieceSet, piece_mw: Any) -> tuple[dict[str, Any], ...]:
    """Re-aggregate piece activations per aggregator: ``{aggregator, offered_mw, activated_mw}``."""
    out: dict[str, list[float]] = {}
    for row in bid_activations(pieces, piece_mw):
        acc = out.setdefault(row["aggregator"], [0.0, 0.0])
        acc[0] += row["offered_mw"]
        acc[1] += row["activated_mw"]
    return tuple({"aggregator": a, "offered_mw": o, "activated_mw": x} for a, (o, x) in out.items())


def building_activations(pieces: PieceSet, piece_mw: Any) -> tuple[dict[str, Any], ...]:
    """Split piece activations back onto the bid rows, pro rata to their offered volume.

    Returns ``{bid_id, building_id, offered_mw, activated_mw}`` per (bid, building).
    """
    values = _checked_activation(pieces, piece_mw)
    out = []
    for piece, x in zip(pieces.pieces, values):
        share = x / piece.p_mw if piece.p_mw != 0 else 0.0
        for building, p in zip(piece.building_ids, piece.building_p_mw):
            out.append({"bid_id": piece.bid_id, "building_id": building, "offered_mw": p, "activated_mw": p * share})
    return tuple(out)
