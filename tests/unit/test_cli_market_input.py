"""``digiplat linearize`` and ``digiplat clear`` under bad input: one line, exit 2; infeasible is exit 3 (issue 9).

Most cases call ``app.cli.main`` (fast); a few run the real entry point as a subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import app.cli as cli
from test_dso_standin import standin_grid

REPO = Path(__file__).resolve().parents[2]
HEADER = "bid_id,aggregator,building_id,p_mw,price_eur_per_mwh\n"


@pytest.fixture(autouse=True)
def only_market_commands(monkeypatch):
    """Other subcommands are developed in parallel; register just these two."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("linearize", "clear"))


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory) -> Path:
    return standin_grid().save(tmp_path_factory.mktemp("grid") / "standin")


@pytest.fixture(scope="module")
def package(grid_dir, tmp_path_factory) -> Path:
    pkg = tmp_path_factory.mktemp("pkg") / "pkg.zip"
    assert cli.main(["linearize", "--grid", str(grid_dir), "--points", "1", "--out", str(pkg)]) == 0
    return pkg


@pytest.fixture(scope="module")
def a_building(package) -> str:
    from optim.package import SensitivityPackage

    return sorted(SensitivityPackage.load(package).flex_of_asset)[0]


def _error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


def _one_line(code: int, capsys, command: str, *words: str) -> str:
    lines = _error_lines(capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"digiplat {command}: error: "), lines
    for word in words:
        assert word in lines[0], lines
    return lines[0]


def _parser_refuses(capsys, argv: list[str], *words: str) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    lines = _error_lines(capsys)
    assert lines[0].startswith("usage: ")  # argparse's own usage, then its one error line
    error = [line for line in lines if line.startswith(f"digiplat {argv[0]}: error:")]
    assert len(error) == 1 and all(word in error[0] for word in words), lines


# --- limits and arguments, refused before any work -------------------------------------------------


@pytest.mark.parametrize("command", ["linearize", "clear"])
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--points", "65"], ("--points must be 1..64, got 65",)),
        (["--points", "100000"], ("--points must be 1..64",)),
        (["--points", "0"], ("--points must be 1..64, got 0",)),
        (["--points", "three"], ("--points must be an integer",)),
        (["--hour", "24"], ("--hour must be 0..23, got 24",)),
        (["--hour", "-1"], ("--hour must be 0..23",)),
        (["--max-points", "0"], ("--max-points must be 1..64, got 0",)),
        (["--max-points", "65"], ("--max-points must be 1..64",)),
        (["--max-points", "many"], ("--max-points must be an integer",)),
        (["--point-gap", "0"], ("--point-gap must be a positive number",)),
        (["--point-gap", "-1"], ("--point-gap must be a positive number",)),
        (["--point-gap", "nan"], ("--point-gap must be a positive number",)),
        (["--point-gap", "wide"], ("--point-gap must be a number",)),
    ],
)
def test_limits_are_refused_by_the_parser(capsys, command, argv, words):
    extra = ["--request-mw", "1"] if command == "clear" else []
    _parser_refuses(capsys, [command, *argv, *extra], *words)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["linearize", "--seed", "-1"], ("--seed must be 0..4294967295, got -1",)),
        (["linearize", "--seed", str(2**32)], ("--seed must be 0..4294967295",)),
        (["clear", "--request-mw", "1", "--max-iterations", "0"], ("--max-iterations must be 1..64",)),
        (["clear", "--request-mw", "1", "--max-iterations", "1000"], ("--max-iterations must be 1..64",)),
        (["clear", "--request-mw", "inf"], ("finite, non-zero",)),
    ],
)
def test_other_bad_arguments_are_refused_by_the_parser(capsys, argv, words):
    _parser_refuses(capsys, argv, *words)


def test_linearize_out_is_checked_before_linearizing(capsys, tmp_path, monkeypatch):
    import app.commands.linearize as lin

    def must_not_run(*args, **kwargs):
        raise AssertionError("linearized although --out is unusable")

    monkeypatch.setattr(lin, "load_grid_and_scenario", must_not_run)
    _parser_refuses(capsys, ["linearize", "--out", str(tmp_path)], "is a directory; give a file name")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _parser_refuses(capsys, ["linearize", "--out", str(blocker / "sub" / "p.zip")], "is a file, not a folder")
    _parser_refuses(capsys, ["linearize", "--out", ""], "the output path is empty")


# --- damaged input files --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content"), [("truncated", None), ("empty-object", "{}"), ("list", "[1, 2]"),
                                               ("binary", "\x00\x01garbage")])
