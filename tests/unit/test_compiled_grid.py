"""The compiled-grid store (optim.dso.compiled_grid) and the lazily parsed net of gridgen.grid.Grid.

A grid read from its folder is linearized from the stored compiled grid: the same package as from
the parsed net, no pandapower import in a fresh process that has seen the grid before; a net
changed in memory, a damaged entry or another grid file never uses a stored entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridgen.grid import Grid, default_grid_dir
from optim.dso.linearize import LinearizationConfig, linearize
from optim.dso.scenario import ScenarioConfig, scenario_from_grid

REPO = Path(__file__).resolve().parents[2]
CONFIG = LinearizationConfig(n_points=3)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """A new, empty private cache for this test (and this process' memory of it emptied)."""
    from optim import private_cache

    folder = tmp_path / "cache"
    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(folder))
    monkeypatch.setattr(private_cache, "_MEMORY", {})
    return folder


def point_arrays(package) -> list[np.ndarray]:
    return [a for p in package.points for a in p.arrays().values()]


def assert_same_package(a, b) -> None:
    assert [p.label for p in a.points] == [p.label for p in b.points]
    for x, y in zip(point_arrays(a), point_arrays(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def linearized(grid: Grid, hour: int = 18):
    scenario = scenario_from_grid(grid, ScenarioConfig(hour=hour))
    return linearize(grid, scenario, config=CONFIG).package


def test_lazy_grid_linearizes_as_the_parsed_net_and_never_parses_it(cache):
    eager = linearized(Grid.load(default_grid_dir()))  # computes and stores the entries
    assert sorted(p.name.split("-")[1] for p in (cache / "grids").iterdir()) == ["feeder", "flow", "loads"]
    lazy_grid = Grid.load(default_grid_dir(), lazy=True)
    lazy = linearized(lazy_grid)
    assert not lazy_grid.net_loaded  # the linearization read the stored compiled grid only
    assert_same_package(eager, lazy)


def test_a_net_changed_in_memory_is_compiled_from_itself(cache):
    grid = Grid.load(default_grid_dir())
    before = linearized(grid)
    assert grid.pristine()
    grid.net.line.loc[grid.net.line.index[:40], "length_km"] *= 3.0  # longer cables: other voltages
    assert not grid.pristine()
    after = linearized(grid)
    fresh = Grid.load(default_grid_dir(), lazy=True)
    fresh.net.line.loc[fresh.net.line.index[:40], "length_km"] *= 3.0
    assert not fresh.pristine()
    assert_same_package(after, linearized(fresh))
    vm_before, vm_after = before.points[0].vm_pu, after.points[0].vm_pu
    assert np.max(np.abs(vm_before - vm_after)) > 1e-4  # the change was seen, not the stored grid


def test_a_damaged_entry_is_computed_again(cache):
    reference = linearized(Grid.load(default_grid_dir()))
    from optim import private_cache

    for entry in (cache / "grids").iterdir():
        entry.write_bytes(b"not a pickle")
    private_cache._MEMORY.clear()
    grid = Grid.load(default_grid_dir(), lazy=True)
    assert_same_package(reference, linearized(grid))
    assert grid.net_loaded  # recomputed from the parsed net


def test_another_grid_file_does_not_use_the_entries(cache, small_grid_dir):
    bergwald = linearized(Grid.load(default_grid_dir()))
    small = Grid.load(small_grid_dir, lazy=True)
    assert small.source[1] != Grid.load(default_grid_dir(), lazy=True).source[1]
    package = linearized(small, hour=18)
    assert small.net_loaded  # no entry of its own yet: compiled from its net
    assert len(package.points[0].vm_pu) < len(bergwald.points[0].vm_pu)  # its own buses, not Bergwald's
    assert len(list((cache / "grids").glob(f"{small.source[1][:32]}-*"))) == 3  # and now stored


def test_lazy_grid_with_a_damaged_net_fails_on_first_use(tmp_path):
    from gridgen._errors import InputDataError

    folder = tmp_path / "grid"
    folder.mkdir()
    for name in ("buildings.csv", "map.geojson", "summary.json"):
        (folder / name).write_bytes((default_grid_dir() / name).read_bytes())
    (folder / "grid.json").write_text('{"truncated": ')
    grid = Grid.load(folder, lazy=True)
    with pytest.raises(InputDataError, match="is not a readable pandapower grid"):
        grid.net  # noqa: B018


def test_cli_linearize_of_a_known_grid_does_not_import_pandapower(tmp_path):
    env = dict(os.environ, DIGIPLAT_CACHE_DIR=str(tmp_path / "cache"))
    probe = ("import runpy, sys, atexit\n"
             "atexit.register(lambda: print('PANDAPOWER', 'pandapower' in sys.modules, 'PVLIB', 'pvlib' in sys.modules))\n"
             "sys.argv = ['digiplat'] + sys.argv[1:]\n"
             "from app.cli import main\n"
             "raise SystemExit(main())\n")
    outputs = []
    for hour, name in ((17, "first.zip"), (16, "second.zip")):
        run = subprocess.run([sys.executable, "-c", probe, "linearize", "--hour", str(hour),
                              "--out", str(tmp_path / name), "--json"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert "PANDAPOWER True" in outputs[0]  # the first run compiles the grid with pandapower
    # a new hour of a known grid and day: the compiled grid and the day's PV profile only
    assert "PANDAPOWER False PVLIB False" in outputs[1]
    summary = json.loads([line for line in outputs[1].splitlines() if line.startswith("{")][-1])
    from optim.dso import DEFAULT_MAX_POINTS

    assert 9 <= summary["points"] <= DEFAULT_MAX_POINTS  # the default: 9 merit levels, bisected up to 33 points


def test_the_store_keeps_its_newest_entries_only(cache, monkeypatch):
    from optim import private_cache

    monkeypatch.setattr(private_cache, "STORED_FILES_MAX", 3)
    for k in range(5):
        assert private_cache.stored("values", f"v{k}", lambda k=k: {"k": k}) == {"k": k}
        os.utime(next((cache / "values").glob(f"v{k}-*")), (1_000_000 + k, 1_000_000 + k))
    names = sorted(p.name.split("-")[0] for p in (cache / "values").iterdir())
    assert names == ["v2", "v3", "v4"]
    private_cache._MEMORY.clear()
    assert private_cache.stored("values", "v0", lambda: {"k": "again"}) == {"k": "again"}  # pruned: computed again
