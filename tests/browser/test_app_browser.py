"""The demonstrator in real headless Chromium (dash[testing] ``dash_duo``).

Run: ``.venv/bin/python -m pytest tests/browser -m browser``. Screenshots go to
``test-artifacts/browser/`` (gitignored). The app is ``create_app()`` served by dash_duo's
threaded server; a round runs in the request (as in a gunicorn worker) with the running indicator.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains
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


MILP_MAP, MERIT_MAP = "market-milp-map", "market-merit-map"
FEED_IN_FILL = STYLES["feed_in"]["style"]["fillColor"]


def legend_keys(browser, map_id: str) -> tuple[list, list]:
    """``(style keys, scale keys)`` of a map's legend (the Market page's maps share ``#market-legend``), in their order."""
    legend = "#market-legend" if map_id.startswith("market-") else f"#{map_id.replace('-map', '-legend')}"
    return (browser.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' [data-style]')).map(e => e.dataset.style);", legend),
        browser.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' [data-scale]')).map(e => e.dataset.scale);", legend))


def wait_until(browser, condition, timeout: float, message: str):
    return WebDriverWait(browser.driver, timeout, poll_frequency=0.1).until(lambda _: condition(), message)


def wait_for_map(browser, map_id: str, timeout: float = 90) -> int:
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


def choose(browser, dropdown_id: str, value: str) -> None:
    """Pick ``value`` in a Dash 4 dropdown like a user: open it, type into its search box, click the option."""
    click(browser, browser.find_element(f"#{dropdown_id}"))
    search = WebDriverWait(browser.driver, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".dash-dropdown-content input.dash-dropdown-search"))
    search.send_keys(value)
    option = WebDriverWait(browser.driver, 10).until(lambda d: next(
        (o for o in d.find_elements(By.CSS_SELECTOR, ".dash-dropdown-content .dash-dropdown-option") if o.text.strip() == value), None))
    option.click()
    wait_until(browser, lambda: text(browser, f"#{dropdown_id}") == value, 10, f"{dropdown_id} does not show {value}")


def feed_in_at(browser, map_id: str) -> list[float]:
    """``[x, y]`` of the feed-in marker's centre in a map's own pixels: equal in two maps with one view."""
    return browser.driver.execute_script(
        "const m = document.getElementById(arguments[0]); const p = m.querySelector('path.leaflet-interactive[fill=\"' + arguments[1] + '\"]');"
        "const r = p.getBoundingClientRect(), c = m.getBoundingClientRect(); return [r.x + r.width / 2 - c.x, r.y + r.height / 2 - c.y];",
        map_id, FEED_IN_FILL)


def same_view(browser, a: str, b: str, tol_px: float = 1.5) -> bool:
    pa, pb = feed_in_at(browser, a), feed_in_at(browser, b)
    return abs(pa[0] - pb[0]) <= tol_px and abs(pa[1] - pb[1]) <= tol_px


def in_view(browser, map_id: str) -> int:
    """How many of a map's elements lie (partly) inside its visible frame."""
    return browser.driver.execute_script(
        "const m = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' path.leaflet-interactive')).filter(p => {"
        "const r = p.getBoundingClientRect(); return r.width > 0 && r.right > m.left && r.left < m.right"
        " && r.bottom > m.top && r.top < m.bottom; }).length;", map_id)


