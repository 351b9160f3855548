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

POINT_ARRAYS = ("p_flex_mw", "a_per_mw", "b", "p_mw", "vm_pu", "vtdf_pu_per_mw", "loading_percent",
                "ltdf_percent_per_mw", "i_re_percent", "i_im_percent", "itdf_re_percent_per_mw",
                "itdf_im_percent_per_mw")


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
        assert set(a.arrays()) == set(b.arrays()) == set(POINT_ARRAYS)
        for name in POINT_ARRAYS:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert back.fingerprint() == pkg.fingerprint()
    assert SensitivityPackage.from_dict(json.loads(json.dumps(pkg.to_dict()))).fingerprint() == pkg.fingerprint()


def test_format_1_is_refused_with_one_clear_line(setup, tmp_path):
    data = setup[2].package.to_dict()
    data["version"] = 1
    with pytest.raises(InputError, match="package format 1 is no longer supported: re-run 'digiplat linearize'"):
        SensitivityPackage.from_dict(data)
    path = tmp_path / "old.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("package.json", json.dumps({"format": "digiplat-sensitivity-package", "version": 1, "points": []}))
    with pytest.raises(InputError, match="format 1 is no longer supported"):
        SensitivityPackage.load(path)


def test_a_point_selection_rebuilds_the_same_package_to_the_last_bit(setup):
    """linearize(points=lin.point_selection) skips the selection and gives the same package: each
    point's power flow starts at the frame's solved state, not at the point solved before it, so
    the order the points are asked in (the bisection's, then the package's) leaves no trace."""
    grid, scenario, _ = setup
    config = LinearizationConfig(n_points=5, point_method="merit-levels", max_points=9)
    lin = linearize(grid, scenario, config=config)
    labels = [label for label, _ in lin.point_selection[0]]
    assert labels == [p.label for p in lin.package.points] and lin.point_selection[1]["point_levels_mw"]
    again = linearize(grid, scenario, config=config, points=lin.point_selection)
    assert again.package.fingerprint() == lin.package.fingerprint()
    assert again.key == lin.key
    reversed_order = (tuple(reversed(lin.point_selection[0])), lin.point_selection[1])
    backwards = linearize(grid, scenario, config=config, points=reversed_order)
    for a, b in zip(backwards.package.points, reversed(lin.package.points)):  # equal, not only close: same run
        np.testing.assert_array_equal(a.vtdf_pu_per_mw, b.vtdf_pu_per_mw)
        np.testing.assert_array_equal(a.vm_pu, b.vm_pu)
    with pytest.raises(InputError, match="do not fit"):
        linearize(grid, scenario, config=config, points=((("no bids", np.zeros(3)),), {}))


def test_an_unbound_key_has_no_fingerprint_and_is_not_written_as_a_pair(setup, tmp_path):
    """linearize(bound_key=False) (the app, a hardened package's linearization) skips the hash; the
    same package and key otherwise, and save_pair refuses the key instead of writing a pair it
    could not check."""
    from optim.dso.linearize import save_pair

    grid, scenario, lin = setup
    unbound = linearize(grid, scenario, bound_key=False)
    assert unbound.key.package_fingerprint == ""
    assert unbound.package.fingerprint() == lin.package.fingerprint()
    assert unbound.key.flex_ids == lin.key.flex_ids and unbound.key.branch_ids == lin.key.branch_ids
    with pytest.raises(InputError, match="fingerprint"):
        save_pair(unbound.package, unbound.key, tmp_path / "p.zip", tmp_path / "p.zip.dso-key.json")
    assert not list(tmp_path.iterdir())


