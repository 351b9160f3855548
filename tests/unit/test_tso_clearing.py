"""The MILP clearing (paper A, eq. 14): a case checked by hand, infeasibility, Pyomo agreement."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optim._errors import InputError
from optim.package import OperatingPoint, SensitivityPackage
from optim.tso.bids import BidRow, BidTable
from optim.tso.clearing import ClearingResult, ClearingStatus, clear_milp

REPO = Path(__file__).resolve().parents[2]
P_FIX = np.array([-0.5, -0.5, -0.5])
VTDF = np.array([[0.0, 0.0, 0.04]])  # the voltage at F3 rises 0.04 p.u. per MW injected at F3
LTDF = np.array([[50.0, 50.0, 0.0]])  # the feeder of F1 and F2 loads 50 %/MW


def hand_package() -> SensitivityPackage:
    """Three flexible buses, one voltage, one branch, two points; the linear model is exact.

    Limits: F1 + F2 <= 1.6 MW (loading 20 % + 50 %/MW <= 100 %), F3 <= 0.75 MW (1.02 + 0.04/MW <= 1.05).
    """

    def point(label: str, p_flex: np.ndarray) -> OperatingPoint:
        return OperatingPoint(label, p_flex, p_mw=P_FIX + p_flex, vm_pu=1.02 + VTDF @ p_flex,
                              loading_percent=20.0 + LTDF @ p_flex, vtdf_pu_per_mw=VTDF, ltdf_percent_per_mw=LTDF)

    return SensitivityPackage(
        flex_ids=("F1", "F2", "F3"),
        bus_ids=("V3",),
        branch_ids=("L12",),
        points=(point("none", np.zeros(3)), point("all bids", np.array([0.6, 1.4, 1.0]))),
        flex_of_asset={"h1": "F1", "h2": "F2", "h3": "F3"},
    )


def hand_bids() -> BidTable:
    return BidTable(
        rows=(
            BidRow("A-cheap", "A", "h1", 0.6, 10.0),  # one aggregated bid over two buses
            BidRow("A-cheap", "A", "h2", 0.4, 10.0),
            BidRow("B-mid", "B", "h3", 1.0, 20.0),
            BidRow("C-dear", "C", "h2", 1.0, 40.0),
            BidRow("D-down", "B", "h1", -0.5, 5.0),
        )
    )


def random_case(seed: int, n_flex: int = 10, n_v: int = 16, n_l: int = 16, n_points: int = 3):
    """A seeded package whose limits bind, and 14 bid rows (four 2-building bids, some downward)."""
    rng = np.random.default_rng(seed)
    buildings = [f"h{k}" for k in range(14)]
    flex_of = {b: f"F{rng.integers(0, n_flex)}" for b in buildings}
    rows = []
    for k, b in enumerate(buildings):
        g = k // 2 if k < 8 else k
        down = g % 5 == 4
        price = 10.0 + 7.0 * (g % 6) + (0.5 if down else 0.0)
        rows.append(BidRow(f"B{g}", f"agg{g % 3}", b, round(rng.uniform(0.02, 0.06), 3) * (-1 if down else 1), price))
    offer = np.zeros(n_flex)
    for r in rows:
        offer[int(flex_of[r.building_id][1:])] += r.p_mw
    vtdf = rng.uniform(0.05, 0.3, (n_v, n_flex)) * (rng.random((n_v, n_flex)) < 0.5)
    ltdf = -rng.uniform(100, 600, (n_l, n_flex)) * (rng.random((n_l, n_flex)) < 0.4)
    v0, l0, p_fix = rng.uniform(0.97, 1.02, n_v), rng.uniform(-40, 40, n_l), rng.uniform(-0.05, 0.05, n_flex)
    points = []
    for f in np.linspace(1, 0, n_points):
        w = 1 + 0.1 * f  # sensitivities drift with the point
        p_flex = f * offer
        points.append(
            OperatingPoint(f"{f:.0%}", p_flex, p_mw=p_fix + p_flex, vm_pu=v0 + vtdf @ p_flex,
                           loading_percent=l0 + ltdf @ p_flex, vtdf_pu_per_mw=vtdf * w, ltdf_percent_per_mw=ltdf * w)
        )
    package = SensitivityPackage(
        tuple(f"F{j}" for j in range(n_flex)), tuple(f"V{j}" for j in range(n_v)), tuple(f"L{j}" for j in range(n_l)),
        tuple(points), flex_of_asset=flex_of,
    )
    return package, BidTable(rows=tuple(rows))


@pytest.fixture(scope="module")
def hand() -> tuple[SensitivityPackage, BidTable]:
    return hand_package(), hand_bids()


def activated(result: ClearingResult) -> dict[str, float]:
    return {a["bid_id"]: a["activated_mw"] for a in result.activations}


def test_hand_case_cheapest_bids_near_point_none(hand) -> None:
    # 1.5 MW: A-cheap (1.0 MW at 10) and half of B-mid (at 20) = 20 EUR; no limit binds.
    # Dispatch [0.6, 0.4, 0.5] + P_fix = [0.1, -0.1, 0]: squared distance 0.77 to "none", 1.25 to "all bids".
    r = clear_milp(*hand, 1.5)
    assert r.status is ClearingStatus.OPTIMAL and r.ok
    assert r.delivered_mw == pytest.approx(1.5, abs=1e-9)
    assert r.cost_eur == pytest.approx(20.0, abs=1e-6)
    assert activated(r) == pytest.approx({"A-cheap": 1.0, "B-mid": 0.5, "C-dear": 0.0, "D-down": 0.0}, abs=1e-7)
    assert (r.chosen_point, r.chosen_point_label) == (0, "none")
    assert r.p_flex_mw == pytest.approx([0.6, 0.4, 0.5], abs=1e-7)
    assert r.vm_pu == pytest.approx([1.04]) and r.loading_percent == pytest.approx([70.0])
    assert {p["flex_id"]: p["activated_mw"] for p in r.piece_activations if p["bid_id"] == "A-cheap"} == pytest.approx(
        {"F1": 0.6, "F2": 0.4}
    )
    assert r.max_deliverable_mw is None and r.build_s >= 0 and r.solve_s > 0 and r.runtime_s >= r.solve_s


def test_hand_case_voltage_limit_binds_at_point_all_bids(hand) -> None:
    # 2.0 MW: B-mid would raise V3 to 1.06, so it stops at 0.75 MW (V3 = 1.05) and C-dear covers
    # 0.25 MW: 10 + 15 + 10 = 35 EUR. [0.6, 0.65, 0.75] + P_fix is nearer "all bids" (0.625 vs 1.345).
    r = clear_milp(*hand, 2.0)
    assert r.cost_eur == pytest.approx(35.0, abs=1e-6)
    assert activated(r) == pytest.approx({"A-cheap": 1.0, "B-mid": 0.75, "C-dear": 0.25, "D-down": 0.0}, abs=1e-7)
    assert (r.chosen_point, r.chosen_point_label) == (1, "all bids")
    # G_V = V_1 + VTDF dP_1 with dP_1 = x - P_flex,1 = [0, -0.75, -0.25]
    assert r.vm_pu == pytest.approx([1.05], abs=1e-9)
    assert r.loading_percent == pytest.approx([82.5], abs=1e-6)
    assert r.aggregators == (
        {"aggregator": "A", "offered_mw": 1.0, "activated_mw": pytest.approx(1.0)},
        {"aggregator": "B", "offered_mw": 0.5, "activated_mw": pytest.approx(0.75)},
        {"aggregator": "C", "offered_mw": 1.0, "activated_mw": pytest.approx(0.25)},
    )


def test_hand_case_infeasible_request_reports_max_deliverable(hand) -> None:
    # F1 + F2 <= 1.6 MW and F3 <= 0.75 MW: at most 2.35 MW upward; downward only D-down's 0.5 MW.
    r = clear_milp(*hand, 2.5)
    assert r.status is ClearingStatus.INFEASIBLE and not r.ok
    assert r.max_deliverable_mw == pytest.approx(2.35, abs=1e-6)
    assert r.delivered_mw == 0.0 and r.cost_eur == 0.0 and r.chosen_point is None
    assert all(a["activated_mw"] == 0.0 for a in r.activations)
    assert "grid cannot take 2.5 MW upward" in r.message and "at most 2.35 MW upward" in r.message
    again = clear_milp(*hand, r.max_deliverable_mw)
    assert again.ok and again.delivered_mw == pytest.approx(r.max_deliverable_mw, abs=1e-9)
    down = clear_milp(*hand, -0.7)
    assert down.status is ClearingStatus.INFEASIBLE and down.max_deliverable_mw == pytest.approx(-0.5)
    assert "bids offer only 0.5 MW downward" in down.message


def test_hand_case_downward_bid_and_duration(hand) -> None:
    r = clear_milp(*hand, -0.3, duration_h=0.25)
    assert r.ok and activated(r)["D-down"] == pytest.approx(-0.3)
    assert r.cost_eur == pytest.approx(5.0 * 0.3 * 0.25)  # price x |MW| x h
    assert r.loading_percent == pytest.approx([5.0])  # 20 % - 50 %/MW x 0.3 MW


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screening_keeps_the_optimum(seed: int) -> None:
    package, bids = random_case(seed)
    for request in (0.1, 0.3, 0.45, -0.05):
        full = clear_milp(package, bids, request, screen=False)
        screened = clear_milp(package, bids, request)
        assert screened.stats["rows_screened"] > 0 and full.stats["rows_screened"] == 0
        assert screened.status == full.status
        assert screened.cost_eur == pytest.approx(full.cost_eur, rel=1e-6, abs=1e-7)
        assert screened.max_deliverable_mw == pytest.approx(full.max_deliverable_mw, abs=1e-6)


def test_predictions_are_the_linear_model_at_the_chosen_point_and_within_limits() -> None:
    package, bids = random_case(0)
    r = clear_milp(package, bids, 0.3)
    assert r.ok
    pt = package.points[r.chosen_point]
    d_p = r.p_flex_mw - pt.p_flex_mw
    assert r.vm_pu == pytest.approx(pt.vm_pu + pt.vtdf_pu_per_mw @ d_p)
    assert r.loading_percent == pytest.approx(pt.loading_percent + pt.ltdf_percent_per_mw @ d_p)
    assert r.vm_pu.max() <= package.vm_max_pu + 1e-7 and r.vm_pu.min() >= package.vm_min_pu - 1e-7
    assert np.abs(r.loading_percent).max() <= 100 + 1e-5
    # Voronoi: P_fix + dispatch is nearest to the chosen point
    x = pt.p_mw + d_p
    distances = [np.linalg.norm(x - p.p_mw) for p in package.points]
    assert distances[r.chosen_point] == pytest.approx(min(distances))
    # every piece within its offer
    for p in r.piece_activations:
        assert min(0, p["offered_mw"]) - 1e-9 <= p["activated_mw"] <= max(0, p["offered_mw"]) + 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_per_point_decomposition_equals_the_joint_milp(seed: int) -> None:
    """The default path (one LP per point) and the joint MILP (highspy) give the same optimum."""
    package, bids = random_case(seed, n_points=4)
    n_optimal = 0
    for request in (0.05, 0.1, 0.2, 0.3, 0.45, 2.0, -0.02, -0.05):
        ref = clear_milp(package, bids, request, solver="highs-milp")
        r = clear_milp(package, bids, request)
        assert (r.solver, ref.solver) == ("highs", "highs-milp") and r.stats["lps"] == 4
        assert r.status == ref.status, (request, r.message, ref.message)
        assert r.cost_eur == pytest.approx(ref.cost_eur, rel=1e-7, abs=1e-7)
        assert r.delivered_mw == pytest.approx(ref.delivered_mw, abs=1e-8)
        if ref.status is ClearingStatus.INFEASIBLE:
            assert r.max_deliverable_mw == pytest.approx(ref.max_deliverable_mw, abs=1e-6)
        else:
            n_optimal += 1
            # the dispatch satisfies the chosen point's rows (a unique optimum may still differ in ties)
            pt = package.points[r.chosen_point]
            assert np.all(pt.a_per_mw @ (r.p_flex_mw - pt.p_flex_mw) <= pt.b + 1e-7)
    assert n_optimal >= 4


@pytest.mark.parametrize("solver", ["pyomo:appsi_highs", "pyomo:highs"])
def test_pyomo_and_highspy_reach_the_same_optimum(hand, solver: str) -> None:
    pytest.importorskip("pyomo.environ")
    cases = [(hand, (1.5, 2.0, 2.5, -0.3))] + [(random_case(s), (0.1, 0.3, 0.45, -0.05)) for s in (0, 2)]
    for (package, bids), requests in cases:
        for request in requests:
            ref = clear_milp(package, bids, request)
            other = clear_milp(package, bids, request, solver=solver, screen=request > 0.2)
            assert other.solver == solver
            assert other.status == ref.status, (request, other.message)
            assert other.cost_eur == pytest.approx(ref.cost_eur, rel=1e-6, abs=1e-6)
            assert other.delivered_mw == pytest.approx(ref.delivered_mw, abs=1e-7)
            if ref.status is ClearingStatus.INFEASIBLE:
                assert other.max_deliverable_mw == pytest.approx(ref.max_deliverable_mw, abs=1e-5)


@pytest.mark.parametrize("request_mw", [0, 0.0, math.nan, math.inf, -math.inf, "lots", None])
def test_bad_requests_are_input_errors(hand, request_mw) -> None:
    with pytest.raises(InputError, match="request"):
        clear_milp(*hand, request_mw)


def test_other_input_errors(hand) -> None:
    package, bids = hand
    stray = BidTable(rows=(*bids.rows, BidRow("E", "E", "h99", 0.1, 1.0)))
    with pytest.raises(InputError, match=r"no flexible bus .*'h99'"):
        clear_milp(package, stray, 1.0)
    with pytest.raises(InputError, match="unknown solver"):
        clear_milp(package, bids, 1.0, solver="gurobi")
    with pytest.raises(InputError, match="duration_h"):
        clear_milp(package, bids, 1.0, duration_h=0)
    with pytest.raises(InputError, match="BidTable"):
        clear_milp(package, bids.to_records(), 1.0)
    with pytest.raises(InputError, match="SensitivityPackage"):
        clear_milp(package.to_dict(), bids, 1.0)
    with pytest.raises(InputError, match="not available|not usable"):
        clear_milp(package, bids, 1.0, solver="pyomo:no_such_solver_xyz")


def test_solver_failure_is_a_status_not_a_crash() -> None:
    package, bids = random_case(1)
    r = clear_milp(package, bids, 0.2, time_limit_s=0.0)
    assert r.status is ClearingStatus.SOLVER_ERROR and "time limit" in r.message.lower()
    assert r.delivered_mw == 0.0 and all(a["activated_mw"] == 0.0 for a in r.activations)
    assert len(r.activations) == bids.n_bids and not r.p_flex_mw.any()


def test_result_round_trips_through_json(hand) -> None:
    for request in (2.0, 2.5):
        r = clear_milp(*hand, request)
        data = json.loads(json.dumps(r.to_dict()))
        for key in ("status", "requested_mw", "delivered_mw", "cost_eur", "chosen_point", "activations", "runtime_s"):
            assert key in data
        assert data["status"] == r.status.value
        back = ClearingResult.from_dict(data)
        assert back == r and back.status is r.status
        assert back.vm_pu is None or not back.vm_pu.flags.writeable
    with pytest.raises(InputError, match="unknown clearing result field"):
        ClearingResult.from_dict({**data, "colour": 1})


def test_stdout_stays_clean_for_the_cli() -> None:
    """HiGHS prints a banner on its first instance; a --json CLI line must not get it."""
    code = (
        "import sys; sys.path.insert(0, %r); sys.path.insert(0, %r)\n"
        "from test_tso_clearing import hand_package, hand_bids\n"
        "from optim.tso.clearing import clear_milp\n"
        "r = clear_milp(hand_package(), hand_bids(), 2.5, solver='pyomo:appsi_highs')\n"
        "assert r.max_deliverable_mw > 2\n"
        "assert clear_milp(hand_package(), hand_bids(), 2.0).ok\n"
    ) % (str(REPO), str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_single_point_zero_offers_and_a_grid_already_out_of_limits(hand) -> None:
    package, bids = hand
    one = SensitivityPackage(package.flex_ids, package.bus_ids, package.branch_ids, package.points[:1],
                             flex_of_asset=package.flex_of_asset)
    r = clear_milp(one, bids, 2.0)  # no Voronoi rows; the same dispatch as with two points
    assert r.ok and r.cost_eur == pytest.approx(35.0) and r.chosen_point == 0
    zero = BidTable(rows=(BidRow("Z", "Z", "h1", 0.0, 10.0),))
    r = clear_milp(package, zero, 1.0)
    assert r.status is ClearingStatus.INFEASIBLE and r.max_deliverable_mw == 0.0
    assert "bids offer only 0 MW upward" in r.message
    # V3 at 1.06 p.u. before any dispatch, and no bid can lower it: no point admits a dispatch
    hot = SensitivityPackage(
        package.flex_ids, package.bus_ids, package.branch_ids,
        tuple(OperatingPoint(p.label, p.p_flex_mw, p_mw=p.p_mw, vm_pu=p.vm_pu + 0.04, loading_percent=p.loading_percent,
                             vtdf_pu_per_mw=p.vtdf_pu_per_mw, ltdf_percent_per_mw=p.ltdf_percent_per_mw) for p in package.points),
        flex_of_asset=package.flex_of_asset,
    )
    r = clear_milp(hot, bids, 0.1)
    assert r.status is ClearingStatus.INFEASIBLE and r.max_deliverable_mw == 0.0
    assert "no operating point admits" in r.message


def test_a_rows_only_package_clears_the_same_without_predictions(hand) -> None:
    """The clearing uses only the rows: a hardened-style copy (rows, P_flex, ids) gives the same
    optimum, and no predicted voltages or loadings (the DSO validates with its own package)."""
    package, bids = hand
    hardened = SensitivityPackage(
        flex_ids=package.flex_ids,
        points=tuple(OperatingPoint(p.label, p.p_flex_mw, a_per_mw=p.a_per_mw * 3.0, b=p.b * 3.0)
                     for p in package.points),
        flex_of_asset=package.flex_of_asset, style="hardened",
    )
    for request in (1.5, 2.0, 2.5):
        ref, r = clear_milp(package, bids, request), clear_milp(hardened, bids, request)
        assert r.status == ref.status and r.cost_eur == pytest.approx(ref.cost_eur, abs=1e-7)
        assert r.max_deliverable_mw == pytest.approx(ref.max_deliverable_mw, abs=1e-6)
        assert r.vm_pu is None and r.loading_percent is None and r.bus_ids == () and r.branch_ids == ()
    with pytest.raises(InputError, match="hardened package carries no p_mw"):
        SensitivityPackage(flex_ids=package.flex_ids, points=package.points, style="hardened")
    with pytest.raises(InputError, match="needs its rows"):
        SensitivityPackage(flex_ids=package.flex_ids, points=(OperatingPoint("x", np.zeros(3)),), style="hardened")
    assert hardened.fingerprint() != package.fingerprint()
    back = SensitivityPackage.from_dict(json.loads(json.dumps(hardened.to_dict())))
    assert back.style == "hardened" and back.fingerprint() == hardened.fingerprint()


def test_optimal_costs_of_many_requests_are_those_of_one_clearing_each() -> None:
    """The warm re-solves of optimal_costs give clear_milp's optima, NaN where nothing can be delivered."""
    from optim.tso.clearing import optimal_costs

    package, bids = random_case(5)
    offered = float(sum(max(b.p_mw, 0.0) for b in bids.rows))
    down = float(sum(min(b.p_mw, 0.0) for b in bids.rows))
    requests = [0.1 * offered, 0.4 * offered, 0.5 * down, 0.8 * offered, 2.0 * offered]
    costs = optimal_costs(package, bids, requests)
    for request, cost in zip(requests, costs):
        one = clear_milp(package, bids, request)
        if one.ok:
            assert cost == pytest.approx(one.cost_eur, rel=1e-7, abs=1e-9), request
        else:
            assert np.isnan(cost), request
    assert np.isnan(costs[-1]) and np.isfinite(costs[:2]).all()  # twice the offers cannot be delivered
    with pytest.raises(InputError):
        optimal_costs(package, bids, [0.0])


