"""The privacy page in real headless Chromium: recovered groups drawn on the map, scores, switching styles."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.browser.test_app_browser import click, make_app, open_tab, severe, text, wait_until

pytestmark = pytest.mark.browser

GROUP_PATHS = "#privacy-map path.leaflet-interactive"


def filled(browser) -> set[str]:
    return {e.get_attribute("fill") for e in browser.driver.find_elements(By.CSS_SELECTOR, GROUP_PATHS)}


def test_the_privacy_page_shows_what_each_package_gives_away(dash_duo, artifacts):
    from app.pages import privacy as page

    dash_duo.start_server(make_app())
    open_tab(dash_duo, "Privacy")
    dash_duo.wait_for_element("#privacy-map.leaflet-container", timeout=120)
    dash_duo.wait_for_contains_text("#privacy-caption", "6 substation groups", timeout=120)
    paper_colours = {page.group_color(k) for k in range(6)}
    wait_until(dash_duo, lambda: paper_colours <= filled(dash_duo), 30, "recovered groups not drawn")
    assert float(text(dash_duo, "#privacy-score-paper-substation_ari")) >= 0.9
    assert float(text(dash_duo, "#privacy-score-hardened-edge_recall")) <= 0.1
    dash_duo.driver.save_screenshot(str(artifacts / "privacy-paper.png"))

    click(dash_duo, dash_duo.driver.find_element(By.CSS_SELECTOR, "#privacy-style input[value='hardened']"))
    dash_duo.wait_for_contains_text("#privacy-caption", "hardened package (default", timeout=60)
    wait_until(dash_duo, lambda: len(dash_duo.driver.find_elements(By.CSS_SELECTOR, GROUP_PATHS)) > 100, 30,
               "map not redrawn")
    dash_duo.driver.save_screenshot(str(artifacts / "privacy-hardened.png"))

    # the envelopes hide the feeders the default's binding rows still show
    click(dash_duo, dash_duo.driver.find_element(By.CSS_SELECTOR, "#privacy-grouping input[value='feeder']"))
    click(dash_duo, dash_duo.driver.find_element(By.CSS_SELECTOR, "#privacy-style input[value='envelope']"))
    dash_duo.wait_for_contains_text("#privacy-caption", "operating envelopes", timeout=60)
    assert "LV feeders" in text(dash_duo, "#privacy-caption")
    assert float(text(dash_duo, "#privacy-score-envelope-feeder_ari")) <= 0.2 < \
        float(text(dash_duo, "#privacy-score-hardened-feeder_ari"))
    wait_until(dash_duo, lambda: len(dash_duo.driver.find_elements(By.CSS_SELECTOR, GROUP_PATHS)) > 100, 30,
               "map not redrawn")
    dash_duo.driver.save_screenshot(str(artifacts / "privacy-envelope.png"))
    assert severe(dash_duo.get_logs()) == []
