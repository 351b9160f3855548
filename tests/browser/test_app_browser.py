"""The demonstrator in real headless Chromium (dash[testing] ``dash_duo``).

Run: ``.venv/bin/python -m pytest tests/browser -m browser``. Screenshots go to
``test-artifacts/browser/`` (gitignored). The app is ``create_app()`` served by dash_duo's
threaded server; a round runs in the request (as in a gunicorn worker) with the running indicator.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from app.mapview import LAYERS, STYLES, VIOLATION_CLASS, legend_entries, legend_scales

pytestmark = pytest.mark.browser

CLEAR_TIMEOUT = 90  # s: one clearing (two AC validations) on a loaded 2-core machine
PATHS = "path.leaflet-interactive"
# strokes of the plain grid map: anything else on a line is a result colour (the loading scale)
PLAIN_STROKES = sorted({entry["style"]["color"] for entry in STYLES.values() if entry["shown"] in ("grid", "both")
                        and "color" in entry["style"]} | {"#56606b"})


def make_app():
    from app.server import create_app

    return create_app(warm_up=False)  # the session fixture has warmed this process up already


def severe(logs) -> list:
    return [entry for entry in (logs or []) if entry.get("level") == "SEVERE"]


def click(browser, element) -> None:
    """Scroll an element to the middle of the window, then click it like a user.

    Bootstrap sets ``scroll-behavior: smooth``: without ``behavior: 'instant'`` the click lands
    while the page still scrolls (ElementClickInterceptedException at a negative y).
    """
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    element.click()


def open_tab(browser, label: str) -> None:
    click(browser, browser.driver.find_element(By.XPATH, f"//a[contains(@class, 'nav-link') and normalize-space()='{label}']"))


def paths(browser, map_id: str, stroke: str | None = None) -> int:
    selector = f"#{map_id} {PATHS}" + (f'[stroke="{stroke}"]' if stroke else "")
    return len(browser.driver.find_elements(By.CSS_SELECTOR, selector))


def coloured(browser, map_id: str) -> int:
    """The number of SVG paths of a map drawn in a result colour (not a plain-grid stroke)."""
    return browser.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).filter(p => !arguments[1].includes(p.getAttribute('stroke'))).length;",
        f"#{map_id} {PATHS}", PLAIN_STROKES)


def violations(browser, map_id: str) -> int:
    return len(browser.driver.find_elements(By.CSS_SELECTOR, f"#{map_id} path.{VIOLATION_CLASS}"))


def legend_keys(browser, map_id: str) -> tuple[list, list]:
    """``(style keys, scale keys)`` of the legend under a map, in their order."""
    legend = f"#{map_id.replace('-map', '-legend')}"
    return (browser.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' [data-style]')).map(e => e.dataset.style);", legend),
        browser.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' [data-scale]')).map(e => e.dataset.scale);", legend))


def wait_until(browser, condition, timeout: float, message: str):
    return WebDriverWait(browser.driver, timeout, poll_frequency=0.1).until(lambda _: condition(), message)


def wait_for_map(browser, map_id: str, timeout: float = 30) -> int:
    browser.wait_for_element(f"#{map_id}.leaflet-container", timeout=timeout)
    wait_until(browser, lambda: paths(browser, map_id) > 100, timeout, f"{map_id}: grid not drawn")
    return paths(browser, map_id)


def shot(browser, path: Path, selector: str | None = None) -> None:
    """Save a screenshot, with ``selector`` (e.g. the map) scrolled into view."""
    if selector:
        browser.driver.execute_script("document.querySelector(arguments[0]).scrollIntoView({block: 'center', behavior: 'instant'});", selector)
    browser.driver.save_screenshot(str(path))


def text(browser, selector: str) -> str:
    return browser.find_element(selector).text.strip()


# ------------------------------------------------------------------------------------ tests
def test_app_loads_with_the_grid_map(dash_duo, artifacts):
    dash_duo.start_server(make_app())
    n_paths = wait_for_map(dash_duo, "grid-map")
    screenshot = artifacts / "01-grid-page.png"
    dash_duo.driver.save_screenshot(str(screenshot))

    assert n_paths > 1000  # streets, footprints, buildings, feeders, ring, stations as SVG paths
    labels = [e.get_attribute("textContent").strip()
              for e in dash_duo.driver.find_elements(By.CSS_SELECTOR, "#grid-map .leaflet-control-layers-overlays label")]
    assert labels == [label for _, label, _, _ in LAYERS]
    checked = dash_duo.driver.find_elements(By.CSS_SELECTOR, "#grid-map .leaflet-control-layers-overlays input:checked")
    assert len(checked) == len(LAYERS)
    assert paths(dash_duo, "grid-map", STYLES["mv_line"]["style"]["color"]) >= 5  # the 20 kV ring
    assert paths(dash_duo, "grid-map", STYLES["normally_open"]["style"]["color"]) >= 1
    assert legend_keys(dash_duo, "grid-map") == (legend_entries(False), legend_scales(False))
    assert not dash_duo.driver.find_elements(By.CSS_SELECTOR, "img.leaflet-tile")  # offline: no tiles requested
    assert "OpenStreetMap" in text(dash_duo, "#grid-map .leaflet-control-attribution")
    # the OSM credit once on the map and once in the footer, nowhere else
    body = dash_duo.driver.find_element(By.TAG_NAME, "body").text
    assert len(re.findall(r"OpenStreetMap contributors", body)) == 2, body
    assert "OpenStreetMap contributors" in text(dash_duo, "footer")
    from app import session

    assert text(dash_duo, "#grid-fact-0") == str(session.default_grid().summary["buildings"])  # Bergwald's buildings
    assert "Karlsruhe-Bergwald" in text(dash_duo, "#page")
    assert screenshot.stat().st_size > 10_000
    assert severe(dash_duo.get_logs()) == []
    assert not dash_duo.driver.find_elements(By.CSS_SELECTOR, ".dash-debug-alert")


@pytest.fixture
def second_browser(request, tmp_path):
    """Another Chromium with its own profile: a second user of the same server."""
    from dash.testing.browser import Browser

    options = request.config.hook.pytest_setup_options()  # the headless options of conftest.py
    with Browser("Chrome", options=options, download_path=str(tmp_path / "second"), percy_run=False) as browser:
        yield browser


def test_market_round_trip_and_separate_sessions(dash_duo, second_browser, artifacts):
    dash_br = second_browser
    dash_duo.start_server(make_app())
    wait_for_map(dash_duo, "grid-map")
    open_tab(dash_duo, "Market")
    wait_for_map(dash_duo, "market-map")
    assert coloured(dash_duo, "market-map") == 0 and violations(dash_duo, "market-map") == 0
    assert text(dash_duo, "#market-cards") == ""
    # opening the tab starts no clearing job: the controls stay enabled, nothing is running
    for _ in range(15):
        assert dash_duo.find_element("#market-clear").is_enabled()
        assert text(dash_duo, "#market-running") == ""
        dash_duo.driver.execute_script("return new Promise(r => setTimeout(r, 100));")

    click(dash_duo, dash_duo.find_element("#market-clear"))
    # while the round runs, the clear button and the upload are disabled
    wait_until(dash_duo, lambda: not dash_duo.find_element("#market-clear").is_enabled(), 10, "clear button not disabled")
    dash_duo.wait_for_text_to_equal("#market-card-milp-delivered", "1.800 of 1.800 MW", timeout=CLEAR_TIMEOUT)
    assert text(dash_duo, "#market-card-milp-violations") == "0 violations in the AC power flow"
    assert text(dash_duo, "#market-card-merit-delivered") == "1.800 of 1.800 MW"
    merit = re.fullmatch(r"(\d+) violations in the AC power flow", text(dash_duo, "#market-card-merit-violations"))
    assert merit and int(merit.group(1)) > 0
    wait_until(dash_duo, lambda: dash_duo.find_element("#market-clear").is_enabled(), 10, "clear button stays disabled")
    assert "operating points" in text(dash_duo, "#market-tso-package")

    # the map is redrawn with the MILP's power flow: lines on the loading scale, nothing beyond a limit
    wait_until(dash_duo, lambda: coloured(dash_duo, "market-map") > 50, 20, "map not coloured by the result")
    assert paths(dash_duo, "market-map") > 100
    assert violations(dash_duo, "market-map") == 0
    # the legend is the result legend of the style table: both colour bars, every symbol
    assert legend_keys(dash_duo, "market-map") == (legend_entries(True), legend_scales(True))
    n_markers = paths(dash_duo, "market-map", STYLES["bid_full"]["style"]["color"])
    assert n_markers > 0  # activation markers (black) on the buildings with a bid
    shot(dash_duo, artifacts / "02-market-milp.png", "#market-map")
    # a presenter's laptop: 1280x800, the page fits its width (no horizontal scroll bar)
    dash_duo.driver.set_window_size(1280, 800)
    dash_duo.driver.execute_script("window.scrollTo({top: 0, behavior: 'instant'});")
    wait_until(dash_duo, lambda: dash_duo.driver.execute_script("return window.innerWidth") <= 1280, 10, "window not resized")
    dash_duo.driver.save_screenshot(str(artifacts / "07-market-1280x800.png"))
    assert dash_duo.driver.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert text(dash_duo, "#market-running") == ""  # the indicator is off once the round is shown
    dash_duo.driver.set_window_size(1400, 1000)

    # the grid-blind merit order congests the grid: red lines / buses
    click(dash_duo, dash_duo.find_element('#market-method input[value="merit"]'))
    wait_until(dash_duo, lambda: violations(dash_duo, "market-map") > 0, 20, "no congestion shown for the merit order")
    n_red = violations(dash_duo, "market-map")
    assert n_red >= int(merit.group(1)) // 2
    shot(dash_duo, artifacts / "03-market-merit-order.png", "#market-map")
    for width, height in ((1280, 800), (1920, 1080)):
        dash_duo.driver.set_window_size(width, height)
        shot(dash_duo, artifacts / f"09-merit-order-{width}x{height}.png", "#market-map")
    dash_duo.driver.set_window_size(1400, 1000)
    # the legend collapses and opens again (it must not hide the map on a small screen)
    summary = dash_duo.find_element("#market-legend summary")
    first_row = dash_duo.find_element("#market-legend [data-style]")
    assert first_row.is_displayed()
    click(dash_duo, summary)
    wait_until(dash_duo, lambda: not first_row.is_displayed(), 5, "legend does not collapse")
    click(dash_duo, summary)
    wait_until(dash_duo, lambda: first_row.is_displayed(), 5, "legend does not open again")

    # a second browser session sees none of the first one's results
    dash_br.server_url = dash_duo.server_url
    wait_for_map(dash_br, "grid-map")
    open_tab(dash_br, "Market")
    wait_for_map(dash_br, "market-map")
    assert text(dash_br, "#market-cards") == ""
    assert violations(dash_br, "market-map") == 0 and coloured(dash_br, "market-map") == 0
    assert text(dash_br, "#market-tso-package") == "Clear the market to see the package's figures."
    open_tab(dash_br, "Validation")
    dash_br.wait_for_contains_text("#validation-empty", "Clear the market on the Market page", timeout=20)
    assert not dash_br.driver.find_elements(By.CSS_SELECTOR, "#validation-metrics")
    dash_br.driver.save_screenshot(str(artifacts / "04-second-session-validation.png"))
    assert severe(dash_br.get_logs()) == []

    # the first session's Validation tab shows its round
    open_tab(dash_duo, "Validation")
    dash_duo.wait_for_element("#validation-metrics", timeout=20)
    table = text(dash_duo, "#validation-metrics")
    assert "MAE, all" in table and "RMSE, critical" in table and "Paper A, Table I" in table
    assert re.search(r"MAE, all \d\.\d\de-\d\d \d\.\d\de[-+]\d\d", table)
    wait_until(dash_duo, lambda: len(dash_duo.driver.find_elements(By.CSS_SELECTOR, "#validation-vm .scatterlayer .point")) > 0,
               20, "voltage plot has no points")
    assert len(dash_duo.driver.find_elements(By.CSS_SELECTOR, "#validation-loading .scatterlayer .point")) > 0
    assert f"would violate {merit.group(1)} limits" in text(dash_duo, "#validation-merit")
    assert text(dash_duo, "#validation-empty") == ""
    dash_duo.driver.save_screenshot(str(artifacts / "05-validation.png"))
    assert severe(dash_duo.get_logs()) == []


GOOD_CSV = ("bid_id,aggregator,building_id,p_mw,price_eur_per_mwh,fpu\n"
            "U1,Uploader,B0001,0.01,40,pv\nU1,Uploader,B0002,0.02,40,battery\nU2,Other,B0003,0.03,55,\n")
BAD_CSV = ("bid_id,aggregator,building_id,p_mw,price_eur_per_mwh,fpu\n"
           "X1,Agg,B0001,0.01,40,pv\nX2,Agg,B0002,lots,40,pv\nX3,Agg,B0003,0.02,cheap,pv\nX4,Agg,B0004,0.02,40,rocket\n")


def bid_ids(browser) -> list[str]:
    # one script call: the table re-renders while it is read, element handles would go stale
    return browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('#market-bids .ag-center-cols-container .ag-row'))"
        ".sort((a, b) => a.getAttribute('row-index') - b.getAttribute('row-index'))"
        ".map(r => r.querySelector('[col-id=\"bid_id\"]').textContent.trim());")


def test_upload_good_then_bad_bid_file(dash_duo, artifacts, tmp_path):
    dash_duo.start_server(make_app())
    open_tab(dash_duo, "Market")
    wait_for_map(dash_duo, "market-map")
    before = bid_ids(dash_duo)
    assert len(before) == 12 and before[0] == "A0001"  # the default bids, first page
    upload = dash_duo.driver.find_element(By.CSS_SELECTOR, "#market-upload input[type=file]")

    good = tmp_path / "good.csv"
    good.write_text(GOOD_CSV)
    upload.send_keys(str(good))
    wait_until(dash_duo, lambda: bid_ids(dash_duo) == ["U1", "U1", "U2"], 20, "uploaded bids not shown")
    assert not [e for e in dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-alert") if e.is_displayed()]

    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)
    upload = dash_duo.driver.find_element(By.CSS_SELECTOR, "#market-upload input[type=file]")
    upload.send_keys(str(bad))
    dash_duo.wait_for_contains_text("#market-alert", "line 3", timeout=20)
    alert = text(dash_duo, "#market-alert")
    assert "bad.csv: 3 invalid rows of 4, no bids were read" in alert
    assert "line 3: p_mw 'lots'" in alert
    assert "line 4: price_eur_per_mwh 'cheap'" in alert
    assert "line 5: fpu" in alert and "rocket" in alert
    assert "line 2" not in alert
    assert bid_ids(dash_duo) == ["U1", "U1", "U2"]  # the previous table stays
    shot(dash_duo, artifacts / "06-bad-upload.png", "#market-alert")

    not_csv = tmp_path / "photo.csv"  # named .csv (the picker accepts .csv/.json only) but binary
    not_csv.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00")
    dash_duo.driver.find_element(By.CSS_SELECTOR, "#market-upload input[type=file]").send_keys(str(not_csv))
    dash_duo.wait_for_contains_text("#market-alert", "cannot read bid file", timeout=20)
    assert bid_ids(dash_duo) == ["U1", "U1", "U2"]

    # add a row, then select and delete the first two: the AG Grid table keeps the DataTable's contract
    click(dash_duo, dash_duo.find_element("#market-add-bid"))
    wait_until(dash_duo, lambda: bid_ids(dash_duo) == ["U1", "U1", "U2", "NEW004"], 20, "added row not shown")
    boxes = dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-bids .ag-center-cols-container .ag-row .ag-checkbox-input, "
                                                           "#market-bids .ag-pinned-left-cols-container .ag-row .ag-checkbox-input")
    rows = dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-bids .ag-row .ag-selection-checkbox input")
    for box in (rows or boxes)[:2]:
        click(dash_duo, box)
    click(dash_duo, dash_duo.find_element("#market-delete-bids"))
    wait_until(dash_duo, lambda: sorted(bid_ids(dash_duo)) == ["NEW004", "U2"], 20, "selected rows not deleted")
    shot(dash_duo, artifacts / "08-bid-grid.png", "#market-bids")
    assert severe(dash_duo.get_logs()) == []


def visible_without_scrolling(browser, selector: str) -> bool:
    """Whether an element lies entirely inside the window with the page scrolled to the top."""
    return browser.driver.execute_script(
        "window.scrollTo({top: 0, behavior: 'instant'}); const r = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight + 1 && r.right <= window.innerWidth + 1;", selector)


def test_layout_fits_the_screen_and_results_go_outdated(dash_duo, artifacts):
    dash_duo.start_server(make_app())
    open_tab(dash_duo, "Market")
    wait_for_map(dash_duo, "market-map")
    # before clearing: no empty plot, a hint
    dash_duo.wait_for_contains_text("#market-tso-loading", "Clear the market", timeout=20)
    assert not dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-tso-loading .xtick")
    click(dash_duo, dash_duo.find_element("#market-clear"))
    dash_duo.wait_for_text_to_equal("#market-card-milp-delivered", "1.800 of 1.800 MW", timeout=CLEAR_TIMEOUT)
    wait_until(dash_duo, lambda: coloured(dash_duo, "market-map") > 50, 20, "map not coloured by the result")
    assert text(dash_duo, "#market-outdated") == ""
    heights = {}
    for width, height in ((1280, 800), (1920, 1080)):
        dash_duo.driver.set_window_size(width, height)
        inner = dash_duo.driver.execute_script("return window.innerHeight")
        wait_until(dash_duo, lambda: dash_duo.driver.execute_script("return window.innerWidth") == width, 10, "not resized")
        dash_duo.driver.save_screenshot(str(artifacts / f"10-market-{width}x{height}.png"))
        for selector in ("#market-cards", "#market-map"):
            rect = dash_duo.driver.execute_script("return JSON.stringify(document.querySelector(arguments[0]).getBoundingClientRect())", selector)
            assert visible_without_scrolling(dash_duo, selector), (width, height, inner, selector, rect)
        heights[inner] = dash_duo.driver.execute_script("return document.querySelector('#market-map').getBoundingClientRect().height")
        dash_duo.driver.save_screenshot(str(artifacts / f"10-market-{width}x{height}.png"))
        assert dash_duo.driver.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    (small_in, small), (large_in, large) = sorted(heights.items())
    assert large - small == pytest.approx(large_in - small_in, abs=8)  # the map grows with the viewport, not fixed

    # a change of the hour marks the shown results outdated; a new clearing makes them current again
    hour = dash_duo.find_element("#market-hour")
    hour.send_keys("\b\b17")
    dash_duo.wait_for_contains_text("#market-outdated", "Outdated", timeout=10)
    assert "outdated" in dash_duo.find_element("#market-results").get_attribute("class").split()
    dash_duo.driver.save_screenshot(str(artifacts / "11-market-outdated-1920x1080.png"))
    click(dash_duo, dash_duo.find_element("#market-clear"))
    wait_until(dash_duo, lambda: text(dash_duo, "#market-outdated") == "", CLEAR_TIMEOUT, "result stays outdated")
    assert "outdated" not in dash_duo.find_element("#market-results").get_attribute("class").split()
    dash_duo.driver.set_window_size(1400, 1000)

    # the violation table: a click on the worst row shows the merit order's map zoomed to that element
    wait_until(dash_duo, lambda: len(dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-violations .ag-row")) > 5, 20,
               "violation table empty")
    in_view = ("const m = document.querySelector('#market-map').getBoundingClientRect();"
               "return Array.from(document.querySelectorAll('#market-map path.leaflet-interactive')).filter(p => {"
               "const r = p.getBoundingClientRect(); return r.width > 0 && r.right > m.left && r.left < m.right"
               " && r.bottom > m.top && r.top < m.bottom; }).length;")
    before = dash_duo.driver.execute_script(in_view)
    first = dash_duo.driver.find_element(By.CSS_SELECTOR, '#market-violations .ag-row[row-index="0"] [col-id="element"]')
    element = first.text
    click(dash_duo, first)
    # zoomed in: far fewer elements in the map's view
    wait_until(dash_duo, lambda: dash_duo.driver.execute_script(in_view) < 0.5 * before, 20, "map does not zoom to the element")
    assert dash_duo.find_element('#market-method input[value="merit"]').is_selected()
    wait_until(dash_duo, lambda: violations(dash_duo, "market-map") > 0, 20, "merit order's violations not drawn")
    shot(dash_duo, artifacts / f"12-violation-zoom-{element.replace(' ', '-')}.png", "#market-map")
    assert severe(dash_duo.get_logs()) == []