def test_optimal_costs_called_again_and_on_the_nearest_points() -> None:
    """One OptimalCosts called twice (its LPs kept, warm) gives the optima of fresh calls; with
    ``candidates`` it solves fewer points, so its cost is never below the optimum (an upper bound),
    it never calls a deliverable request undeliverable (seed 4 at 0.3324 MW: neither of the two
    nearest levels' cells can deliver it, the fifth can), and with every point it is the optimum."""
    from optim.tso.clearing import OptimalCosts, optimal_costs

    for seed in (4, 5, 6, 7):
        package, bids = random_case(seed, n_points=7)
        offered = float(sum(max(b.p_mw, 0.0) for b in bids.rows))
        down = float(sum(min(b.p_mw, 0.0) for b in bids.rows))
        first, second = [0.1 * offered, 0.5 * down, 0.4 * offered], [0.7 * offered, 0.2 * offered, 0.3 * down]
        exact = optimal_costs(package, bids, first + second)
        costs = OptimalCosts(package, bids)
        again = np.concatenate([costs(first), costs(second)])
        assert np.allclose(again, exact, rtol=1e-7, atol=1e-9, equal_nan=True), seed
        many = [r for r in np.linspace(down, offered, 41) if abs(r) > 1e-6] + ([0.3324] if seed == 4 else [])
        exact = optimal_costs(package, bids, many)
        for k in (1, 2):
            upper = OptimalCosts(package, bids, candidates=k)(many)
            assert np.array_equal(np.isnan(upper), np.isnan(exact)), (seed, k)  # the same requests delivered
            both = np.isfinite(exact)
            assert np.all(upper[both] >= exact[both] - 1e-7 * np.maximum(1.0, np.abs(exact[both]))), (seed, k)
        if seed == 4:
            assert np.isfinite(exact[-1])
            assert exact[-1] == pytest.approx(clear_milp(package, bids, 0.3324).cost_eur, rel=1e-7)
        every = OptimalCosts(package, bids, candidates=package.n_points)(many)
        assert np.allclose(every, exact, rtol=1e-7, atol=1e-9, equal_nan=True), seed
    for bad in (0, 1.5, True):
        with pytest.raises(InputError, match="candidates"):
            OptimalCosts(package, bids, candidates=bad)


