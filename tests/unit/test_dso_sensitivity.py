"""Analytic VTDF/LTDF against central finite differences of pandapower power flows (stand-in grid)."""

from __future__ import annotations

import warnings

import numpy as np
import pandapower as pp
import pytest

from optim._errors import InputError, PowerFlowError
from optim.dso.sensitivity import (
    Sensitivities,
    monitored_elements_of_net,
    sensitivities_from_net,
    signed_loading_percent,
)
from test_dso_standin import standin_grid

PF = dict(numba=False, tolerance_mva=1e-11)


def _net_with_flex(trafo_loading: str = "current"):
    """Stand-in with PV on every third house (so some flows are reversed) and flex sgens."""
    grid = standin_grid()
    net = grid.net
    buses = np.unique(grid.buildings.bus.to_numpy())
    sgens = {int(b): pp.create_sgen(net, int(b), p_mw=0.0) for b in buses}
    for b in buses[::3]:
        net.sgen.at[sgens[int(b)], "p_mw"] = 0.012
    pp.runpp(net, trafo_loading=trafo_loading, **PF)
    return net, buses, sgens


def _finite_differences(net, buses, sgens, columns, monitored, trafo_loading="current", h=1e-5):
    mb, be, bi = monitored
    v = np.zeros((len(mb), len(columns)))
    ld = np.zeros((len(bi), len(columns)))
    for j, b in enumerate(columns):
        idx = sgens[int(b)]
        p0 = net.sgen.at[idx, "p_mw"]
        res = []
        for s in (1.0, -1.0):
            net.sgen.at[idx, "p_mw"] = p0 + s * h
            pp.runpp(net, trafo_loading=trafo_loading, **PF)
            res.append((net.res_bus.vm_pu.loc[mb].to_numpy(), signed_loading_percent(net, be, bi)))
        net.sgen.at[idx, "p_mw"] = p0
        v[:, j] = (res[0][0] - res[1][0]) / (2 * h)
        ld[:, j] = (res[0][1] - res[1][1]) / (2 * h)
    pp.runpp(net, trafo_loading=trafo_loading, **PF)
    return v, ld


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("trafo_loading", ["current", "power"])
def test_sensitivities_match_finite_differences(trafo_loading):
    net, buses, sgens = _net_with_flex(trafo_loading)
    monitored = monitored_elements_of_net(net)
    sens = sensitivities_from_net(net, buses)
    # a spread of columns: near the substations, mid-feeder, feeder ends, both LV areas
    columns = buses[np.linspace(0, len(buses) - 1, 9).astype(int)]
    cols = np.searchsorted(buses, columns)
    v, ld = _finite_differences(net, buses, sgens, columns, monitored, trafo_loading)
    assert _rel(sens.vtdf_pu_per_mw[:, cols], v) <= 1e-3
    assert _rel(sens.ltdf_percent_per_mw[:, cols], ld) <= 1e-3
    # element-wise as well, where the derivative is not negligible
    big = np.abs(ld) > 1e-2 * np.abs(ld).max()
    assert np.all(np.abs(sens.ltdf_percent_per_mw[:, cols] - ld)[big] <= 1e-3 * np.abs(ld)[big] + 1e-6)
    assert "trafo" in monitored[1]


