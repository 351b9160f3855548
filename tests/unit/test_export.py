"""The export files of a market round (app/export.py): they parse, agree with the round, carry the credit.

One Bergwald round (weekday 18:00, 1.8 MW up, 3 operating points) is cleared by both methods
once per module: the grid-aware MILP clears clean, the grid-blind merit order congests.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from app import export
from app.export import EXPORT_FILES, MarketRound

CREDIT = "Map data © OpenStreetMap contributors, ODbL 1.0"
REQUEST_MW = 1.8


@pytest.fixture(scope="module")
def linearization(bergwald_grid):
    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    scenario = scenario_from_grid(bergwald_grid, ScenarioConfig().with_time_frame(day_type="weekday", hour=18))
    return scenario, linearize(bergwald_grid, scenario, config=LinearizationConfig(n_points=3))


@pytest.fixture(scope="module")
def bergwald_round(bergwald_grid, linearization) -> MarketRound:
    from optim.market import clear_market
    from optim.tso.bids import bids_from_frame

    scenario, lin = linearization
    bids = bids_from_frame(scenario.bids, package=lin.package)
    outcomes = {m: clear_market(bergwald_grid, scenario, bids, REQUEST_MW, method=m, linearization=lin)
                for m in ("milp", "merit-order")}
    return MarketRound(grid=bergwald_grid, scenario=scenario, bids=bids, request_mw=REQUEST_MW, outcomes=outcomes)


@pytest.fixture(scope="module")
def files(bergwald_round) -> dict[str, bytes]:
    return export.export_files(bergwald_round)


def csv_frame(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), comment="#", keep_default_na=False)  # an empty name stays ""


# ------------------------------------------------------------------------------------ all files
def test_every_file_is_there_and_carries_the_credit(files):
    assert tuple(files) == EXPORT_FILES
    for name in ("activations.csv", "violations.csv"):
        assert files[name].decode("utf-8").splitlines()[0] == f"# {CREDIT}"
    for name in ("grid_results.geojson", "grid_results.json"):
        assert json.loads(files[name])["attribution"] == CREDIT
    page = files["report.html"].decode("utf-8")
    footer = re.search(r"<footer id='credit'>(.*?)</footer>", page)
    assert footer and CREDIT in footer.group(1)


def test_the_round_names_its_methods_milp_and_merit_order(bergwald_round):
    assert list(bergwald_round.outcomes) == ["milp", "merit_order"]
    assert bergwald_round.outcomes["milp"].validation.n_violations == 0
    assert bergwald_round.outcomes["merit_order"].validation.n_violations > 0  # the congestion story


# ------------------------------------------------------------------------------------ activations
def test_activations_sum_to_the_clearings_per_bid_and_per_building(files, bergwald_round):
    frame = csv_frame(files["activations.csv"])
    assert tuple(frame.columns) == export.ACTIVATION_COLUMNS
    n_rows = len(bergwald_round.bids.rows)
    assert len(frame) == 2 * n_rows and set(frame.method) == {"milp", "merit_order"}
    for method, outcome in bergwald_round.outcomes.items():
        rows = frame[frame.method == method]
        c = outcome.clearing
        per_bid = rows.groupby("bid_id").activated_mw.sum()
        for a in c.activations:
            assert per_bid[a["bid_id"]] == pytest.approx(a["activated_mw"], abs=1e-8)
        assert rows.activated_mw.sum() == pytest.approx(c.delivered_mw, abs=1e-7)
        assert rows.cost_eur.sum() == pytest.approx(c.cost_eur, rel=1e-6, abs=1e-6)
        assert (rows.activated_mw.abs() <= rows.offered_mw.abs() + 1e-9).all()
        # per building: the app's own view of the same outcome (the map's activation markers)
        from app.session import _outcome_view

        view = _outcome_view(outcome, bergwald_round.grid, bergwald_round.bids)["buildings"]
        per_building = rows.groupby("building_id").activated_mw.sum()
        assert set(per_building.index) == set(view)
        for building, entry in view.items():
            assert per_building[building] == pytest.approx(entry["activated_mw"], abs=1e-6)


def test_a_hash_in_a_text_field_survives_the_comment_line(bergwald_round):
    from dataclasses import replace

    from optim.tso.bids import BidTable

    first = bergwald_round.bids.rows[0].bid_id
    rows = [replace(r, aggregator="Agg #1") if r.bid_id == first else r for r in bergwald_round.bids.rows]
    rnd = replace(bergwald_round, bids=BidTable(rows=tuple(rows)))
    frame = csv_frame(export._csv_bytes(export.activations_frame(rnd)))
    assert len(frame) == 2 * len(rows)
    assert (frame.aggregator[frame.bid_id == first] == "Agg #1").all()


# ------------------------------------------------------------------------------------ violations
def test_violations_are_the_validations(files, bergwald_round):
    frame = csv_frame(files["violations.csv"])
    assert tuple(frame.columns) == export.VIOLATION_COLUMNS
    merit = bergwald_round.outcomes["merit_order"].validation
    assert (frame.method == "milp").sum() == 0
    rows = frame[frame.method == "merit_order"]
    assert len(rows) == merit.n_violations
    expected = {(v.element, v.index, v.quantity): (v.value, v.limit) for v in merit.violations}
    for r in rows.itertuples():
        value, limit = expected[(r.element, r.index, r.quantity)]
        assert r.value == pytest.approx(value, rel=1e-9) and r.limit == pytest.approx(limit)
        assert (r.value > r.limit) if r.quantity == "loading_percent" or r.value > 1 else (r.value < r.limit)
    excess = (rows.value - rows.limit).abs() / rows.limit.abs()
    assert list(excess) == sorted(excess, reverse=True)  # worst first
    net = bergwald_round.outcomes["merit_order"].net
    for r in rows.itertuples():  # names of the grid's elements (DSO side)
        assert r.name == (getattr(net, r.element).at[r.index, "name"] or "")


# ------------------------------------------------------------------------------------ grid results
def test_geojson_features_hold_the_power_flow_of_each_method(files, bergwald_round):
    data = json.loads(files["grid_results.geojson"])
    assert data["type"] == "FeatureCollection" and data["round"]["request_mw"] == REQUEST_MW
    kinds = {f["properties"]["kind"] for f in data["features"]}
    assert kinds == set(export.GRID_KINDS)
    for f in data["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"] in ("Polygon", "LineString", "Point")
    for method, outcome in bergwald_round.outcomes.items():
        net = outcome.net
        bad_buses = {v.index for v in outcome.validation.violations if v.element == "bus"}
        flagged = 0
        for f in data["features"]:
            p = f["properties"]
            if p["kind"] == "building":
                assert p[f"{method}_vm_pu"] == pytest.approx(net.res_bus.vm_pu[p["bus"]], abs=1e-6)
                flagged += p[f"{method}_violation"]
                assert p[f"{method}_violation"] == (p["bus"] in bad_buses)
            elif p["kind"] in ("lv_line", "service", "mv_line") and not p["normally_open"]:
                assert p[f"{method}_loading_percent"] == pytest.approx(net.res_line.loading_percent[p["line"]], abs=1e-4)
            elif p["kind"] == "substation":
                assert p[f"{method}_loading_percent"] == pytest.approx(net.res_trafo.loading_percent[p["trafo"]], abs=1e-4)
        if method == "merit_order":
            assert flagged > 0
    activated = sum(f["properties"]["milp_activated_mw"] for f in data["features"] if f["properties"]["kind"] == "building")
    assert activated == pytest.approx(bergwald_round.outcomes["milp"].clearing.delivered_mw, abs=1e-6)


def test_pandapower_json_loads_back_with_the_results(files, bergwald_round):
    import pandapower as pp

    data = json.loads(files["grid_results.json"])
    assert set(data["nets"]) == {"milp", "merit_order"}
    for method, outcome in bergwald_round.outcomes.items():
        net = pp.from_json_string(json.dumps(data["nets"][method]))
        np.testing.assert_allclose(net.res_bus.vm_pu.to_numpy(), outcome.net.res_bus.vm_pu.to_numpy(), atol=1e-9)
        np.testing.assert_allclose(net.res_line.loading_percent.to_numpy(),
                                   outcome.net.res_line.loading_percent.to_numpy(), atol=1e-7)
        s = data["round"]["methods"][method]
        assert s["delivered_mw"] == pytest.approx(outcome.clearing.delivered_mw)
        assert s["validation"]["violations"] == outcome.validation.n_violations


# ------------------------------------------------------------------------------------ report
class _Page(HTMLParser):
    """The ids of the page's elements, its script sources and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.sources: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
        if tag in ("script", "img", "iframe") and a.get("src"):
            self.sources.append(a["src"])
        if tag == "link":
            self.links.append(a.get("href", ""))

    def handle_data(self, data):
        self.text.append(data)


