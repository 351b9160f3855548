"""The Market day page in real headless Chromium: upload a short profile, run it, move the slider.

The day runs as the page runs it in a room: a job process started by the click, progress polled
from its status file, results read from the private cache (the session fixture's temporary one).
"""

from __future__ import annotations

import re

import pytest
from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser.test_app_browser import (click, make_app, open_tab, severe, text, violations, wait_for_map,
                                            wait_until)

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 120  # two units and a fresh job process on a loaded 2-core machine
PROFILE = "start,request_mw\n12:30,-0.2\n18:00,1.8\n"


RECORD_PROGRESS_JS = """
const seen = {running: [], progress: [], disabled: false, charts_during_run: false};
window.__dayProgress = seen;
const charts = () => { const e = document.querySelector('#day-charts'); return !!e && e.offsetParent !== null; };
new MutationObserver(() => {
  const running = document.querySelector('#day-running');
  const label = document.querySelector('#day-progress .progress-bar');
  const button = document.querySelector('#day-run');
  const text = running ? running.textContent.trim() : '';
  if (text && seen.running[seen.running.length - 1] !== text) { seen.running.push(text); }
  const l = label ? label.textContent.trim() : '';
  if (l && seen.progress[seen.progress.length - 1] !== l) { seen.progress.push(l); }
  if (button && button.disabled) { seen.disabled = true; }
  if (text.startsWith('running:') && charts()) { seen.charts_during_run = true; }
}).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
"""


def fills(browser, map_id: str) -> list:
    """The fill colours of a map's SVG paths, in document order (the buildings' voltages, the stations' loadings)."""
    return browser.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(p => p.getAttribute('fill'));",
        f"#{map_id} path.leaflet-interactive")


def charts_fit(browser) -> bool:
    """Every chart is as wide as its column (plotly drew it at the page's width, not its default 700 px)."""
    return browser.driver.execute_script(
        "return ['delivered', 'cost', 'violations'].every(g => { const d = document.getElementById('day-' + g);"
        " const s = d && d.querySelector('.main-svg'); return s && Math.abs(s.getBoundingClientRect().width"
        " - d.getBoundingClientRect().width) <= 2; });")


def maps_in_view(browser) -> None:
    """Scroll the slider to the top of the window: the slider and both maps fill it."""
    browser.driver.execute_script("document.getElementById('day-unit').scrollIntoView({block: 'start', behavior: 'instant'});")


def visible(browser, selector: str) -> bool:
    return browser.driver.execute_script("const e = document.querySelector(arguments[0]); return !!e && e.offsetParent !== null;",
                                         selector)


def merit_count(browser) -> int:
    """The merit order's violations in the unit caption ("...; merit order X MW, N violations")."""
    return int(re.search(r"merit order [-0-9.]+ MW, (\d+) violations", text(browser, "#day-unit")).group(1))


