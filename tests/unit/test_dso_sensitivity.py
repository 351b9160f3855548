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


def _current_percent(net, elements, indices, ends):
    """Branch current in % of rating at the given ends (0 from/HV, 1 to/LV), in the frame of that
    end's voltage, oriented from -> to: ``I_loc = o (P - jQ) / |V|``, from pandapower's results."""
    out = np.empty(len(indices), dtype=complex)
    for k, (element, index, end) in enumerate(zip(elements, indices, ends)):
        res = net[f"res_{element}"].loc[index]
        if element == "line":
            line = net.line.loc[index]
            p, q, i_ka = ((res.p_from_mw, res.q_from_mvar, res.i_from_ka) if end == 0
                          else (res.p_to_mw, res.q_to_mvar, res.i_to_ka))
            magnitude = i_ka / (line.max_i_ka * line.df * line.parallel) * 100.0
        else:
            trafo = net.trafo.loc[index]
            p, q, i_ka, vn = ((res.p_hv_mw, res.q_hv_mvar, res.i_hv_ka, trafo.vn_hv_kv) if end == 0
                              else (res.p_lv_mw, res.q_lv_mvar, res.i_lv_ka, trafo.vn_lv_kv))
            magnitude = i_ka * vn * np.sqrt(3) / trafo.sn_mva * 100.0 / (trafo.parallel * trafo.df)
        s = abs(complex(p, q))
        out[k] = (1.0 if end == 0 else -1.0) * magnitude * complex(p, -q) / s if s > 0 else 0.0
    return out


def _larger_ends(net, elements, indices):
    ends = []
    for element, index in zip(elements, indices):
        res = net[f"res_{element}"].loc[index]
        if element == "line":
            ends.append(int(res.i_to_ka > res.i_from_ka))
        else:
            trafo = net.trafo.loc[index]
            ends.append(int(res.i_lv_ka * trafo.vn_lv_kv > res.i_hv_ka * trafo.vn_hv_kv))
    return np.array(ends)


def _check_q_coupled_and_current_rows(net, sgens, columns, ratios, h=1e-5, tol=1e-3):
    """Central differences moving P and Q = ratio * P together against the analytic blocks."""
    pp.runpp(net, **PF)
    mb, be, bi = monitored_elements_of_net(net)
    buses = np.array(list(sgens))
    sens = sensitivities_from_net(net, buses, dq_dp=[ratios.get(int(b), 0.0) for b in buses])
    ends = _larger_ends(net, be, bi)
    i0 = _current_percent(net, be, bi, ends)
    np.testing.assert_allclose(sens.i_re_percent, i0.real, atol=1e-6 * max(1.0, np.abs(i0).max()))
    np.testing.assert_allclose(sens.i_im_percent, i0.imag, atol=1e-6 * max(1.0, np.abs(i0).max()))
    np.testing.assert_allclose(np.hypot(sens.i_re_percent, sens.i_im_percent), np.abs(sens.loading_percent),
                               rtol=1e-9, atol=1e-9)
    for b in columns:
        j = int(np.flatnonzero(buses == b)[0])
        idx, ratio = sgens[int(b)], ratios.get(int(b), 0.0)
        res = []
        for s in (1.0, -1.0):
            net.sgen.at[idx, "p_mw"] += s * h
            net.sgen.at[idx, "q_mvar"] += s * h * ratio
            pp.runpp(net, **PF)
            res.append((net.res_bus.vm_pu.loc[mb].to_numpy(), _current_percent(net, be, bi, ends)))
            net.sgen.at[idx, "p_mw"] -= s * h
            net.sgen.at[idx, "q_mvar"] -= s * h * ratio
        dv = (res[0][0] - res[1][0]) / (2 * h)
        di = (res[0][1] - res[1][1]) / (2 * h)
        assert _rel(sens.vtdf_pu_per_mw[:, j], dv) <= tol
        assert _rel(sens.itdf_re_percent_per_mw[:, j], di.real) <= tol
        assert _rel(sens.itdf_im_percent_per_mw[:, j], di.imag) <= tol
    pp.runpp(net, **PF)


def test_q_coupled_and_current_rows_match_finite_differences_on_a_kerber_network():
    import pandapower.networks as pn

    net = pn.create_kerber_landnetz_kabel_1()
    loads = net.load.bus.to_numpy()
    sgens = {int(b): pp.create_sgen(net, int(b), p_mw=0.0, q_mvar=0.0) for b in np.unique(loads)}
    buses = np.array(list(sgens))
    for k, b in enumerate(buses[::2]):  # PV on every other house: reversed flows with Q
        net.sgen.at[sgens[int(b)], "p_mw"] = 0.006 + 0.001 * (k % 3)
        net.sgen.at[sgens[int(b)], "q_mvar"] = -0.002
    ratios = {int(b): (0.25 if k % 2 else -0.33) for k, b in enumerate(buses)}
    _check_q_coupled_and_current_rows(net, sgens, [buses[0], buses[len(buses) // 2], buses[-1]], ratios)


def test_bergwald_q_coupled_and_current_rows_match_finite_differences():
    """The same on the shipped grid at the 'half' point with the scenario's own dq_dp per bus."""
    from gridgen.grid import Grid, default_grid_dir
    from optim.dso.linearize import apply_flex, flex_table, net_at_time_frame
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    grid = Grid.load(default_grid_dir())
    scenario = scenario_from_grid(grid, ScenarioConfig())
    flex = flex_table(grid, scenario.bids, scenario.buildings)
    assert (flex.dq_dp > 0).sum() > 20  # EV and heat-pump offers: Q follows P
    buses = flex.index.to_numpy()
    net = net_at_time_frame(grid, scenario, flex_buses=buses)
    p_half = 0.5 * flex.p_offered_mw.to_numpy()
    apply_flex(net, buses, p_half, flex.dq_dp.to_numpy() * p_half)
    sgens = dict(zip(net.sgen.flex_bus[net.sgen.flex_bus >= 0].astype(int), net.sgen.index[net.sgen.flex_bus >= 0]))
    ratios = dict(zip(buses.astype(int).tolist(), flex.dq_dp.to_numpy().tolist()))
    order = np.argsort(-flex.dq_dp.to_numpy())
    _check_q_coupled_and_current_rows(net, sgens, buses[np.r_[order[:2], order[-1]]], ratios)
