"""The market day (optim.day, ``digiplat day``): unit grid, request profiles, serial vs dask runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from optim._errors import InputError
from optim.day import (DayConfig, constant_request_profile, default_request_profile, market_day,
                       request_profile_from_csv, unit_starts)
from optim.dso.scenario import ScenarioConfig

REPO = Path(__file__).resolve().parents[2]


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.csv"
    path.write_text(text)
    return path


def test_unit_grid_and_default_profile():
    starts = unit_starts(15)
    assert len(starts) == 96 and starts[0] == "00:00" and starts[-1] == "23:45" and "12:30" in starts
    assert len(unit_starts(60)) == 24 and unit_starts(30)[1] == "00:30"
    day = default_request_profile()
    assert list(day.start) == list(starts)
    assert (day.request_mw > 0).any() and (day.request_mw < 0).any()  # up in the evening, down at PV noon
    assert list(default_request_profile(60).start) == list(unit_starts(60))
    assert constant_request_profile(0.7, 30).request_mw.eq(0.7).all()


@pytest.mark.parametrize("text, match", [
    ("begin,request_mw\n18:00,1\n", "lacks column"),
    ("start,request_mw\n", "no rows"),
    ("start,request_mw\n18:07,1\n", "line 2: start '18:07'"),
    ("start,request_mw\n25:00,1\n", "line 2: start '25:00'"),
    ("start,request_mw\n18:00,1\n18:00,2\n", "line 3: start 18:00 appears twice"),
    ("start,request_mw\n18:00,abc\n", "line 2: request_mw 'abc'"),
    ("start,request_mw\n18:00,nan\n", "not a finite number"),
    ("start,request_mw\n\"18:00,1\n", "cannot read|lacks|line 2"),
    ("\x00\x01\x02PK binary", "cannot read|lacks"),
])
def test_bad_profiles_name_the_line(tmp_path, text, match):
    with pytest.raises(InputError, match=match):
        request_profile_from_csv(_profile(tmp_path, text), 15)
    zipped = tmp_path / "profile.zip"  # a misleading name: still read as text, never unzipped
    zipped.write_text(text)
    with pytest.raises(InputError):
        request_profile_from_csv(zipped, 15)


def test_profile_limits(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        request_profile_from_csv(tmp_path / "missing.csv")
    big = _profile(tmp_path, "start,request_mw\n" + "18:00,1\n" * 200_000)
    with pytest.raises(InputError, match="larger than"):
        request_profile_from_csv(big)
    ok = request_profile_from_csv(_profile(tmp_path, "start,request_mw\n18:30,1.5\n06:00,-0.1\n"), 30)
    assert list(ok.start) == ["06:00", "18:30"]  # sorted
    with pytest.raises(InputError, match="30-minute unit"):
        request_profile_from_csv(_profile(tmp_path, "start,request_mw\n18:15,1\n"), 30)


def test_quarter_hour_time_frames():
    config = ScenarioConfig(hour=18, minute=15, duration_min=15)
    assert config.start == "18:15"
    for bad in ({"minute": 10}, {"duration_min": 20}, {"minute": 45, "duration_min": 30}):
        with pytest.raises(InputError):
            ScenarioConfig(**bad)
    with pytest.raises(InputError, match="sets the time frame"):
        DayConfig(scenario={"hour": 3})
    with pytest.raises(InputError, match="mtu"):
        DayConfig(mtu_min=20)


def _without_timings(units):
    return [{k: v for k, v in u.items() if not k.endswith("_s")} for u in units]


def _approx(value):
    """Floats to 1e-9 relative (a warm-started Newton-Raphson ends within its 1e-9 MVA tolerance,
    so two processes with different histories agree to about that), all else exactly."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-12)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    return value


# paper A's three points keep these runs short; the CLI test below runs the default placement
FAST = DayConfig(n_points=3, point_method="all-half-none")


@pytest.fixture(scope="module")
def serial_day(bergwald_grid_dir):
    profile = pd.DataFrame({"start": ["03:00", "12:30", "18:00"], "request_mw": [0.5, -0.2, 1.8]})
    return profile, market_day(bergwald_grid_dir, profile, config=FAST, workers=0)


@pytest.fixture(scope="module")
def bergwald_grid_dir():
    from gridgen.grid import default_grid_dir

    return default_grid_dir()


def test_serial_day_clears_clean_and_merit_order_congests(serial_day):
    _, day = serial_day
    assert [u["start"] for u in day.units] == ["03:00", "12:30", "18:00"]
    for unit in day.units:
        assert unit["status"] == "optimal"
        assert unit["delivered_mw"] == pytest.approx(unit["request_mw"], abs=1e-6)
        assert unit["validation"]["violations"] == 0
    evening = day.merit_order[2]
    assert evening["status"] == "optimal" and evening["validation"]["violations"] > 0
    assert day.totals["milp"]["units_with_violations"] == 0
    assert day.totals["merit_order"]["units_with_violations"] >= 1
    assert day.totals["milp"]["requested_mwh"] == pytest.approx((0.5 + 0.2 + 1.8) / 4)
    assert day.totals["merit_order"]["max_vm_mae_pu"] is None  # the merit order predicts nothing