def test_report_is_one_self_contained_page_with_cards_maps_and_validation(files, bergwald_round):
    page = files["report.html"].decode("utf-8")
    parser = _Page()
    parser.feed(page)
    assert parser.sources == [] and parser.links == []  # nothing loaded from elsewhere
    assert page.count("window.PlotlyConfig") == 1  # plotly.js inline, once
    for div in ("map-milp", "map-merit_order", "validation-vm", "validation-loading", "table-i", "credit"):
        assert div in parser.ids, div
    text = " ".join(parser.text)
    for method, outcome in bergwald_round.outcomes.items():
        s = outcome.summary()
        assert f"{s['delivered_mw']:.3f} of {s['requested_mw']:.3f} MW" in text
        assert f"cost {s['cost_eur']:.2f} €" in text
        assert f"{s['validation']['violations']} violations in the AC power flow" in text
    milp = bergwald_round.outcomes["milp"]
    assert f"linearization point {milp.clearing.chosen_point} ({milp.clearing.chosen_point_label})" in text
    assert f"{milp.validation.vm_mae_pu:.2e}" in text and f"{milp.validation.critical_loading_rmse_percent:.2e}" in text
    assert "weekday 18:00" in text and f"P_E = {REQUEST_MW:g} MW" in text


def test_map_figure_colours_by_loading_and_marks_violations(bergwald_round):
    activations = export.activations_frame(bergwald_round)
    merit = export.map_figure(bergwald_round, "merit_order", activations)
    names = [t.name for t in merit.data]
    assert "line beyond its limit" in names  # the merit order overloads a feeder
    buildings = next(t for t in merit.data if t.name.startswith("building"))
    vm = bergwald_round.outcomes["merit_order"].net.res_bus.vm_pu
    assert max(buildings.marker.color) == pytest.approx(vm[bergwald_round.grid.buildings.bus].max(), abs=1e-9)
    outlined = sum(1 for w in buildings.marker.line.width if w > 1)
    bad_buses = {v.index for v in bergwald_round.outcomes["merit_order"].validation.violations if v.element == "bus"}
    assert outlined == int(bergwald_round.grid.buildings.bus.isin(bad_buses).sum()) > 0
    milp = export.map_figure(bergwald_round, "milp", activations)
    assert "line beyond its limit" not in [t.name for t in milp.data]


