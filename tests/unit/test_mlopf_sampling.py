"""Paper B systems and datasets: meshed DSs, Latin hypercube samples, batched power flow labels."""

from __future__ import annotations

import numpy as np
import pytest

from optim._errors import InputError
from optim.mlopf.sampling import (Dataset, dataset_from_samples, ds_power_flows, feasible_from_power_flows, latin_hypercube_samples,
                                  power_flow_batch, relabel_for_charts)
from optim.mlopf.systems import (BASE_MVA, SECOND_PCC_DS_BUS, integrated_system_from_cases, merged_network_from_system,
                                 random_convex_chart, rectangular_chart)


@pytest.fixture(scope="module")
def system():
    return integrated_system_from_cases()


def _pandapower_ds(ds):
    """case33bw meshed, an ext_grid per PCC (angle 0), one sgen per DG."""
    import pandapower as pp
    import pandapower.networks as pn

    net = pn.case33bw()
    net.line["in_service"] = True
    if ds.n_pcc > 1:
        pp.create_ext_grid(net, SECOND_PCC_DS_BUS, vm_pu=1.0, va_degree=0.0)
    for bus in ds.dg_buses:
        pp.create_sgen(net, bus, p_mw=0.0, q_mvar=0.0)
    return net


def _run_pandapower(net, ds, x_row):
    import pandapower as pp

    net.ext_grid["vm_pu"] = x_row[: ds.n_pcc]
    net.sgen["p_mw"] = x_row[ds.n_pcc: ds.n_pcc + ds.n_dg]
    net.sgen["q_mvar"] = x_row[ds.n_pcc + ds.n_dg:]
    pp.runpp(net, tolerance_mva=1e-10, numba=False)
    return net


def test_systems_match_paper_b(system):
    ds1, ds2, ds3 = system.ds
    assert (ds1.pcc_ts_buses_1based, ds2.pcc_ts_buses_1based, ds3.pcc_ts_buses_1based) == ((11,), (16, 17), (19, 20))
    assert (ds1.n_dg, ds2.n_dg, ds3.n_dg) == (1, 5, 5)
    assert ds2.n_x == 12 and ds1.n_x == 3
    # tie lines closed: 37 lines on 33 buses -> 5 independent meshes
    assert ds1.network.n_branch == 37 and ds1.network.n_bus == 33
    # PCC buses of the TS carry no own load
    for d in system.ds:
        for b in d.pcc_ts_buses_1based:
            assert system.ts.pd_pu[b - 1] == 0.0
    # DS3 charts are convex polygons whose bounding box is [0, 2] x [0, 2]
    for chart in ds3.charts:
        assert np.allclose(chart.bounds, (0.0, 2.0, 0.0, 2.0))
        assert chart.contains(*chart.vertices_mw_mvar.mean(axis=0))


def test_merged_network_shares_pcc_buses(system):
    merged = merged_network_from_system(system)
    assert merged.network.n_bus == 30 + 32 + 31 + 31
    m2 = merged.ds_bus_maps[1]
    assert m2[0] == 15 and m2[SECOND_PCC_DS_BUS] == 16  # TS buses 16 and 17 (1-based)
    # total demand = TS (PCC loads removed) + three DSs
    assert np.isclose(merged.network.pd_pu.sum(), system.ts.pd_pu.sum() + 3 * system.ds[0].network.pd_pu.sum())


def test_latin_hypercube_covers_the_box(system):
    ds = system.ds_by_name("DS2")
    x = latin_hypercube_samples(ds, 200, random_state=3)
    assert x.shape == (200, 12)
    assert np.all(x >= ds.x_lower) and np.all(x <= ds.x_upper)
    # Latin hypercube: one sample in each of the 200 strata of every variable
    strata = np.floor((x - ds.x_lower) / (ds.x_upper - ds.x_lower) * 200).astype(int)
    assert all(len(np.unique(strata[:, j])) == 200 for j in range(12))
    assert np.array_equal(x, latin_hypercube_samples(ds, 200, random_state=3))