def test_damaged_grid_folder(grid_dir, tmp_path, capsys, name, content):
    damaged = tmp_path / name
    shutil.copytree(grid_dir, damaged)
    grid_json = damaged / "grid.json"
    grid_json.write_text(grid_json.read_text()[:500] if content is None else content)
    code = cli.main(["linearize", "--grid", str(damaged), "--out", str(tmp_path / "p.zip")])
    _one_line(code, capsys, "linearize", str(damaged))
    assert not (tmp_path / "p.zip").exists()


def test_damaged_package_and_key(package, grid_dir, tmp_path, capsys):
    garbage = tmp_path / "garbage.zip"
    garbage.write_text("not a zip")
    _one_line(cli.main(["clear", "--package", str(garbage), "--request-mw", "0.1"]), capsys, "clear", "garbage.zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(package.read_bytes()[:2000])
    _one_line(cli.main(["clear", "--package", str(truncated), "--request-mw", "0.1"]), capsys, "clear", "truncated.zip")
    # a key whose grid folder has been damaged since
    copy = tmp_path / "copy.zip"
    copy.write_bytes(package.read_bytes())
    damaged = tmp_path / "damaged-grid"
    shutil.copytree(grid_dir, damaged)
    (damaged / "grid.json").write_text("{}")
    key = json.loads((package.parent / "pkg.zip.dso-key.json").read_text())
    key["time_frame"]["grid_dir"] = str(damaged)
    (tmp_path / "copy.zip.dso-key.json").write_text(json.dumps(key))
    _one_line(cli.main(["clear", "--package", str(copy), "--request-mw", "0.1"]), capsys, "clear", "damaged-grid")
    (tmp_path / "copy.zip.dso-key.json").write_text('{"flex_ids": [')
    _one_line(cli.main(["clear", "--package", str(copy), "--request-mw", "0.1"]), capsys, "clear", "dso-key")


# --- bid files through ``clear`` ------------------------------------------------------------------


def _clear_with_bids(package, bids: Path) -> int:
    return cli.main(["clear", "--package", str(package), "--bids", str(bids), "--request-mw", "0.1"])


def test_bad_rows_are_listed_below_the_first_line_at_most_ten(package, a_building, tmp_path, capsys):
    rows = "".join(f"B{k},agg,{a_building},lots{k},50\n" for k in range(14))
    bids = tmp_path / "mine.csv"
    bids.write_text(HEADER + rows + f"B99,agg,{a_building},0.01,fifty\n")
    assert _clear_with_bids(package, bids) == 2
    lines = _error_lines(capsys)
    assert lines[0] == ("digiplat clear: error: mine.csv: 15 invalid rows of 15, no bids were read; fix the rows "
                        "listed below (the first 10 of 15) and load the file again")
    assert len(lines) == 11
    assert lines[1] == "  line 2: p_mw 'lots0' is not a number"
    assert lines[10] == "  line 11: p_mw 'lots9' is not a number"


def test_unknown_building_names_line_and_column(package, a_building, tmp_path, capsys):
    bids = tmp_path / "mine.json"
    bids.write_text('[\n {"bid_id": "B1", "aggregator": "a", "building_id": "%s", "p_mw": 0.01, "price_eur_per_mwh": 5},\n'
                    ' {"bid_id": "B2", "aggregator": "a", "building_id": "nowhere", "p_mw": 0.01, '
                    '"price_eur_per_mwh": 5}\n]\n' % a_building)
    assert _clear_with_bids(package, bids) == 2
    lines = _error_lines(capsys)
    assert lines[0].startswith("digiplat clear: error: mine.json: 1 invalid row of 2")
    assert lines[1:] == ["  line 3: building_id 'nowhere' is unknown to the sensitivity package (no flexible bus)"]


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [
        ("deep.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
         ("deep.json line 1: JSON nested deeper than 32 levels",)),
        ("big.csv", lambda p: p.open("wb").truncate(50_000_000),
         ("big.csv: 50.0 MB is more than the 20 MB limit of a bid file; split the bids",)),
        ("latin.csv", lambda p: p.write_bytes(HEADER.encode() + b"B1,caf\xe9,h,1,2\n"),
         ("cannot read bid file latin.csv: line 2 is not UTF-8 text",)),
        ("cut.json", lambda p: p.write_text('[{"bid_id": "B1", "aggregator": "a"'), ("cut.json line 1: invalid JSON",)),
        ("empty.csv", lambda p: p.write_text(""), ("empty.csv line 1: the file is empty",)),
        ("header.csv", lambda p: p.write_text(HEADER), ("header.csv: contains no bids",)),
        ("cols.csv", lambda p: p.write_text("a,b\n1,2\n"), ("cols.csv line 1: missing column(s) bid_id",)),
        ("bids.xlsx", lambda p: p.write_bytes(b"PK\x03\x04"), ("must end in .csv or .json",)),
        ("folder.csv", lambda p: p.mkdir(), ("is not a regular file",)),
        ("missing.csv", lambda p: None, ("missing.csv does not exist",)),
    ],
)
def test_bad_bid_files_give_one_line(package, tmp_path, capsys, name, make, words):
    path = tmp_path / name
    make(path)
    _one_line(_clear_with_bids(package, path), capsys, "clear", *words)


