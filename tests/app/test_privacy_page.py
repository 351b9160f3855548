"""Privacy page: the attack results drawn on the DSO's map, the score table, the callback (no browser)."""

from __future__ import annotations

import pytest

from app.pages import privacy as page


def _geojson() -> dict:
    def building(bid: str) -> dict:
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[8.46, 48.97], [8.461, 48.97],
                                                                                   [8.461, 48.971], [8.46, 48.97]]]},
                "properties": {"kind": "building", "building_id": bid}}

    street = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[8.46, 48.97], [8.47, 48.98]]},
              "properties": {"kind": "street"}}
    return {"type": "FeatureCollection", "features": [building("B1"), building("B2"), building("B3"), street]}


def test_buildings_take_the_colour_of_their_recovered_group() -> None:
    out = page.coloured_geojson(_geojson(), {"B1": 0, "B2": 0, "B3": 5})
    fills = {f["properties"]["building_id"]: f["properties"]["style"]["fillColor"] for f in out["features"]}
    assert fills["B1"] == fills["B2"] == page.group_color(0) != fills["B3"] == page.group_color(5)
    assert [f["properties"]["group"] for f in out["features"]] == [0, 0, 5]  # only buildings, in order
    lonely = page.coloured_geojson(_geojson(), {"B1": 1})
    assert [f["properties"]["group"] for f in lonely["features"]] == [1, None, None]
    assert "no bid" in lonely["features"][1]["properties"]["tooltip"]


@pytest.fixture(scope="module")
def results():
    return {style: page.attack_result(style) for style, _ in page.STYLES}


def test_the_page_compares_what_each_package_gives_away(results) -> None:
    paper, hard, envelope = (results[s]["scores"] for s in ("paper", "hardened", "envelope"))
    assert paper["substation_ari"] >= 0.9 and paper["edge_recall"] >= 0.5
    assert hard["edge_recall"] <= 0.1 and envelope["edge_recall"] <= 0.1
    assert envelope["substation_ari"] <= 0.2 and envelope["feeder_ari"] <= 0.2 < hard["feeder_ari"]
    assert paper["id_inversion_rate"] == 1.0 and hard["id_inversion_rate"] < 0.035  # chance level
    assert results["paper"]["groups"]["substation"] == 6
    assert len(results["paper"]["substation"]) == len(results["hardened"]["substation"]) > 100  # buildings with a bid


def test_the_callback_draws_the_groups_and_the_scores(results) -> None:
    from app import session

    map_div, caption, table = page.show_privacy("paper", "substation")
    geo = {c.id: c for c in map_div.children.children}
    groups = geo[f"{page.PREFIX}layer-groups"].data["features"]
    n_bid = sum(1 for f in groups if f["properties"]["group"] is not None)
    assert n_bid == len(results["paper"]["substation"])
    assert len({f["properties"]["style"]["fillColor"] for f in groups if f["properties"]["group"] is not None}) == 6
    assert len(groups) == sum(1 for f in session.default_grid().geojson["features"]
                              if f["properties"]["kind"] == "building")
    assert "6 substation groups" in caption and "1.000" in caption
    cells = {c.id: c.children for row in table.children[1].children for c in row.children if getattr(c, "id", None)}
    assert float(cells[f"{page.PREFIX}score-paper-substation_ari"]) >= 0.9
    assert float(cells[f"{page.PREFIX}score-envelope-feeder_ari"]) <= 0.2
    assert float(cells[f"{page.PREFIX}score-hardened-edge_recall"]) <= 0.1
    _, env_caption, _ = page.show_privacy("envelope", "feeder")
    assert env_caption.startswith("operating envelopes") and "LV feeders" in env_caption
    # unknown inputs fall back to the defaults instead of failing
    assert page.show_privacy(None, "nonsense")[1] == caption


def test_the_page_layout_has_its_controls() -> None:
    text = str(page.layout())
    for name in ("style", "grouping", "map-holder", "table-holder", "caption"):
        assert f"{page.PREFIX}{name}" in text
