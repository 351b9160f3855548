"""Operating points, the SensitivityPackage and its privacy (stand-in grid)."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from optim._errors import InputError, PowerFlowError
from optim.dso.linearize import (
    DsoKey,
    LinearizationConfig,
    linearize,
    p_fix_at_flex,
    point_fractions,
)
from optim.dso.scenario import ScenarioConfig, scenario_from_grid
from optim.package import SensitivityPackage
from test_dso_standin import standin_grid


@pytest.fixture(scope="module")
def setup():
    grid = standin_grid()
    scenario = scenario_from_grid(grid, ScenarioConfig())
    lin = linearize(grid, scenario)
    return grid, scenario, lin


def test_point_fractions():
    assert point_fractions(3) == (1.0, 0.5, 0.0)
    assert point_fractions(1) == (0.0,)
    assert point_fractions(5)[1] == 0.75
    with pytest.raises(InputError):
        point_fractions(0)


def test_three_points_all_half_none(setup):
    grid, scenario, lin = setup
    pkg, key = lin.package, lin.key
    assert [p.label for p in pkg.points] == ["all bids", "half of each bid", "no bids"]
    full = pkg.points[0].p_flex_mw
    np.testing.assert_allclose(pkg.points[1].p_flex_mw, 0.5 * full)
    np.testing.assert_array_equal(pkg.points[2].p_flex_mw, 0.0)
    # P_i = P_fix + P_flex,i at the flexible buses
    p_fix = p_fix_at_flex(grid, scenario, key)
    for p in pkg.points:
        np.testing.assert_allclose(p.p_mw, p_fix + p.p_flex_mw, atol=1e-12)
    # offered volume per flexible bus = sum of the bid rows of its buildings
    offered = scenario.bids.groupby("building_id").p_mw.sum()
    per_flex = {f: sum(offered.get(b, 0.0) for b in blds) for f, blds in key.buildings_of_flex.items()}
    np.testing.assert_allclose(full, [per_flex[f] for f in pkg.flex_ids])
    s = lin.summary()
    assert {"points", "flex_buses", "monitored_buses", "monitored_branches", "runtime_s"} <= set(s)
    assert s["points"] == 3 and s["flex_buses"] == len(pkg.flex_ids)


def test_package_predicts_the_power_flow_at_its_points(setup):
    """The package's base values are the AC power flow at the point (via the key)."""
    from optim.validation import validate_dispatch

    grid, scenario, lin = setup
    pt = lin.package.points[1]
    res = validate_dispatch(grid, scenario, lin.key, pt.p_flex_mw, predicted_vm_pu=pt.vm_pu,
                            predicted_loading_percent=pt.loading_percent)
    assert res.vm_mae_pu < 1e-10 and res.loading_mae_percent < 1e-7


def test_package_file_round_trip(setup, tmp_path):
    pkg = setup[2].package
    path = pkg.save(tmp_path / "pkg.zip")
    back = SensitivityPackage.load(path)
    assert back.flex_ids == pkg.flex_ids and back.bus_ids == pkg.bus_ids and back.branch_ids == pkg.branch_ids
    assert back.flex_of_asset == pkg.flex_of_asset and back.meta == json.loads(json.dumps(pkg.meta))
    for a, b in zip(back.points, pkg.points):
        for name in SensitivityPackage._ARRAYS:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert SensitivityPackage.from_dict(json.loads(json.dumps(pkg.to_dict()))).n_points == 3


def test_key_round_trip(setup, tmp_path):
    key = setup[2].key
    back = DsoKey.load(key.save(tmp_path / "key.json"))
    assert back == key
    with pytest.raises(InputError):
        DsoKey.from_dict({"format": "other"})


def _all_strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _all_strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _all_strings(v)
    elif isinstance(obj, str):
        yield obj


def _all_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _all_numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _all_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)


