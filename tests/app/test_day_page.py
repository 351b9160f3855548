"""Market day page: profile upload, the background job (a real job process), charts, slider and maps (no browser).

One short day of three units (an evening unit the merit order congests, a PV-noon downward
unit and an idle night unit) runs once through the job process; the callbacks are then called
directly on its cached results.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dash
import pytest

from app import day_job
from app.mapview import RESULT_LAYERS, VIOLATION_CLASS
from app.pages import day as page

REPO = Path(__file__).resolve().parents[2]
PROFILE = "start,request_mw\n18:00,1.8\n12:30,-0.2\n03:00,0\n"  # unordered on purpose: the reader sorts
RUN_TIMEOUT_S = 120  # three units and a fresh interpreter on a loaded 2-core machine


def upload(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return "data:text/csv;base64," + base64.b64encode(raw).decode()


def violating(layers) -> int:
    return sum(1 for fc in layers for f in fc["features"] if f["properties"].get("style", {}).get("className") == VIOLATION_CLASS)


def test_uploads_are_read_by_the_day_reader_and_bad_files_name_the_line() -> None:
    stored, options, value, alert, is_open = page.upload_profile(upload(PROFILE), "evening.csv")
    assert value == "upload" and not is_open and alert == ""
    assert options[1] == {"label": " uploaded: evening.csv (3 units, 03:00–18:00)", "value": "upload"}
    assert stored["csv"].splitlines() == ["start,request_mw", "03:00,0.0", "12:30,-0.2", "18:00,1.8"]
    shipped, _ = page.profile_of("default", None)
    assert len(shipped) == 96 and options[0]["label"].startswith(" the shipped weekday profile (96 units")
    for text, match in (("start,request_mw\n18:00,1\n18:07,2\n", "request profile bad.csv, line 3: start '18:07'"),
                        ("begin,request_mw\n18:00,1\n", "request profile bad.csv lacks column(s) start"),
                        ("start,request_mw\n18:00,abc\n", "line 2: request_mw 'abc' is not a finite number"),
                        (b"\xff\xfe\x00binary", "not a UTF-8 text file")):
        *_, alert, is_open = page.upload_profile(upload(text), "bad.csv")
        assert is_open and match in alert and "\n" not in alert and "/tmp" not in alert, alert
    *_, alert, is_open = page.upload_profile("data:text/csv;base64,@@@", "x.csv")
    assert is_open and "not valid base64" in alert
    *_, alert, _ = page.upload_profile(upload("start,request_mw\n" + "18:00,1\n" * 200_000), "big.csv")
    assert "larger than 1000 kB" in alert
    with pytest.raises(dash.exceptions.PreventUpdate):
        page.upload_profile(None, None)


def test_the_profile_choice_comes_back_with_the_tab() -> None:
    no = dash.no_update
    fresh = page.choose_profile(None, None, "default", None, None)
    assert fresh[2] == "default" and fresh[1][1]["disabled"] is True  # nothing uploaded: only the shipped profile
    stored, options, value, _, _ = page.choose_profile("day-upload", upload(PROFILE), "default", "evening.csv", None)
    assert value == "upload" and stored["source"] == "upload"
    back = page.choose_profile("day-profile-source", None, "default", None, stored)
    assert back[0]["source"] == "default" and back[1:] == (no, no, no, no)
    assert page.choose_profile(None, None, "default", None, back[0])[2] == "default"  # the user's choice is kept
    again = page.choose_profile(None, None, "default", None, stored)  # the tab drawn again: the upload is chosen
    assert again[2] == "upload" and again[1] == options
    with pytest.raises(dash.exceptions.PreventUpdate):
        page.choose_profile("day-profile-source", None, "upload", None, None)


def test_the_cache_key_follows_the_inputs() -> None:
    stored, *_ = page.upload_profile(upload(PROFILE), "a.csv")
    reordered, *_ = page.upload_profile(upload("start,request_mw\n03:00,0\n18:00,1.8\n12:30,-0.2\n"), "b.csv")
    key = page.select_day("weekday", "upload", stored)[0]["key"]
    assert page.select_day("weekday", "upload", reordered)[0]["key"] == key  # same day, other file
    assert page.select_day("weekend", "upload", stored)[0]["key"] != key
    assert page.select_day("weekday", "default", stored)[0]["key"] != key
    job, alert, is_open = page.select_day("holiday", "upload", stored)
    assert job is None and is_open and "weekday or weekend" in alert


def test_before_a_run_there_are_hints_not_empty_plots() -> None:
    hint_style, charts_style, *figs, totals, _max, _marks, _value, disabled = page.show_day(None)
    assert hint_style == {} and charts_style == {"display": "none"} and disabled
    with pytest.raises(dash.exceptions.PreventUpdate):  # the maps are drawn plain with the page
        page.select_unit(0, None, page.NO_DAY_CAPTION)
    poll = page.poll_day(None, {"key": "0" * 32, "total": 3}, None)
    assert poll[0] is True and poll[3] == {"display": "none"} and poll[-1] is False  # nothing runs: no polling
    text = str(page.layout())
    for name in ("day-type", "profile-source", "upload", "run", "progress", "hint", "slider", "milp-map", "merit-map"):
        assert f"{page.PREFIX}{name}" in text


@pytest.fixture(scope="module")
def finished_day():
    """Run the short day through the real job process, as a click would; record what the polls saw."""
    stored, *_ = page.upload_profile(upload(PROFILE), "evening.csv")
    job, alert, is_open = page.run_day(1, "weekday", "upload", stored)
    assert not is_open, alert
    first = day_job.day_status(job["key"])
    again, *_ = page.run_day(2, "weekday", "upload", stored)  # a second click (any worker) follows the same job
    assert again["key"] == job["key"]
    seen, shown, t0 = [], None, time.monotonic()
    while time.monotonic() - t0 < RUN_TIMEOUT_S:
        poll = page.poll_day(1, job, None)
        seen.append((poll[0], poll[2], poll[4], poll[-1]))
        if poll[5] is not dash.no_update and poll[5] is not None:
            shown = poll[5]
            break
        assert not poll[7] is True, poll[6]  # no alert: the run did not fail
        time.sleep(0.3)
    assert shown is not None, f"the day did not finish in {RUN_TIMEOUT_S} s: {seen[-1]}"
    status = json.loads((Path(os.environ["DIGIPLAT_CACHE_DIR"]) / f"day-{job['key']}.status.json").read_text())
    assert status["started_at"] == first["started_at"]  # the second click started nothing
    return {"stored": stored, "job": job, "shown": shown, "seen": seen, "results": day_job.day_results(job["key"])}


def test_the_run_shows_progress_and_then_its_results(finished_day) -> None:
    seen = finished_day["seen"]
    running = [s for s in seen if s[0] is False]
    assert running, "the page never showed the running day"
    assert all(disabled for *_, disabled in running)  # no second run while one runs
    assert any(label.endswith("/ 3") for _, label, _, _ in running)
    assert any(text.startswith(("running:", "queued:")) for _, _, text, _ in running)
    results = finished_day["results"]
    assert [u["start"] for u in results["units"]] == ["03:00", "12:30", "18:00"]
    assert results["config"]["grid_state"] and results["config"]["n_points"] == 9
    size = len(json.dumps(results))
    assert size < 3 * 40_000, size  # ~30 kB per unit: a day of 96 units ~3 MB


def test_charts_show_the_units_of_both_methods(finished_day) -> None:
    results = finished_day["results"]
    hint_style, charts_style, delivered, cost, viol, totals, top, marks, value, disabled = page.show_day(finished_day["shown"])
    assert hint_style == {"display": "none"} and charts_style == {} and not disabled
    assert top == 2 and marks == {0: "03:00", 1: "12:30", 2: "18:00"}
    assert value == 2  # the unit the merit order congests most is shown first
    request, milp, merit = delivered.data
    assert list(request.x) == ["03:00", "12:30", "18:00"] and list(request.y) == [0.0, -0.2, 1.8]
    assert milp.y[2] == pytest.approx(1.8, abs=1e-6) and milp.y[1] == pytest.approx(-0.2, abs=1e-6)
    assert milp.y[0] is None  # no request at night: nothing cleared
    assert [bar.y[2] for bar in viol.data] == [0, results["merit_order"][2]["validation"]["violations"]]
    assert viol.data[1].y[2] > 0
    assert cost.data[0].y[2] == pytest.approx(results["units"][2]["cost_eur"] * 15 / 60)
    assert delivered.layout.shapes[0].x0 == "18:00"
    text = str(totals)
    assert "0 of 2 units with violations" in text and "1 of 2 units with violations" in text


def test_the_slider_drives_both_maps_to_the_unit(finished_day) -> None:
    shown = finished_day["shown"]
    n = len(RESULT_LAYERS)
    evening = page.select_unit(2, shown, page.NO_DAY_CAPTION)
    milp_layers, merit_layers = evening[:n], evening[n:2 * n]
    assert violating(milp_layers) == 0 and violating(merit_layers) > 0
    assert evening[2 * n + 2].startswith("Unit 18:00, request 1.800 MW: MILP 1.800 MW, 0 violations; merit order")
    assert evening[-1]["layout"] is not None  # a patch of the chart's marker, not a whole figure
    noon = page.select_unit(1, shown, evening[2 * n + 2])
    assert noon[2 * n + 2].startswith("Unit 12:30, request -0.200 MW")
    voltages = lambda layers: [f["properties"]["style"].get("fillColor") for f in layers[RESULT_LAYERS.index("buildings")]["features"]]
    assert voltages(noon[:n]) != voltages(milp_layers)  # the map changed with the unit
    bids = lambda layers: {f["properties"]["activation"] for f in layers[RESULT_LAYERS.index("bids")]["features"]}
    assert {"full", "partial"} & bids(milp_layers)  # the evening's activated bids are marked
    night = page.select_unit(0, shown, noon[2 * n + 2])
    assert "no request" in night[2 * n + 2] and bids(night[:n]) == set()  # nothing dispatched: the plain grid
    assert page.unit_from_click({"points": [{"customdata": 1, "x": "12:30"}]}) == 1
    with pytest.raises(dash.exceptions.PreventUpdate):
        page.unit_from_click({"points": []})


def test_a_second_visit_and_another_process_get_the_day_at_once(finished_day) -> None:
    job, *_ = page.select_day("weekday", "upload", finished_day["stored"])
    assert job["key"] == finished_day["job"]["key"]
    poll = page.poll_day(None, job, None)
    assert poll[5] == {"key": job["key"]} and poll[0] is True  # done: drawn, no polling
    code = ("import json, sys; from app.day_job import day_status, day_results; "
            f"s = day_status({job['key']!r}); r = day_results({job['key']!r}); "
            "print(json.dumps([s['state'], len(r['units'])]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["done", 3]


def test_a_failed_or_vanished_run_is_a_one_line_alert(monkeypatch, tmp_path) -> None:
    import fcntl

    import optim.day

    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(tmp_path))
    stored, *_ = page.upload_profile(upload("start,request_mw\n18:00,1.0\n"), "one.csv")
    config, profile = page._job_of("weekday", "upload", stored)
    key = day_job.job_key(config, profile)
    (tmp_path / f"day-{key}.profile.csv").write_text(day_job.profile_csv(profile))
    day_job._write_status(tmp_path, key, state="running", done=0, total=1, unit="", message="", started_at=0,
                          config=config.to_dict())
    # a status that says running, but no process holds the day's lock: the job died
    poll = page.poll_day(None, {"key": key}, {"key": "old"})
    assert poll[5] is None and poll[7] is True and "stopped before it finished" in poll[6]

    def broken(*args, **kwargs):
        raise RuntimeError("solver crashed\nsecond line")

    monkeypatch.setattr(optim.day, "market_day", broken)
    with open(tmp_path / f"day-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert day_job.run_job(key, tmp_path) == 1
    poll = page.poll_day(None, {"key": key}, None)
    assert poll[7] is True and poll[6] == ("The market day failed: the market day failed (RuntimeError); "
                                           "the server log has the details")
    assert not (tmp_path / f"day-{key}.json").exists()  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left

    # a damaged results file: the page says so, and the next run computes the day again
    (tmp_path / f"day-{key}.json").write_text('{"units": [')
    poll = page.poll_day(None, {"key": key}, None)
    assert poll[7] is True and "could not be read" in poll[6]
    started = []

    class Job:
        def __init__(self, command, **kwargs):
            started.append(command)
            self.pid = 0

        def wait(self):
            return 0

    monkeypatch.setattr(day_job.subprocess, "Popen", Job)
    assert day_job.start_day(config, profile) == key and len(started) == 1 and "app.day_job" in started[0]
    assert not (tmp_path / f"day-{key}.json").exists() and day_job.day_status(key)["state"] == "failed"  # no process took the day over