def hover_text(browser, map_id: str, selector: str, expect: str) -> str:
    """The tooltip Leaflet shows with the mouse on the first element of ``selector`` in a map's view.

    The mouse goes to a point where that element is on top (a bid marker sits on a building's centre).
    """
    browser.driver.execute_script(f"document.getElementById('{map_id}').scrollIntoView({{block: 'center', behavior: 'instant'}});")
    found = browser.driver.execute_script(
        "const m = document.getElementById(arguments[0]).getBoundingClientRect();"
        "const on = (e, x, y) => [[0, 0], [2, 0], [-2, 0], [0, 2], [0, -2]].every(([a, b]) => document.elementFromPoint(x + a, y + b) === e);"
        "const all = Array.from(document.querySelectorAll('#' + arguments[0] + ' ' + arguments[1])).map(e => [e, e.getBoundingClientRect()])"
        "  .filter(([e, r]) => r.width >= 6 && r.left >= m.left && r.right <= m.right && r.top >= m.top && r.bottom <= m.bottom)"
        "  .sort((a, b) => b[1].width * b[1].height - a[1].width * a[1].height);"  # the largest first: room beside a marker
        "for (const [e, r] of all) {"
        "  for (let i = 1; i < 8; i++) for (let j = 1; j < 8; j++) { const x = Math.round(r.left + r.width * i / 8), y = Math.round(r.top + r.height * j / 8);"
        "    if (on(e, x, y)) return [e, x - r.left, y - r.top]; } }"
        "return null;", map_id, selector)
    assert found, f"no element {selector} to hover in {map_id}"
    element, dx, dy = found
    # selenium 4.2 measures the offset from the element's top left corner
    ActionChains(browser.driver).move_to_element_with_offset(element, round(dx), round(dy)).perform()
    def tip() -> str:  # the tooltip that starts as expected (one of another element may still be closing)
        return next((t.text for t in browser.driver.find_elements(By.CSS_SELECTOR, ".leaflet-tooltip")
                     if t.text.startswith(expect)), "")

    wait_until(browser, tip, 10, f"no tooltip starting {expect!r}")
    return tip()