def test_pair_is_bound_by_fingerprint_and_written_atomically(setup, tmp_path, monkeypatch):
    import dataclasses
    import os

    from optim.dso import linearize as lin_mod
    from optim.dso.linearize import load_pair, save_pair

    lin = setup[2]
    pkg_path, key_path = tmp_path / "p.zip", tmp_path / "p.zip.dso-key.json"
    assert lin.key.package_fingerprint == lin.package.fingerprint()
    save_pair(lin.package, lin.key, pkg_path, key_path)
    back, key = load_pair(pkg_path, key_path)
    assert key == lin.key and back.fingerprint() == lin.package.fingerprint()
    old = (pkg_path.read_bytes(), key_path.read_bytes())
    # another package (one point fewer) with its own key
    other = lin.package.with_points(lin.package.points[:2])
    other_key = dataclasses.replace(lin.key, package_fingerprint=other.fingerprint())
    with pytest.raises(InputError, match="fingerprint"):
        save_pair(other, lin.key, pkg_path, key_path)  # a key of another package is not written
    # a failure at each step leaves the old pair intact and no temporary file
    real_replace = os.replace
    for fail_at in range(1, 5):
        calls = {"n": 0}

        def flaky(src, dst, _fail_at=fail_at):
            calls["n"] += 1
            if calls["n"] == _fail_at:
                raise OSError("disk full")
            return real_replace(src, dst)

        monkeypatch.setattr(lin_mod.os, "replace", flaky)
        with pytest.raises(OSError, match="disk full"):
            save_pair(other, other_key, pkg_path, key_path)
        monkeypatch.setattr(lin_mod.os, "replace", real_replace)
        assert (pkg_path.read_bytes(), key_path.read_bytes()) == old, fail_at
        assert sorted(p.name for p in tmp_path.iterdir()) == ["p.zip", "p.zip.dso-key.json"], fail_at
    # a key beside a package it does not belong to: one clear line
    other.save(pkg_path)
    with pytest.raises(InputError, match="belongs to another package .* re-run 'digiplat linearize'"):
        load_pair(pkg_path, key_path)
    # the new pair once the write succeeds
    save_pair(other, other_key, pkg_path, key_path)
    assert load_pair(pkg_path, key_path)[0].n_points == 2


def test_key_round_trip(setup, tmp_path):
    key = setup[2].key
    back = DsoKey.load(key.write(tmp_path / "key.json"))
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
    assert set(data) == {"format", "version", "style", "flex_ids", "bus_ids", "branch_ids", "flex_of_asset",
                         "limits", "meta", "points", "row_box"}
    for p in data["points"]:
        assert set(p) == {"label", *POINT_ARRAYS}
    assert set(data["meta"]) <= {"time_frame", "point_fractions", "point_definition", "units", "reactive_power",
                                 "credit", "point_method", "branch_rows", "point_levels_mw"}
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
    structural = {1.0, 2.0, 16.0, 0.95, 1.05, -100.0, 100.0, 0.5, 0.0}  # version, limits, sides, fractions
    header = {k: v for k, v in data.items() if k not in ("points", "row_box")}  # row box: bid volumes
    header["meta"] = {k: v for k, v in data["meta"].items() if k != "time_frame"}  # hour: checked above
    numbers = [x for x in _all_numbers(json.loads(json.dumps(header))) if x not in structural]
    assert not numbers, numbers
    # grid-derived arrays (P and P_flex are market data: bid volumes such as 0.015 MW may equal a length)
    grid_arrays = [a for a in POINT_ARRAYS if a not in ("p_mw", "p_flex_mw")]
    arrays = np.concatenate([np.asarray(p[a], dtype=float).ravel() for p in data["points"] for a in grid_arrays])
    assert not np.isin(arrays, params).any()
    # the file holds the same, nothing else
    path = pkg.save(tmp_path / "p.zip")
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) == ({"package.json", "row_box_lower_mw.npy", "row_box_upper_mw.npy"}
                                      | {f"p{k}_{a}.npy" for k in range(3) for a in POINT_ARRAYS})


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


