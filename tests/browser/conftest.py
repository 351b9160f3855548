"""Headless Chromium for the ``dash_duo`` browser tests (dash[testing]).

dash[testing] builds its Chrome options from the ``pytest_setup_options`` hook (first result)
and takes the browser binary from ``$DASH_TEST_CHROMEPATH``; ``--headless`` is set here, so the
tests need no extra pytest flag. The app under test draws no tiles (``DIGIPLAT_TILE_URL=""``)
and keeps its linearization cache in a private temporary directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"

if "DASH_TEST_CHROMEPATH" not in os.environ and Path(CHROMIUM).exists():
    os.environ["DASH_TEST_CHROMEPATH"] = CHROMIUM

# dash_duo numbers its servers from a fixed port; several test runs on one machine (parallel
# checkouts) pick disjoint ranges with $DIGIPLAT_TEST_PORT_BASE.
if os.environ.get("DIGIPLAT_TEST_PORT_BASE", "").isdigit():
    from dash.testing.application_runners import BaseDashRunner

    BaseDashRunner._next_port = int(os.environ["DIGIPLAT_TEST_PORT_BASE"])

CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
    "--window-size=1400,1000",
)


def chrome_options():
    """Selenium ChromeOptions of every browser test and of ``benchmarks/bench_app.py``."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    if os.environ.get("DASH_TEST_CHROMEPATH"):
        options.binary_location = os.environ["DASH_TEST_CHROMEPATH"]
    return options


def pytest_setup_options():
    return chrome_options()


@pytest.fixture(scope="session", autouse=True)
def offline_app_environment():
    """No tile requests, a private cache directory, and a warm server process."""
    cache_dir = tempfile.mkdtemp(prefix="digiplat-browser-cache-")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGIPLAT_TILE_URL", "")
        mp.setenv("DIGIPLAT_CACHE_DIR", cache_dir)
        mp.delenv("REDIS_URL", raising=False)
        from app import session

        # Rounds run in dash_duo's server threads of this process: load the grid and linearize
        # the default scenario once here, so the first click is as fast as the others.
        session.default_grid()
        session.warm_up()
        yield cache_dir
    shutil.rmtree(cache_dir, ignore_errors=True)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
