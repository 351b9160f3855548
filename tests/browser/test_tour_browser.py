"""Shareable state (app/urlstate.py), kept bids (app/bidstore.py) and the guided tour (app/tour.py)
in real headless Chromium.

Run: ``.venv/bin/python -m pytest tests/browser/test_tour_browser.py -m browser``. Screenshots of two
tour steps at 1280x800 and 1920x1080 go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from app import tour, urlstate
from tests.browser.test_app_browser import (CLEAR_TIMEOUT, GOOD_CSV, bid_ids, click, make_app, open_tab, severe, text,
                                            violations, wait_for_map, wait_until)

pytestmark = pytest.mark.browser
REQUEST_MW = urlstate.field("request_mw").default  # the tour's default round
DELIVERED = f"{REQUEST_MW:.3f} of {REQUEST_MW:.3f} MW"  # the MILP delivers all of it (the card's text)


def query(browser) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(browser.driver.current_url).query))


def value(browser, selector: str) -> str:
    return browser.find_element(selector).get_attribute("value")


def method(browser) -> str:
    return browser.driver.execute_script("var e = document.querySelector('#market-method input:checked'); return e && e.value;")


def active_tab(browser) -> str:
    return browser.driver.execute_script("var e = document.querySelector('#tabs .nav-link.active, .nav-tabs .nav-link.active');"
                                         " return e && e.textContent.trim();")


def page_loads(browser) -> int:
    """A counter kept in the window: a full page reload resets it (URL updates must not reload)."""
    return browser.driver.execute_script("return window.__digiplat_loads_marker || 0;")


def test_url_restores_state_and_follows_the_controls(dash_duo):
    dash_duo.start_server(make_app())
    base = dash_duo.server_url
    dash_duo.driver.get(f"{base}/?tab=market&day=weekend&time=07:30&request_mw=-0.6&method=merit&view=single")
    wait_for_map(dash_duo, "market-milp-map")
    assert active_tab(dash_duo) == "Market"
    wait_until(dash_duo, lambda: text(dash_duo, "#market-time") == "07:30", 10, "time not restored")
    assert text(dash_duo, "#market-day-type") == "weekend"
    assert float(value(dash_duo, "#market-request")) == pytest.approx(-0.6)
    assert method(dash_duo) == "merit"
    # the URL now names every control of the page; the single view shows the merit order's map alone
    wait_until(dash_duo, lambda: not dash_duo.find_element("#market-milp-map").is_displayed(), 10, "the single view is not restored")
    assert dash_duo.find_element("#market-merit-map").is_displayed()
    wait_until(dash_duo, lambda: query(dash_duo).get("time") == "07:30", 10, "URL not written from the controls")
    assert query(dash_duo) == {"tab": "market", "day": "weekend", "time": "07:30", "request_mw": "-0.6", "method": "merit",
                               "view": "single"}

    # a control change writes the URL without reloading the page
    dash_duo.driver.execute_script("window.__digiplat_loads_marker = 1;")
    click(dash_duo, dash_duo.find_element('#market-method input[value="milp"]'))
    wait_until(dash_duo, lambda: query(dash_duo).get("method") == "milp", 10, "method not written to the URL")
    request = dash_duo.find_element("#market-request")
    request.send_keys(Keys.CONTROL, "a")
    request.send_keys("1.2")
    wait_until(dash_duo, lambda: query(dash_duo).get("request_mw") == "1.2", 10, "request not written to the URL")
    open_tab(dash_duo, "Validation")
    wait_until(dash_duo, lambda: query(dash_duo).get("tab") == "validation", 10, "tab not written to the URL")
    assert page_loads(dash_duo) == 1  # no reload happened

    # a reload restores the tab and the controls
    dash_duo.driver.refresh()
    dash_duo.wait_for_element("#validation-empty", timeout=30)
    assert active_tab(dash_duo) == "Validation"
    open_tab(dash_duo, "Market")
    wait_for_map(dash_duo, "market-milp-map")
    wait_until(dash_duo, lambda: value(dash_duo, "#market-request") == "1.2", 10, "request not restored")
    assert method(dash_duo) == "milp" and text(dash_duo, "#market-time") == "07:30"
    assert severe(dash_duo.get_logs()) == []


def test_bad_query_values_fall_back_to_defaults(dash_duo):
    dash_duo.start_server(make_app())
    dash_duo.driver.get(f"{dash_duo.server_url}/?tab=nope&request_mw=abc&time=25:00&method=x&day=monday")
    wait_for_map(dash_duo, "grid-map")  # an unknown tab: the first page
    assert active_tab(dash_duo) == "Grid"
    open_tab(dash_duo, "Market")
    wait_for_map(dash_duo, "market-milp-map")
    assert text(dash_duo, "#market-time") == urlstate.field("time").default
    assert float(value(dash_duo, "#market-request")) == pytest.approx(urlstate.field("request_mw").default)
    assert method(dash_duo) == urlstate.field("method").default
    assert text(dash_duo, "#market-day-type") == urlstate.field("day").default
    assert not [e for e in dash_duo.driver.find_elements(By.CSS_SELECTOR, "#market-alert") if e.is_displayed()]
    assert severe(dash_duo.get_logs()) == []
    assert not dash_duo.driver.find_elements(By.CSS_SELECTOR, ".dash-debug-alert")


def test_uploaded_bids_survive_a_reload(dash_duo, tmp_path):
    dash_duo.start_server(make_app())
    dash_duo.driver.get(f"{dash_duo.server_url}/?tab=market")
    wait_for_map(dash_duo, "market-milp-map")
    good = tmp_path / "good.csv"
    good.write_text(GOOD_CSV)
    dash_duo.driver.find_element(By.CSS_SELECTOR, "#market-upload input[type=file]").send_keys(str(good))
    wait_until(dash_duo, lambda: bid_ids(dash_duo) == ["U1", "U1", "U2"], 20, "uploaded bids not shown")
    assert "U1" not in dash_duo.driver.current_url  # the bids are not in the URL
    token = dash_duo.driver.execute_script("return JSON.parse(window.sessionStorage.getItem('session-token'));")
    from app import bidstore

    wait_until(dash_duo, lambda: [r["bid_id"] for r in bidstore.load_bids(token) or []] == ["U1", "U1", "U2"], 10,
               "bids not kept on the server")
    dash_duo.driver.refresh()
    wait_for_map(dash_duo, "market-milp-map")
    wait_until(dash_duo, lambda: bid_ids(dash_duo) == ["U1", "U1", "U2"], 20, "uploaded bids lost by the reload")
    assert severe(dash_duo.get_logs()) == []
    # another browser tab is another session: the default bids, not this session's
    first = dash_duo.driver.current_window_handle
    dash_duo.driver.switch_to.new_window("tab")
    dash_duo.driver.get(f"{dash_duo.server_url}/?tab=market")
    wait_for_map(dash_duo, "market-milp-map")
    wait_until(dash_duo, lambda: len(bid_ids(dash_duo)) == 12 and bid_ids(dash_duo)[0] == "A0001", 20, "new tab got another session's bids")
    dash_duo.driver.close()
    dash_duo.driver.switch_to.window(first)


def tour_state(browser) -> dict:
    return browser.driver.execute_script(
        "var p = document.getElementById('tour-panel'); var t = document.getElementById('tour-title');"
        "return {shown: !!p && p.offsetHeight > 0, title: t ? t.textContent.trim() : null,"
        " counter: (document.getElementById('tour-counter') || {}).textContent || ''};")


def wait_for_step(browser, number: int) -> None:
    title = tour.STEPS[number - 1].title
    wait_until(browser, lambda: tour_state(browser) == {"shown": True, "title": title, "counter": f"{number} / {len(tour.STEPS)}"},
               20, f"tour not at step {number} ({title})")
    wait_until(browser, lambda: tour.step_from_search("?" + urlsplit(browser.driver.current_url).query) == number, 10,
               f"URL not at step {number}")


def press(browser, key: str) -> None:
    """Press a key on the page (not in an input), as a presenter does."""
    from selenium.webdriver.common.action_chains import ActionChains

    browser.driver.execute_script("document.activeElement && document.activeElement.blur();")
    ActionChains(browser.driver).send_keys(key).perform()


def screenshots(browser, artifacts, name: str, selector: str) -> None:
    """Screenshots at a laptop's and a projector's size; the panel and ``selector`` fit the window."""
    for width, height in ((1280, 800), (1920, 1080)):
        browser.driver.set_window_size(width, height)
        wait_until(browser, lambda: browser.driver.execute_script("return window.innerWidth") == width, 10, "window not resized")
        browser.driver.execute_script("window.scrollTo({top: 0, behavior: 'instant'});")
        browser.driver.execute_script("return new Promise(r => setTimeout(r, 400));")  # the map follows its frame
        browser.driver.save_screenshot(str(artifacts / f"tour-{name}-{width}x{height}.png"))
        panel = browser.find_element("#tour-panel").rect
        target = browser.find_element(selector).rect
        assert panel["y"] == 0 and panel["height"] <= 100  # the panel takes the header's place only
        assert target["y"] >= panel["y"] + panel["height"]  # it covers nothing of the map
        assert target["y"] + target["height"] <= browser.driver.execute_script("return window.innerHeight") + 1
    browser.driver.set_window_size(1400, 1000)


def test_tour_moves_by_keys_and_buttons_and_drives_the_app(dash_duo, artifacts):
    dash_duo.start_server(make_app())
    dash_duo.driver.get(f"{dash_duo.server_url}/?tour=1")
    wait_for_step(dash_duo, 1)
    wait_for_map(dash_duo, "grid-map")
    assert active_tab(dash_duo) == "Grid"
    assert dash_duo.find_element("#tour-back").get_attribute("disabled") is not None  # no step before the first
    assert not dash_duo.find_element(".digiplat-header").is_displayed()  # the panel takes the header's place

    press(dash_duo, Keys.ARROW_RIGHT)
    wait_for_step(dash_duo, 2)
    wait_for_map(dash_duo, "market-milp-map")
    assert active_tab(dash_duo) == "Market" and method(dash_duo) == "milp"

    press(dash_duo, Keys.ARROW_RIGHT)  # the merit order congests: the tour clears the default round itself
    wait_for_step(dash_duo, 3)
    wait_until(dash_duo, lambda: method(dash_duo) == "merit", 10, "method not set by the tour")
    dash_duo.wait_for_text_to_equal("#market-card-milp-delivered", DELIVERED, timeout=CLEAR_TIMEOUT)
    merit = re.fullmatch(r"(\d+) violations in the AC power flow", text(dash_duo, "#market-card-merit-violations"))
    assert merit and int(merit.group(1)) > 0
    wait_until(dash_duo, lambda: violations(dash_duo, "market-merit-map") > 0, 20, "merit order's violations not on the map")
    assert query(dash_duo)["method"] == "merit"
    screenshots(dash_duo, artifacts, "3-merit-order", "#market-merit-map")

    press(dash_duo, Keys.ARROW_LEFT)
    wait_for_step(dash_duo, 2)
    click(dash_duo, dash_duo.find_element("#tour-next"))
    wait_for_step(dash_duo, 3)
    click(dash_duo, dash_duo.find_element("#tour-next"))  # the MILP clears clean: same result, other method
    wait_for_step(dash_duo, 4)
    wait_until(dash_duo, lambda: method(dash_duo) == "milp", 10, "method not set back by the tour")
    wait_until(dash_duo, lambda: violations(dash_duo, "market-milp-map") == 0, 20, "MILP map still shows violations")
    assert text(dash_duo, "#market-card-milp-violations") == "0 violations in the AC power flow"
    screenshots(dash_duo, artifacts, "4-milp", "#market-milp-map")

    press(dash_duo, Keys.PAGE_DOWN)  # a presenter's clicker
    wait_for_step(dash_duo, 5)
    wait_until(dash_duo, lambda: active_tab(dash_duo) == "Validation", 10, "validation tab not shown")
    dash_duo.wait_for_element("#validation-metrics", timeout=20)  # the tour's result, validated
    press(dash_duo, Keys.ARROW_RIGHT)
    wait_for_step(dash_duo, 6)
    wait_until(dash_duo, lambda: "operating points" in text(dash_duo, "#market-tso-package"), 20, "TSO package not shown")

    press(dash_duo, Keys.ESCAPE)
    wait_until(dash_duo, lambda: not tour_state(dash_duo)["shown"], 10, "Esc does not close the tour")
    assert "tour" not in query(dash_duo)
    assert dash_duo.find_element(".digiplat-header").is_displayed()
    click(dash_duo, dash_duo.find_element("#tour-start"))  # the navbar's button starts it again
    wait_for_step(dash_duo, 1)
    wait_until(dash_duo, lambda: active_tab(dash_duo) == "Grid", 10, "tour start does not show the grid")
    assert severe(dash_duo.get_logs()) == []


def test_a_link_to_the_validation_step_clears_the_round_itself(dash_duo):
    dash_duo.start_server(make_app())
    dash_duo.driver.get(f"{dash_duo.server_url}/?tour=5")
    wait_for_step(dash_duo, 5)
    assert active_tab(dash_duo) == "Validation"
    dash_duo.wait_for_element("#validation-metrics", timeout=CLEAR_TIMEOUT)  # no Clear button here: the server cleared
    assert text(dash_duo, "#validation-empty") == ""
    press(dash_duo, Keys.ARROW_RIGHT)  # the Market tab then shows that round
    wait_for_step(dash_duo, 6)
    dash_duo.wait_for_text_to_equal("#market-card-milp-delivered", DELIVERED, timeout=30)
    assert severe(dash_duo.get_logs()) == []
