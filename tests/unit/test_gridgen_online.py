"""The online door, for real: ``digiplat grid build --place`` and ``--online`` against local stand-ins.

Two stand-in HTTP servers on 127.0.0.1 answer as Nominatim and Overpass do, from the shared OSM
file: the Overpass answer is built per request from the query's ``poly:`` filter (the ways with a
node in the polygon's extent, with all their nodes, as Overpass's ``>;`` recursion returns them),
so osmnx parses, truncates and caches a real JSON answer. The CLI runs in a fresh process with the
endpoints, the cache folder and the time-out set through ``DIGIPLAT_*`` variables. A second run
with the servers stopped is answered from osmnx's cache; a server that answers HTTP 500, one that
accepts and never answers, and none at all each give one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.osm

REPO = Path(__file__).resolve().parents[2]
PORTS = range(18300, 18400)  # this test's port range on the shared machine
TIMEOUT_S = 3  # DIGIPLAT_OSMNX_TIMEOUT_S of the runs: bounds the silent-server case
# Hohenwettersbach north (S, W, N, E): a small Durlach district of the shared file, ~60 buildings.
BBOX = (48.9600, 8.4750, 48.9650, 8.4850)
PLACE = "Hohenwettersbach Nord, Karlsruhe"


def _osm_elements(path: Path) -> tuple[dict[int, dict], list[dict]]:
    """Return the nodes (by id) and ways of an OSM XML file as Overpass JSON elements."""
    nodes: dict[int, dict] = {}
    ways: list[dict] = []
    for _, el in ET.iterparse(path, events=("end",)):
        if el.tag == "node":
            node = {"type": "node", "id": int(el.get("id")), "lat": float(el.get("lat")), "lon": float(el.get("lon"))}
            tags = {t.get("k"): t.get("v") for t in el.iter("tag")}
            if tags:
                node["tags"] = tags
            nodes[node["id"]] = node
            el.clear()
        elif el.tag == "way":
            ways.append({
                "type": "way", "id": int(el.get("id")), "nodes": [int(nd.get("ref")) for nd in el.iter("nd")],
                "tags": {t.get("k"): t.get("v") for t in el.iter("tag")},
            })
            el.clear()
    return nodes, ways


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18300-18399")


class _StandIn:
    """Nominatim (``/search``) and Overpass (``/api/interpreter``, ``/api/status``) on one port.

    ``mode``: ``"ok"`` answers from the OSM file, ``"error"`` answers HTTP 500, ``"silent"``
    accepts connections and never answers.
    """

    def __init__(self, osm_path: Path, mode: str = "ok") -> None:
        self.nodes, self.ways = _osm_elements(osm_path) if mode == "ok" else ({}, [])
        self.mode = mode
        self.requests: list[str] = []
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if mode == "silent":
            self._sock = socket.socket()
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(("127.0.0.1", self.port))
            self._sock.listen(8)  # the kernel accepts; nobody ever reads or answers
            return
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

            def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                stand_in.requests.append(f"GET {self.path}")
                if stand_in.mode == "error":
                    return self._send(500, b"Internal Server Error", "text/plain")
                url = urllib.parse.urlparse(self.path)
                if url.path.rstrip("/").endswith("/status"):
                    return self._send(200, b"Connected as: 1\nCurrent time: x\nAnnounced endpoint: none\nRate limit: 2\n2 slots available now.\n", "text/plain")
                if url.path.rstrip("/").endswith("/search"):
                    query = urllib.parse.parse_qs(url.query).get("q", [""])[0]
                    return self._send(200, json.dumps(stand_in.nominatim(query)).encode())
                return self._send(404, b"[]")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                stand_in.requests.append(f"POST {self.path}")
                if stand_in.mode == "error":
                    return self._send(500, b"Internal Server Error", "text/plain")
                return self._send(200, json.dumps(stand_in.overpass(form["data"][0])).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def nominatim(self, query: str) -> list[dict]:
        """Nominatim's ``/search`` answer: the stand-in knows one place, the test bbox."""
        if query != PLACE:
            return []
        s, w, n, e = BBOX
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        return [{
            "place_id": 1, "licence": "Data © OpenStreetMap contributors, ODbL 1.0", "osm_type": "relation", "osm_id": 1,
            "lat": str((s + n) / 2), "lon": str((w + e) / 2), "class": "boundary", "type": "administrative",
            "place_rank": 20, "importance": 0.5, "addresstype": "suburb", "name": PLACE.split(",")[0],
            "display_name": PLACE, "boundingbox": [str(s), str(n), str(w), str(e)],
            "geojson": {"type": "Polygon", "coordinates": [ring]},
        }]

    def overpass(self, query: str) -> dict:
        """Overpass's answer to osmnx's query: ways with a node in the poly's extent, and their nodes."""
        coords = [float(v) for poly in re.findall(r"poly:'([^']*)'", query) for v in poly.split()]
        lats, lons = coords[0::2], coords[1::2]
        south, north, west, east = min(lats), max(lats), min(lons), max(lons)
        key = "highway" if '["highway"]' in query else "building"

        def inside(nid: int) -> bool:
            node = self.nodes.get(nid)
            return node is not None and south <= node["lat"] <= north and west <= node["lon"] <= east

        ways = [w for w in self.ways if key in w["tags"] and any(inside(n) for n in w["nodes"])]
        used = {n for w in ways for n in w["nodes"]}
        nodes = [self.nodes[n] for n in sorted(used) if n in self.nodes]
        return {"version": 0.6, "generator": "digiplat test stand-in", "elements": nodes + ways}

    def stop(self) -> None:
        if self.mode == "silent":
            self._sock.close()
        else:
            self._server.shutdown()
            self._server.server_close()


