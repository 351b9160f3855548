"""AC power-flow validation of a dispatch (stand-in grid)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optim._errors import InputError, PowerFlowError
from optim.dso.linearize import linearize
from optim.dso.scenario import ScenarioConfig, scenario_from_grid
from optim.validation import ValidationResult, critical_mask, p_flex_from_buildings, validate_dispatch
from test_dso_standin import standin_grid


@pytest.fixture(scope="module")
def setup():
    grid = standin_grid()
    scenario = scenario_from_grid(grid, ScenarioConfig())
    return grid, scenario, linearize(grid, scenario)


def test_critical_mask():
    margin = np.array([0.5, 0.01, 0.3, 0.02, 0.9, 0.4, 0.6, 0.7, 0.8, 0.05, 1.0])
    mask = critical_mask(margin, 0.1)
    assert mask.sum() == 2 and mask[1] and mask[3]
    assert critical_mask(np.array([3.0]), 0.1).tolist() == [True]
    assert critical_mask(np.zeros(0), 0.1).size == 0


def test_first_order_prediction_is_close(setup):
    """A dispatch between two points: the linear prediction of the nearer point is accurate."""
    grid, scenario, lin = setup
    pt = lin.package.points[2]  # no bids
    full = lin.package.points[0].p_flex_mw
    d_p = 0.05 * full
    res = validate_dispatch(grid, scenario, lin.key, d_p, predicted_vm_pu=pt.vm_pu + pt.vtdf_pu_per_mw @ d_p,
                            predicted_loading_percent=pt.loading_percent + pt.ltdf_percent_per_mw @ d_p)
    assert res.vm_mae_pu < 5e-5 and res.vm_rmse_pu >= res.vm_mae_pu
    assert res.critical_vm_mae_pu is not None and res.critical_buses.sum() == int(np.ceil(0.1 * len(lin.key.buses)))
    assert res.critical_branches.sum() == int(np.ceil(0.1 * len(lin.key.branch_ids)))
    assert res.vm_min_pu <= res.vm_max_pu and res.max_loading_percent > 0
    assert np.isclose(res.delivered_mw, d_p.sum())
    assert res.vm_pf_pu.shape == res.vm_pred_pu.shape == (len(lin.key.buses),)
    assert res.loading_pf_percent.shape == (len(lin.key.branch_ids),)


def test_violations_are_listed_without_prediction(setup):
    grid, scenario, lin = setup
    key = lin.key
    p = np.zeros(len(key.flex_ids))
    # 60 kW at the flexible bus farthest from its substation: overvoltage / overload there
    far = max(key.flex_ids, key=lambda f: scenario.buildings.loc[list(key.buildings_of_flex[f]), "feeder_km"].max())
    p[key.flex_ids.index(far)] = 0.25
    res = validate_dispatch(grid, scenario, key, p, method="merit-order")
    assert res.vm_mae_pu is None and res.loading_mae_percent is None and res.critical_vm_mae_pu is None
    assert res.n_violations > 0
    v = res.violations[0]
    assert v.element in ("bus", "line", "trafo") and v.opaque_id in key.bus_ids + key.branch_ids
    assert (v.value > v.limit) if v.quantity == "loading_percent" or v.value > 1 else (v.value < v.limit)
    summary = res.summary()
    assert summary["violations"] == res.n_violations and summary["vm_max_pu"] == res.vm_max_pu
    back = ValidationResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.violations == res.violations and np.allclose(back.vm_pf_pu, res.vm_pf_pu)


def test_dispatch_per_building(setup):
    grid, scenario, lin = setup
    key = lin.key
    fid = key.flex_ids[0]
    bld = key.buildings_of_flex[fid][0]
    p = p_flex_from_buildings(key, {bld: 0.004})
    assert p[0] == 0.004 and p.sum() == 0.004
    with pytest.raises(InputError):
        p_flex_from_buildings(key, {"no such building": 0.1})
    with pytest.raises(InputError):
        p_flex_from_buildings(key, {bld: float("nan")})


def test_bad_dispatches_are_rejected(setup):
    grid, scenario, lin = setup
    n = len(lin.key.flex_ids)
    with pytest.raises(InputError):
        validate_dispatch(grid, scenario, lin.key, np.zeros(n - 1))
    with pytest.raises(InputError):
        validate_dispatch(grid, scenario, lin.key, np.full(n, np.nan))
    with pytest.raises(InputError):
        validate_dispatch(grid, scenario, lin.key, np.zeros(n), predicted_vm_pu=np.zeros(3))
    with pytest.raises(PowerFlowError, match="dispatch"):
        validate_dispatch(grid, scenario, lin.key, np.full(n, 2.0))


def test_validation_applies_the_physical_reactive_power(setup):
    """The power flow sees Q = dq_dp * P of the activated units: with Q held the voltages differ,
    and the Q-coupled prediction of the point matches the power flow that moves Q, not the other."""
    from optim.tso.bids import bids_from_frame
    from optim.validation import q_flex_from_pieces

    grid, scenario, lin = setup
    key, pkg = lin.key, lin.package
    ratio = np.asarray(key.dq_dp)
    assert np.count_nonzero(ratio) > 0 and key.dq_dp_of_building
    pt = pkg.points[2]  # no bids
    d_p = 0.1 * pkg.points[0].p_flex_mw
    moved = validate_dispatch(grid, scenario, key, d_p, point=pt)  # default: key.dq_dp * P
    held = validate_dispatch(grid, scenario, key, d_p, point=pt, q_flex_mvar=np.zeros_like(d_p))
    assert np.abs(moved.vm_pf_pu - held.vm_pf_pu).max() > 1e-5  # Q matters at this size
    assert moved.vm_mae_pu < 0.2 * held.vm_mae_pu  # the prediction is the Q-coupled one
    # Q from the clearing's pieces (per bid row and building) equals the per-bus ratio here
    bids = bids_from_frame(scenario.bids)
    pieces = [{"bid_id": r.bid_id, "flex_id": pkg.flex_of_asset[r.building_id], "offered_mw": r.p_mw,
               "activated_mw": 0.1 * r.p_mw} for r in bids.rows]
    np.testing.assert_allclose(q_flex_from_pieces(key, pieces, bids), ratio * d_p, atol=1e-12)


def test_loading_sign_is_the_one_the_current_rows_predict(bergwald_grid):
    """Loadings are signed by the active power at the end that sets the loading, in the package's
    current rows and in the power flow alike. The case that showed it: weekend 12:00, -0.2 MW on
    the default package, where a transformer at ~13 % loading carries almost no active power and
    both ends feed its losses; signed by its HV-end P the power flow said -13 %, the prediction
    +13 % (0.06 % loading MAE from that one branch, Table I missed)."""
    from dataclasses import replace

    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.market import clear_market

    scenario = scenario_from_grid(bergwald_grid, replace(ScenarioConfig(), day_type="weekend", hour=12))
    lin = linearize(bergwald_grid, scenario, config=LinearizationConfig(n_points=9, point_method="merit-levels"))
    outcome = clear_market(bergwald_grid, scenario, request_mw=-0.2, linearization=lin)
    v = outcome.validation
    pf, pred = v.loading_pf_percent, v.loading_pred_percent
    assert v.loading_mae_percent <= 6.1e-3  # paper A's Table I
    # the transformer fed from both ends (P_hv > 0 and P_lv > 0) whose loading its LV end sets
    from optim.validation import validate_dispatch

    _, net = validate_dispatch(bergwald_grid, scenario, lin.key, outcome.clearing.p_flex_mw, return_net=True)
    both_fed = [k for k, (e, i) in enumerate(zip(lin.key.branch_elements, lin.key.branch_indices))
                if e == "trafo" and net.res_trafo.at[i, "p_hv_mw"] > 0 and net.res_trafo.at[i, "p_lv_mw"] > 0
                and net.res_trafo.at[i, "i_lv_ka"] * net.trafo.at[i, "vn_lv_kv"] > net.res_trafo.at[i, "i_hv_ka"] * net.trafo.at[i, "vn_hv_kv"]]
    assert both_fed, "no transformer fed from both ends: the case this test is about is gone"
    assert all(pf[k] < 0 and pred[k] < 0 for k in both_fed)  # the LV end's sign: power does not flow HV -> LV there


def _same_validation(a: ValidationResult, b: ValidationResult) -> None:
    np.testing.assert_allclose(b.vm_pf_pu, a.vm_pf_pu, rtol=0, atol=1e-8)
    np.testing.assert_allclose(b.loading_pf_percent, a.loading_pf_percent, rtol=0, atol=1e-5)
    assert [(x.element, x.index, x.quantity) for x in b.violations] == [(x.element, x.index, x.quantity) for x in a.violations]
    np.testing.assert_allclose([x.value for x in b.violations], [x.value for x in a.violations], rtol=0, atol=1e-5)
    for name in ("vm_mae_pu", "loading_mae_percent"):
        if getattr(a, name) is None:
            assert getattr(b, name) is None
        else:
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-4, abs=1e-10)


def test_the_compiled_engine_is_pandapowers_power_flow(setup):
    """engine="compiled" solves pandapower's own model of the net by the same Newton-Raphson: the
    same voltages, loadings and violations (within the power-flow tolerance), with and without a
    prediction, with the units' reactive power, and no net."""
    grid, scenario, lin = setup
    key = lin.key
    pt = lin.package.points[0]
    far = max(key.flex_ids, key=lambda f: scenario.buildings.loc[list(key.buildings_of_flex[f]), "feeder_km"].max())
    congesting = np.zeros(len(key.flex_ids))
    congesting[key.flex_ids.index(far)] = 0.25
    q = 0.25 * congesting  # reactive power following P
    for p, point, q_flex in ((0.6 * pt.p_flex_mw, pt, None), (congesting, None, q)):
        a, net = validate_dispatch(grid, scenario, key, p, point=point, q_flex_mvar=q_flex, return_net=True)
        b, none = validate_dispatch(grid, scenario, key, p, point=point, q_flex_mvar=q_flex, return_net=True,
                                    engine="compiled")
        assert net is not None and none is None
        _same_validation(a, b)
    assert b.n_violations > 0  # the congesting dispatch is compared where it breaks limits
    with pytest.raises(InputError, match="engine"):
        validate_dispatch(grid, scenario, key, congesting, engine="fast")


