"""``app/cli.py``: every failure becomes one line on stderr; bad input exit 2, a bug exit 1 (issue 9).

A stand-in subcommand raises each kind of error, so the mapping is tested without any real work.
"""

from __future__ import annotations

import argparse
import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

import app.cli as cli
from gridgen._errors import InputDataError
from optim._errors import InputError, LimitError, SolverError
from optim.tso.bids import BidFileError, BidProblem

REPO = Path(__file__).resolve().parents[2]


def _parser_raising(exc: BaseException | None, summary: dict | None = None, exit_code_of=None):
    def build() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="digiplat")
        parser.add_argument("-v", "--verbose", action="store_true")
        sub = parser.add_subparsers(dest="command", required=True)
        p = sub.add_parser("probe")
        p.add_argument("--json", action="store_true")

        def run(args):
            if exc is not None:
                raise exc
            return summary

        p.set_defaults(func=run, **({"exit_code_of": exit_code_of} if exit_code_of else {}))
        return parser

    return build


def _run(monkeypatch, capsys, exc, *argv: str, **kwargs) -> tuple[int, list[str], str]:
    monkeypatch.setattr(cli, "parser_for_cli", _parser_raising(exc, **kwargs))
    code = cli.main(["probe", *argv])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def _json_error() -> json.JSONDecodeError:
    try:
        json.loads('{"a": 1,,}')
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("unreachable")


