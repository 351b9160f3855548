"""``digiplat grid build``: the --json contract and one-line errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main

REPO = Path(__file__).resolve().parents[2]
SMALL_OSM = REPO / "tests" / "data" / "small_area.osm"
CONTRACT_KEYS = {
    "buildings", "substations", "buses", "lines", "trafos", "mv_length_km", "lv_length_km", "vm_min_pu",
    "vm_max_pu", "max_line_loading_percent", "max_trafo_loading_percent", "violations", "runtime_s",
}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["grid", "build", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("digiplat grid: error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0]


def test_json_last_line_has_every_contract_key(capsys, tmp_path):
    code, out, err = _run(capsys, "--osm", str(SMALL_OSM), "--substations", "2", "--out", str(tmp_path / "g"), "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert CONTRACT_KEYS <= set(summary)
    assert summary["buildings"] == 14 and summary["substations"] == 2 and summary["violations"] == 0
    assert "OpenStreetMap" in summary["credit"]
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["buildings.csv", "grid.json", "map.geojson", "summary.json"]


def test_missing_file(capsys, tmp_path):
    code, _, err = _run(capsys, "--osm", str(tmp_path / "nope.osm"), "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "g").exists()


def test_unparsable_file(capsys, tmp_path):
    garbage = tmp_path / "garbage.osm"
    garbage.write_bytes(b"<osm><node id='1' lat='48.9' lon='8.4'>\x00\x01 not xml at all")
    code, _, err = _run(capsys, "--osm", str(garbage), "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "cannot parse OSM file")


def test_bbox_with_no_buildings(capsys, tmp_path):
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--bbox", "48.9702,8.4704,48.9704,8.4708", "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "no buildings")


def test_bbox_outside_data(capsys, tmp_path):
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--bbox", "50.0,9.0,50.1,9.1", "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "outside the data")


@pytest.mark.parametrize("bbox", ["48.9,8.4,49.0", "north,west,south,east", "49.0,8.4,48.9,8.5"])
def test_malformed_bbox(capsys, tmp_path, bbox):
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--bbox", bbox, "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "--bbox")


def test_negative_seed(capsys, tmp_path):
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--seed", "-1", "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "--seed")


def test_bad_id_seed(capsys, tmp_path):
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--id-seed", "-3", "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "--id-seed")


def test_out_is_an_existing_file(capsys, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--out", str(target))
    _assert_one_line_error(code, err, "--out")
    assert target.read_text() == "keep me"


def test_osm_and_place_together_is_an_argparse_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["grid", "build", "--osm", str(SMALL_OSM), "--place", "Karlsruhe", "--out", str(tmp_path / "g")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--osm", "{tmp}/missing.osm"], "does not exist"),
        (["--osm", "{garbage}"], "cannot parse OSM file"),
        (["--osm", "{small}", "--place", "Karlsruhe"], "not allowed with argument"),
    ],
)
def test_subprocess_exit_2_without_traceback(tmp_path, argv, words):
    garbage = tmp_path / "garbage.osm"
    garbage.write_text("this is not XML")
    argv = [a.format(tmp=tmp_path, garbage=garbage, small=SMALL_OSM) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "grid", "build", *argv, "--out", str(tmp_path / "g")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


# --- every bad input is refused before building, in one line --------------------------------


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if a build starts: these inputs must be refused before it."""
    import gridgen.build

    def refuse(*args, **kwargs):
        raise AssertionError("the build started although the input was bad")

    monkeypatch.setattr(gridgen.build, "grid_from_area", refuse)


def test_out_below_an_existing_file_is_refused_before_building(capsys, tmp_path, no_build):
    (tmp_path / "taken").write_text("keep me")
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--out", str(tmp_path / "taken" / "sub" / "grid"))
    _assert_one_line_error(code, err, "--out", "is a file")
    assert (tmp_path / "taken").read_text() == "keep me"


def test_out_folder_with_other_files_is_refused_before_building(capsys, tmp_path, no_build):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("keep me")
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--out", str(tmp_path / "docs"))
    _assert_one_line_error(code, err, "--out", "other files than a grid", "thesis.tex")
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text("<?xml version='1.0'?><osm version='0.6'><node id='1' lat='48.97' lon='8.46'"), "cannot parse OSM file"),
        (lambda p: p.write_text("<html><body>404 not found</body></html>"), "holds no streets"),
        (lambda p: p.write_text(
            "<osm version='0.6'><node id='1' lat='48.97' lon='8.46'/><node id='2' lat='48.971' lon='8.461'/>"
            "<way id='1'><nd ref='1'/><nd ref='2'/><tag k='highway' v='residential'/></way></osm>"), "holds no buildings"),
    ],
    ids=["folder", "empty", "truncated", "not-osm", "no-buildings"],
)
def test_bad_osm_files(capsys, tmp_path, make, words):
    path = tmp_path / "area.osm"
    make(path)
    code, _, err = _run(capsys, "--osm", str(path), "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, words)
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("value", ["0", "-3", "1000"])
def test_substations_out_of_range(capsys, tmp_path, value, no_build):
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--substations", value, "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "--substations")


def test_empty_area_keeps_an_old_grid(capsys, tmp_path):
    """A bbox with nothing to supply is an error, and the grid folder already there stays as it was."""
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--substations", "2", "--out", str(tmp_path / "g"))
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in (tmp_path / "g").iterdir()}
    code, _, err = _run(capsys, "--osm", str(SMALL_OSM), "--bbox", "48.9702,8.4704,48.9704,8.4708", "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "no buildings")
    assert {p.name: p.read_bytes() for p in (tmp_path / "g").iterdir()} == before


@pytest.mark.parametrize("content", ["{}", "half"])
def test_corrupt_shipped_grid_is_one_line(capsys, tmp_path, monkeypatch, content):
    """Without the shared OSM file the shipped grid is copied: a corrupt grid.json there is one line."""
    import shutil

    import gridgen.grid

    shipped = tmp_path / "shipped"
    shutil.copytree(gridgen.grid.default_grid_dir(), shipped)
    text = (shipped / "grid.json").read_text()
    (shipped / "grid.json").write_text("{}" if content == "{}" else text[: len(text) // 2])
    monkeypatch.setattr(gridgen.grid, "default_grid_dir", lambda: shipped)
    monkeypatch.setenv("DIGIPLAT_OSM", str(tmp_path / "no-such.osm"))
    code, _, err = _run(capsys, "--out", str(tmp_path / "g"))
    _assert_one_line_error(code, err, "grid.json", "digiplat grid build")
    assert not (tmp_path / "g").exists()


def test_out_below_a_file_in_a_fresh_process(tmp_path):
    (tmp_path / "taken").write_text("keep me")
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "grid", "build", "--osm", str(SMALL_OSM), "--out", str(tmp_path / "taken" / "g")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    _assert_one_line_error(proc.returncode, proc.stderr, "--out", "is a file")
    assert proc.stdout == ""