def test_cell_bounds_prune_points_without_changing_the_clearing(bergwald_grid, monkeypatch) -> None:
    """On the default Bergwald package (m = 9, the grid binds at 1.8 MW): the points pruned by
    their cells' bounds change nothing (cost, chosen point, dispatch) against solving every
    point's LP, some LPs are pruned, and each solved LP costs at least its cell's bound."""
    import optim.tso.clearing as clearing
    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.dso.scenario import scenario_from_grid
    from optim.tso.bids import bids_from_frame

    scenario = scenario_from_grid(bergwald_grid)
    package = linearize(bergwald_grid, scenario, config=LinearizationConfig()).package
    bids = bids_from_frame(scenario.bids)
    bounds_seen = []
    real_bounds = clearing._cell_bounds

    def recorded(*args, **kwargs):
        out = real_bounds(*args, **kwargs)
        bounds_seen.append(out)
        return out

    pruned = cut_off = 0
    monkeypatch.setattr(clearing, "_cell_bounds", recorded)
    for request in (0.3, 0.9, 1.5, 1.8, 2.05):
        monkeypatch.setenv("DIGIPLAT_LP_THREADS", "2")  # points started side by side change nothing
        threaded = clear_milp(package, bids, request)
        monkeypatch.setenv("DIGIPLAT_LP_THREADS", "1")  # one at a time: the pruning is deterministic
        fast = clear_milp(package, bids, request)
        with monkeypatch.context() as mp:
            mp.setattr(clearing, "PRUNE_MARGIN", math.inf)  # every feasible cell solved in full
            full = clear_milp(package, bids, request)
        assert (threaded.cost_eur, threaded.chosen_point) == (fast.cost_eur, fast.chosen_point)
        np.testing.assert_array_equal(threaded.p_flex_mw, fast.p_flex_mw)
        assert fast.status is full.status is ClearingStatus.OPTIMAL, request
        assert fast.cost_eur == pytest.approx(full.cost_eur, rel=1e-9)
        assert fast.chosen_point == full.chosen_point
        np.testing.assert_allclose(fast.p_flex_mw, full.p_flex_mw, atol=1e-7)
        assert fast.cost_eur >= bounds_seen[-1][fast.chosen_point] - 1e-6 * fast.cost_eur
        pruned += full.stats["lps_solved"] - fast.stats["lps_solved"]
        cut_off += fast.stats["lps_cut_off"]
        assert full.stats["lps_cut_off"] == 0  # an infinite margin, no cut-off: every LP to its optimum
    assert pruned > 0
    assert cut_off > 0  # LPs stopped by the dual simplex's bound, with the same results as above