INTERNAL_KEYS = ("cluster", "lv_bus", "hv_bus", "sn_kva", "False", "None", "id 0", "kind")


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
    # readable tooltips and click details with the peak-load power flow, no internal keys
    tip = hover_text(dash_duo, "grid-map", f'{PATHS}[fill="{STYLES["building"]["style"]["fillColor"]}"]', "Building B")
    assert re.match(r"Building B\d{4}", tip) and "households:" in tip and re.search(r"voltage: \d\.\d{4} p\.u\.", tip), tip
    assert not [k for k in INTERNAL_KEYS if k in tip], tip
    station = dash_duo.driver.find_element(By.CSS_SELECTOR, f'#grid-map {PATHS}[fill="{STYLES["substation"]["style"]["fillColor"]}"]')
    click(dash_duo, station)
    dash_duo.wait_for_contains_text("#grid-details", "Substation S", timeout=10)
    details = text(dash_duo, "#grid-details")
    assert re.search(r"transformer loading \d+\.\d %", details) and re.search(r"0\.4 kV busbar voltage \d\.\d{4} p\.u\.", details), details
    assert not [k for k in INTERNAL_KEYS if k in details], details
    dash_duo.driver.save_screenshot(str(artifacts / "01b-grid-details.png"))
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
    for map_id in (MILP_MAP, MERIT_MAP):
        wait_for_map(dash_duo, map_id)
        assert coloured(dash_duo, map_id) == 0 and violations(dash_duo, map_id) == 0
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
    assert re.fullmatch(r"cost \d+\.\d\d €", text(dash_duo, "#market-card-merit-cost"))
    wait_until(dash_duo, lambda: dash_duo.find_element("#market-clear").is_enabled(), 10, "clear button stays disabled")
    assert "operating points" in text(dash_duo, "#market-tso-package")

    # both maps side by side, each redrawn with its method's power flow: the MILP's within every limit,
    # the merit order's congested (thick black edges)
    wait_until(dash_duo, lambda: coloured(dash_duo, MILP_MAP) > 50 and coloured(dash_duo, MERIT_MAP) > 50, 20,
               "maps not coloured by the result")
    assert violations(dash_duo, MILP_MAP) == 0
    wait_until(dash_duo, lambda: violations(dash_duo, MERIT_MAP) > 0, 20, "no congestion shown for the merit order")
    assert violations(dash_duo, MERIT_MAP) >= int(merit.group(1)) // 2
    assert text(dash_duo, "#market-milp-title") == "Grid-aware MILP (paper A)"
    assert text(dash_duo, "#market-merit-title") == "Grid-blind merit order"
    a, b = (dash_duo.find_element(f"#{i}").rect for i in (MILP_MAP, MERIT_MAP))
    assert a["x"] + a["width"] <= b["x"] and abs(a["width"] - b["width"]) <= 2 and abs(a["y"] - b["y"]) <= 1  # side by side
    # the legend is the result legend of the style table: both colour bars, every symbol
    assert legend_keys(dash_duo, MILP_MAP) == (legend_entries(True), legend_scales(True))
    assert paths(dash_duo, MILP_MAP, STYLES["bid_full"]["style"]["color"]) > 0  # activation markers on the buildings with a bid
    shot(dash_duo, artifacts / "02-market-compare.png", f"#{MILP_MAP}")

    # tooltips and click details of the result maps: readable names and power-flow values
    tip = hover_text(dash_duo, MERIT_MAP, f'path.{VIOLATION_CLASS}[fill]:not([fill="none"]):not([d*="a"])', "Building B")  # a polygon (no arc: not a station) beyond the band
    assert re.search(r"voltage: \d\.\d{4} p\.u\. - outside 0\.95-1\.05", tip) and tip.startswith("Building B"), tip
    marker = dash_duo.driver.find_element(By.CSS_SELECTOR, f'#{MERIT_MAP} {PATHS}[fill="{STYLES["bid_full"]["style"]["fillColor"]}"]')
    click(dash_duo, marker)
    dash_duo.wait_for_contains_text("#market-details", "Bid at building B", timeout=10)
    details = text(dash_duo, "#market-details")
    assert "on the map of the Grid-blind merit order" in details
    assert re.search(r"bid \d+\.\d kW", details) and re.search(r"activated \d+\.\d kW \(fully activated\)", details), details
    assert not [k for k in INTERNAL_KEYS if k in details + tip]
    # a recoloured building's details carry the result's values (the server reads them from the result)
    building = dash_duo.driver.find_element(By.CSS_SELECTOR, f'#{MERIT_MAP} path.{VIOLATION_CLASS}[fill]:not([fill="none"]):not([d*="a"])')
    # its bid marker covers the centre: the click goes to the polygon itself
    dash_duo.driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}));", building)
    dash_duo.wait_for_contains_text("#market-details", "Building B", timeout=10)
    details = text(dash_duo, "#market-details")
    assert re.search(r"voltage \d\.\d{4} p\.u\. - outside 0\.95-1\.05", details), details

    # synchronised: one extent; zooming one map, then dragging the other, moves both
    wait_until(dash_duo, lambda: same_view(dash_duo, MILP_MAP, MERIT_MAP), 10, "maps start with different views")
    before = feed_in_at(dash_duo, MERIT_MAP)
    click(dash_duo, dash_duo.driver.find_element(By.CSS_SELECTOR, f"#{MILP_MAP} .leaflet-control-zoom-in"))
    wait_until(dash_duo, lambda: feed_in_at(dash_duo, MERIT_MAP) != before and same_view(dash_duo, MILP_MAP, MERIT_MAP), 10,
               "zooming the MILP's map does not zoom the merit order's")
    before = feed_in_at(dash_duo, MILP_MAP)
    ActionChains(dash_duo.driver).drag_and_drop_by_offset(dash_duo.find_element(f"#{MERIT_MAP}"), 80, 40).perform()
    wait_until(dash_duo, lambda: abs(feed_in_at(dash_duo, MILP_MAP)[0] - before[0] - 80) < 3
               and same_view(dash_duo, MILP_MAP, MERIT_MAP), 10, "dragging the merit order's map does not move the MILP's")
    shot(dash_duo, artifacts / "03-market-synchronised.png", f"#{MILP_MAP}")

    # one map large: the merit order's alone, then the MILP's; the other map is hidden, nothing is redrawn
    width = dash_duo.find_element(f"#{MERIT_MAP}").rect["width"]
    click(dash_duo, dash_duo.find_element('#market-view input[value="single"]'))
    click(dash_duo, dash_duo.find_element('#market-method input[value="merit"]'))
    wait_until(dash_duo, lambda: not dash_duo.find_element(f"#{MILP_MAP}").is_displayed(), 10, "the MILP's map stays shown")
    wait_until(dash_duo, lambda: dash_duo.find_element(f"#{MERIT_MAP}").rect["width"] > 1.8 * width, 10, "the single map is not large")
    shot(dash_duo, artifacts / "04-market-single-merit.png", f"#{MERIT_MAP}")
    click(dash_duo, dash_duo.find_element('#market-method input[value="milp"]'))
    wait_until(dash_duo, lambda: dash_duo.find_element(f"#{MILP_MAP}").is_displayed()
               and not dash_duo.find_element(f"#{MERIT_MAP}").is_displayed(), 10, "the method does not pick the single map")
    # the map shown anew is resized to the large frame and drawn all over it, at the view seen before
    wait_until(dash_duo, lambda: in_view(dash_duo, MILP_MAP) > 100, 10, "the single MILP map is not drawn")
    assert violations(dash_duo, MILP_MAP) == 0
    click(dash_duo, dash_duo.find_element('#market-view input[value="compare"]'))
    wait_until(dash_duo, lambda: dash_duo.find_element(f"#{MERIT_MAP}").is_displayed()
               and same_view(dash_duo, MILP_MAP, MERIT_MAP), 10, "back side by side, the maps differ")
    for width, height in ((1280, 800), (1920, 1080)):
        dash_duo.driver.set_window_size(width, height)
        wait_until(dash_duo, lambda: dash_duo.driver.execute_script("return window.innerWidth") == width, 10, "not resized")
        dash_duo.driver.execute_script("window.scrollTo({top: 0, behavior: 'instant'});")
        dash_duo.driver.save_screenshot(str(artifacts / f"09-market-compare-{width}x{height}.png"))
        assert dash_duo.driver.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert text(dash_duo, "#market-running") == ""  # the indicator is off once the round is shown
    dash_duo.driver.set_window_size(1400, 1000)
    # the legend collapses and opens again
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
    wait_for_map(dash_br, MERIT_MAP)
    assert text(dash_br, "#market-cards") == ""
    assert violations(dash_br, MERIT_MAP) == 0 and coloured(dash_br, MERIT_MAP) == 0
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
    wait_for_map(dash_duo, MILP_MAP)
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

    # a .txt is refused with a message naming it (the picker has no type filter that would drop it silently)
    notes = tmp_path / "notes.txt"
    notes.write_text(GOOD_CSV)
    dash_duo.driver.find_element(By.CSS_SELECTOR, "#market-upload input[type=file]").send_keys(str(notes))
    dash_duo.wait_for_contains_text("#market-alert", "notes.txt: a .txt file is not a bid file", timeout=20)
    assert "upload a .csv or .json bid file" in text(dash_duo, "#market-alert")
    # a building the grid does not have is flagged at upload, with its line
    unknown = tmp_path / "unknown building.csv"
    unknown.write_text(GOOD_CSV.replace("B0003", "B9999"))
    dash_duo.driver.find_element(By.CSS_SELECTOR, "#market-upload input[type=file]").send_keys(str(unknown))
    dash_duo.wait_for_contains_text("#market-alert", "B9999", timeout=20)
    alert = text(dash_duo, "#market-alert")
    assert alert.startswith("unknown building.csv: 1 invalid row of 3")
    assert "line 4: building_id 'B9999' is not a building of this grid" in alert
    assert bid_ids(dash_duo) == ["U1", "U1", "U2"]

    not_csv = tmp_path / "photo.csv"  # named .csv but binary
    not_csv.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00")
    dash_duo.driver.find_element(By.CSS_SELECTOR, "#market-upload input[type=file]").send_keys(str(not_csv))
    dash_duo.wait_for_contains_text("#market-alert", "cannot read bid file", timeout=20)
    assert bid_ids(dash_duo) == ["U1", "U1", "U2"]

    # add a row (on top, on the first page), then select and delete the two rows below it
    click(dash_duo, dash_duo.find_element("#market-add-bid"))
    wait_until(dash_duo, lambda: bid_ids(dash_duo) == ["NEW001", "U1", "U1", "U2"], 20, "added row not shown on top")
    boxes = dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-bids .ag-center-cols-container .ag-row .ag-checkbox-input, "
                                                           "#market-bids .ag-pinned-left-cols-container .ag-row .ag-checkbox-input")
    rows = dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-bids .ag-row .ag-selection-checkbox input")
    for box in (rows or boxes)[1:3]:
        click(dash_duo, box)
    click(dash_duo, dash_duo.find_element("#market-delete-bids"))
    wait_until(dash_duo, lambda: sorted(bid_ids(dash_duo)) == ["NEW001", "U2"], 20, "selected rows not deleted")
    shot(dash_duo, artifacts / "08-bid-grid.png", "#market-bids")
    assert severe(dash_duo.get_logs()) == []