def test_too_many_rows(package, a_building, tmp_path, capsys, monkeypatch):
    import optim.tso.bids as bids_module

    monkeypatch.setattr(bids_module, "MAX_ROWS", 3)
    bids = tmp_path / "many.csv"
    bids.write_text(HEADER + "".join(f"B{k},agg,{a_building},0.01,50\n" for k in range(4)))
    _one_line(_clear_with_bids(package, bids), capsys, "clear", "many.csv: more than 3 rows (line 5); split the bids")


# --- an infeasible request is an answer -----------------------------------------------------------


@pytest.mark.parametrize("request_mw", [100.0, -100.0])
def test_infeasible_request_prints_the_result_and_exits_3(package, capsys, request_mw):
    assert cli.main(["clear", "--package", str(package), "--request-mw", str(request_mw), "--json"]) == 3
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["status"] == "infeasible"
    assert summary["requested_mw"] == request_mw and summary["delivered_mw"] == 0.0
    assert 0.0 <= abs(summary["max_deliverable_mw"]) < abs(request_mw)
    assert "Traceback" not in captured.err

    assert cli.main(["clear", "--package", str(package), "--request-mw", str(request_mw)]) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"infeasible: 0 of {request_mw:.4g} MW")
    assert f"at most {summary['max_deliverable_mw']:.4g} MW deliverable" in out[0]


def test_a_deliverable_request_still_exits_0(package, capsys):
    assert cli.main(["clear", "--package", str(package), "--request-mw", "0.05", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "optimal"


# --- the real entry point -------------------------------------------------------------------------


def _subprocess(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_subprocess_contract(package, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    proc = _subprocess("clear", "--package", str(package), "--bids", str(deep), "--request-mw", "0.1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "digiplat clear: error: deep.json line 1: JSON nested deeper than 32 levels; a bid file is one array of flat "
        "objects (see docs/bids.md)"]

    proc = _subprocess("clear", "--package", str(package), "--request-mw", "100", "--json")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "infeasible"

    proc = _subprocess("linearize", "--points", "100000", "--out", str(tmp_path / "p.zip"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "digiplat linearize: error: argument --points: --points must be 1..64, got 100000")


def test_a_failed_solver_is_one_line(package, capsys, monkeypatch):
    import optim.market as market

    class Failed:
        def summary(self):
            return {"status": "solver_error", "message": "HiGHS stopped: time limit reached"}

    monkeypatch.setattr(market, "clear_market", lambda *args, **kwargs: Failed())
    assert cli.main(["clear", "--package", str(package), "--request-mw", "0.05", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no result: a failed solver has none
    assert captured.err.splitlines() == [
        "digiplat clear: error: the solver failed: HiGHS stopped: time limit reached; try another --solver "
        "(e.g. pyomo:appsi_highs) or --method merit-order"]


def test_points_above_the_default_budget_need_no_max_points():
    """--points 40 (allowed: 1..64) is not refused by the default --max-points (33): the budget
    becomes the larger of the two; an explicit smaller --max-points is refused."""
    import argparse

    from optim import dso
    from optim._errors import InputError
    from app.commands.linearize import point_config

    above = dso.DEFAULT_MAX_POINTS + 7
    args = argparse.Namespace(points=above, point_method="merit-levels", max_points=None, point_gap=2.0)
    assert point_config(args)["max_points"] is None  # that many levels, nothing left to bisect
    args = argparse.Namespace(points=9, point_method="merit-levels", max_points=None, point_gap=2.0)
    assert point_config(args)["max_points"] == dso.DEFAULT_MAX_POINTS == 33
    with pytest.raises(InputError, match="below --points"):
        point_config(argparse.Namespace(points=above, point_method="merit-levels", max_points=dso.DEFAULT_MAX_POINTS,
                                        point_gap=2.0))
