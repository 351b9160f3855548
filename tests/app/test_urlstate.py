"""The URL-state table (app/urlstate.py) and the guided tour's steps (app/tour.py), as plain functions."""

from __future__ import annotations

import dash
import pytest

from app import server, tour, urlstate
from app.urlstate import FIELDS, field, query_items, query_with, state, url_values

from tests.app.test_callbacks import by_id


# ------------------------------------------------------------------------------------ parsers
@pytest.mark.parametrize("text, hour", [("18:00", 18), ("18", 18), ("7:30", 7), ("07:45", 7), ("0:15", 0), ("23:45", 23)])
def test_time_maps_to_the_hour_of_the_hour_input(text, hour):
    assert urlstate.parse_hour(text) == hour


@pytest.mark.parametrize("text", ["25:00", "24:00", "18:10", "18:60", "-1", "abc", "", "18:00:00", "1e1"])
def test_bad_times_are_refused(text):
    assert urlstate.parse_hour(text) is None
    assert urlstate.parse_quarter_hour(text) is None


@pytest.mark.parametrize("text, hhmm", [("7", "07:00"), ("7:15", "07:15"), ("18:45", "18:45"), ("00:00", "00:00")])
def test_quarter_hours_are_normalised_for_a_time_input(text, hhmm):
    assert urlstate.parse_quarter_hour(text) == hhmm


@pytest.mark.parametrize("text, mw", [("1.8", 1.8), ("-0.6", -0.6), ("2", 2.0), ("1e-1", 0.1)])
def test_requests_in_mw(text, mw):
    assert urlstate.parse_request_mw(text) == pytest.approx(mw)


@pytest.mark.parametrize("text", ["abc", "0", "nan", "inf", "-inf", "", "1e9", "1,8"])
def test_bad_requests_are_refused(text):
    assert urlstate.parse_request_mw(text) is None


def test_choices_accept_only_their_values():
    assert [urlstate.parse_tab(t) for t in ("grid", "market", "validation", "nope", "")] == ["grid", "market", "validation", None, None]
    assert [urlstate.parse_day_type(d) for d in ("weekday", "weekend", "monday")] == ["weekday", "weekend", None]
    assert [urlstate.parse_method(m) for m in ("milp", "merit", "x")] == ["milp", "merit", None]
    assert [urlstate.parse_view(v) for v in ("compare", "single", "both")] == ["compare", "single", None]


def test_every_default_round_trips_through_its_field():
    for f in FIELDS:
        assert f.parse(f.text(f.default)) == f.default, f.key


def test_component_values_become_query_text():
    assert urlstate.hour_text(18) == "18:00" and urlstate.hour_text(7.0) == "07:00"
    assert [urlstate.hour_text(v) for v in (None, "", 24, 7.5, "x")] == [None] * 5
    assert urlstate.mw_text(1.8) == "1.8" and urlstate.mw_text(-0.25) == "-0.25"
    assert urlstate.mw_text(None) is None and urlstate.mw_text("") is None


# ------------------------------------------------------------------------------ query strings
def test_bad_values_fall_back_to_the_defaults():
    search = "?tab=nope&request_mw=abc&time=25:00&day=monday&method=x&view=y"
    assert url_values(search) == {}
    assert state(search) == {f.key: f.default for f in FIELDS}


def test_good_values_are_read():
    assert state("?tab=market&day=weekend&time=07:30&request_mw=-0.6&method=merit&view=single") == {
        "tab": "market", "day": "weekend", "time": "07:30", "request_mw": -0.6, "method": "merit", "view": "single"}


def test_query_with_keeps_other_keys_and_orders_the_table_first():
    assert query_with("?tour=2&method=merit", {"tab": "market", "method": None}) == "?tab=market&tour=2"
    assert query_with("", {"time": "18:00", "tab": "grid"}) == "?tab=grid&time=18:00"  # ':' stays readable
    assert query_with("?tab=grid", {"tab": None}) == ""
    assert query_items("?a=1&a=2&b=") == {"a": "1", "b": ""}  # a repeated key: the first value


