"""Benchmark a workshop room: N sessions start together and clear the market K times each.

Usage::

    .venv/bin/python benchmarks/bench_load.py --sessions 20 --clears 5 --deadline-s 300
    .venv/bin/python benchmarks/bench_load.py --sessions 20 --clears 5 --deadline-s 300 --redis   # Celery path

Starts ``python -m app --host 127.0.0.1 --port P --workers W`` (what a presenter runs; with
``--redis`` a private ``redis-server`` on a free loopback port and ``REDIS_URL`` for the server,
so the rounds run on Celery workers), with a fresh private cache directory (the room's first
start: nothing linearized but the default time frame), and waits until it answers. Then every
session, in its own thread, does what a browser does and posts what Chromium posts:

* loads the page (index, its scripts, ``_dash-layout``, ``_dash-dependencies``) and opens the
  Market tab (the ``page.children`` callback);
* sessions 1-4 choose another time frame; sessions 5-6 upload their own bid file (the default
  bids with session-specific volumes and prices) through the upload callback;
* clicks "Clear market" K times back to back: the clear callback with the session's day type,
  hour, request (``1.0 + 0.04 * session + 0.01 * click`` MW, so no two rounds are alike) and bid
  table, following Dash's background-callback polling (``cacheKey``/``job``) when the server
  answers with a job.

A clear is **answered** when the callback returns the session's own result: HTTP 200, the
result store holding that session's request and time frame, and the market views. Anything
else (an HTTP error, 204, a foreign or missing result, no answer by the deadline) is **lost**;
in the browser it would be a hung "clearing…" indicator. Latency is click to answer.

HTTP rather than headless Chromium: twenty Chromium renderers would take the two cores from the
server under test and measure the browsers; the callback requests are exactly what the renderer
sends (same payloads, same endId/cacheKey/job protocol), the browser tests cover the page itself.

``peak_rss_mb`` is the peak of the summed RSS of the server's whole process tree (gunicorn master
and workers, Celery worker and pool, Redis), sampled every 0.5 s; it counts pages shared
copy-on-write by the forked workers once per process, so ``peak_pss_mb`` (proportional set size)
is printed too. ``leftover`` counts processes of the tree still alive after the server was
stopped (then killed). ``server_cpu_s`` is the CPU time the server's processes used during the
room and ``cpu_per_clear_s`` that per answered clear: on a machine shared with other work it tells
how much of the latency is the server's own work (20 sessions back to back on 2 cores cannot wait
less than about ``20 * cpu_per_clear_s / 2`` on average); ``client_cpu_s`` is this benchmark's own
CPU time (the sessions' HTTP and JSON work), taken from the same cores. Bounded: at most 64 sessions x 50 clears, the deadline at most 1800 s,
127.0.0.1 only; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MAX_SESSIONS, MAX_CLEARS, MAX_DEADLINE_S = 64, 50, 1800.0
OTHER_TIME_FRAMES = (("weekday", 12), ("weekend", 18), ("weekday", 8), ("weekend", 13))
N_UPLOADS = 2
CLEAR_INPUT = "clear-request.data"
UPLOAD_INPUT = "market-upload.contents"
PAGE_OUTPUT = "page.children"


# ------------------------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    """Return the q-quantile (0..1) by linear interpolation, None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def split_outputs(output: str) -> list[dict[str, str]]:
    """Return Dash's ``outputs`` list of a callback's output string (``..a.b...c.d..`` or ``a.b``)."""
    parts = output.strip(".").split("...") if output.startswith("..") else [output]
    outs = []
    for part in parts:
        ident, prop = part.rsplit(".", 1)
        outs.append({"id": ident, "property": prop.split("@")[0]})
    return outs