def test_an_lp_is_cut_off_only_when_its_optimum_is_not_below_the_cutoff(hand) -> None:
    """A cutoff never changes an LP's answer: at or below the optimum the dual simplex may stop
    ("cut off": its objective proved the optimum no better than the cutoff) or finish; above the
    optimum it finishes at the same optimum. (That cut-offs happen is asserted on Bergwald above.)"""
    import optim.tso.clearing as clearing

    package, bids = hand
    pieces = clearing._pieces(package, bids)
    rows = clearing._point_rows(package, pieces, screen=True)
    lp = clearing._point_lp(rows[0], pieces, 1.2, 1.0, maximise=False)
    status, y, optimum = clearing._solve_point_lp(lp, time_limit_s=60.0)
    assert status == "optimal" and y is not None
    for cutoff in (optimum - 10.0, optimum - 1e-3, optimum, optimum + 1.0, math.inf):
        got, y_cut, value = clearing._solve_point_lp(lp, time_limit_s=60.0, cutoff=cutoff)
        assert got in (("cut off", "optimal") if cutoff <= optimum else ("optimal",)), cutoff
        if got == "optimal":
            assert value == pytest.approx(optimum, rel=1e-12)
            np.testing.assert_allclose(y_cut, y, atol=1e-12)


def test_a_package_of_checked_points_keeps_them_and_their_cached_rows(hand) -> None:
    """The bisection clears on packages of two points each: a package made of points another
    package has checked keeps the same objects (and their CSR rows), not checked copies; a point
    changed in any array is checked and made again."""
    import dataclasses

    package, _ = hand
    csr = package.points[0].a_csr
    pair = dataclasses.replace(package, points=package.points[:2])
    assert pair.points[0] is package.points[0] and pair.points[0].a_csr is csr
    changed = dataclasses.replace(package.points[0], vm_pu=package.points[0].vm_pu + 0.0)
    again = dataclasses.replace(package, points=(changed,))
    assert again.points[0] is not changed and not again.points[0].vm_pu.flags.writeable
    with pytest.raises(InputError, match="NaN"):
        bad = package.points[0].vm_pu.copy()
        bad[0] = np.nan
        dataclasses.replace(package, points=(dataclasses.replace(package.points[0], vm_pu=bad),))


