"""The compiled-grid power flows and sensitivities of the linearization against pandapower (stand-in grid)."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from optim.dso.linearize import (
    LinearizationConfig,
    _grid_model,
    apply_flex,
    flex_table,
    frame_model,
    linearize,
    net_at_time_frame,
    run_power_flow,
)
from optim._errors import InputError
from optim.dso.scenario import ScenarioConfig, scenario_from_grid
from optim.dso.sensitivity import monitored_elements_of_net, sensitivities_from_net
from optim.package import (OperatingPoint, constraint_rows, constraint_rows_at, rows_that_can_bind,
                           screened_constraint_rows)
from test_dso_standin import standin_grid

TOL = 1e-10


@pytest.fixture(scope="module")
def frame():
    grid = standin_grid()
    scenario = scenario_from_grid(grid, ScenarioConfig())
    flex = flex_table(grid, scenario.bids, scenario.buildings)
    config = LinearizationConfig(tolerance_mva=TOL)
    return grid, scenario, flex, frame_model(grid, scenario, flex, config)


def _pandapower_net(grid, scenario, flex, p_flex):
    net = net_at_time_frame(grid, scenario, flex_buses=flex.index.to_numpy())
    dq = flex.dq_dp.to_numpy(float)
    apply_flex(net, flex.index.to_numpy(), p_flex, dq * p_flex)
    run_power_flow(net, where="test", tolerance_mva=TOL)
    return net


def test_frame_injections_and_voltages_equal_pandapower(frame):
    """The frame's S_bus (grid run plus the frame's changes) and its solution are pandapower's.

    Only what Newton-Raphson uses is compared: P at PV and PQ buses, Q at PQ buses (the slack's
    entry is a result, not a specification).
    """
    grid, scenario, flex, fm = frame
    net = _pandapower_net(grid, scenario, flex, np.zeros(len(flex)))
    internal = net._ppc["internal"]
    pvpq, pq = fm.model.pvpq, fm.model.pq
    assert np.allclose(fm.model.sbus_pu[pvpq].real, internal["Sbus"][pvpq].real, rtol=0, atol=1e-12)
    assert np.allclose(fm.model.sbus_pu[pq].imag, internal["Sbus"][pq].imag, rtol=0, atol=1e-12)
    assert np.allclose(fm.model.v_solved, internal["V"], rtol=0, atol=1e-9)


def test_warm_started_point_equals_pandapower(frame):
    """A point solved from the previous one (LU reused) gives pandapower's voltages and sensitivities."""
    grid, scenario, flex, fm = frame
    dq = flex.dq_dp.to_numpy(float)
    order = (np.arange(len(flex)), np.arange(len(fm.monitored[0])), np.arange(len(fm.monitored[2])))
    for fraction in (1.0, 0.5):
        p_flex = fraction * flex.p_offered_mw.to_numpy(float)
        sens, _t = fm.sensitivities(p_flex, dq, where="test", tolerance_mva=TOL, max_iteration=30, order=order)
        net = _pandapower_net(grid, scenario, flex, p_flex)
        mb, be, bi = fm.monitored
        ref = sensitivities_from_net(net, flex.index.to_numpy(), monitored_buses=mb, branches=(be, bi), dq_dp=dq)
        assert np.allclose(sens.vm_pu, net.res_bus.vm_pu.loc[mb].to_numpy(), rtol=0, atol=1e-9)
        for name in ("vm_pu", "loading_percent", "i_re_percent", "i_im_percent"):
            assert np.allclose(getattr(sens, name), getattr(ref, name), rtol=0, atol=1e-7), name
        for name in ("vtdf_pu_per_mw", "ltdf_percent_per_mw", "itdf_re_percent_per_mw", "itdf_im_percent_per_mw"):
            a, b = getattr(sens, name), getattr(ref, name)
            assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max(), name


def test_sensitivities_from_net_predict_pandapower_loadings():
    """``sensitivities_from_net`` reproduces pandapower's loadings at the point (both trafo modes)."""
    grid = standin_grid()
    net = grid.net
    for mode in ("current", "power"):
        pp.runpp(net, numba=False, tolerance_mva=TOL, trafo_loading=mode)
        buses = np.unique(grid.buildings.bus.to_numpy())
        mb, be, bi = monitored_elements_of_net(net)
        sens = sensitivities_from_net(net, buses, monitored_buses=mb, branches=(be, bi))
        ref = np.r_[net.res_line.loading_percent.loc[bi[np.asarray(be) == "line"]].to_numpy(),
                    net.res_trafo.loading_percent.loc[bi[np.asarray(be) == "trafo"]].to_numpy()]
        got = np.r_[np.abs(sens.loading_percent)[np.asarray(be) == "line"],
                    np.abs(sens.loading_percent)[np.asarray(be) == "trafo"]]
        assert np.allclose(got, ref, rtol=1e-9, atol=1e-9), mode


