"""A small stand-in for the Bergwald grid, built from pandapower's Kerber LV grids.

Two 20/0.4 kV substations (Kerber "Dorfnetz", 57 houses, and "Landnetz Kabel 2", 14 houses) fed by a
20 kV open ring from an ext_grid, one load per house, and a synthetic building table in the
generator's format (``gridgen/grid.py``). Used by the DSO, validation and market tests so that the
unit tests do not depend on the big grid only. Other test modules import :func:`standin_grid`.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest

POWER_FACTOR = 0.97


@functools.lru_cache(maxsize=1)
def _standin_grid_cached():
    import pandapower as pp
    import pandapower.networks as pn
    from pandapower.toolbox import merge_nets

    from gridgen.grid import Grid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        village = pn.create_kerber_dorfnetz()
        rural = pn.create_kerber_landnetz_kabel_2()
        for net in (village, rural):
            net.ext_grid.drop(net.ext_grid.index, inplace=True)
        net = merge_nets(village, rural, validate=False, merge_results=False)
    net.bus["zone"] = np.where(net.bus.vn_kv > 1.0, "MV", "LV")
    net.bus.loc[net.bus.zone == "MV", "vn_kv"] = 20.0
    for tid in net.trafo.index:
        pp.change_std_type(net, tid, "0.4 MVA 20/0.4 kV", element="trafo")
    mv = net.bus.index[net.bus.zone == "MV"].tolist()
    feed = pp.create_bus(net, vn_kv=20.0, name="feed-in", zone="MV")
    pp.create_ext_grid(net, feed, vm_pu=1.02)
    cable = "NA2XS2Y 1x185 RM/25 12/20 kV"
    pp.create_line(net, feed, mv[0], length_km=2.0, std_type=cable, name="mv1")
    pp.create_line(net, mv[0], mv[1], length_km=1.5, std_type=cable, name="mv2")
    pp.create_line(net, mv[1], feed, length_km=1.0, std_type=cable, name="mv3 (open)", in_service=False)
    net.line["voltage_level"] = np.where(net.bus.loc[net.line.from_bus, "zone"].values == "MV", "MV", "LV")

    # one load per house: Kerber loads are 6 kW (Dorfnetz) / 8 kW each
    rng = np.random.default_rng(7)
    rows = []
    substation_of_lv = {}
    for tid, lv in zip(net.trafo.index, net.trafo.lv_bus):
        substation_of_lv[lv] = tid
    import pandapower.topology as top

    graph = top.create_nxgraph(net, respect_switches=True, include_trafos=False)
    for lv_bus, tid in list(substation_of_lv.items()):
        for b in top.connected_component(graph, lv_bus):
            substation_of_lv.setdefault(b, tid)
    building_ids = []
    for k, (lid, load) in enumerate(net.load.iterrows()):
        bid = f"B{k + 1:04d}"
        building_ids.append(bid)
        households = int(rng.integers(1, 4))
        peak = 0.003 + 0.0015 * households
        rows.append(
            {
                "building_id": bid,
                "bus": int(load.bus),
                "substation": int(substation_of_lv[load.bus]),
                "lat": 49.0 + 1e-4 * k,
                "lon": 8.47 + 1e-4 * (k % 7),
                "area_m2": float(rng.uniform(80, 250)),
                "height_m": float(rng.uniform(6, 10)),
                "households": households,
                "peak_p_mw": peak,
            }
        )
    net.load["building_id"] = building_ids
    buildings = pd.DataFrame(rows).set_index("building_id")
    net.load["p_mw"] = buildings.peak_p_mw.values
    net.load["q_mvar"] = net.load.p_mw * np.tan(np.arccos(POWER_FACTOR))
    return Grid(net=net, buildings=buildings, geojson={"type": "FeatureCollection", "features": []},
                summary={"name": "standin"})


def standin_grid():
    """Return a fresh copy of the stand-in grid (the net is deep-copied, callers may modify it)."""
    import copy

    from gridgen.grid import Grid

    grid = _standin_grid_cached()
    return Grid(net=copy.deepcopy(grid.net), buildings=grid.buildings.copy(), geojson=grid.geojson,
                summary=dict(grid.summary))


@pytest.fixture()
def grid():
    return standin_grid()


def test_standin_grid_converges_within_limits(grid):
    import pandapower as pp

    pp.runpp(grid.net, numba=False)
    assert grid.net.converged
    assert len(grid.net.trafo) == 2
    assert set(grid.net.bus.zone) == {"MV", "LV"}
    assert len(grid.buildings) == len(grid.net.load)
    assert grid.net.res_bus.vm_pu.min() > 0.95
    assert (grid.buildings.bus.values == grid.net.load.bus.values).all()