def find_prop(tree: Any, ident: str, prop: str) -> Any:
    """Return ``props[prop]`` of the component with id ``ident`` in a Dash JSON tree (None if absent)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict) and props.get("id") == ident:
                return props.get(prop)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


# ------------------------------------------------------------------------------------ processes
class ProcessTree:
    """Sample the RSS/PSS of a process tree; remember every pid seen (to check none is left behind)."""

    def __init__(self, roots: list[int]) -> None:
        import psutil

        self.psutil = psutil
        self.roots = roots
        self.seen: set[int] = set()
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self.cpu_s: dict[int, float] = {}  # last CPU time (user + system) seen per process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def processes(self) -> list[Any]:
        procs = []
        for pid in self.roots:
            try:
                root = self.psutil.Process(pid)
                procs.append(root)
                procs.extend(root.children(recursive=True))
            except self.psutil.NoSuchProcess:
                continue
        return procs

    def sample(self, pss: bool) -> None:
        rss = pss_total = 0.0
        for p in self.processes():
            try:
                self.seen.add(p.pid)
                times = p.cpu_times()
                self.cpu_s[p.pid] = times.user + times.system
                if pss:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss_total += info.pss
                else:
                    rss += p.memory_info().rss
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                continue
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)
        if pss:
            self.peak_pss_mb = max(self.peak_pss_mb, pss_total / 2**20)

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(0.5):
            self.sample(pss=k % 4 == 0)  # smaps (PSS) is slower to read: every 2 s
            k += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def alive(self) -> list[int]:
        out = []
        for pid in sorted(self.seen):
            try:
                p = self.psutil.Process(pid)
                if p.status() != self.psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except self.psutil.NoSuchProcess:
                continue
        return out


def _own_cpu_s() -> float:
    """CPU time of this process (the sessions' threads): it shares the cores with the server."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    """Start a private redis-server on a free loopback port; return it and its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("bench_load: --redis needs redis-server (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([exe, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(workdir), "--daemonize", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    import redis

    for _ in range(100):
        try:
            redis.Redis(host=HOST, port=port, socket_connect_timeout=0.2).ping()
            return proc, f"redis://{HOST}:{port}/0"
        except redis.RedisError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("bench_load: redis-server did not start")


def start_server(port: int, workers: int, cache_dir: Path, redis_url: str | None, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, DIGIPLAT_CACHE_DIR=str(cache_dir), DIGIPLAT_TILE_URL="",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "app", "--host", HOST, "--port", str(port), "--workers", str(workers)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(REPO))


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> float:
    import requests

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it answered")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server did not answer within {timeout_s:.0f} s")


def stop_process(proc: subprocess.Popen, timeout_s: float) -> float:
    """SIGTERM (gunicorn's graceful stop), wait, then SIGKILL its process group; return the stop time."""
    t0 = time.perf_counter()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    stop_s = time.perf_counter() - t0
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return stop_s


