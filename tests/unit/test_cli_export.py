"""``digiplat clear --export DIR`` (issue 11, deliverable 6) on a small generated grid.

The CLI contract: the export folder is written all or nothing (a failed write leaves the previous
export as it was and no temporary folder), a DIR that is a file or holds other files is one line
and exit 2 before any work, and an infeasible request still exports its round (exit 3).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest

import app.cli as cli
from app.export import EXPORT_FILES

CREDIT = "Map data © OpenStreetMap contributors, ODbL 1.0"
REQUEST_MW = "0.05"


def _clear(grid: Path, *extra: str) -> list[str]:
    return ["clear", "--grid", str(grid), "--request-mw", REQUEST_MW, "--points", "3", *extra]


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def exported(small_grid_dir, tmp_path_factory):
    """One export of the small grid's default round: ``(folder, the --json summary)``."""
    out = tmp_path_factory.mktemp("exports") / "round"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(_clear(small_grid_dir, "--export", str(out), "--json"))
    assert code == 0
    return out, json.loads(stdout.getvalue().strip().splitlines()[-1])


def test_export_writes_every_file_consistent_with_the_printed_result(exported):
    out, summary = exported
    assert summary["export"] == str(out.resolve())
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # a usual folder, not mkdtemp's private one
    activations = pd.read_csv(out / "activations.csv", comment="#")
    assert set(activations.method) == {"milp"}
    assert activations.activated_mw.sum() == pytest.approx(summary["delivered_mw"], abs=1e-7)
    assert activations.cost_eur.sum() == pytest.approx(summary["cost_eur"], rel=1e-6)
    per_bid = activations.groupby("bid_id").activated_mw.sum()
    for a in summary["activations"]:
        assert per_bid[a["bid_id"]] == pytest.approx(a["activated_mw"], abs=1e-8)
    violations = pd.read_csv(out / "violations.csv", comment="#")
    assert len(violations) == summary["validation"]["violations"]
    for name in ("activations.csv", "violations.csv"):
        assert (out / name).read_text(encoding="utf-8").splitlines()[0] == f"# {CREDIT}"
    geo = json.loads((out / "grid_results.geojson").read_text(encoding="utf-8"))
    assert geo["attribution"] == CREDIT and geo["features"]
    buildings = [f["properties"] for f in geo["features"] if f["properties"]["kind"] == "building"]
    assert min(b["milp_vm_pu"] for b in buildings) >= summary["validation"]["vm_min_pu"] - 1e-6
    nets = json.loads((out / "grid_results.json").read_text(encoding="utf-8"))
    assert nets["attribution"] == CREDIT and list(nets["nets"]) == ["milp"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert CREDIT in page and f"cost {summary['cost_eur']:.2f} €" in page


def test_export_dir_that_is_a_file_is_one_line_and_exit_2(small_grid_dir, tmp_path, capsys, monkeypatch):
    import optim.dso.linearize

    def no_work(*args, **kwargs):  # the check comes before any work
        raise AssertionError("the round started before --export was checked")

    monkeypatch.setattr(optim.dso.linearize, "linearize", no_work)
    target = tmp_path / "report.txt"
    target.write_text("keep me")
    assert cli.main(_clear(small_grid_dir, "--export", str(target))) == 2
    line = _one_error_line(capsys)
    assert line.startswith("digiplat clear: error: --export") and "is a file" in line
    assert target.read_text() == "keep me"
    below = tmp_path / "report.txt" / "sub"
    assert cli.main(_clear(small_grid_dir, "--export", str(below))) == 2
    assert "is a file" in _one_error_line(capsys)


def test_export_dir_with_other_files_is_refused_and_kept(small_grid_dir, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("keep me")
    assert cli.main(_clear(small_grid_dir, "--export", str(folder))) == 2
    assert "holds other files than an export (thesis.tex)" in _one_error_line(capsys)
    assert _snapshot(folder) == {"thesis.tex": b"keep me"}


def test_a_failed_write_leaves_the_previous_export_and_no_temporary_folder(exported, small_grid_dir, tmp_path,
                                                                           capsys, monkeypatch):
    import shutil

    from app.commands import _paths

    out = tmp_path / "round"
    shutil.copytree(exported[0], out)
    before = _snapshot(out)
    real_write = _paths._write_file

    def disk_full_at_the_report(path: Path, data: bytes) -> None:
        if path.name == "report.html":
            path.write_bytes(data[: len(data) // 2])  # half a file, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(_paths, "_write_file", disk_full_at_the_report)
    again = ["clear", "--grid", str(small_grid_dir), "--request-mw", "0.04", "--points", "3", "--export", str(out)]
    assert cli.main(again) == 2
    line = _one_error_line(capsys)
    assert "No space left on device" in line
    assert _snapshot(out) == before  # the previous export, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round"]  # no .round.new-* left behind

    monkeypatch.setattr(_paths, "_write_file", real_write)
    assert cli.main([*again, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["requested_mw"] == pytest.approx(0.04)
    assert pd.read_csv(out / "activations.csv", comment="#").activated_mw.sum() == pytest.approx(0.04, abs=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round"]


def test_an_infeasible_request_still_exports_its_round_and_exits_3(small_grid_dir, tmp_path, capsys):
    out = tmp_path / "infeasible"
    assert cli.main(["clear", "--grid", str(small_grid_dir), "--request-mw", "40", "--points", "3",
                     "--export", str(out), "--json"]) == 3
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "infeasible"
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    assert json.loads((out / "grid_results.json").read_text())["nets"] == {}
    assert "status infeasible" in (out / "report.html").read_text(encoding="utf-8")


def test_export_of_a_package_needs_its_dso_key(small_grid_dir, tmp_path, capsys):
    pkg = tmp_path / "pkg.zip"
    assert cli.main(["linearize", "--grid", str(small_grid_dir), "--points", "3", "--out", str(pkg)]) == 0
    lone = tmp_path / "lone.zip"
    lone.write_bytes(pkg.read_bytes())
    capsys.readouterr()
    assert cli.main(["clear", "--package", str(lone), "--request-mw", REQUEST_MW, "--export", str(tmp_path / "x")]) == 2
    assert "--export needs the DSO key" in _one_error_line(capsys)
    assert not (tmp_path / "x").exists()