def test_component_values_leave_the_tab_to_its_callback():
    values = urlstate.component_values("?tab=market&method=merit&time=25:00&view=single")
    assert values == [{"id": "market-method", "prop": "value", "value": "merit"},
                      {"id": "market-view", "prop": "value", "value": "single"}]


# ------------------------------------------------------------------------------------ layouts
@pytest.fixture(scope="module")
def market_page():
    return server.render_page("market", None)


def test_present_fields_skip_a_control_absent_from_the_layout(market_page):
    keys = [f.key for f in urlstate.present_fields("market", market_page)]
    assert keys == ["day", "time", "request_mw", "method", "view"]  # every control of the URL is on the Market page
    assert urlstate.present_fields("grid", market_page) == ()


def test_restored_layout_sets_the_controls(market_page):
    page = urlstate.restored_layout(server.render_page("market", None), "?day=weekend&time=07:45&request_mw=-0.6&method=merit")
    assert by_id(page, "market-day-type").value == "weekend"
    assert by_id(page, "market-time").value == "07:45"
    assert by_id(page, "market-request").value == pytest.approx(-0.6)
    assert by_id(page, "market-method").value == "merit"
    bad = urlstate.restored_layout(server.render_page("market", None), "?day=x&time=25:00&request_mw=abc&method=y")
    for key in ("day", "time", "request_mw", "method"):
        assert getattr(by_id(bad, field(key).component_id), "value") == field(key).default


def test_sync_tab_both_ways():
    # a tab click updates the URL's tab and leaves the tab alone
    assert urlstate.sync_tab("?day=weekend", "market", "tabs") == (dash.no_update, {"tab": "market"})
    assert urlstate.sync_tab("?tab=market", "market", "tabs") == (dash.no_update, dash.no_update)
    # the URL (a load, the tour) sets another valid tab, never the same one (that would render the page again)
    assert urlstate.sync_tab("?tab=validation", "grid", None) == ("validation", dash.no_update)
    assert urlstate.sync_tab("?tab=validation", "validation", "url") == (dash.no_update, dash.no_update)
    assert urlstate.sync_tab("?tab=nope", "grid", None) == (dash.no_update, dash.no_update)


def test_controls_update_only_their_own_keys_until_the_url_holds_them():
    fields = tuple(field(k) for k in ("day", "time", "request_mw", "method"))
    updates = urlstate.controls_update("?tab=market&tour=3", fields, "weekend", "07:00", 1.2, "merit")
    assert updates == {"day": "weekend", "time": "07:00", "request_mw": "1.2", "method": "merit"}  # no tab: a click meanwhile stays
    merged = query_with("?tab=market&tour=3", updates)
    assert merged == "?tab=market&day=weekend&time=07:00&request_mw=1.2&method=merit&tour=3"
    with pytest.raises(dash.exceptions.PreventUpdate):  # the same values again: the loop URL -> control -> URL ends
        urlstate.controls_update(merged, fields, "weekend", "07:00", 1.2, "merit")
    assert urlstate.controls_update(merged, fields, "weekend", "07:00", None, "merit")["request_mw"] is None  # an emptied input drops its key


# ----------------------------------------------------------------------------------------- tour
def test_every_tour_step_sets_valid_values():
    for number, step in enumerate(tour.STEPS, 1):
        assert step.sentence.count(". ") == 0 and step.sentence.endswith("."), step.title  # one sentence
        assert url_values(tour.search_for_step("", number)).keys() == step.values.keys(), step.title
    assert [tour.STEPS[0].values["tab"], tour.STEPS[4].values["tab"]] == ["grid", "validation"]
    assert tour.STEPS[2].values["method"] == "merit" and tour.STEPS[3].values["method"] == "milp"
    clears = [s.clear for s in tour.STEPS]
    assert clears[:2] == [False, False] and all(clears[2:])