def _build(tmp_path: Path, stand_in_url: str, *args: str, out: str = "grid", cache: str = "cache") -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
        "DIGIPLAT_NOMINATIM_URL": stand_in_url + "/",
        "DIGIPLAT_OVERPASS_URL": stand_in_url + "/api",
        "DIGIPLAT_OSMNX_CACHE": str(tmp_path / cache),
        "DIGIPLAT_OSMNX_TIMEOUT_S": str(TIMEOUT_S),
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "grid", "build", *args, "--out", str(tmp_path / out), "--json"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )


def _summary(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("digiplat grid: error: ") and "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def offline_area(osm_path):
    """The same bbox cropped from the shared file (the reference for the downloaded area)."""
    from gridgen.osm import area_from_file

    return area_from_file(osm_path, bbox=BBOX)


def test_place_downloads_then_builds_from_the_cache(osm_path, offline_area, tmp_path):
    server = _StandIn(osm_path)
    try:
        first = _summary(_build(tmp_path, server.url, "--place", PLACE, out="first"))
    finally:
        server.stop()
    assert any(r.startswith("GET /search") for r in server.requests)
    assert sum(r.startswith("POST /api/interpreter") for r in server.requests) == 2  # streets, buildings
    # The downloaded footprints are the file's: the same supplied buildings as the offline crop.
    assert first["buildings"] == len(offline_area.buildings)
    assert first["violations"] == 0 and first["substations"] >= 1
    cache_files = list((tmp_path / "cache").glob("*.json"))
    assert len(cache_files) == 3  # one Nominatim and two Overpass answers

    # The servers are stopped: the same build again comes from osmnx's cache.
    second = _summary(_build(tmp_path, server.url, "--place", PLACE, out="second"))
    for key in ("buildings", "substations", "buses", "lines", "mv_length_km", "lv_length_km", "vm_min_pu"):
        assert second[key] == first[key], key
    for name in ("buildings.csv", "map.geojson"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()
    summary = json.loads((tmp_path / "second" / "summary.json").read_text())
    assert summary["area"]["source"] == PLACE


def test_online_bbox_download(osm_path, offline_area, tmp_path):
    server = _StandIn(osm_path)
    try:
        summary = _summary(_build(tmp_path, server.url, "--online", "--bbox", ",".join(map(str, BBOX))))
    finally:
        server.stop()
    assert not any(r.startswith("GET /search") for r in server.requests)  # a bbox needs no geocoder
    assert sum(r.startswith("POST /api/interpreter") for r in server.requests) == 2
    assert summary["buildings"] == len(offline_area.buildings)
    assert summary["violations"] == 0


def _build_here(monkeypatch, capsys, tmp_path: Path, stand_in_url: str, *args: str) -> subprocess.CompletedProcess:
    """Run the CLI in this process (the failure cases: no build, so no need for a fresh interpreter)."""
    from app.cli import main

    monkeypatch.setenv("DIGIPLAT_NOMINATIM_URL", stand_in_url + "/")
    monkeypatch.setenv("DIGIPLAT_OVERPASS_URL", stand_in_url + "/api")
    monkeypatch.setenv("DIGIPLAT_OSMNX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DIGIPLAT_OSMNX_TIMEOUT_S", str(TIMEOUT_S))
    code = main(["grid", "build", *args, "--out", str(tmp_path / "grid")])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_server_error_is_one_line(osm_path, tmp_path, monkeypatch, capsys):
    server = _StandIn(osm_path, mode="error")
    try:
        place = _build_here(monkeypatch, capsys, tmp_path, server.url, "--place", PLACE)
        bbox = _build_here(monkeypatch, capsys, tmp_path, server.url, "--online", "--bbox", ",".join(map(str, BBOX)))
    finally:
        server.stop()
    _assert_one_line_error(place, "Nominatim", server.url, "--osm")
    _assert_one_line_error(bbox, "Overpass", server.url, "--osm")
    assert not (tmp_path / "grid").exists()
    assert not list((tmp_path / "cache").glob("*.json"))  # an error answer is not cached


def test_silent_server_times_out_in_bounded_time(osm_path, tmp_path, monkeypatch, capsys):
    server = _StandIn(osm_path, mode="silent")
    try:
        t0 = time.perf_counter()
        proc = _build_here(monkeypatch, capsys, tmp_path, server.url, "--online", "--bbox", ",".join(map(str, BBOX)))
        elapsed = time.perf_counter() - t0
    finally:
        server.stop()
    _assert_one_line_error(proc, "did not answer within", f"{TIMEOUT_S} s")
    assert elapsed < 4 * TIMEOUT_S  # one time-out per request, not a hang


def test_no_server_and_no_cache_is_one_line(tmp_path, monkeypatch, capsys):
    port = _free_port()  # nothing listens there
    proc = _build_here(monkeypatch, capsys, tmp_path, f"http://127.0.0.1:{port}", "--place", PLACE)
    _assert_one_line_error(proc, "cannot reach the Nominatim server")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--online"], "--online needs --bbox"),
        (["--online", "--osm", "x.osm", "--bbox", "48.96,8.475,48.965,8.485"], "cannot be combined with --osm"),
        (["--place", " "], "--place needs a place name"),
    ],
)
def test_online_option_errors(tmp_path, monkeypatch, capsys, argv, words):
    proc = _build_here(monkeypatch, capsys, tmp_path, "http://127.0.0.1:1", *argv)
    _assert_one_line_error(proc, words)


def test_timeout_variable_is_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIGIPLAT_OSMNX_TIMEOUT_S", "soon")
    from app.cli import main

    code = main(["grid", "build", "--online", "--bbox", ",".join(map(str, BBOX)), "--out", str(tmp_path / "g")])
    proc = subprocess.CompletedProcess([], code, *capsys.readouterr())
    _assert_one_line_error(proc, "DIGIPLAT_OSMNX_TIMEOUT_S")