def visible_without_scrolling(browser, selector: str) -> bool:
    """Whether an element lies entirely inside the window with the page scrolled to the top."""
    return browser.driver.execute_script(
        "window.scrollTo({top: 0, behavior: 'instant'}); const r = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight + 1 && r.right <= window.innerWidth + 1;", selector)


COUNT_FOLLOW_JS = """
const ns = window.dash_clientside.digiplat_market;
window.__followCalls = 0;
const follow = ns.follow;
ns.follow = function () { window.__followCalls++; return follow.apply(this, arguments); };
"""
MOVE_BOTH_JS = """
const view = (center, zoom) => ({center: center, zoom: zoom, transition: 'setView', options: {animate: false}});
window.dash_clientside.set_props(arguments[0], {viewport: view([48.99, 8.47], 15)});
window.dash_clientside.set_props(arguments[1], {viewport: view([48.98, 8.46], 14)});
"""


def test_maps_moved_at_once_do_not_swap_views_forever(dash_duo):
    """Both maps moved in one tick (no user touch): before the fix each handed its view to the other
    for ever, a livelock that froze the browser (and made two CI runs time out)."""
    import threading

    dash_duo.start_server(make_app())
    open_tab(dash_duo, "Market")
    wait_for_map(dash_duo, MILP_MAP)
    wait_for_map(dash_duo, MERIT_MAP)
    dash_duo.driver.execute_script(COUNT_FOLLOW_JS)
    dash_duo.driver.execute_script(MOVE_BOTH_JS, MILP_MAP, MERIT_MAP)
    answer: list[int] = []
    # a frozen page never answers a script: ask from a thread and give it 30 s
    probe = threading.Thread(target=lambda: (__import__("time").sleep(3),
                                             answer.append(dash_duo.driver.execute_script("return window.__followCalls"))),
                             daemon=True)
    probe.start()
    probe.join(30)
    if not answer:
        import psutil

        # a frozen renderer would also hang the teardown's screenshot: end the browser first
        for child in psutil.Process(dash_duo.driver.service.process.pid).children(recursive=True):
            child.kill()
        pytest.fail("the page stopped answering after both maps moved at once (views swapped for ever)")
    assert answer[0] <= 4, f"{answer[0]} view hand-overs in 3 s after one programmatic move of each map"
    # the user's moves still move both maps
    before = feed_in_at(dash_duo, MERIT_MAP)
    click(dash_duo, dash_duo.driver.find_element(By.CSS_SELECTOR, f"#{MILP_MAP} .leaflet-control-zoom-in"))
    wait_until(dash_duo, lambda: feed_in_at(dash_duo, MERIT_MAP) != before and same_view(dash_duo, MILP_MAP, MERIT_MAP), 10,
               "zooming the MILP's map does not zoom the merit order's")
    assert severe(dash_duo.get_logs()) == []