def _bare_points(frame):
    """The frame's package without screening, and its points as physical blocks only (no rows)."""
    grid, scenario, _flex, _fm = frame
    lin = linearize(grid, scenario, config=LinearizationConfig(screen_rows=False))
    return lin, [OperatingPoint(**{k: v for k, v in point.arrays().items() if k not in ("a_per_mw", "b")},
                                label=point.label) for point in lin.package.points]


def test_screened_rows_equal_screening_every_row(frame):
    """Forming only the rows the bound cannot exclude keeps exactly the rows of the full screen."""
    lin, points = _bare_points(frame)
    rng = np.random.default_rng(3)
    for point, bare in zip(lin.package.points, points):
        for scale in (0.3, 3.0, 30.0):
            lower = -scale * rng.random(point.n_flex)
            upper = scale * rng.random(point.n_flex)
            a, b = constraint_rows(bare, lin.package.limits, lin.package.polygon_sides)
            keep = rows_that_can_bind(a, b, lower, upper)
            a2, b2 = screened_constraint_rows(bare, lin.package.limits, lin.package.polygon_sides, lower, upper)
            assert a2.shape == a[keep].shape
            assert np.allclose(a2, a[keep], rtol=0, atol=1e-12) and np.allclose(b2, b[keep], rtol=0, atol=1e-12)


def test_rows_at_positions_are_the_rows_of_the_full_set(frame):
    """constraint_rows_at (the envelope's aligned rows) gives constraint_rows' rows at those positions,
    the screened rows' own positions included, and refuses a position outside the rows."""
    lin, points = _bare_points(frame)
    rng = np.random.default_rng(5)
    for point, bare in zip(lin.package.points, points):
        a, b = constraint_rows(bare, lin.package.limits, lin.package.polygon_sides)
        _, _, screened = screened_constraint_rows(bare, lin.package.limits, lin.package.polygon_sides,
                                                  -rng.random(point.n_flex), rng.random(point.n_flex), return_index=True)
        for index in (rng.choice(len(b), size=40, replace=False), screened, np.array([0, len(b) - 1]),
                      np.zeros(0, dtype=int)):
            a2, b2 = constraint_rows_at(bare, lin.package.limits, lin.package.polygon_sides, index)
            assert a2.shape == a[index].shape
            assert np.allclose(a2, a[index], rtol=0, atol=1e-15) and np.allclose(b2, b[index], rtol=0, atol=1e-15)
        for outside in (len(b), -1):
            with pytest.raises(InputError, match="outside"):
                constraint_rows_at(bare, lin.package.limits, lin.package.polygon_sides, np.array([outside]))


def test_grid_model_is_compiled_again_when_the_net_changes():
    grid = standin_grid()
    first, _mon, _t = _grid_model(grid, 1e-9, 30)
    again, _mon, t_again = _grid_model(grid, 1e-9, 30)
    assert again is first and t_again == 0.0
    line = grid.net.line.index[0]
    grid.net.line.at[line, "length_km"] *= 2.0
    changed, _mon, _t = _grid_model(grid, 1e-9, 30)
    assert changed is not first
    assert not np.allclose(changed.ybus.toarray(), first.ybus.toarray())


def test_frame_falls_back_to_pandapower_when_the_warm_start_fails(monkeypatch):
    """No convergence from the grid run's voltages: pandapower solves the frame, same result."""
    from optim.dso import sensitivity

    grid = standin_grid()
    scenario = scenario_from_grid(grid, ScenarioConfig())
    flex = flex_table(grid, scenario.bids, scenario.buildings)
    config = LinearizationConfig(tolerance_mva=TOL)
    expected = frame_model(grid, scenario, flex, config).model.v_solved
    calls = []
    original = sensitivity.FlowModel.solved_voltages

    def failing_first(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise sensitivity.PowerFlowError("forced")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sensitivity.FlowModel, "solved_voltages", failing_first)
    fallback = frame_model(grid, scenario, flex, config)
    assert np.allclose(fallback.model.v_solved, expected, rtol=0, atol=1e-9)