def test_a_short_day_runs_and_the_slider_drives_the_maps(dash_duo, artifacts, tmp_path):
    dash_duo.start_server(make_app())
    # a presenter's laptop first; 1920x1080 below, drawn anew (a map fits its window when it is drawn)
    dash_duo.driver.set_window_size(1280, 800)
    open_tab(dash_duo, "Market day")
    wait_for_map(dash_duo, "day-milp-map")
    wait_for_map(dash_duo, "day-merit-map")
    # before a run: a hint, no empty plots, the slider idle
    assert visible(dash_duo, "#day-hint") and not visible(dash_duo, "#day-charts")
    assert not dash_duo.driver.find_elements(By.CSS_SELECTOR, "#day-charts .main-svg .trace")

    profile = tmp_path / "evening.csv"
    profile.write_text(PROFILE)
    dash_duo.driver.find_element(By.CSS_SELECTOR, "#day-upload input[type=file]").send_keys(str(profile))
    dash_duo.wait_for_contains_text("#day-profile-source", "uploaded: evening.csv (2 units, 12:30–18:00)", timeout=20)
    assert dash_duo.driver.find_element(By.CSS_SELECTOR, "#day-profile-source input[value='upload']").is_selected()

    # everything the page shows while the day runs is recorded as it is drawn (a short day may be
    # done in about a second, faster than this test could look)
    dash_duo.driver.execute_script(RECORD_PROGRESS_JS)
    click(dash_duo, dash_duo.find_element("#day-run"))
    wait_until(dash_duo, lambda: visible(dash_duo, "#day-charts"), RUN_TIMEOUT_S, "the day's charts did not appear")
    seen = dash_duo.driver.execute_script("return window.__dayProgress;")
    # the running indicator, the progress of units done / total and the disabled button, before the charts
    assert any(t.startswith(("running:", "queued:")) for t in seen["running"]), seen
    assert any(re.fullmatch(r"[0-2] / 2", t) for t in seen["progress"]), seen
    assert seen["disabled"], "the Run button was not disabled while the day ran (one run at a time)"
    assert not seen["charts_during_run"], "charts were shown while the day was still running"
    assert not visible(dash_duo, "#day-hint") and not visible(dash_duo, "#day-progress-holder")
    for graph in ("delivered", "cost", "violations"):
        wait_until(dash_duo, lambda: dash_duo.driver.find_elements(By.CSS_SELECTOR, f"#day-{graph} .main-svg .trace"),
                   20, f"{graph} chart not drawn")
    assert dash_duo.find_element("#day-run").get_attribute("disabled") is None

    # the slider starts at the unit the merit order congests most: 18:00; the MILP map is clean there
    dash_duo.wait_for_contains_text("#day-unit", "Unit 18:00, request 1.800 MW", timeout=30)
    wait_until(dash_duo, lambda: violations(dash_duo, "day-merit-map") > 0, 30, "merit order's violations not drawn")
    assert violations(dash_duo, "day-milp-map") == 0
    assert "0 of 2 units with violations" in text(dash_duo, "#day-total-milp")
    screenshots(dash_duo, artifacts, 1280, 800)

    # the keyboard on the slider's handle: one unit back, to the PV-noon unit
    evening_fills = fills(dash_duo, "day-milp-map")
    thumb = dash_duo.driver.find_element(By.CSS_SELECTOR, "#day-slider [role=slider]")
    click(dash_duo, thumb)
    thumb.send_keys(Keys.ARROW_LEFT)
    dash_duo.wait_for_contains_text("#day-unit", "Unit 12:30, request -0.200 MW", timeout=30)
    wait_until(dash_duo, lambda: fills(dash_duo, "day-milp-map") != evening_fills, 30, "the MILP map did not change")
    noon = merit_count(dash_duo)
    wait_until(dash_duo, lambda: (violations(dash_duo, "day-merit-map") > 0) == (noon > 0), 30,
               "the merit order's map does not show the unit's violations")
    maps_in_view(dash_duo)
    dash_duo.driver.save_screenshot(str(artifacts / "day-noon-maps.png"))

    # a click on a chart's point selects its unit too
    points = dash_duo.driver.find_elements(By.CSS_SELECTOR, "#day-violations .scatterlayer .trace .points path")
    assert len(points) == 4  # two units, two methods
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", points[-1])
    ActionChains(dash_duo.driver).move_to_element(points[-1]).click().perform()
    dash_duo.wait_for_contains_text("#day-unit", "Unit 18:00", timeout=30)
    wait_until(dash_duo, lambda: violations(dash_duo, "day-merit-map") > 0, 30, "merit order's map not back at 18:00")

    # a second visit of the tab (drawn anew, at 1920x1080; the session's upload is chosen again): the
    # finished day at once, no new run
    dash_duo.driver.set_window_size(1920, 1080)
    open_tab(dash_duo, "Validation")
    dash_duo.wait_for_element("#validation-empty", timeout=30)
    open_tab(dash_duo, "Market day")
    wait_until(dash_duo, lambda: visible(dash_duo, "#day-charts"), 30, "the finished day was not shown again")
    assert not visible(dash_duo, "#day-progress-holder")
    assert "uploaded: evening.csv" in text(dash_duo, "#day-profile-source")
    dash_duo.wait_for_contains_text("#day-unit", "Unit 18:00, request 1.800 MW", timeout=30)
    wait_until(dash_duo, lambda: violations(dash_duo, "day-merit-map") > 0, 30, "merit order's violations not drawn")
    screenshots(dash_duo, artifacts, 1920, 1080)
    assert severe(dash_duo.get_logs()) == []
    assert not dash_duo.driver.find_elements(By.CSS_SELECTOR, ".dash-debug-alert")


def screenshots(browser, artifacts, width: int, height: int) -> None:
    """The page's top (controls, charts) and the slider with both maps; the page fits the window's width."""
    wait_until(browser, lambda: browser.driver.execute_script("return window.innerWidth") <= width, 10, "window not resized")
    wait_until(browser, lambda: charts_fit(browser), 20, "the charts do not fill their columns")
    browser.driver.execute_script("window.scrollTo({top: 0, behavior: 'instant'});")
    browser.driver.save_screenshot(str(artifacts / f"day-{width}x{height}.png"))
    maps_in_view(browser)
    browser.driver.save_screenshot(str(artifacts / f"day-{width}x{height}-maps.png"))
    assert browser.driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1"), "horizontal scroll bar"