# ------------------------------------------------------------------------------------ a session
@dataclass
class Session:
    """One browser session of the room: its time frame, bids, and the outcome of its clicks."""

    index: int
    base: str
    deadline: float
    day_type: str = "weekday"
    hour: int = 18
    upload: bool = False
    latencies_s: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    page_s: float | None = None

    def request_mw(self, click: int) -> float:
        return round(1.0 + 0.04 * self.index + 0.01 * click, 4)

    def remaining(self) -> float:
        return max(0.1, self.deadline - time.perf_counter())

    def run(self, clears: int) -> None:
        import requests

        http = requests.Session()
        try:
            self._run(http, clears)
        except Exception as exc:  # the session could not even start: all its clears are lost
            missing = clears - len(self.latencies_s) - len(self.lost)
            self.lost.extend([f"session {self.index}: {type(exc).__name__}: {exc}"] * missing)
        finally:
            http.close()

    def _run(self, http, clears: int) -> None:
        t0 = time.perf_counter()
        index = http.get(self.base + "/", timeout=self.remaining())
        index.raise_for_status()
        config = json.loads(re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', index.text, re.S).group(1))
        self.end_id = config.get("end_id")
        for src in re.findall(r'<script src="([^"]+)"', index.text) + re.findall(r'<link rel="stylesheet" href="([^"]+)"', index.text):
            if src.startswith("/"):
                http.get(self.base + src, timeout=self.remaining()).raise_for_status()
        http.get(self.base + "/_dash-layout", timeout=self.remaining()).raise_for_status()
        deps = http.get(self.base + "/_dash-dependencies", timeout=self.remaining()).json()
        self.callbacks = {tuple(i["id"] + "." + i["property"] for i in cb["inputs"]): cb for cb in deps}
        page = self.post_callback(http, self.callback_of(PAGE_OUTPUT, by="output"),
                                  [("tabs", "active_tab", "market"), ("session-token", "data", None)],
                                  [("bids-store", "data", None), ("url", "search", "")])
        self.bids = find_prop(page, "market-bids", "rowData")
        if not self.bids:
            raise RuntimeError("the Market tab has no bid table")
        self.page_s = time.perf_counter() - t0
        if self.upload:
            name, contents = self.own_bid_file()
            answer = self.post_callback(http, self.callback_of(UPLOAD_INPUT), [("market-upload", "contents", contents)],
                                        [("market-upload", "filename", name), ("market-bids", "rowData", self.bids)])
            bids = answer.get("market-bids", {}).get("rowData")
            if not bids or answer.get("market-alert", {}).get("is_open"):
                raise RuntimeError(f"upload refused: {answer.get('market-alert', {}).get('children')}")
            self.bids = bids
        clear = self.callback_of(CLEAR_INPUT)
        for click in range(clears):
            if time.perf_counter() >= self.deadline:
                self.lost.append(f"session {self.index} click {click}: deadline")
                continue
            request_mw = self.request_mw(click)
            t = time.perf_counter()
            try:
                answer = self.post_callback(http, clear, [("clear-request", "data", {"n_clicks": click + 1, "at": int(time.time() * 1000)})], [
                    ("market-day-type", "value", self.day_type), ("market-time", "value", f"{self.hour:02d}:00"),
                    ("market-request", "value", request_mw), ("market-bids", "rowData", self.bids),
                    ("market-refine", "value", False)])
            except Exception as exc:
                self.lost.append(f"session {self.index} click {click}: {type(exc).__name__}: {exc}"[:300])
                continue
            problem = self.check(answer, request_mw)
            if problem:
                self.lost.append(f"session {self.index} click {click}: {problem}")
            else:
                self.latencies_s.append(time.perf_counter() - t)

    def own_bid_file(self) -> tuple[str, str]:
        """The session's own bid file: the table's bids with other volumes and prices, as CSV."""
        buf = io.StringIO()
        columns = ["bid_id", "aggregator", "building_id", "p_mw", "price_eur_per_mwh", "fpu"]
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        scale = 0.8 + 0.1 * (self.index % 3)
        for row in self.bids:
            writer.writerow({**row, "p_mw": round(float(row["p_mw"]) * scale, 6),
                             "price_eur_per_mwh": round(float(row["price_eur_per_mwh"]) + self.index, 3)})
        data = base64.b64encode(buf.getvalue().encode()).decode()
        return f"room-session-{self.index}.csv", "data:text/csv;base64," + data

    def check(self, answer: dict, request_mw: float) -> str:
        result = answer.get("result-store", {}).get("data")
        if not isinstance(result, dict):
            alert = answer.get("market-alert", {}).get("children")
            return f"no result (alert: {alert!r})"[:300]
        frame = result.get("time_frame", {})
        if abs(float(result.get("request_mw", float("nan"))) - request_mw) > 1e-9 or frame.get("hour") != self.hour \
                or frame.get("day_type") != self.day_type:
            return f"another session's result: {result.get('request_mw')} MW at {frame}"
        if "milp" not in result or not answer.get("market-cards", {}).get("children"):
            return "the result has no market views"
        return ""

    def callback_of(self, key: str, by: str = "input") -> dict:
        for inputs, cb in self.callbacks.items():
            if (by == "input" and inputs == (key,)) or (by == "output" and cb["output"] == key):
                return cb
        raise RuntimeError(f"no callback for {key}")

    def post_callback(self, http, cb: dict, inputs: list[tuple], state: list[tuple]) -> dict:
        """Post a callback as the renderer does; follow background-job polling; return ``{id: props}``."""
        payload = {
            "output": cb["output"], "outputs": split_outputs(cb["output"]) if cb["output"].startswith("..") else split_outputs(cb["output"])[0],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": [f"{i}.{p}" for i, p, _ in inputs],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        }
        url = self.base + "/_dash-update-component"
        params = {"endId": self.end_id} if self.end_id else {}
        interval_s = ((cb.get("background") or {}).get("interval") or 500) / 1000
        body = payload
        while True:
            res = http.post(url, params=params, json=body, timeout=self.remaining())
            if res.status_code != 200:
                raise RuntimeError(f"HTTP {res.status_code}")
            data = res.json()
            if "response" in data:
                return data["response"]
            if "cacheKey" in data and "job" in data:
                params = {**params, "cacheKey": data["cacheKey"], "job": data["job"]}
                body = {**payload, "inputs": [{**x, "value": None} for x in payload["inputs"]],
                        "state": [{**x, "value": None} for x in payload["state"]]}
            if time.perf_counter() >= self.deadline:
                raise TimeoutError("no answer by the deadline")
            time.sleep(interval_s)


# ------------------------------------------------------------------------------------ the room
def run_load(sessions: int, clears: int, deadline_s: float, *, port: int | None = None, workers: int = 2,
             redis: bool = False, redis_url: str | None = None, startup_timeout_s: float = 240.0,
             other_time_frames: int = len(OTHER_TIME_FRAMES), uploads: int = N_UPLOADS) -> dict[str, Any]:
    """Start a server, run the room against it, stop everything; return the figures.

    Session 0 and those after the others clear the default time frame (weekday 18:00) with the
    default bids; sessions ``1..other_time_frames`` use :data:`OTHER_TIME_FRAMES`; the next
    ``uploads`` sessions upload their own bid file first.
    """
    if not (1 <= sessions <= MAX_SESSIONS and 1 <= clears <= MAX_CLEARS and 0 < deadline_s <= MAX_DEADLINE_S):
        raise ValueError(f"sessions 1-{MAX_SESSIONS}, clears 1-{MAX_CLEARS}, deadline 0-{MAX_DEADLINE_S:.0f} s")
    port = port or free_port()
    work = Path(tempfile.mkdtemp(prefix="digiplat-bench-load-"))
    os.chmod(work, 0o700)
    load_before = os.getloadavg()
    redis_proc = None
    server = None
    tree = None
    figures: dict[str, Any] = {}
    try:
        if redis and not redis_url:
            redis_proc, redis_url = start_redis(work)
        server = start_server(port, workers, work / "cache", redis_url, work / "server.log")
        tree = ProcessTree([server.pid] + ([redis_proc.pid] if redis_proc else []))
        tree.start()
        base = f"http://{HOST}:{port}"
        startup_s = wait_ready(base + "/", server, startup_timeout_s)
        deadline = time.perf_counter() + deadline_s
        room = [Session(i, base, deadline) for i in range(sessions)]
        frames = OTHER_TIME_FRAMES[: max(0, min(other_time_frames, sessions - 1))]
        for i, (day_type, hour) in enumerate(frames):
            room[i + 1].day_type, room[i + 1].hour = day_type, hour
        for s in room[1 + len(frames): 1 + len(frames) + uploads]:
            s.upload = True
        tree.sample(pss=False)
        cpu_before_s = sum(tree.cpu_s.values())
        client_before_s = _own_cpu_s()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=s.run, args=(clears,), daemon=True) for s in room]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.1, deadline - time.perf_counter()) + 30)
        wall_s = time.perf_counter() - t0
        tree.sample(pss=False)
        server_cpu_s = sum(tree.cpu_s.values()) - cpu_before_s
        client_cpu_s = _own_cpu_s() - client_before_s
        latencies = [x for s in room for x in s.latencies_s]
        lost = [x for s in room for x in s.lost]
        lost += [f"session {s.index}: unfinished" for s in room for _ in range(clears - len(s.latencies_s) - len(s.lost))]
        pages = [s.page_s for s in room if s.page_s is not None]
        figures = {
            "mode": "celery+redis" if redis_url else "gunicorn",
            "sessions": sessions, "clears": clears, "workers": workers,
            "other_time_frames": len(frames), "uploads": sum(s.upload for s in room),
            "answered": len(latencies), "lost": len(lost),
            "p50_s": percentile(latencies, 0.5), "p95_s": percentile(latencies, 0.95),
            "max_s": max(latencies) if latencies else None,
            "page_p50_s": percentile(pages, 0.5), "startup_s": startup_s, "wall_s": wall_s,
            "server_cpu_s": server_cpu_s, "client_cpu_s": client_cpu_s, "cpu_per_clear_s": server_cpu_s / len(latencies) if latencies else None,
            "lost_reasons": lost[:10],
        }
    finally:
        if tree is not None:
            tree.sample(pss=True)
            tree.stop()
        stop_s = stop_process(server, 60) if server is not None else None
        if redis_proc is not None:
            stop_process(redis_proc, 10)
        leftover = tree.alive() if tree is not None else []
        for pid in leftover:  # report them, then do not leave them running
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        figures.update({
            "peak_rss_mb": round(tree.peak_rss_mb, 1) if tree else None,
            "peak_pss_mb": round(tree.peak_pss_mb, 1) if tree else None,
            "processes_seen": len(tree.seen) if tree else None,
            "leftover": len(leftover), "stop_s": stop_s,
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        })
        if figures.get("lost"):
            figures["server_log_tail"] = (work / "server.log").read_text(errors="replace")[-2000:] if (work / "server.log").exists() else ""
        shutil.rmtree(work, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20, help=f"concurrent sessions (1-{MAX_SESSIONS}, default 20)")
    parser.add_argument("--clears", type=int, default=5, help=f"clears per session, back to back (1-{MAX_CLEARS}, default 5)")
    parser.add_argument("--deadline-s", type=float, default=300.0, help="every clear must be answered within this many "
                        f"seconds of the start (at most {MAX_DEADLINE_S:.0f}, default 300)")
    parser.add_argument("--port", type=int, default=None, help="server port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (and Celery pool size; default 2)")
    parser.add_argument("--redis", action="store_true", help="Celery path: start a private redis-server for the server")
    parser.add_argument("--redis-url", default=None, help="Celery path with an existing Redis (redis://127.0.0.1:PORT/DB)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if args.redis_url and not args.redis_url.startswith(("redis://127.0.0.1", "redis://localhost")):
        parser.error("--redis-url must point at 127.0.0.1")
    try:
        figures = run_load(args.sessions, args.clears, args.deadline_s, port=args.port, workers=args.workers,
                           redis=args.redis or bool(args.redis_url), redis_url=args.redis_url)
    except (ValueError, RuntimeError) as exc:
        print(f"bench_load: {exc}", file=sys.stderr)
        return 2
    print(f"bench_load: {figures['mode']}, {figures['sessions']} sessions x {figures['clears']} clears, "
          f"{figures['workers']} workers, load average before {figures['load_before']} after {figures['load_after']}")
    fmt = lambda x: "-" if x is None else (f"{x:.2f}" if isinstance(x, float) else str(x))  # noqa: E731
    rows = [("answered", figures["answered"]), ("lost", figures["lost"]), ("p50_s", figures["p50_s"]),
            ("p95_s", figures["p95_s"]), ("max_s", figures["max_s"]), ("peak_rss_mb", figures["peak_rss_mb"]),
            ("peak_pss_mb", figures["peak_pss_mb"]), ("page_p50_s", figures["page_p50_s"]), ("startup_s", figures["startup_s"]),
            ("wall_s", figures["wall_s"]), ("server_cpu_s", figures["server_cpu_s"]), ("client_cpu_s", figures["client_cpu_s"]),
            ("cpu_per_clear_s", figures["cpu_per_clear_s"]), ("stop_s", figures["stop_s"]), ("processes_seen", figures["processes_seen"]),
            ("leftover", figures["leftover"])]
    for name, value in rows:
        print(f"{name:>15}  {fmt(value)}")
    for reason in figures.get("lost_reasons", []):
        print(f"  lost: {reason}")
    if args.json:
        print(json.dumps({k: v for k, v in figures.items() if k != "server_log_tail"}))
    return 0 if figures["lost"] == 0 and figures["leftover"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