def test_base_values_reproduce_pandapower_results():
    net, buses, _ = _net_with_flex()
    mb, be, bi = monitored_elements_of_net(net)
    sens = sensitivities_from_net(net, buses)
    np.testing.assert_allclose(sens.vm_pu, net.res_bus.vm_pu.loc[mb].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(sens.loading_percent, signed_loading_percent(net, be, bi), atol=1e-9)
    # signed: some flows are reversed by the PV, and the open MV line is not monitored
    assert (sens.loading_percent < 0).any() and (sens.loading_percent > 0).any()
    open_line = net.line.index[~net.line.in_service][0]
    assert open_line not in set(bi[np.asarray(be) == "line"])
    # the slack bus is not monitored, every flexible column has an effect on its own bus
    assert int(net.ext_grid.bus.iloc[0]) not in set(mb)
    own = np.searchsorted(mb, buses)
    assert np.all(sens.vtdf_pu_per_mw[own, np.arange(len(buses))] > 0)


def test_sensitivities_round_trip():
    net, buses, _ = _net_with_flex()
    sens = sensitivities_from_net(net, buses[:5])
    back = Sensitivities.from_dict(sens.to_dict())
    np.testing.assert_array_equal(back.ltdf_percent_per_mw, sens.ltdf_percent_per_mw)
    assert back.branch_elements == sens.branch_elements


def test_sensitivities_need_a_converged_pq_bus():
    grid = standin_grid()
    with pytest.raises(PowerFlowError):
        sensitivities_from_net(grid.net, [int(grid.buildings.bus.iloc[0])])
    pp.runpp(grid.net, **PF)
    with pytest.raises(InputError, match="PQ buses"):
        sensitivities_from_net(grid.net, [int(grid.net.ext_grid.bus.iloc[0])])
    with pytest.raises(InputError, match="dq_dp"):
        sensitivities_from_net(grid.net, [int(grid.buildings.bus.iloc[0])], dq_dp=[np.nan])


def test_reactive_power_following_the_power_factor():
    """dq_dp moves Q with P; checked against a finite difference that moves both."""
    net, buses, sgens = _net_with_flex()
    b = int(buses[-1])
    ratio = 0.25
    sens = sensitivities_from_net(net, [b], dq_dp=[ratio])
    mb, be, bi = monitored_elements_of_net(net)
    h = 1e-5
    res = []
    for s in (1.0, -1.0):
        net.sgen.at[sgens[b], "p_mw"] += s * h
        net.sgen.at[sgens[b], "q_mvar"] += s * h * ratio
        pp.runpp(net, **PF)
        res.append(net.res_bus.vm_pu.loc[mb].to_numpy())
        net.sgen.at[sgens[b], "p_mw"] -= s * h
        net.sgen.at[sgens[b], "q_mvar"] -= s * h * ratio
    fd = (res[0] - res[1]) / (2 * h)
    assert _rel(sens.vtdf_pu_per_mw[:, 0], fd) <= 1e-3


def test_bergwald_sensitivities_match_finite_differences():
    """The same check on the shipped grid (6 substations, open MV ring), at the 'half' point."""
    from gridgen.grid import Grid, default_grid_dir
    from optim.dso.linearize import apply_flex, flex_table, net_at_time_frame
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    if not (default_grid_dir() / "grid.json").is_file():
        pytest.skip("the shipped Bergwald grid is not built yet (assets/bergwald)")
    grid = Grid.load(default_grid_dir())
    scenario = scenario_from_grid(grid, ScenarioConfig())
    flex = flex_table(grid, scenario.bids)
    buses = flex.index.to_numpy()
    net = net_at_time_frame(grid, scenario, flex_buses=buses)
    apply_flex(net, buses, 0.5 * flex.p_offered_mw.to_numpy())
    pp.runpp(net, **PF)
    monitored = monitored_elements_of_net(net)
    sens = sensitivities_from_net(net, buses)
    sgens = dict(zip(net.sgen.flex_bus[net.sgen.flex_bus >= 0].astype(int), net.sgen.index[net.sgen.flex_bus >= 0]))
    # the farthest flexible buses of the feeders and a few others
    order = np.argsort(-scenario.buildings.groupby("bus").feeder_km.max().reindex(buses).to_numpy())
    cols = np.r_[order[:4], order[-2:]]
    v, ld = _finite_differences(net, buses, sgens, buses[cols], monitored)
    assert _rel(sens.vtdf_pu_per_mw[:, cols], v) <= 1e-3
    assert _rel(sens.ltdf_percent_per_mw[:, cols], ld) <= 1e-3