@pytest.mark.parametrize("name", ["DS1", "DS2"])
def test_batched_power_flow_equals_pandapower(system, name):
    ds = system.ds_by_name(name)
    x = latin_hypercube_samples(ds, 2, random_state=1)
    pf = ds_power_flows(ds, x)
    assert pf.converged.all()
    net = _pandapower_ds(ds)
    for k in range(len(x)):
        _run_pandapower(net, ds, x[k])
        assert np.allclose(np.abs(pf.v[k]), net.res_bus.vm_pu.to_numpy(), atol=1e-8)
        assert np.allclose(np.angle(pf.v[k], deg=True), net.res_bus.va_degree.to_numpy(), atol=1e-6)
        # PCC flows (DS -> TS) are minus the ext_grid injections
        p_eg = net.res_ext_grid.p_mw.to_numpy() / BASE_MVA
        q_eg = net.res_ext_grid.q_mvar.to_numpy() / BASE_MVA
        assert np.allclose(pf.p_pcc_pu[k], -p_eg, atol=1e-9)
        assert np.allclose(pf.q_pcc_pu[k], -q_eg, atol=1e-9)


def test_labels_follow_limits(system):
    ds = system.ds_by_name("DS1")
    # low PCC voltage, no DG: under-voltage at the feeder ends
    low = np.array([[0.95, 0.0, 0.0]])
    # nominal PCC voltage, DG at half output: feasible
    mid = np.array([[1.0, 1.0, 0.5]])
    # high PCC voltage, full DG output at the feeder end: over-voltage
    high = np.array([[1.05, 2.0, 2.0]])
    x = np.vstack([low, mid, high])
    labels = feasible_from_power_flows(ds, x, ds_power_flows(ds, x))
    assert labels.tolist() == [False, True, False]


def test_dataset_roundtrip_and_chart_relabel(system, tmp_path):
    ds2, ds3 = system.ds_by_name("DS2"), system.ds_by_name("DS3")
    data = dataset_from_samples(ds2, latin_hypercube_samples(ds2, 300, random_state=0), chunk_size=128, progress=False)
    assert 0.2 < data.feasible.mean() < 1.0
    assert np.isfinite(data.p_pcc_pu).all()
    data.to_npz(tmp_path / "d.npz")
    back = Dataset.from_npz(tmp_path / "d.npz")
    assert np.array_equal(back.x, data.x) and np.array_equal(back.feasible, data.feasible)
    d3 = relabel_for_charts(ds3, data)
    assert np.all(d3.feasible <= data.feasible)
    assert d3.feasible.sum() < data.feasible.sum()


def test_power_flow_batch_with_pv_bus_matches_pandapower_case30(system):
    import pandapower as pp
    import pandapower.networks as pn

    net = pn.case30()
    pp.runpp(net, tolerance_mva=1e-10, numba=False)
    # the same operating point with the full loads (system.ts has the PCC loads removed)
    ts = system.ts
    pd = np.zeros(ts.n_bus)
    qd = np.zeros(ts.n_bus)
    np.add.at(pd, net.load.bus.to_numpy(), net.load.p_mw.to_numpy() / BASE_MVA)
    np.add.at(qd, net.load.bus.to_numpy(), net.load.q_mvar.to_numpy() / BASE_MVA)
    gbus = net.gen.bus.to_numpy()
    p = -pd.copy()
    np.add.at(p, gbus, net.gen.p_mw.to_numpy() / BASE_MVA)
    vm0 = np.ones((1, ts.n_bus))
    vm0[0, gbus] = net.gen.vm_pu.to_numpy()
    pq = np.setdiff1d(np.arange(ts.n_bus), np.concatenate([[0], gbus]))
    v, conv = power_flow_batch(ts.ybus, ref=np.array([0]), pv=gbus, pq=pq, vm_pu=vm0, va_rad=np.zeros((1, ts.n_bus)),
                               p_spec_pu=p[None], q_spec_pu=-qd[None])
    assert conv.all()
    assert np.allclose(np.abs(v[0]), net.res_bus.vm_pu.to_numpy(), atol=1e-6)
    assert np.allclose(np.angle(v[0], deg=True), net.res_bus.va_degree.to_numpy(), atol=1e-4)


def test_bad_input_is_rejected(system):
    ds = system.ds_by_name("DS1")
    with pytest.raises(InputError):
        latin_hypercube_samples(ds, -5)
    with pytest.raises(InputError):
        ds_power_flows(ds, np.ones((3, 4)))
    with pytest.raises(InputError):
        ds_power_flows(ds, np.array([[1.0, np.nan, 0.0]]))


def test_charts():
    rect = rectangular_chart()
    assert rect.contains(np.array([1.0, 2.5]), np.array([1.0, 1.0])).tolist() == [True, False]
    poly = random_convex_chart(random_state=1)
    again = random_convex_chart(random_state=1)
    assert np.array_equal(poly.c, again.c)
    assert type(poly).from_dict(poly.to_dict()).contains(1.0, 1.0) == poly.contains(1.0, 1.0)
