"""The app's download of a round (a zip of the export files) and ``digiplat serve --grid DIR``.

The rounds here run on a small generated grid (``small_grid_dir``, served as ``serve --grid``
would serve it), so they take about a second each.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import dash
import pandas as pd
import pytest

import app.cli as cli
from app import server, session
from app.export import EXPORT_FILES

REPO = Path(__file__).resolve().parents[2]
CREDIT = "Map data © OpenStreetMap contributors, ODbL 1.0"
REQUEST_MW = 0.05


def _reset_grid_caches() -> None:
    for cached in (session.default_grid, session.scenario_for, session.bus_points):
        cached.cache_clear()
    session._ROUNDS.clear()


@pytest.fixture
def small_grid_served(small_grid_dir, monkeypatch):
    """The app serves the small grid (as after ``digiplat serve --grid DIR``); Bergwald again afterwards."""
    monkeypatch.setenv(session.GRID_ENV, str(small_grid_dir))
    _reset_grid_caches()
    yield small_grid_dir
    monkeypatch.delenv(session.GRID_ENV)
    _reset_grid_caches()


def _zip_files(download: dict) -> tuple[str, dict[str, bytes]]:
    assert download["base64"] and download["type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(download["content"]))) as zf:
        names = zf.namelist()
        folder = names[0].split("/")[0]
        assert names == [f"{folder}/{f}" for f in EXPORT_FILES]
        return folder, {n.split("/", 1)[1]: zf.read(n) for n in names}


def test_download_without_a_click_or_a_result():
    with pytest.raises(dash.exceptions.PreventUpdate):
        server.download_round(None, None, [])
    data, alert, is_open = server.download_round(1, None, [])
    assert data is dash.no_update and is_open and alert.startswith("clear the market first")


def test_download_is_a_zip_of_both_methods_named_by_the_round(small_grid_served):
    bids = session.default_bid_records()
    result, alert, _ = server.clear_market(1, "weekday", 18, REQUEST_MW, bids)
    assert alert == ""
    download, alert, is_open = server.download_round(1, result, bids)
    assert alert == "" and is_open is False
    folder, files = _zip_files(download)
    assert download["filename"] == f"{folder}.zip" == "digiplat-round_weekday_18-00_0.05MW.zip"
    activations = pd.read_csv(io.BytesIO(files["activations.csv"]), comment="#")
    for method, view in (("milp", "milp"), ("merit_order", "merit")):
        s = result[view]["summary"]
        rows = activations[activations.method == method]
        assert rows.activated_mw.sum() == pytest.approx(s["delivered_mw"], abs=1e-7)
        assert rows.cost_eur.sum() == pytest.approx(s["cost_eur"], rel=1e-6, abs=1e-9)
        per_building = rows.groupby("building_id").activated_mw.sum()
        for building, entry in result[view]["buildings"].items():
            assert per_building[building] == pytest.approx(entry["activated_mw"], abs=1e-6)
    violations = pd.read_csv(io.BytesIO(files["violations.csv"]), comment="#")
    assert len(violations) == len(result["milp"]["violations"]) + len(result["merit"]["violations"])
    nets = json.loads(files["grid_results.json"])
    assert nets["attribution"] == CREDIT and set(nets["nets"]) == {"milp", "merit_order"}
    assert json.loads(files["grid_results.geojson"])["attribution"] == CREDIT
    assert CREDIT in files["report.html"].decode("utf-8")


def test_a_round_not_kept_is_cleared_again_with_the_same_numbers_unless_the_bids_changed(small_grid_served):
    bids = session.default_bid_records()
    result, _, _ = server.clear_market(1, "weekday", 18, REQUEST_MW, bids)
    _, kept = _zip_files(server.download_round(1, result, bids)[0])
    session._ROUNDS.clear()  # as in another gunicorn worker than the one that cleared
    _, again = _zip_files(server.download_round(1, result, bids)[0])
    a, b = (pd.read_csv(io.BytesIO(f["activations.csv"]), comment="#") for f in (kept, again))
    assert list(a.bid_id) == list(b.bid_id)
    pd.testing.assert_series_equal(a.activated_mw, b.activated_mw, atol=1e-9, rtol=0)

    session._ROUNDS.clear()
    data, alert, is_open = server.download_round(1, result, bids[1:])  # a row deleted after the clearing
    assert data is dash.no_update and is_open
    assert alert == "the bid table changed after this clearing: clear the market again, then download"


def test_the_market_page_has_one_download_of_the_results(small_grid_served):
    app = server.create_app(warm_up=False)
    spec = next(v for k, v in app.callback_map.items() if k.startswith("..market-export.data"))
    assert [i["id"] for i in spec["inputs"]] == ["market-export-btn"]
    assert [s["id"] for s in spec["state"]] == ["result-store", "market-bids"]
    page = server.render_page("market", None)
    ids = json.dumps(page.to_plotly_json(), default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o))
    assert ids.count('"market-export-btn"') == 1 and ids.count('"market-export"') == 1


def test_a_served_grid_is_shown_by_its_name_and_figures(small_grid_served):
    grid = session.default_grid()
    assert session.grid_dir() == Path(small_grid_served)
    assert len(grid.buildings) == 14
    page = json.dumps(server.render_page("grid", None).to_plotly_json(),
                      default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o))
    assert "small-grid distribution grid" in page and "Karlsruhe-Bergwald" not in page


@pytest.mark.parametrize("kind, expected", [
    ("missing", "does not exist"),
    ("file", "is a file, not a grid folder"),
    ("empty", "is not a grid folder (missing grid.json"),
    ("truncated", "is not a readable pandapower grid"),
])
def test_serve_with_a_bad_grid_is_one_line_and_exit_2(kind, expected, small_grid_dir, tmp_path, capsys, monkeypatch):
    import shutil

    from app import server as app_server

    monkeypatch.delenv(session.GRID_ENV, raising=False)
    monkeypatch.setattr(app_server, "serve", lambda **kw: pytest.fail("serve started with a bad --grid"))
    target = tmp_path / "grid"
    if kind == "file":
        target.write_text("not a folder")
    elif kind == "empty":
        target.mkdir()
    elif kind == "truncated":
        shutil.copytree(small_grid_dir, target)
        (target / "grid.json").write_text((target / "grid.json").read_text()[:500])
    assert cli.main(["serve", "--grid", str(target), "--port", "19199"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("digiplat serve: error:") and expected in err[0], err
    assert session.GRID_ENV not in os.environ


def test_serve_grid_serves_the_other_grid(small_grid_dir):
    port = int(os.environ.get("DIGIPLAT_TEST_PORT_BASE", "19100")) + 90
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--grid", str(small_grid_dir), "--port", str(port),
                             "--workers", "1"], env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        layout = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=5) as r:
                    layout = r.read().decode("utf-8")
                break
            except OSError:
                time.sleep(0.5)
        assert layout is not None, proc.stderr.read().decode() if proc.poll() is not None else "no answer"
        assert "small-grid" in layout and "Karlsruhe-Bergwald" not in layout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
