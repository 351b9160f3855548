"""``digiplat linearize`` and ``digiplat clear``: the CLI contracts of issues 3 and 4 (stand-in grid)."""

from __future__ import annotations

import json

import pytest

import app.cli as cli
from test_dso_standin import standin_grid


@pytest.fixture(autouse=True)
def only_market_commands(monkeypatch):
    """Other subcommands are developed in parallel; register just these two."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("linearize", "clear"))


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    return standin_grid().save(tmp_path_factory.mktemp("grid") / "standin")


def _json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_linearize_then_clear(grid_dir, tmp_path, capsys):
    pkg = tmp_path / "pkg.zip"
    assert cli.main(["linearize", "--grid", str(grid_dir), "--hour", "18", "--points", "3", "--max-points", "3", "--out", str(pkg),
                     "--json"]) == 0
    s = _json(capsys)
    assert {"points", "flex_buses", "monitored_buses", "monitored_branches", "runtime_s"} <= set(s)
    assert s["points"] == 3 and pkg.is_file() and (tmp_path / "pkg.zip.dso-key.json").is_file()
    assert "OpenStreetMap contributors" in s["credit"]

    assert cli.main(["clear", "--package", str(pkg), "--request-mw", "0.5", "--json"]) == 0
    c = _json(capsys)
    for k in ("status", "requested_mw", "delivered_mw", "cost_eur", "chosen_point", "activations", "validation",
              "runtime_s"):
        assert k in c
    assert c["status"] == "optimal" and c["delivered_mw"] == pytest.approx(0.5)
    assert "OpenStreetMap contributors" in c["credit"]
    assert {"bid_id", "offered_mw", "activated_mw"} <= set(c["activations"][0])
    v = c["validation"]
    for k in ("vm_mae_pu", "vm_rmse_pu", "loading_mae_percent", "loading_rmse_percent", "violations", "vm_min_pu",
              "vm_max_pu", "max_loading_percent"):
        assert k in v
    assert v["violations"] == 0

    assert cli.main(["clear", "--package", str(pkg), "--request-mw", "0.5", "--method", "merit-order", "--json"]) == 0
    m = _json(capsys)
    assert m["validation"]["violations"] > 0 and m["validation"]["vm_mae_pu"] is None

    # a bid file instead of the scenario's bids, and the TSO alone (no DSO key): no validation
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.tso.bids import write_bids
    from gridgen.grid import Grid

    bids = write_bids(scenario_from_grid(Grid.load(grid_dir), ScenarioConfig(hour=18)).bids, tmp_path / "bids.csv")
    lone = tmp_path / "lone.zip"
    lone.write_bytes(pkg.read_bytes())
    assert cli.main(["clear", "--package", str(lone), "--bids", str(bids), "--request-mw", "0.3", "--json"]) == 0
    t = _json(capsys)
    assert t["status"] == "optimal" and t["validation"] is None


@pytest.mark.parametrize("argv, message", [
    (["clear", "--package", "missing.zip", "--request-mw", "1"], "does not exist"),
    (["linearize", "--grid", "/nonexistent/grid"], "not a grid folder"),
])
def test_bad_input_gives_one_line_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_linearize_options_and_a_key_of_another_package_are_one_line_errors(grid_dir, tmp_path, capsys):
    for argv, message in ((["--point-method", "psychic"], "unknown point method"),
                          (["--polygon-sides", "2"], "--polygon-sides must be an integer from 4 to 720"),
                          (["--points", "9", "--max-points", "5"], "--max-points (5) is below --points (9)")):
        assert cli.main(["linearize", "--grid", str(grid_dir), "--out", str(tmp_path / "x.zip"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
        assert not any(tmp_path.iterdir())  # nothing written
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    for path, hour in ((a, "18"), (b, "12")):
        assert cli.main(["linearize", "--grid", str(grid_dir), "--hour", hour, "--points", "2",
                         "--polygon-sides", "8", "--out", str(path)]) == 0
    (tmp_path / "b.zip.dso-key.json").write_bytes((tmp_path / "a.zip.dso-key.json").read_bytes())
    capsys.readouterr()
    assert cli.main(["clear", "--package", str(b), "--request-mw", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "belongs to another package" in err[0] and "re-run 'digiplat linearize'" in err[0]


def test_bad_numbers_are_refused_by_the_parser(capsys):
    for argv in (["clear", "--request-mw", "nan"], ["clear", "--request-mw", "0"],
                 ["clear", "--request-mw", "1", "--solver", "gurobi"], ["linearize", "--day-type", "holiday"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2


def test_bad_bid_file(grid_dir, tmp_path, capsys):
    pkg = tmp_path / "pkg.zip"
    assert cli.main(["linearize", "--grid", str(grid_dir), "--points", "1", "--out", str(pkg)]) == 0
    bad = tmp_path / "bids.csv"
    bad.write_text("bid_id,aggregator,building_id,p_mw,price_eur_per_mwh\nX1,agg,B0001,abc,50\n")
    capsys.readouterr()
    assert cli.main(["clear", "--package", str(pkg), "--bids", str(bad), "--request-mw", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == ("digiplat clear: error: bids.csv: 1 invalid row of 1, no bids were read; fix the row listed "
                      "below and load the file again")
    assert err[1:] == ["  line 2: p_mw 'abc' is not a number"]


def test_time_selects_a_15_minute_unit(grid_dir, tmp_path, capsys):
    """--time HH:MM linearizes the 15-minute unit: its key holds the frame, its bids differ from the hour's."""
    from app.commands.linearize import key_path_for
    from optim.dso.linearize import load_pair

    paths = {}
    for name, argv in (("unit", ["--time", "18:45"]), ("hour", ["--hour", "18"])):
        paths[name] = tmp_path / f"{name}.zip"
        assert cli.main(["linearize", "--grid", str(grid_dir), *argv, "--points", "2", "--out", str(paths[name])]) == 0
    frames = {name: load_pair(p, key_path_for(p))[1].time_frame["scenario"]
              for name, p in paths.items()}
    assert (frames["unit"]["hour"], frames["unit"]["minute"], frames["unit"]["duration_min"]) == (18, 45, 15)
    assert (frames["hour"]["minute"], frames["hour"]["duration_min"]) == (0, 60)
    capsys.readouterr()
    assert cli.main(["clear", "--grid", str(grid_dir), "--time", "18:45", "--points", "2", "--request-mw", "0.1",
                     "--json"]) == 0
    assert _json(capsys)["status"] == "optimal"
    for argv in (["--time", "18:10"], ["--time", "24:00"], ["--time", "six"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(["clear", "--request-mw", "0.1", *argv])
        assert exc.value.code == 2
        assert "--time must be HH:MM" in capsys.readouterr().err
    assert cli.main(["clear", "--grid", str(grid_dir), "--request-mw", "0.1", "--time", "18:00", "--hour", "18"]) == 2
    assert "not both" in capsys.readouterr().err.strip().splitlines()[-1]
