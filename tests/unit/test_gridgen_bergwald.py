"""End to end on the shared OSM file: Bergwald (the shipped default) and other Durlach districts.

Bergwald is built once per session in-process and once through the CLI (a fresh process). The two
builds, on one machine, are byte-identical. Against the shipped ``assets/bergwald`` (built on
another CPU) structure and parameters must be equal exactly and the stored power-flow results
(``res_*`` tables) within 1e-9: the last digits of a Newton-Raphson solution depend on the CPU's
floating-point kernels.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gridgen.grid import GRID_FILES, Grid, default_grid_dir
from gridgen.osm import BERGWALD_BBOX

pytestmark = pytest.mark.osm

REPO = Path(__file__).resolve().parents[2]
CONTRACT_KEYS = {
    "buildings", "substations", "buses", "lines", "trafos", "mv_length_km", "lv_length_km", "vm_min_pu",
    "vm_max_pu", "max_line_loading_percent", "max_trafo_loading_percent", "violations", "runtime_s",
}
# Durlach districts other than Bergwald (S, W, N, E), each with at least 50 supplied buildings.
OTHER_BBOXES = {
    "durlach-altstadt-west": (48.9750, 8.4525, 48.9790, 8.4600),
    "hohenwettersbach-north": (48.9600, 8.4750, 48.9650, 8.4850),
}


@pytest.fixture(scope="session")
def bergwald_build(osm_path, tmp_path_factory):
    """The Bergwald grid built in this process from the shared file, saved to a temporary folder."""
    from gridgen.build import grid_from_osm

    grid = grid_from_osm(osm_path, bbox=BERGWALD_BBOX)
    out = grid.save(tmp_path_factory.mktemp("bergwald") / "grid")
    return grid, out


@pytest.fixture(scope="session")
def bergwald_cli_build(osm_path, tmp_path_factory):
    """The Bergwald grid built by ``digiplat grid build --json`` in a fresh process."""
    out = tmp_path_factory.mktemp("bergwald-cli") / "grid"
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "grid", "build", "--osm", str(osm_path), "--bbox", ",".join(map(str, BERGWALD_BBOX)),
         "--out", str(out), "--seed", "0", "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_bergwald_counts_and_no_violations(bergwald_build):
    grid, _ = bergwald_build
    s = grid.summary
    assert s["substations"] == 6 == len(grid.net.trafo)
    assert 220 <= s["buildings"] <= 260
    assert s["violations"] == 0
    assert 0.95 <= s["vm_min_pu"] <= s["vm_max_pu"] <= 1.05
    assert s["max_line_loading_percent"] <= 100 and s["max_trafo_loading_percent"] <= 100
    assert s["lv"]["buildings_beyond_max_feeder_length"] == 0


def test_bergwald_ring_and_feeders(bergwald_build):
    from test_gridgen_stages import _mv_ring_checks, radial_checks

    grid, _ = bergwald_build
    _mv_ring_checks(grid.net)
    trafo_of_bus = radial_checks(grid.net)
    assert all(trafo_of_bus[int(r.bus)] == int(r.substation) for r in grid.buildings.itertuples())


def test_shipped_grid_power_flow_rerun_is_clean(bergwald_grid):
    import copy

    import pandapower as pp

    net = copy.deepcopy(bergwald_grid.net)  # the fixture is shared: do not overwrite its results
    pp.runpp(net, numba=False)
    assert net.converged
    assert net.res_bus.vm_pu.between(0.95, 1.05).all()
    assert (net.res_line.loading_percent <= 100).all()
    assert (net.res_trafo.loading_percent <= 100).all()
    assert len(net.trafo) == 6 and 220 <= len(net.load) <= 260
    # every load is a building of the table, on its bus
    bus_of_load = net.load.set_index("building_id").bus.astype(int).sort_index()
    assert bus_of_load.equals(bergwald_grid.buildings.bus.astype(int).sort_index())


def _summary_without_runtime(path: Path) -> dict:
    summary = json.loads((path / "summary.json").read_text())
    summary.pop("runtime_s")
    summary["area"]["source"] = Path(summary["area"]["source"]).name  # the shared file may live elsewhere
    return summary


def _assert_same_net(built: Grid, shipped: Grid, *, result_tol: float = 1e-9) -> None:
    """Every table of the two nets equal: exactly, except power-flow results (``res_*``) within ``result_tol``."""
    import pandas as pd

    tables = sorted(k for k, v in built.net.items() if isinstance(v, pd.DataFrame))
    assert tables == sorted(k for k, v in shipped.net.items() if isinstance(v, pd.DataFrame))
    checked = 0
    for name in tables:
        a, b = built.net[name], shipped.net[name]
        if name.startswith("res_"):
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=result_tol, obj=name)
        else:
            pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
        checked += len(a)
    assert checked > 1000  # buses, lines, loads, geodata and results were compared, not empty tables


def test_bergwald_two_builds_are_byte_identical(bergwald_build, bergwald_cli_build):
    _, inproc = bergwald_build
    cli, _ = bergwald_cli_build
    for name in GRID_FILES:
        if name == "summary.json":
            assert _summary_without_runtime(inproc) == _summary_without_runtime(cli)
        else:
            assert (inproc / name).read_bytes() == (cli / name).read_bytes(), f"{name}: two builds differ"


def test_bergwald_build_equals_shipped_assets(bergwald_build):
    _, inproc = bergwald_build
    shipped = default_grid_dir()
    assert _summary_without_runtime(inproc) == _summary_without_runtime(shipped)
    for name in ("buildings.csv", "map.geojson"):  # parameters and geometry only, no solver output
        assert (inproc / name).read_bytes() == (shipped / name).read_bytes(), f"{name}: differs from assets/bergwald"
    _assert_same_net(Grid.load(inproc), Grid.load(shipped))


def test_net_comparison_tolerates_only_result_digits(bergwald_grid):
    """The comparison above is not vacuous: a 1e-12 change of a result passes, a parameter change fails."""
    import copy

    other = copy.deepcopy(bergwald_grid)
    other.net.res_bus.loc[other.net.res_bus.index[0], "vm_pu"] += 1e-12
    _assert_same_net(other, bergwald_grid)
    other.net.res_bus.loc[other.net.res_bus.index[0], "vm_pu"] += 1e-6
    with pytest.raises(AssertionError):
        _assert_same_net(other, bergwald_grid)
    other = copy.deepcopy(bergwald_grid)
    other.net.line.loc[other.net.line.index[0], "length_km"] += 1e-12
    with pytest.raises(AssertionError):
        _assert_same_net(other, bergwald_grid)


def test_cli_json_last_line_has_the_contract(bergwald_cli_build):
    out, proc = bergwald_cli_build
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert CONTRACT_KEYS <= set(summary)
    assert summary["violations"] == 0 and summary["substations"] == 6
    assert summary["runtime_s"] > 0
    assert "OpenStreetMap" in summary["credit"]
    assert Grid.load(out).summary["buildings"] == summary["buildings"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", sorted(OTHER_BBOXES))
def test_other_durlach_districts_build_clean(osm_path, name):
    from gridgen.build import grid_from_osm

    grid = grid_from_osm(osm_path, bbox=OTHER_BBOXES[name])
    s = grid.summary
    assert s["buildings"] >= 50
    assert s["violations"] == 0
    assert 0.95 <= s["vm_min_pu"] and s["vm_max_pu"] <= 1.05
    assert s["max_line_loading_percent"] <= 100 and s["max_trafo_loading_percent"] <= 100
    assert len(grid.net.load) == s["buildings"]


def test_summaries_record_no_path_of_the_build_machine(bergwald_build):
    """Issue 11: the summary names the source file only, in a fresh build and in the shipped grid."""
    _, inproc = bergwald_build
    for folder in (inproc, default_grid_dir()):
        text = (folder / "summary.json").read_text()
        assert json.loads(text)["area"]["source"] == "bergwald_karlsruhe_durlach.osm"
        assert str(REPO) not in text and "/work/" not in text and "/home/" not in text
