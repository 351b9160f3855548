"""Issue 11, deliverable 10: the exports download and parse, in real headless Chromium.

After a clearing the Market page's "Download results (zip)" button saves one zip (Chromium's
download folder is dash_duo's ``download_path``); its files parse and agree with the cards, and
its report opens offline (``file://``) with its plotly maps drawn and no console error.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from selenium.webdriver.common.by import By

from app.export import EXPORT_FILES
from test_app_browser import CLEAR_TIMEOUT, click, make_app, open_tab, severe, text, wait_for_map, wait_until

pytestmark = pytest.mark.browser

CREDIT = "Map data © OpenStreetMap contributors, ODbL 1.0"


def _downloaded_zip(folder: Path, timeout_s: float) -> Path:
    """The one finished ``.zip`` in Chromium's download folder (``.crdownload`` while it is written)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = sorted(folder.glob("*.zip"))
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no zip downloaded to {folder}: {sorted(p.name for p in folder.iterdir())}")


def click_download(browser, item: str, screenshot: Path | None = None) -> None:
    """Open the Market page's Download menu and click one of its items."""
    click(browser, browser.find_element("#market-download-menu .dropdown-toggle"))
    wait_until(browser, lambda: browser.find_element(item).is_displayed(), 10, "download menu does not open")
    # the open menu stays inside the window (no horizontal scroll bar)
    assert browser.driver.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    if screenshot is not None:
        browser.driver.save_screenshot(str(screenshot))
    click(browser, browser.find_element(item))


def test_exports_download_and_parse(dash_duo, artifacts, tmp_path):
    download_dir = Path(dash_duo.download_path)
    # headless Chromium saves downloads only where it is told to (the CDP call dash[testing] makes
    # for its --headless flag; these tests pass --headless=new in the Chrome options instead)
    dash_duo.driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    dash_duo.start_server(make_app())
    open_tab(dash_duo, "Market")
    wait_for_map(dash_duo, "market-map")

    # before a clearing the download explains itself instead of saving an empty file
    click_download(dash_duo, "#market-export-btn")
    dash_duo.wait_for_contains_text("#market-alert", "clear the market first", timeout=20)
    assert not list(download_dir.iterdir())

    click(dash_duo, dash_duo.find_element("#market-clear"))
    dash_duo.wait_for_text_to_equal("#market-card-milp-delivered", "1.800 of 1.800 MW", timeout=CLEAR_TIMEOUT)
    merit = re.fullmatch(r"(\d+) violations in the AC power flow", text(dash_duo, "#market-card-merit-violations"))
    assert merit and int(merit.group(1)) > 0
    click_download(dash_duo, "#market-export-btn", artifacts / "13-download-menu.png")
    archive = _downloaded_zip(download_dir, 60)
    assert archive.name == "digiplat-round_weekday_18-00_1.8MW.zip"

    with zipfile.ZipFile(archive) as zf:
        folder = archive.stem
        assert zf.namelist() == [f"{folder}/{name}" for name in EXPORT_FILES]
        files = {name: zf.read(f"{folder}/{name}") for name in EXPORT_FILES}
    activations = pd.read_csv(io.BytesIO(files["activations.csv"]), comment="#")
    assert activations[activations.method == "milp"].activated_mw.sum() == pytest.approx(1.8, abs=1e-6)
    assert activations[activations.method == "merit_order"].activated_mw.sum() == pytest.approx(1.8, abs=1e-6)
    violations = pd.read_csv(io.BytesIO(files["violations.csv"]), comment="#")
    assert (violations.method == "merit_order").sum() == int(merit.group(1))
    assert (violations.method == "milp").sum() == 0
    for name in ("activations.csv", "violations.csv"):
        assert files[name].decode("utf-8").splitlines()[0] == f"# {CREDIT}"
    geo = json.loads(files["grid_results.geojson"])
    assert geo["type"] == "FeatureCollection" and geo["attribution"] == CREDIT
    assert sum(f["properties"].get("merit_order_violation", False) for f in geo["features"]) > 0
    nets = json.loads(files["grid_results.json"])
    assert nets["attribution"] == CREDIT and set(nets["nets"]) == {"milp", "merit_order"}
    assert nets["nets"]["milp"]["_object"]["res_bus"]  # pandapower's net with its power-flow results

    # the same menu still downloads the bid table (the documented bid format)
    click_download(dash_duo, "#market-download-btn")
    wait_until(dash_duo, lambda: (download_dir / "bids.csv").is_file(), 30, "bids.csv not downloaded")
    bids = pd.read_csv(download_dir / "bids.csv")
    assert len(bids) == activations[activations.method == "milp"].shape[0]  # one row per bid row

    # the report is one page that works offline: its maps and plots are drawn from the inline plotly.js
    report = tmp_path / "report.html"
    report.write_bytes(files["report.html"])
    dash_duo.driver.get(report.as_uri())
    wait_until(dash_duo, lambda: len(dash_duo.driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= 4,
               30, "report plots not drawn")
    for div in ("map-milp", "map-merit_order", "validation-vm", "validation-loading"):
        assert dash_duo.driver.find_elements(By.CSS_SELECTOR, f"#{div} .scatterlayer .trace"), div
    assert CREDIT in dash_duo.driver.find_element(By.ID, "credit").text
    assert dash_duo.driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => !e.name.startsWith('file:') && "
        "!e.name.startsWith('data:')).length") == 0  # nothing fetched from a network
    dash_duo.driver.save_screenshot(str(artifacts / "14-export-report.png"))
    assert severe(dash_duo.get_logs()) == []