def test_merit_level_points_are_chosen_before_the_market_and_predict_better(setup):
    """merit-levels: 'no bids' plus dispatches of the DSO's own clearings at mid-cell levels of the
    deliverable volume; no request is involved, and a request between two levels is predicted
    nearer its point than with paper A's points; over requests spread across the offers the
    voltage and loading errors are smaller on average, with no violation (on Bergwald:
    benchmarks/bench_validation.py)."""
    import inspect

    from optim.dso import points as points_mod
    from optim.market import clear_market

    grid, scenario, paper = setup
    assert "request" not in inspect.signature(points_mod.points_for).parameters
    lin = linearize(grid, scenario, config=LinearizationConfig(n_points=5, point_method="merit-levels"))
    pkg = lin.package
    assert pkg.n_points == 5 and pkg.points[0].label == "no bids" and pkg.meta["point_method"] == "merit-levels"
    levels = pkg.meta["point_levels_mw"]
    assert len(levels) == 4 and all(lvl > 0 for lvl in levels)  # the stand-in's offers are upward
    for pt, level in zip(pkg.points[1:], levels):
        assert pt.p_flex_mw.sum() == pytest.approx(level, abs=1e-6)
        assert np.all(pt.p_flex_mw <= pkg.row_box_upper_mw + 1e-9) and np.all(pt.p_flex_mw >= pkg.row_box_lower_mw - 1e-9)
    request = round(0.5 * (levels[1] + levels[2]), 3)
    new = clear_market(grid, scenario, request_mw=request, linearization=lin)
    old = clear_market(grid, scenario, request_mw=request, linearization=paper)
    assert new.clearing.ok and new.validation.n_violations == 0
    dist = np.linalg.norm(new.clearing.p_flex_mw - pkg.points[new.clearing.chosen_point].p_flex_mw)
    dist_old = np.linalg.norm(old.clearing.p_flex_mw - paper.package.points[old.clearing.chosen_point].p_flex_mw)
    assert 1e-3 < dist < dist_old  # nearer than paper A's points, but not the dispatch itself
    # over requests spread across the offers (none on a level), the errors are smaller on average
    errors = {"new": [], "old": []}
    for r in np.linspace(0.1, 0.9, 5) * levels[-1]:
        for name, lz in (("new", lin), ("old", paper)):
            v = clear_market(grid, scenario, request_mw=float(r), linearization=lz).validation
            assert v.n_violations == 0
            errors[name].append((v.vm_mae_pu, v.loading_mae_percent))
    new_mean, old_mean = np.mean(errors["new"], axis=0), np.mean(errors["old"], axis=0)
    assert new_mean[0] < 0.5 * old_mean[0] and new_mean[1] < 0.5 * old_mean[1]
    with pytest.raises(InputError, match="unknown point method"):
        LinearizationConfig(point_method="psychic")


def test_bisected_levels_meet_table_i_where_nine_levels_missed(bergwald_grid):
    """merit-levels with max_points: intervals whose end points' tangents miss each other by more
    than point_gap x Table I get a level at their middle (recorded in the meta), up to max_points.
    between 0.2 and 0.9 MW, where the weak feeders' marginal bids switch, at the requests halfway
    between two neighbouring final levels (the worst places: no point nearby), Table I holds at all
    but at most one, with 0 violations, where the 9-level package misses it at least four times
    more often."""
    from dataclasses import replace

    from optim.dso.points import level_gap
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.market import clear_market

    scenario = scenario_from_grid(bergwald_grid, replace(ScenarioConfig(), day_type="weekday", hour=18))
    nine = linearize(bergwald_grid, scenario, config=LinearizationConfig(n_points=9, point_method="merit-levels"))
    lin = linearize(bergwald_grid, scenario, config=LinearizationConfig(n_points=9, point_method="merit-levels",
                                                                        max_points=25, point_gap=2.0))
    pkg, meta = lin.package, lin.package.meta
    assert 9 < pkg.n_points <= 25 and len(meta["point_levels_mw"]) == pkg.n_points - 1
    assert meta["point_levels_mw"][:8] == nine.package.meta["point_levels_mw"]  # the first levels stay
    records = meta["point_bisections"]
    assert records and all(r["gap"] > 2.0 and r["level_mw"] == pytest.approx(0.5 * (r["from_mw"] + r["to_mw"]), abs=1e-6)
                           for r in records)
    # the first round's intervals are those of the 9 levels: their gaps are what the records say
    first = records[0]
    levels9 = [0.0, *nine.package.meta["point_levels_mw"]]
    a, b = levels9.index(first["from_mw"]), levels9.index(first["to_mw"])
    pts9 = nine.package.points
    assert max(level_gap(pts9[a], pts9[b]), level_gap(pts9[b], pts9[a])) == pytest.approx(first["gap"], abs=1e-3)
    # halfway between neighbouring final levels (no level there) where 9 levels missed Table I
    final = sorted([0.0, *meta["point_levels_mw"]])
    requests = [0.5 * (x + y) for x, y in zip(final, final[1:]) if 0.2 <= x and y <= 0.9]
    assert len(requests) >= 4
    met, met_by_nine, worst = 0, 0, 0.0
    for request in requests:
        assert min(abs(x - request) for x in final) > 0.01
        out = clear_market(bergwald_grid, scenario, request_mw=request, linearization=lin)
        v = out.validation
        assert out.clearing.ok and v.n_violations == 0
        v9 = clear_market(bergwald_grid, scenario, request_mw=request, linearization=nine).validation
        met += v.vm_mae_pu <= 2.3e-5 and v.loading_mae_percent <= 6.1e-3
        met_by_nine += v9.vm_mae_pu <= 2.3e-5 and v9.loading_mae_percent <= 6.1e-3
        worst = max(worst, v.vm_mae_pu / 2.3e-5, v.loading_mae_percent / 6.1e-3)
    assert met >= len(requests) - 1 and met >= met_by_nine + 4, (met, met_by_nine, len(requests))
    assert worst < 1.5  # a miss stays near the target (halfway is the worst place between two points)


