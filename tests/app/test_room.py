"""A workshop room (issue 9): bad uploads, the private cache, ``serve``'s bad inputs, and a small load.

The load tests start the real server (gunicorn; with ``$DIGIPLAT_TEST_REDIS_URL`` also Celery
workers on that Redis, which ``bash run.sh test`` starts) through ``benchmarks/bench_load.py``
and post what the browser posts; they assert that no clear is lost and no process is left.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import dash
import pytest

from app import server, session
from app.urlstate import layout_components

REPO = Path(__file__).resolve().parents[2]
GOOD_CSV = ("bid_id,aggregator,building_id,p_mw,price_eur_per_mwh,fpu\n"
            "U1,Uploader,B0001,0.01,40,pv\nU2,Other,B0003,0.03,55,\n")


def data_url(raw: bytes, mime: str = "text/csv") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def bench_load():
    spec = importlib.util.spec_from_file_location("bench_load", REPO / "benchmarks" / "bench_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_load"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------ uploads
NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("contents", "filename", "expected"),
    [
        ("data:text/csv;base64,@@not base64@@", "mine.csv", "mine.csv: the upload is not valid base64 data"),
        ("data:text/csv;base64,QUJD=X", "mine.csv", "not valid base64"),
        ("data:text/csv,bid_id,p_mw", "mine.csv", "mine.csv: the upload is not base64-encoded"),
        (["data:text/csv;base64,QQ=="], "mine.csv", "mine.csv: the upload is not a file"),
        ({"a": 1}, "mine.csv", "the upload is not a file"),
        (12345, "mine.csv", "the upload is not a file"),
        (data_url(NESTED, "application/json"), "deep.json", "deep.json"),
        (data_url(b'{"rows": 5}', "application/json"), "odd.json", "odd.json"),
        (data_url(b'{"rows": [[1, 2], "x", null]}', "application/json"), "odd.json", "odd.json"),
        (data_url(b"\xff\xfe\x00garbage"), "mine.csv", "mine.csv"),
        (data_url(GOOD_CSV.encode()), "bids.xlsx", "bids.xlsx: a .xlsx file is not a bid file; upload a .csv or .json"),
        (data_url(b"x" * (5 * 2**20 + 10)), "big.csv", "big.csv: the file is 5.0 MB; the limit is 5 MB"),
    ],
)
def test_bad_uploads_become_an_alert_naming_the_users_file(contents, filename, expected):
    bids, alert, is_open = server.upload_bids(contents, filename, [])
    assert bids is dash.no_update and is_open is True
    assert expected in alert
    assert "/tmp" not in alert and "digiplat-upload" not in alert and "upload.csv" not in alert
    assert "Traceback" not in alert and "\n" not in alert.split(";")[0]


def test_upload_messages_name_the_users_file_without_any_path():
    bad = GOOD_CSV + "X9,Agg,B0004,lots,40,pv\n"
    for filename, shown in (("C:\\Users\\ana\\my bids.csv", "my bids.csv"), ("/home/ana/../room/mine.csv", "mine.csv")):
        bids, alert, is_open = server.upload_bids(data_url(bad.encode()), filename, [])
        assert is_open is True and alert.startswith(f"{shown}: 1 invalid row of 3")
        assert "line 4: p_mw 'lots'" in alert
        assert "Users" not in alert and "home" not in alert and "/tmp" not in alert
    records, alert, is_open = server.upload_bids(data_url(GOOD_CSV.encode()), None, [])
    assert is_open is False and [r["bid_id"] for r in records] == ["U1", "U2"]
    long_name = "a" * 120 + ".csv"  # shown shortened, still read as CSV
    records, alert, is_open = server.upload_bids(data_url(GOOD_CSV.encode()), long_name, [])
    assert is_open is False and len(records) == 2
    for odd in ("..", ".", "../.csv"):
        bids, alert, is_open = server.upload_bids(data_url(GOOD_CSV.encode()), odd, [])
        assert "/tmp" not in alert and (is_open is False or "upload a .csv or .json" in alert)


def test_upload_size_limit_is_the_same_in_browser_and_server():
    page = server.render_page("market", [])
    upload = next(c for c in layout_components(page) if getattr(c, "id", None) == "market-upload")
    assert upload.max_size == session.UPLOAD_LIMIT_BYTES == 5 * 2**20
    just_fits = GOOD_CSV.encode() + b"\n" * (session.UPLOAD_LIMIT_BYTES - len(GOOD_CSV))
    records, alert, is_open = server.upload_bids(data_url(just_fits), "full.csv", [])
    assert is_open is False and len(records) == 2


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The Flask test client of the app (no warm-up, no Redis)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DIGIPLAT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    mp.delenv("REDIS_URL", raising=False)
    app = server.create_app(warm_up=False)
    yield app.server.test_client()
    mp.undo()


UPLOAD_OUTPUT = "..market-bids.rowData@{h}...market-alert.children@{h}...market-alert.is_open@{h}.."


def _upload_payload(app_client, contents, filename):
    deps = app_client.get("/_dash-dependencies").get_json()
    cb = next(d for d in deps if [i["id"] + "." + i["property"] for i in d["inputs"]] == ["market-upload.contents"])
    outputs = [{"id": part.rsplit(".", 1)[0], "property": part.rsplit(".", 1)[1].split("@")[0]}
               for part in cb["output"].strip(".").split("...")]
    return {"output": cb["output"], "outputs": outputs,
            "inputs": [{"id": "market-upload", "property": "contents", "value": contents}],
            "changedPropIds": ["market-upload.contents"],
            "state": [{"id": "market-upload", "property": "filename", "value": filename},
                      {"id": "market-bids", "property": "rowData", "value": []}]}


@pytest.mark.parametrize(
    ("contents", "filename"),
    [("data:text/csv;base64,%%%", "a.csv"), ([1, 2, 3], "a.csv"), ({"x": "y"}, {"not": "a name"}), (7, 8),
     (data_url(NESTED, "application/json"), "deep.json"), (data_url(b"\x00\x01\x02"), "bin.csv")],
)
def test_bad_uploads_over_http_are_answered_with_an_alert_not_500(client, contents, filename):
    res = client.post("/_dash-update-component", json=_upload_payload(client, contents, filename))
    assert res.status_code == 200, res.data[:300]
    response = res.get_json()["response"]
    assert response["market-alert"]["is_open"] is True
    assert "/tmp" not in response["market-alert"]["children"]


def test_a_request_beyond_the_limit_is_refused_with_413(client):
    big = data_url(b"a" * (server.MAX_REQUEST_BYTES + 1))
    res = client.post("/_dash-update-component", json=_upload_payload(client, big, "huge.csv"))
    assert res.status_code == 413


def test_a_map_render_is_sent_gzip_compressed(client):
    import gzip
    import json

    deps = client.get("/_dash-dependencies").get_json()
    cb = next(d for d in deps if d["output"] == "page.children")
    payload = {"output": cb["output"], "outputs": {"id": "page", "property": "children"},
               "inputs": [{"id": "tabs", "property": "active_tab", "value": "market"}, {"id": "session-token", "property": "data", "value": None}],
               "changedPropIds": ["tabs.active_tab"],
               "state": [{"id": "bids-store", "property": "data", "value": None}, {"id": "url", "property": "search", "value": ""}]}
    res = client.post("/_dash-update-component", json=payload, headers={"Accept-Encoding": "gzip"})
    assert res.status_code == 200 and res.headers.get("Content-Encoding") == "gzip"
    body = gzip.decompress(res.data)
    assert "market-milp-map" in json.loads(body)["response"]["page"]["children"].__repr__()
    assert len(res.data) < len(body) / 3  # GeoJSON compresses well: the ~1 MB map is a few hundred kB on the wire
    plain = client.post("/_dash-update-component", json=payload)  # a client that asks for no compression gets none
    assert plain.headers.get("Content-Encoding") is None and len(plain.data) == len(body)


# ------------------------------------------------------------------------------------ the cache
def test_cache_dir_is_private_and_not_in_a_shared_path(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGIPLAT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = session.cache_dir()
    assert folder == tmp_path / "xdg" / "digiplat"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert session.cache_dir() == tmp_path / "home" / ".cache" / "digiplat"  # the default: the user's own cache
    # a directory made world-readable is closed again; a symlink is refused
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(loose))
    assert stat.S_IMODE(session.cache_dir().stat().st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(loose)
    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(link))
    from optim._errors import InputError

    with pytest.raises(InputError, match="not a directory of this user"):
        session.cache_dir()


def test_linearizations_are_shared_through_the_private_cache(tmp_path, monkeypatch):
    """The first worker chooses the frame's points and stores them (a few kB, not the 60-85 MB
    package); another worker reads them, linearizes only those points, and holds the same package
    to the last bit (fingerprint); a damaged entry is chosen again, never trusted."""
    import optim.dso.points as points_module

    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(session, "_LIN_CACHE", {})
    session._discard_old_store.cache_clear()
    old_store = tmp_path / "cache" / "linearizations"  # whole packages an earlier version kept
    old_store.mkdir(parents=True)
    (old_store / "lin-0-abc.pickle").write_bytes(b"x" * 1000)
    (old_store / "lin-0-abc.lock").write_bytes(b"")
    bids, scenario, lin = session._linearized("weekday", 18, session.default_bid_records())
    assert not old_store.exists()
    files = list((tmp_path / "cache" / "point-selections").glob("lin-*.pickle"))
    assert len(files) == 1 and stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    assert files[0].stat().st_size < 200_000 and lin.package.n_points > 9
    # another worker (empty memory cache) reads the points and does not choose them again
    monkeypatch.setattr(session, "_LIN_CACHE", {})

    def no_choosing(*args, **kwargs):
        raise AssertionError("chose the points again")

    monkeypatch.setattr(points_module, "points_for", no_choosing)
    _, _, again = session._linearized("weekday", 18, session.default_bid_records())
    assert again is not lin and again.key.flex_ids == lin.key.flex_ids
    assert again.package.fingerprint() == lin.package.fingerprint()
    # an entry that does not fit the frame (a grid folder changed in place) is not used: chosen again
    import pickle

    import numpy as np

    monkeypatch.undo()
    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(session, "_LIN_CACHE", {})
    files[0].write_bytes(pickle.dumps(((("no bids", np.zeros(3)),), {})))
    _, _, chosen_again = session._linearized("weekday", 18, session.default_bid_records())
    assert chosen_again.package.fingerprint() == lin.package.fingerprint()
    monkeypatch.setattr(points_module, "points_for", no_choosing)
    # a damaged file is chosen again (here: refused by the stub), never trusted
    files[0].write_bytes(b"not a pickle")
    monkeypatch.setattr(session, "_LIN_CACHE", {})
    with pytest.raises(AssertionError, match="chose the points again"):
        session._linearized("weekday", 18, session.default_bid_records())


# ------------------------------------------------------------------------------------ serve
def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    full_env.pop("REDIS_URL", None) if not (env and "REDIS_URL" in env) else None
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60,
                          env=full_env, cwd=str(REPO))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "-1"], "-1 is outside 1-65535"),
        (["--port", "70000"], "70000 is outside 1-65535"),
        (["--port", "http"], "is not a port number"),
        (["--workers", "0"], "0 is outside 1-32"),
        (["--host", "no-such-host.invalid"], "does not resolve"),
        (["--host", "192.0.2.1"], "is not an address of this machine"),
    ],
)
def test_serve_bad_input_is_one_line_and_exit_2(args, expected):
    proc = _serve(*args, "--port", str(_free_port())) if "--port" not in args else _serve(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and expected in errors[0]
    assert all(line.startswith(("usage:", " ", "digiplat")) for line in lines)


def test_serve_on_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _serve("--port", str(port))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"digiplat serve: error: port {port} on 127.0.0.1 is in use: stop that server or choose another --port"


def test_serve_with_an_unreachable_redis_is_one_line_and_exit_2():
    proc = _serve("--port", str(_free_port()), env={"REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("digiplat serve: error: Redis at REDIS_URL does not answer")
    assert len(proc.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ load
def test_a_small_room_loses_no_clear_and_leaves_no_process():
    figures = bench_load().run_load(4, 2, 240.0, workers=2, other_time_frames=1, uploads=0)
    assert figures["lost_reasons"] == [] and figures["lost"] == 0, figures.get("server_log_tail")
    assert figures["answered"] == 8
    assert figures["leftover"] == 0
    assert figures["processes_seen"] == 3  # gunicorn master and its 2 workers: a fixed pool
    assert 0 < figures["p50_s"] <= figures["p95_s"] <= figures["max_s"]


def test_a_small_room_on_celery_and_redis_loses_no_clear():
    url = os.environ.get("DIGIPLAT_TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide DIGIPLAT_TEST_REDIS_URL (bash run.sh test starts a private redis-server)")
        pytest.skip("DIGIPLAT_TEST_REDIS_URL not set (bash run.sh test starts a private redis-server)")
    figures = bench_load().run_load(3, 2, 240.0, workers=2, redis_url=url, other_time_frames=0, uploads=1)
    assert figures["mode"] == "celery+redis"
    assert figures["lost_reasons"] == [] and figures["lost"] == 0, figures.get("server_log_tail")
    assert figures["answered"] == 6
    assert figures["leftover"] == 0
    # gunicorn master + 2 workers, the Celery worker + its pool of 2 (Celery may replace a pool
    # process): a fixed pool, not a process per click (6 clicks)
    assert 6 <= figures["processes_seen"] <= 7
