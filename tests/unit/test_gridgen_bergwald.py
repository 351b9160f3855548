"""End to end on the shared OSM file: Bergwald (the shipped default) and other Durlach districts.

Bergwald is built once per session in-process and once through the CLI (a fresh process); both
must equal each other and the shipped ``assets/bergwald`` byte for byte.
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


def test_bergwald_is_deterministic_and_equals_shipped_assets(bergwald_build, bergwald_cli_build):
    _, inproc = bergwald_build
    cli, _ = bergwald_cli_build
    shipped = default_grid_dir()
    for name in GRID_FILES:
        if name == "summary.json":
            assert _summary_without_runtime(inproc) == _summary_without_runtime(cli) == _summary_without_runtime(shipped)
        else:
            assert (inproc / name).read_bytes() == (cli / name).read_bytes(), f"{name}: two builds differ"
            assert (inproc / name).read_bytes() == (shipped / name).read_bytes(), f"{name}: differs from assets/bergwald"


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
