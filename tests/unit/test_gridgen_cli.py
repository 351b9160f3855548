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