# ------------------------------------------------------------------------------------ zip, infeasible
def test_zip_holds_the_same_files_in_a_folder_named_by_the_round(files, bergwald_round):
    name = export.export_name(bergwald_round)
    assert name == "digiplat-round_weekday_18-00_1.8MW"
    with zipfile.ZipFile(io.BytesIO(export.export_zip(bergwald_round, files))) as zf:
        assert zf.namelist() == [f"{name}/{f}" for f in EXPORT_FILES]
        assert zf.comment.decode("utf-8") == CREDIT
        for f in EXPORT_FILES:
            assert zf.read(f"{name}/{f}") == files[f]


def test_an_infeasible_round_exports_without_nets(bergwald_round, linearization):
    from dataclasses import replace

    from optim.market import clear_market

    _, lin = linearization
    outcome = clear_market(bergwald_round.grid, bergwald_round.scenario, bergwald_round.bids, 50.0, method="milp",
                           linearization=lin)
    assert outcome.clearing.status.value == "infeasible" and outcome.net is None
    rnd = replace(bergwald_round, request_mw=50.0, outcomes={"milp": outcome})
    files = export.export_files(rnd)
    assert json.loads(files["grid_results.json"])["nets"] == {}
    assert csv_frame(files["activations.csv"]).activated_mw.abs().sum() == 0
    assert csv_frame(files["violations.csv"]).empty
    page = files["report.html"].decode("utf-8")
    assert "status infeasible" in page and "not validated" in page and CREDIT in page