def test_layout_fits_the_screen_and_results_go_outdated(dash_duo, artifacts):
    dash_duo.start_server(make_app())
    open_tab(dash_duo, "Market")
    wait_for_map(dash_duo, MILP_MAP)
    # before clearing: no empty plot, a hint
    dash_duo.wait_for_contains_text("#market-tso-loading", "Clear the market", timeout=20)
    assert not dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-tso-loading .xtick")
    click(dash_duo, dash_duo.find_element("#market-clear"))
    dash_duo.wait_for_text_to_equal("#market-card-milp-delivered", "1.800 of 1.800 MW", timeout=CLEAR_TIMEOUT)
    wait_until(dash_duo, lambda: coloured(dash_duo, MERIT_MAP) > 50, 20, "map not coloured by the result")
    assert text(dash_duo, "#market-outdated") == ""
    heights = {}
    for width, height in ((1280, 800), (1920, 1080)):
        dash_duo.driver.set_window_size(width, height)
        inner = dash_duo.driver.execute_script("return window.innerHeight")
        wait_until(dash_duo, lambda: dash_duo.driver.execute_script("return window.innerWidth") == width, 10, "not resized")
        # the cards, both maps and their legend without scrolling
        for selector in ("#market-cards", f"#{MILP_MAP}", f"#{MERIT_MAP}", "#market-legend"):
            rect = dash_duo.driver.execute_script("return JSON.stringify(document.querySelector(arguments[0]).getBoundingClientRect())", selector)
            assert visible_without_scrolling(dash_duo, selector), (width, height, inner, selector, rect)
        heights[inner] = dash_duo.driver.execute_script(f"return document.querySelector('#{MILP_MAP}').getBoundingClientRect().height")
        dash_duo.driver.save_screenshot(str(artifacts / f"10-market-{width}x{height}.png"))
        assert dash_duo.driver.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    (small_in, small), (large_in, large) = sorted(heights.items())
    assert large - small == pytest.approx(large_in - small_in, abs=8)  # the maps grow with the viewport, not fixed

    # a change of the time frame (a quarter hour) marks the shown results outdated; a new clearing makes them current
    choose(dash_duo, "market-time", "17:45")
    dash_duo.wait_for_contains_text("#market-outdated", "Outdated", timeout=10)
    assert "outdated" in dash_duo.find_element("#market-results").get_attribute("class").split()
    dash_duo.driver.save_screenshot(str(artifacts / "11-market-outdated-1920x1080.png"))
    click(dash_duo, dash_duo.find_element("#market-clear"))
    wait_until(dash_duo, lambda: text(dash_duo, "#market-outdated") == "", CLEAR_TIMEOUT, "result stays outdated")
    assert "outdated" not in dash_duo.find_element("#market-results").get_attribute("class").split()
    dash_duo.driver.set_window_size(1400, 1000)

    # the violation table: a click on the worst row zooms both maps to that element
    wait_until(dash_duo, lambda: len(dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-violations .ag-row")) > 5, 20,
               "violation table empty")
    before = {m: in_view(dash_duo, m) for m in (MILP_MAP, MERIT_MAP)}
    first = dash_duo.driver.find_element(By.CSS_SELECTOR, '#market-violations .ag-row[row-index="0"] [col-id="element"]')
    element = first.text
    assert element and not element.startswith(("bus ", "line "))  # a readable name, not a pandapower index
    click(dash_duo, first)
    for m in (MILP_MAP, MERIT_MAP):  # zoomed in: far fewer elements in each map's view
        wait_until(dash_duo, lambda: in_view(dash_duo, m) < 0.5 * before[m], 20, f"{m} does not zoom to the element")
    wait_until(dash_duo, lambda: same_view(dash_duo, MILP_MAP, MERIT_MAP), 10, "the two maps show different places")
    wait_until(dash_duo, lambda: violations(dash_duo, MERIT_MAP) > 0, 20, "merit order's violations not drawn")
    dash_duo.driver.execute_script("window.scrollTo({top: 0, behavior: 'instant'});")
    dash_duo.driver.save_screenshot(str(artifacts / f"12-violation-zoom-{re.sub(r'[^A-Za-z0-9]+', '-', element)}.png"))
    assert severe(dash_duo.get_logs()) == []