def test_the_sparse_rows_of_a_point_equal_its_dense_rows_and_are_not_pickled(hand) -> None:
    import pickle

    from optim.package import sparse_rows

    package, _ = hand
    point = package.points[0]
    np.testing.assert_array_equal(point.a_csr.toarray(), point.a_per_mw)
    assert point.a_csr is point.a_csr  # built once
    assert point.a_csr.indices.dtype == np.int32
    assert "_a_csr" not in pickle.loads(pickle.dumps(point)).__dict__  # a cache, not data
    dense = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, -3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(sparse_rows(dense).toarray(), dense)
    assert sparse_rows(dense).nnz == 3


@pytest.mark.parametrize("value", ["two", "0"])
def test_a_bad_lp_thread_count_is_an_input_error(hand, monkeypatch, value: str) -> None:
    package, bids = hand
    monkeypatch.setenv("DIGIPLAT_LP_THREADS", value)
    with pytest.raises(InputError, match="DIGIPLAT_LP_THREADS"):
        clear_milp(package, bids, 0.1)


def test_ties_go_to_the_dispatch_nearest_its_point() -> None:
    """The pieces of one bid share its price, so 0.5 MW of A-cheap (F1 0.6 MW, F2 0.4 MW) costs
    5 EUR split any way: the cell of "none" holds optimal dispatches (F1 <= 0.3 MW) and so does the
    cell of the point "F1 on" (F1 = 0.6 MW). The clearing takes the one nearest its point: F1 0.5 MW
    at "F1 on" (L1 distance 0.1), not a vertex of the lower index' cell; the joint MILP agrees on
    the cost."""

    def point(label: str, p_flex: np.ndarray) -> OperatingPoint:
        return OperatingPoint(label, p_flex, p_mw=P_FIX + p_flex, vm_pu=1.02 + VTDF @ p_flex,
                              loading_percent=20.0 + LTDF @ p_flex, vtdf_pu_per_mw=VTDF, ltdf_percent_per_mw=LTDF)

    package = SensitivityPackage(flex_ids=("F1", "F2", "F3"), bus_ids=("V3",), branch_ids=("L12",),
                                 points=(point("none", np.zeros(3)), point("F1 on", np.array([0.6, 0.0, 0.0]))),
                                 flex_of_asset={"h1": "F1", "h2": "F2", "h3": "F3"})
    bids = hand_bids()
    r = clear_milp(package, bids, 0.5)
    assert r.ok and r.cost_eur == pytest.approx(5.0, rel=1e-7)
    assert (r.chosen_point, r.chosen_point_label) == (1, "F1 on")
    assert r.p_flex_mw == pytest.approx([0.5, 0.0, 0.0], abs=1e-7)
    ref = clear_milp(package, bids, 0.5, solver="highs-milp")
    assert ref.cost_eur == pytest.approx(r.cost_eur, rel=1e-7)
    # without a tie the first stage's optimum stands: 1.5 MW as in the hand case
    assert clear_milp(package, bids, 1.5).cost_eur == pytest.approx(20.0, abs=1e-6)


def test_the_face_weights_measure_the_l1_distance_to_an_all_or_nothing_point() -> None:
    """sign(P_M) (1 - 2 f): +|y| where the point has nothing, -|y| where it has the bus' whole offer,
    so w . y + (offer at the point) is the L1 distance to the point for every y in the box."""
    from optim.tso.clearing import _face_weights, _pieces

    package, bids = hand_package(), hand_bids()
    pieces = _pieces(package, bids)
    point = np.array([0.6, 0.0, 1.0])  # F1 on (A-cheap 0.6), F2 off, F3 on (B-mid 1.0)
    w = _face_weights(point, pieces)
    rng = np.random.default_rng(0)
    up = pieces.p_mw > 0
    for _ in range(20):
        y = np.where(up, rng.uniform(0, 1, pieces.n_pieces) * pieces.upper_mw, 0.0)
        x = np.bincount(pieces.flex_index, weights=y, minlength=3)
        assert w[up] @ y[up] + point.sum() == pytest.approx(np.abs(x - point).sum(), abs=1e-12)