def moved(trigger, current, search):
    """``(step, URL after the merge, control values)`` of a tour update, as the browser sees them."""
    step, updates, values = tour.tour_update(trigger, current, search)
    return step, (search if updates is dash.no_update else query_with(search, updates)), values


def test_tour_opens_from_the_url():
    assert [tour.step_from_search(s) for s in ("?tour=1", "?tour=3", "?tour=0", "?tour=99", "?tour=x", "")] == [1, 3, None, None, None, None]
    step, search, values = moved(None, None, "?tour=3")
    assert step == 3 and url_values(search) == url_values(tour.search_for_step("", 3))
    assert {"id": "market-method", "prop": "value", "value": "merit"} in values
    # a link's own values win over the step's; the step adds what the link lacks
    step, search, _ = moved(None, None, "?tour=3&method=milp")
    assert step == 3 and query_items(search)["method"] == "milp" and query_items(search)["tab"] == "market"
    assert tour.tour_update("url", 3, search) == (dash.no_update,) * 3  # the URL follows the tour: no loop
    assert tour.tour_update(None, None, "?tab=market") == (dash.no_update,) * 3  # no tour key: nothing to do


def test_tour_moves_and_closes():
    step, search, values = moved("tour-start", None, "?request_mw=1.2")
    assert step == 1 and query_items(search) == {"request_mw": "1.2", "tab": "grid", "tour": "1"}
    assert values == []  # the grid step sets no page control (the tab follows the URL)
    step, search, _ = moved("tour-next", 1, search)
    assert step == 2 and query_items(search)["tab"] == "market"
    step, search, values = moved("tour-next", 2, search)
    assert step == 3 and state(search)["method"] == "merit" and state(search)["request_mw"] == field("request_mw").default
    assert {"id": "market-request", "prop": "value", "value": field("request_mw").default} in values
    assert moved("tour-back", 3, search)[0] == 2
    assert tour.tour_update("tour-back", 1, tour.search_for_step("", 1)) == (dash.no_update,) * 3  # no step before the first
    last = len(tour.STEPS)
    step, search, values = moved("tour-next", last, tour.search_for_step("", last))  # Finish
    assert step is None and "tour" not in query_items(search) and values is dash.no_update
    step, search, _ = moved("tour-close", 4, tour.search_for_step("", 4))
    assert step is None and query_items(search)["tab"] == "market"  # closing keeps the state on screen
    assert tour.tour_update("url", 4, "?tab=market")[0] is None  # the URL lost its tour key (back button): closed


def test_tour_panel_and_payload():
    body, counter, root_class, back_disabled, next_label = tour.panel(3)
    assert counter == f"3 / {len(tour.STEPS)}" and root_class == "tour-open" and not back_disabled and next_label == "Next"
    assert tour.panel(1)[3] is True and tour.panel(len(tour.STEPS))[4] == "Finish"
    assert tour.panel(None)[2] == ""
    payload = tour.step_payload(3)
    assert payload["clear"] and {"id": "market-method", "prop": "value", "value": "merit"} in payload["values"]
    assert tour.step_payload(None) is None and tour.step_payload(1)["clear"] is False


def test_tour_round_clears_the_urls_round_with_the_sessions_bids():
    with pytest.raises(dash.exceptions.PreventUpdate):
        tour.tour_round(None, "?tour=5", None, None)
    result = tour.tour_round({"step": 5}, "?tab=validation&tour=5&request_mw=abc&time=25:00", None, None)  # bad values: defaults
    assert result["time_frame"]["day_type"] == field("day").default and result["time_frame"]["start"] == field("time").default
    assert result["request_mw"] == pytest.approx(field("request_mw").default)
    assert result["milp"]["summary"]["delivered_mw"] == pytest.approx(field("request_mw").default, abs=1e-6)
    with pytest.raises(dash.exceptions.PreventUpdate):  # a round that fails (no bid can deliver) leaves the result
        tour.tour_round({"step": 5}, "?request_mw=1.8", None, [])