def test_the_bisection_stops_where_halving_keeps_the_gap(bergwald_grid, monkeypatch):
    """At weekend 12:00 the cost-optimal dispatch jumps inside 0.166-0.194 MW (two branches' real
    current changes sign there): halving that interval kept its gap, and without the stop rule the
    budget went on bisecting it. With the rule the interval is recorded as stopped, no level lies
    inside it, and every bisection that was made had shrunk its parent's gap below the ratio."""
    from dataclasses import replace

    import optim.dso.points as points
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    scenario = scenario_from_grid(bergwald_grid, replace(ScenarioConfig(), day_type="weekend", hour=12))
    config = LinearizationConfig(n_points=9, point_method="merit-levels", max_points=25, point_gap=2.0)
    meta = linearize(bergwald_grid, scenario, config=config).package.meta
    records, stopped = meta["point_bisections"], meta["point_bisections_stopped"]
    assert stopped
    levels = [0.0, *meta["point_levels_mw"]]

    def parent_of(a_mw: float, b_mw: float) -> dict | None:
        """The bisection that made the interval a-b: its middle is one end, its own end the other."""
        halves = [p for p in records if {a_mw, b_mw} in ({p["from_mw"], p["level_mw"]}, {p["level_mw"], p["to_mw"]})]
        assert len(halves) <= 1
        return halves[0] if halves else None

    for stop in stopped:
        lo, hi = sorted((stop["from_mw"], stop["to_mw"]))
        parent = parent_of(lo, hi)
        assert parent is not None and stop["parent_gap"] == parent["gap"]
        assert stop["gap"] >= points.STOP_GAP_RATIO * parent["gap"]
        assert not any(lo < x < hi for x in levels)
    for r in records:  # a bisected half had a gap below the ratio of its parent's
        parent = parent_of(r["from_mw"], r["to_mw"])
        if parent is not None:
            assert r["gap"] < points.STOP_GAP_RATIO * parent["gap"]
    # without the rule, the same frame spends levels inside the first stopped interval
    monkeypatch.setattr(points, "STOP_GAP_RATIO", float("inf"))
    unstopped = linearize(bergwald_grid, scenario, config=config).package.meta
    lo, hi = sorted((stopped[0]["from_mw"], stopped[0]["to_mw"]))
    assert sum(lo < x < hi for x in unstopped["point_levels_mw"]) >= 2
    assert not unstopped["point_bisections_stopped"]


def test_bad_bisection_settings_are_input_errors():
    with pytest.raises(InputError, match="--max-points"):
        LinearizationConfig(n_points=9, point_method="merit-levels", max_points=5)
    with pytest.raises(InputError, match="--max-points"):
        LinearizationConfig(n_points=9, max_points=65)
    for gap in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="--point-gap"):
            LinearizationConfig(point_gap=gap)