def test_privacy_audit(setup, tmp_path):
    """The package carries no topology, impedances, coordinates or names."""
    grid, scenario, lin = setup
    pkg, net = lin.package, grid.net
    data = pkg.to_dict()
    assert set(data) == {"format", "version", "flex_ids", "bus_ids", "branch_ids", "flex_of_asset", "limits",
                         "meta", "points"}
    for p in data["points"]:
        assert set(p) == {"label", *SensitivityPackage._ARRAYS}
    assert set(data["meta"]) <= {"time_frame", "point_fractions", "point_definition", "units", "reactive_power",
                                 "credit"}
    assert set(data["meta"]["time_frame"]) <= {"day_type", "hour", "timestamp"}
    # opaque ids only, and the order of the rows is not the grid's
    assert all(re.fullmatch(r"F\d{4,}", x) for x in pkg.flex_ids)
    assert all(re.fullmatch(r"V\d{4,}", x) for x in pkg.bus_ids)
    assert all(re.fullmatch(r"L\d{4,}", x) for x in pkg.branch_ids)
    assert list(lin.key.buses) != sorted(lin.key.buses)
    assert set(pkg.flex_of_asset) <= set(grid.buildings.index) and set(pkg.flex_of_asset.values()) <= set(pkg.flex_ids)
    # no names, element kinds or grid vocabulary in any string of the package
    names = {str(x) for x in pd.concat([net.bus.name, net.line.name, net.trafo.name, net.line.std_type,
                                        net.trafo.std_type]).dropna()} - {""}
    words = re.compile(r"\b(line|trafo|transformer|bus|feeder|substation|from_bus|to_bus|r_ohm|x_ohm|lat|lon|geo)\b",
                       re.I)
    for s in _all_strings({k: v for k, v in data.items() if k != "meta"} | {"meta": data["meta"]["time_frame"]}):
        assert s not in names
        assert not words.search(s), s
    # no line/trafo parameter, length, rating or coordinate appears as a value
    params = np.concatenate([
        net.line[["length_km", "r_ohm_per_km", "x_ohm_per_km", "c_nf_per_km", "max_i_ka"]].to_numpy().ravel(),
        net.trafo[["sn_mva", "vk_percent", "vkr_percent", "pfe_kw", "i0_percent"]].to_numpy().ravel(),
        grid.buildings[["lat", "lon", "area_m2", "height_m"]].to_numpy().ravel(),
    ]).astype(float)
    params = params[params != np.round(params)]  # integers (1 km, 0.4 MVA...) say nothing
    structural = {1.0, 0.95, 1.05, -100.0, 100.0, 0.5, 0.0}  # version, limits, point fractions
    header = {k: v for k, v in data.items() if k != "points"}
    header["meta"] = {k: v for k, v in data["meta"].items() if k != "time_frame"}  # hour: checked above
    numbers = [x for x in _all_numbers(json.loads(json.dumps(header))) if x not in structural]
    assert not numbers, numbers
    # grid-derived arrays (P and P_flex are market data: bid volumes such as 0.015 MW may equal a length)
    grid_arrays = ("vm_pu", "loading_percent", "vtdf_pu_per_mw", "ltdf_percent_per_mw")
    arrays = np.concatenate([np.asarray(p[a], dtype=float).ravel() for p in data["points"] for a in grid_arrays])
    assert not np.isin(arrays, params).any()
    # the file holds the same, nothing else
    path = pkg.save(tmp_path / "p.zip")
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) == {"package.json"} | {f"p{k}_{a}.npy" for k in range(3) for a in SensitivityPackage._ARRAYS}


def test_non_convergence_names_the_point():
    grid = standin_grid()
    scenario = scenario_from_grid(grid, ScenarioConfig())
    bids = scenario.bids.copy()
    bids["p_mw"] = bids.p_mw * 400.0  # absurd volumes: the 'all bids' point cannot be solved
    import dataclasses

    with pytest.raises(PowerFlowError, match=r"operating point 0 \(all bids\)"):
        linearize(grid, dataclasses.replace(scenario, bids=bids))


@pytest.mark.parametrize("where", ["bids", "load", "pv"])
def test_nan_and_inf_inputs_are_rejected(where):
    import dataclasses

    grid = standin_grid()
    scenario = scenario_from_grid(grid, ScenarioConfig())
    if where == "bids":
        bids = scenario.bids.copy()
        bids.loc[bids.index[0], "p_mw"] = np.nan
        bad = dataclasses.replace(scenario, bids=bids)
    else:
        frame = scenario.buildings.copy()
        col = "p_load_mw" if where == "load" else "p_pv_mw"
        frame.loc[frame.index[3], col] = np.inf
        bad = dataclasses.replace(scenario, buildings=frame)
    with pytest.raises(InputError, match="NaN or infinite"):
        linearize(grid, bad)


def test_bad_config_is_rejected():
    with pytest.raises(InputError):
        LinearizationConfig(n_points=0)
