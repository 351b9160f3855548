"""Shared fixtures: the shipped Bergwald grid, the shared OSM file and a private cache directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import optim  # noqa: F401  (first: its NUMBA_DISABLE_JIT default must precede any test module's pandapower import)

REPO = Path(__file__).resolve().parent.parent
SHARED_OSM = REPO.parent / "shared" / "osm" / "bergwald_karlsruhe_durlach.osm"


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir():
    """Every test (and the CLI it runs) keeps compiled grids, profiles and linearizations in a
    temporary private cache, never in the user's ~/.cache."""
    folder = tempfile.mkdtemp(prefix="digiplat-tests-")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGIPLAT_CACHE_DIR", folder)
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


def shared_osm_path() -> Path | None:
    """Return the shared OSM file (``$DIGIPLAT_OSM`` or ``../shared/osm``), or None if absent."""
    env = os.environ.get("DIGIPLAT_OSM")
    path = Path(env) if env else SHARED_OSM
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def osm_path() -> Path:
    path = shared_osm_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have the shared OSM file (../shared/osm or $DIGIPLAT_OSM)")
        pytest.skip("shared OSM file not available; set DIGIPLAT_OSM")
    return path


@pytest.fixture(scope="session")
def bergwald_grid():
    from gridgen.grid import Grid, default_grid_dir

    return Grid.load(default_grid_dir())


SMALL_OSM = REPO / "tests" / "data" / "small_area.osm"


@pytest.fixture(scope="session")
def small_grid_dir(tmp_path_factory) -> Path:
    """A grid folder that gridgen builds from ``tests/data/small_area.osm`` (14 buildings, ~2 s): another grid than Bergwald."""
    from gridgen.build import GridConfig, grid_from_area
    from gridgen.osm import area_from_file

    grid = grid_from_area(area_from_file(SMALL_OSM), config=GridConfig())
    return grid.save(tmp_path_factory.mktemp("small-grid") / "small-grid")