def test_the_compiled_engine_on_bergwald_and_the_solved_net_for_exports(bergwald_grid):
    """On Bergwald, both methods' dispatches of a round (the merit order's with violations) get the
    same validation from either engine; with_solved_net adds the pandapower net the exports need."""
    from optim.dso.linearize import LinearizationConfig
    from optim.dso.scenario import scenario_from_grid
    from optim.market import clear_market, with_solved_net

    scenario = scenario_from_grid(bergwald_grid)
    lin = linearize(bergwald_grid, scenario, config=LinearizationConfig(n_points=9, point_method="merit-levels"))
    for method in ("milp", "merit-order"):
        slow = clear_market(bergwald_grid, scenario, request_mw=1.8, linearization=lin, method=method)
        fast = clear_market(bergwald_grid, scenario, request_mw=1.8, linearization=lin, method=method, engine="compiled")
        assert slow.net is not None and fast.net is None
        _same_validation(slow.validation, fast.validation)
        solved = with_solved_net(fast, bergwald_grid, scenario, lin)
        assert solved.validation is fast.validation and solved.net is not None
        np.testing.assert_allclose(solved.net.res_bus.vm_pu.to_numpy(), slow.net.res_bus.vm_pu.to_numpy(), atol=1e-9)
        assert with_solved_net(solved, bergwald_grid, scenario, lin) is solved  # has its net: unchanged
    assert slow.validation.n_violations > 0  # the merit order congests at 1.8 MW
    with pytest.raises(InputError, match="engine"):
        clear_market(bergwald_grid, scenario, request_mw=1.8, linearization=lin, engine="fast")


def test_the_compiled_engine_follows_a_net_changed_in_memory_and_refuses_a_wrong_key(setup):
    """The compiled frame is kept per grid *and* its net's tables: lengthening lines in memory
    changes the compiled result as it changes pandapower's; a key naming a bus without a load of
    this grid is refused with an InputError, not an IndexError."""
    import copy
    from dataclasses import replace

    grid, scenario, lin = setup
    grid = copy.deepcopy(grid)
    key = lin.key
    p = 0.6 * lin.package.points[0].p_flex_mw
    before = validate_dispatch(grid, scenario, key, p, engine="compiled")
    grid.net.line["length_km"] *= 3.0
    after = validate_dispatch(grid, scenario, key, p, engine="compiled")
    reference = validate_dispatch(grid, scenario, key, p)
    assert np.abs(after.loading_pf_percent - before.loading_pf_percent).max() > 0.1
    _same_validation(reference, after)
    wrong = replace(key, flex_buses=tuple([10**6] + list(key.flex_buses[1:])))
    with pytest.raises(InputError, match="wrong grid for the key"):
        validate_dispatch(grid, scenario, wrong, p, engine="compiled")
