"""Grid-blind merit order: cheapest first in the request's direction, last bid partial."""

from __future__ import annotations

import numpy as np
import pytest

from optim._errors import InputError
from optim.package import OperatingPoint, SensitivityPackage
from optim.tso.bids import BidRow, BidTable
from optim.tso.clearing import ClearingResult, ClearingStatus, clear_milp
from optim.tso.merit_order import clear_merit_order


@pytest.fixture(scope="module")
def case() -> tuple[SensitivityPackage, BidTable]:
    vtdf, ltdf = np.array([[0.0, 0.0, 0.04]]), np.array([[50.0, 50.0, 0.0]])
    fix = np.full(3, -0.5)

    def point(label: str, p_flex: np.ndarray) -> OperatingPoint:
        return OperatingPoint(label, p_flex, p_mw=fix + p_flex, vm_pu=1.02 + vtdf @ p_flex,
                              loading_percent=20 + ltdf @ p_flex, vtdf_pu_per_mw=vtdf, ltdf_percent_per_mw=ltdf)

    package = SensitivityPackage(
        ("F1", "F2", "F3"), ("V3",), ("L12",), (point("none", np.zeros(3)), point("all", np.array([0.6, 1.4, 1.0]))),
        flex_of_asset={"h1": "F1", "h2": "F2", "h3": "F3"},
    )
    bids = BidTable(rows=(
        BidRow("C-dear", "C", "h2", 1.0, 40.0),
        BidRow("B-mid", "B", "h3", 1.0, 20.0),
        BidRow("A-cheap", "A", "h1", 0.6, 10.0),
        BidRow("A-cheap", "A", "h2", 0.4, 10.0),
        BidRow("B-tie", "B", "h1", 0.2, 20.0),
        BidRow("D-down", "B", "h1", -0.5, 5.0),
    ))
    return package, bids


def activated(r: ClearingResult) -> dict[str, float]:
    return {a["bid_id"]: a["activated_mw"] for a in r.activations}


def test_cheapest_first_last_partial_ties_in_table_order(case) -> None:
    r = clear_merit_order(*case, 1.5)
    assert r.ok and r.method == "merit-order" and r.chosen_point is None and r.vm_pu is None
    assert activated(r) == pytest.approx({"C-dear": 0, "B-mid": 0.5, "A-cheap": 1.0, "B-tie": 0, "D-down": 0})
    assert r.cost_eur == pytest.approx(10 * 1.0 + 20 * 0.5)
    r = clear_merit_order(*case, 2.1)
    assert activated(r) == pytest.approx({"C-dear": 0, "B-mid": 1.0, "A-cheap": 1.0, "B-tie": 0.1, "D-down": 0})
    assert r.delivered_mw == pytest.approx(2.1)


def test_partial_aggregated_bid_is_spread_pro_rata(case) -> None:
    r = clear_merit_order(*case, 0.5)
    assert activated(r)["A-cheap"] == pytest.approx(0.5)
    pieces = {p["flex_id"]: p["activated_mw"] for p in r.piece_activations if p["bid_id"] == "A-cheap"}
    assert pieces == pytest.approx({"F1": 0.3, "F2": 0.2})
    assert r.p_flex_mw == pytest.approx([0.3, 0.2, 0.0])


def test_downward_request_uses_downward_bids_only(case) -> None:
    r = clear_merit_order(*case, -0.2, duration_h=2.0)
    assert activated(r) == pytest.approx({"C-dear": 0, "B-mid": 0, "A-cheap": 0, "B-tie": 0, "D-down": -0.2})
    assert r.cost_eur == pytest.approx(5 * 0.2 * 2.0)


def test_not_enough_bids_is_infeasible_with_the_offered_total(case) -> None:
    r = clear_merit_order(*case, 4.0)
    assert r.status is ClearingStatus.INFEASIBLE and r.max_deliverable_mw == pytest.approx(3.2)
    assert r.delivered_mw == 0 and all(a["activated_mw"] == 0 for a in r.activations)
    assert "3.2 MW upward" in r.message
    assert clear_merit_order(*case, -1).max_deliverable_mw == pytest.approx(-0.5)


def test_grid_blind_order_is_cheaper_but_breaks_the_limit_the_milp_keeps(case) -> None:
    blind, aware = clear_merit_order(*case, 2.0), clear_milp(*case, 2.0)
    assert blind.ok and aware.ok
    assert blind.cost_eur < aware.cost_eur
    # the blind dispatch puts 1 MW at F3: the linear model says V3 = 1.02 + 0.04 = 1.06 > 1.05
    assert 1.02 + 0.04 * blind.p_flex_mw[2] > 1.05
    assert aware.vm_pu.max() <= 1.05 + 1e-9


def test_input_checks(case) -> None:
    for bad in (0.0, float("nan"), float("inf")):
        with pytest.raises(InputError):
            clear_merit_order(*case, bad)
