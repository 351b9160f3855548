"""Bid congestion manager: split aggregated bids by location, re-aggregate activations."""

from __future__ import annotations

import numpy as np
import pytest

from optim._errors import InputError
from optim.package import OperatingPoint, SensitivityPackage
from optim.tso.bcm import (
    aggregator_activations,
    bid_activations,
    building_activations,
    pieces_from_bids,
)
from optim.tso.bids import BidRow, BidTable
from optim.tso.clearing import clear_milp


@pytest.fixture(scope="module")
def package() -> SensitivityPackage:
    n = 3
    flex = np.array([0.3, 0.2, 0.1])

    def point(label: str, f: float) -> OperatingPoint:
        return OperatingPoint(label, f * flex, p_mw=f * flex - 0.1, vm_pu=np.ones(2), loading_percent=np.full(2, 10.0),
                              vtdf_pu_per_mw=np.full((2, n), 0.001), ltdf_percent_per_mw=np.full((2, n), 1.0))

    return SensitivityPackage(
        ("F1", "F2", "F3"), ("V1", "V2"), ("L1", "L2"), (point("all", 1.0), point("none", 0.0)),
        flex_of_asset={"h1": "F1", "h2": "F1", "h3": "F2", "h4": "F3", "h5": "F3"},
    )


@pytest.fixture(scope="module")
def bids() -> BidTable:
    return BidTable(rows=(
        BidRow("agg-1", "A", "h4", 0.05, 30.0, "pv"),  # aggregated: three buildings on two buses
        BidRow("agg-1", "A", "h1", 0.10, 30.0, "battery"),
        BidRow("agg-1", "A", "h2", 0.15, 30.0, "ev"),
        BidRow("solo", "B", "h3", 0.20, 20.0),
        BidRow("down", "A", "h5", -0.10, 5.0),
    ))


def test_split_by_location(package: SensitivityPackage, bids: BidTable) -> None:
    pieces = pieces_from_bids(bids, package)
    assert [(p.bid_id, p.flex_id, p.p_mw) for p in pieces.pieces] == [
        ("agg-1", "F3", 0.05),  # buses in the order of the bid's first row there, not the package's
        ("agg-1", "F1", pytest.approx(0.25)),  # h1 + h2
        ("solo", "F2", 0.20),
        ("down", "F3", -0.10),
    ]
    assert pieces.pieces[1].building_ids == ("h1", "h2")
    assert pieces.flex_index.tolist() == [2, 0, 1, 2]
    assert pieces.lower_mw.tolist() == [0, 0, 0, -0.1] and pieces.upper_mw[3] == 0
    assert pieces.p_flex_mw(pieces.p_mw) == pytest.approx([0.25, 0.2, -0.05])
    assert not pieces.p_mw.flags.writeable


def test_round_trip_full_and_partial(package: SensitivityPackage, bids: BidTable) -> None:
    pieces = pieces_from_bids(bids, package)
    full = bid_activations(pieces, pieces.p_mw)
    assert [(a["bid_id"], a["aggregator"], a["activated_mw"]) for a in full] == [
        (b.bid_id, b.aggregator, pytest.approx(b.p_mw)) for b in bids.bids
    ]
    assert all(a["offered_mw"] == pytest.approx(a["activated_mw"]) for a in full)
    per_agg = {a["aggregator"]: a["activated_mw"] for a in aggregator_activations(pieces, pieces.p_mw)}
    assert per_agg == pytest.approx({"A": 0.3 - 0.1, "B": 0.2})
    per_building = building_activations(pieces, pieces.p_mw)
    assert {(r["bid_id"], r["building_id"]): r["activated_mw"] for r in per_building} == pytest.approx(
        {(r.bid_id, r.building_id): r.p_mw for r in bids.rows}
    )
    # partial: 0.125 of agg-1's 0.25 MW at F1, nothing at F3 -> half of h1 and of h2
    half = np.array([0.0, 0.125, 0.1, 0.0])
    assert bid_activations(pieces, half)[0]["activated_mw"] == pytest.approx(0.125)
    split = {r["building_id"]: r["activated_mw"] for r in building_activations(pieces, half) if r["bid_id"] == "agg-1"}
    assert split == pytest.approx({"h1": 0.05, "h2": 0.075, "h4": 0.0})
    with pytest.raises(InputError, match="shape"):
        bid_activations(pieces, half[:2])
    with pytest.raises(InputError, match="NaN"):
        bid_activations(pieces, np.array([np.nan, 0, 0, 0]))


def test_clearing_result_reaggregates_its_pieces(package: SensitivityPackage, bids: BidTable) -> None:
    r = clear_milp(package, bids, 0.3)
    assert r.ok
    by_bid: dict[str, float] = {}
    for p in r.piece_activations:
        by_bid[p["bid_id"]] = by_bid.get(p["bid_id"], 0.0) + p["activated_mw"]
    assert {a["bid_id"]: a["activated_mw"] for a in r.activations} == pytest.approx(by_bid)
    assert sum(a["activated_mw"] for a in r.aggregators) == pytest.approx(0.3)
    assert {a["bid_id"]: a["activated_mw"] for a in r.activations} == pytest.approx(
        {"agg-1": 0.1, "solo": 0.2, "down": 0.0}  # cheapest first; the grid is far from its limits
    )


def test_unknown_buildings_are_listed(package: SensitivityPackage, bids: BidTable) -> None:
    stray = BidTable(rows=(*bids.rows, BidRow("x", "C", "h8", 0.1, 1.0), BidRow("y", "C", "h9", 0.1, 1.0)))
    with pytest.raises(InputError, match=r"2 building\(s\) .*'h8', 'h9'"):
        pieces_from_bids(stray, package)


def test_piece_order_does_not_follow_the_package_columns(package: SensitivityPackage, bids: BidTable) -> None:
    """A hardened package shuffles its columns with a secret seed; the pieces (the LP's columns)
    come in the same order whatever the column order, so ties resolve the same way."""
    import dataclasses

    order = [2, 0, 1]
    shuffled = dataclasses.replace(
        package, flex_ids=tuple(package.flex_ids[j] for j in order),
        points=tuple(dataclasses.replace(
            pt, p_flex_mw=pt.p_flex_mw[order], p_mw=pt.p_mw[order], vtdf_pu_per_mw=pt.vtdf_pu_per_mw[:, order],
            ltdf_percent_per_mw=pt.ltdf_percent_per_mw[:, order]) for pt in package.points))
    a, b = pieces_from_bids(bids, package), pieces_from_bids(bids, shuffled)
    assert [(p.bid_id, p.flex_id, p.building_ids) for p in a.pieces] == [(p.bid_id, p.flex_id, p.building_ids) for p in b.pieces]
    assert [b.flex_ids[j] for j in b.flex_index] == [a.flex_ids[j] for j in a.flex_index]