def _unicode_error() -> UnicodeDecodeError:
    try:
        b"ok \xff".decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (InputError("--hour must be 0..23, got 99"), "digiplat probe: error: --hour must be 0..23, got 99"),
        (LimitError("bids.csv: 50.0 MB is more than the 20 MB limit of a bid file; split the bids"),
         "digiplat probe: error: bids.csv: 50.0 MB is more than the 20 MB limit of a bid file; split the bids"),
        (SolverError("the solver failed: time limit"), "digiplat probe: error: the solver failed: time limit"),
        (InputDataError("OSM file x.osm does not exist"), "digiplat probe: error: OSM file x.osm does not exist"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/grid.json"),
         "digiplat probe: error: /data/grid.json: No such file or directory; check the path and its permissions"),
        (PermissionError(errno.EACCES, "Permission denied", "/root/out.zip"),
         "digiplat probe: error: /root/out.zip: Permission denied; check the path and its permissions"),
        (OSError(errno.ENOSPC, "No space left on device", "/tmp/out.zip.tmp", None, "/tmp/out.zip"),
         "digiplat probe: error: /tmp/out.zip.tmp -> /tmp/out.zip: No space left on device; check the path"),
        (FileNotFoundError("no trained models at m/models.json; run `digiplat mlopf train`"),
         "digiplat probe: error: no trained models at m/models.json; run `digiplat mlopf train`"),
        (_json_error(), "digiplat probe: error: invalid JSON (line 1, column 9: Expecting property name"),
        (_unicode_error(), "digiplat probe: error: a file is not UTF-8 text (byte 3"),
        (RecursionError("maximum recursion depth exceeded"), "digiplat probe: error: an input file is nested too deeply"),
        (MemoryError(), "digiplat probe: error: out of memory; give smaller inputs"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(monkeypatch, capsys, exc, expected):
    code, err, out = _run(monkeypatch, capsys, exc)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(expected), err
    assert out == ""


def test_a_multi_line_message_shows_only_its_first_line(monkeypatch, capsys):
    code, err, _ = _run(monkeypatch, capsys, InputError("first line\nsecond line\nthird"))
    assert code == 2 and err == ["digiplat probe: error: first line"]


def test_bid_errors_add_at_most_ten_row_lines(monkeypatch, capsys):
    problems = [BidProblem(f"line {k}", "p_mw", f"'x{k}' is not a number") for k in range(2, 17)]
    details = tuple(f"  line {k}: p_mw 'x{k}' is not a number" for k in range(2, 17))  # 15: more than shown
    exc = BidFileError("bids.csv: 15 invalid rows of 15, no bids were read; fix the rows", problems, details)
    code, err, _ = _run(monkeypatch, capsys, exc)
    assert code == 2
    assert err[0] == "digiplat probe: error: bids.csv: 15 invalid rows of 15, no bids were read; fix the rows"
    assert err[1:] == list(details[:10])


@pytest.mark.parametrize("exc", [ValueError("operands could not be broadcast"), KeyError("p_mw"), ZeroDivisionError()])
def test_a_bug_is_one_line_naming_it_and_exit_1(monkeypatch, capsys, exc):
    code, err, _ = _run(monkeypatch, capsys, exc)
    assert code == 1
    assert len(err) == 1, err
    assert err[0].startswith(f"digiplat probe: internal error {type(exc).__name__}")
    assert "test_cli_errors.py:" in err[0]  # where it happened
    assert "this is a bug, please report it" in err[0] and "DIGIPLAT_DEBUG=1" in err[0]
    assert "Traceback" not in "\n".join(err)


def test_debug_env_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setenv("DIGIPLAT_DEBUG", "1")
    code, err, _ = _run(monkeypatch, capsys, ValueError("boom"))
    assert code == 1
    assert err[0] == "Traceback (most recent call last):"
    assert err[-1].startswith("digiplat probe: internal error ValueError: boom")
    monkeypatch.setenv("DIGIPLAT_DEBUG", "0")
    code, err, _ = _run(monkeypatch, capsys, ValueError("boom"))
    assert len(err) == 1


@pytest.mark.parametrize("verbose", [False, True])
def test_library_warnings_only_with_verbose(tmp_path, verbose):
    """In a subprocess: pytest captures warnings and logging itself."""
    script = (
        "import sys, warnings, app.cli as cli, app.commands.linearize as lin\n"
        "from optim._errors import InputError\n"
        "def noisy(*a, **k):\n    warnings.warn('a library warning nobody asked for', FutureWarning)\n"
        "    raise InputError('grid folder x is damaged')\n"
        "lin.load_grid_and_scenario = noisy\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    argv = (["-v"] if verbose else []) + ["linearize", "--out", str(tmp_path / "p.zip")]
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "digiplat linearize: error: grid folder x is damaged"
    assert ("a library warning nobody asked for" in proc.stderr) is verbose
    if not verbose:
        assert len(lines) == 1


def test_a_command_may_answer_with_its_own_exit_code(monkeypatch, capsys):
    code, err, out = _run(monkeypatch, capsys, None, "--json", summary={"status": "infeasible"},
                          exit_code_of=lambda s: 3 if s["status"] == "infeasible" else 0)
    assert code == 3 and err == [] and json.loads(out.splitlines()[-1])["status"] == "infeasible"


def test_interrupt_is_exit_130(monkeypatch, capsys):
    code, err, _ = _run(monkeypatch, capsys, KeyboardInterrupt())
    assert code == 130 and err == ["digiplat probe: interrupted"]


def test_help_documents_the_exit_codes(capsys):
    for argv in (["--help"], ["clear", "--help"], ["linearize", "--help"], ["mlopf", "train", "--help"],
                 ["mlopf", "benchmark", "--help"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "exit codes: 0" in text and "2 bad input" in text and "DIGIPLAT_DEBUG=1" in text, argv
    with pytest.raises(SystemExit):
        cli.main(["clear", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "3 it cannot be delivered" in text and "20 MB, 200,000 rows" in text and "--points 1..64" in text


def test_a_real_bug_in_a_subprocess_has_no_traceback(tmp_path):
    """The installed entry point's behaviour: a bug deep in a command, seen from outside."""
    script = (
        "import sys, app.cli as cli, app.commands.linearize as lin\n"
        "def broken(*a, **k):\n    raise AttributeError(\"'NoneType' object has no attribute 'vm_pu'\")\n"
        "lin.load_grid_and_scenario = broken\n"
        "sys.exit(cli.main(['linearize', '--out', sys.argv[1]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p.zip")], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digiplat linearize: internal error AttributeError"), proc.stderr
    assert not (tmp_path / "p.zip").exists()