def test_local_cluster_gives_the_serial_results(serial_day, bergwald_grid_dir):
    profile, serial = serial_day
    distributed = market_day(bergwald_grid_dir, profile, config=FAST, workers=2)
    assert distributed.workers == 2
    assert _without_timings(distributed.units) == _approx(_without_timings(serial.units))
    assert _without_timings(distributed.merit_order) == _approx(_without_timings(serial.merit_order))
    assert [u["status"] for u in distributed.units] == [u["status"] for u in serial.units]
    text = json.dumps(distributed.to_dict())
    assert "V0" not in text and "L0" not in text  # no package row ids in results


def test_grid_state_of_a_unit_is_the_validated_dispatch(bergwald_grid_dir):
    """With ``grid_state`` a unit keeps each dispatch's AC state for a map; it agrees with the unit's
    own validation (violations, extremes) and its activations add up to the delivered power."""
    from optim.day import _grid, unit_result

    grid = _grid(str(bergwald_grid_dir))
    milp, merit = unit_result(grid, DayConfig(n_points=3, point_method="all-half-none", grid_state=True),
                              "18:00", 1.8)
    net = grid.net
    for unit in (milp, merit):
        state, v = unit["grid_state"], unit["validation"]
        assert state["bus"] == sorted(state["bus"]) and set(state["bus"]) <= set(net.bus.index)
        assert len(state["vm_pu"]) == len(state["bus"]) > 100
        assert len(state["line"]) == len(state["line_loading_percent"]) > 100
        assert set(state["trafo"]) == set(net.trafo.index)
        assert min(state["vm_pu"]) == pytest.approx(v["vm_min_pu"], abs=1e-6)
        assert max(state["vm_pu"]) == pytest.approx(v["vm_max_pu"], abs=1e-6)
        loadings = [abs(x) for x in state["line_loading_percent"] + state["trafo_loading_percent"]]
        assert max(loadings) == pytest.approx(v["max_loading_percent"], abs=1e-3)
        activated = sum(a for _, a in state["buildings"].values())
        assert activated == pytest.approx(unit["delivered_mw"], abs=1e-4)
    assert milp["validation"]["violations"] == 0 and max(abs(x) for x in milp["grid_state"]["line_loading_percent"]) <= 100
    assert merit["validation"]["violations"] > 0  # the evening's grid-blind dispatch congests: its map shows it
    assert len(json.dumps(milp["grid_state"])) < 20_000  # a day of 96 units x 2 methods stays a few MB
    plain, _ = unit_result(grid, FAST, "18:00", 1.8)
    assert "grid_state" not in plain  # the CLI's results carry no grid state
    idle, _ = unit_result(grid, DayConfig(grid_state=True), "03:00", 0.0)
    assert idle["grid_state"] is None
    with pytest.raises(InputError, match="whole grid"):
        DayConfig(grid_state=True, districts=True)


def test_unreachable_scheduler_is_one_clear_error(bergwald_grid_dir):
    profile = pd.DataFrame({"start": ["18:00"], "request_mw": [1.0]})
    with pytest.raises(InputError, match="cannot reach the dask scheduler"):
        market_day(bergwald_grid_dir, profile, scheduler="tcp://127.0.0.1:1")


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "app.cli", "day", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def test_cli_writes_units_and_day_json(tmp_path):
    profile = _profile(tmp_path, "start,request_mw\n18:00,1.8\n")
    out = tmp_path / "day"
    proc = _cli("--request-profile", str(profile), "--workers", "0", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"units", "merit_order", "totals", "runtime_s"} <= set(summary)
    unit = summary["units"][0]
    assert unit["start"] == "18:00" and unit["status"] == "optimal"
    assert {"violations", "vm_mae_pu", "loading_mae_percent"} <= set(unit["validation"])
    assert "OpenStreetMap" in summary["credit"]
    units = pd.read_csv(out / "units.csv", comment="#")
    assert list(units.start) == ["18:00"] and units.milp_violations.iloc[0] == 0
    assert "OpenStreetMap" in (out / "units.csv").read_text().splitlines()[0]
    assert json.loads((out / "day.json").read_text())["units"][0]["start"] == "18:00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day", "profile.csv"]  # no temp folders left


@pytest.mark.parametrize("args, match", [
    (["--request-profile", "/nonexistent.csv"], "does not exist"),
    (["--request-mw", "1", "--out", "FILE"], "is a file"),
    (["--request-mw", "1", "--scheduler", "tcp://127.0.0.1:1", "--mtu-min", "60"], "cannot reach"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, match):
    file = tmp_path / "a-file"
    file.write_text("x")
    proc = _cli(*[str(file) if a == "FILE" else a for a in args], timeout=120)
    assert proc.returncode == 2
    # one line that says what is wrong (argparse's own usage line may stand before it)
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith(("usage:", "  "))]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in proc.stderr
