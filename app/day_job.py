"""A market day as a background job of the app, shared by every server process through the private cache.

A whole weekday (96 units) takes about 84 s on one core, far longer than a request may block a
gunicorn worker. A click on "Run day" therefore starts a separate Python process
(``python -m app.day_job KEY``) and returns at once; the page polls the job's status file with a
``dcc.Interval`` and draws the results when they are there.

Why a job process and a status file, not a Dash background callback or a thread:

* ``digiplat serve`` runs gunicorn with several worker processes, and the browser's polls land on
  any of them: the job's state must live outside the worker that started it. The private cache
  directory (:func:`app.session.cache_dir`) is shared by all workers (and survives a restart), so a
  second visit, in any worker, finds a finished day instantly.
* Dash's background callbacks need a manager: ``DiskcacheManager`` needs ``diskcache`` and
  ``multiprocess`` (not dependencies of this project), ``CeleryManager`` needs Redis, which the
  room only has with ``$REDIS_URL``. The job file works the same way with or without Redis.
* A thread inside a gunicorn sync worker would share that worker's GIL for 84 s of Python (the
  other tabs' requests in that worker would crawl) and would die silently when gunicorn replaces
  the worker. A process of its own runs on its own core; it watches its parent and stops, leaving
  a "failed" status, when the server that started it is gone (no process outlives the server).

Files, all in the cache directory, all written atomically (temporary file + ``os.replace``):

``day-KEY.profile.csv``
    The request profile the job reads (written by the server before it starts the job).
``day-KEY.status.json``
    ``{state: queued|running|done|failed, done, total, unit, message, started_at, updated_at}``.
``day-KEY.json``
    The results (:meth:`optim.day.MarketDay.to_dict` with every unit's grid state), written once.
``day-KEY.lock``
    Held (``flock``) by the job process for its whole life: one job per key at a time, whichever
    worker was clicked, and a status that says "running" without a holder is a job that died.
``day-slot-N.lock``
    At most ``$DIGIPLAT_DAY_JOBS`` days (default 1) run at once on the machine; later ones wait
    in state ``queued``, so memory and CPU stay bounded in a room.

``KEY`` hashes the grid file, the code of :mod:`optim`, the day's configuration and the profile,
so a result is never read back for another grid, other code or other inputs.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
STATES = ("none", "queued", "running", "done", "failed")
#: Finished days kept in the cache directory (a Bergwald weekday is ~3 MB).
KEEP_DAYS = 16
POLL_S = 1.0  # how often a queued job looks for a free slot and checks that its server is still there


def max_jobs() -> int:
    """Days that may run at once on this machine (``$DIGIPLAT_DAY_JOBS``, default 1)."""
    text = os.environ.get("DIGIPLAT_DAY_JOBS", "1").strip()
    return max(1, int(text)) if text.isdigit() else 1


def day_config(day_type: str):
    """The app's day: 15-minute units, 9 merit-level points per unit (no bisection: 96 units a day), grid states kept."""
    from optim.day import DayConfig

    return DayConfig(day_type=day_type, grid_state=True)


def profile_csv(profile: pd.DataFrame) -> str:
    """The profile as the canonical CSV the job reads (``start,request_mw``; floats round-trip exactly)."""
    lines = ["start,request_mw"] + [f"{s},{float(r)!r}" for s, r in zip(profile.start, profile.request_mw)]
    return "\n".join(lines) + "\n"


def _grid_fingerprint() -> str:
    from gridgen.grid import default_grid_dir

    grid_json = Path(default_grid_dir()) / "grid.json"
    st = grid_json.stat()
    return f"{grid_json.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def job_key(config: Any, profile: pd.DataFrame) -> str:
    """The cache key of a day: grid file, code of :mod:`optim`, configuration and profile."""
    from app.session import _code_fingerprint

    text = "|".join([_grid_fingerprint(), _code_fingerprint(), json.dumps(config.to_dict(), sort_keys=True),
                     profile_csv(profile)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _path(folder: Path, key: str, suffix: str) -> Path:
    if not key.isalnum():  # keys come back from the browser: never a path
        raise ValueError(f"bad day key {key!r}")
    return folder / f"day-{key}{suffix}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_status(folder: Path, key: str, **status: Any) -> None:
    _write_atomic(_path(folder, key, ".status.json"), json.dumps({**status, "updated_at": time.time()}))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _held(lock_path: Path) -> bool:
    """Whether a job process holds ``lock_path`` now."""
    try:
        with open(lock_path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    return True
                raise
            return False  # closing the file releases the shared lock
    except FileNotFoundError:
        return False


def day_status(key: str) -> dict[str, Any]:
    """The state of the day ``key``: ``{state, done, total, unit, message}`` (``state`` in :data:`STATES`).

    ``done`` as soon as its results are in the cache (whichever process computed them); a
    ``queued`` or ``running`` status whose process has gone is reported as ``failed``.
    """
    from app.session import cache_dir

    folder = cache_dir()
    status = _read_json(_path(folder, key, ".status.json"))
    if _path(folder, key, ".json").is_file():
        total = int((status or {}).get("total", 0))
        return {"state": "done", "done": total, "total": total, "unit": "", "message": ""}
    if status is None:
        return {"state": "none", "done": 0, "total": 0, "unit": "", "message": ""}
    out = {"done": 0, "total": 0, "unit": "", "message": "", **status}
    if out["state"] in ("queued", "running") and not _held(_path(folder, key, ".lock")):
        if _path(folder, key, ".json").is_file():  # it finished between the two looks
            return day_status(key)
        out = {**out, "state": "failed", "message": "the day's run stopped before it finished; run it again"}
    return out


def start_day(config: Any, profile: pd.DataFrame) -> str:
    """Start the day (a job process) unless its results exist or it runs already; return its key.

    Raises
    ------
    optim._errors.InputError
        The cache directory is not usable.
    """
    from app.session import cache_dir

    folder = cache_dir()
    key = job_key(config, profile)
    if _path(folder, key, ".json").is_file():
        if day_results(key) is not None:
            return key
        _path(folder, key, ".json").unlink(missing_ok=True)  # damaged (disk full, edited): compute it again
    lock = open(_path(folder, key, ".lock"), "a")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return key  # a job for this day runs (started by this or another worker): follow it
            raise
        if _path(folder, key, ".json").is_file():  # finished while we waited for the lock
            return key
        _write_atomic(_path(folder, key, ".profile.csv"), profile_csv(profile))
        _write_status(folder, key, state="queued", done=0, total=int(len(profile)), unit="",
                      message="starting", started_at=time.time(), config=config.to_dict())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        # The job inherits the locked file: the lock passes to it without a moment in which another
        # worker could start the same day.
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.day_job", key, "--cache-dir", str(folder), "--lock-fd", str(lock.fileno()),
             "--parent", str(os.getpid())],
            env=env, pass_fds=(lock.fileno(),), stdin=subprocess.DEVNULL, cwd=str(REPO),
        )
        # reap it when it ends (no zombie left in a long-lived worker)
        threading.Thread(target=proc.wait, daemon=True, name=f"day-job-{key[:8]}").start()
        log.info("market day %s started as process %d (%d units)", key[:8], proc.pid, len(profile))
        return key
    finally:
        lock.close()


@functools.lru_cache(maxsize=4)
def _results_file(path: str, mtime_ns: int) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def day_results(key: str) -> dict[str, Any] | None:
    """The finished day ``key`` (read once per process and file), or None."""
    from app.session import cache_dir

    try:
        path = _path(cache_dir(), key, ".json")
        return _results_file(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------ the job
class _ServerGone(Exception):
    """The server process that started the job has ended."""


def _terminated(signum: int, frame: Any) -> None:
    raise _ServerGone()


def _acquire_slot(folder: Path, parent: int | None, report) -> Any:
    """Block until one of the :func:`max_jobs` slots is free; return its open, locked file."""
    while True:
        for k in range(max_jobs()):
            f = open(folder / f"day-slot-{k}.lock", "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return f
            except OSError:
                f.close()
        report()
        _check_parent(parent)
        time.sleep(POLL_S)


def _check_parent(parent: int | None) -> None:
    if parent is not None and os.getppid() != parent:
        raise _ServerGone()


def _prune(folder: Path) -> None:
    """Keep the newest :data:`KEEP_DAYS` finished days."""
    done = sorted(folder.glob("day-*[0-9a-f].json"), key=lambda p: p.stat().st_mtime)
    for old in done[:-KEEP_DAYS]:
        key = old.name[4:-5]
        for suffix in (".json", ".status.json", ".profile.csv"):
            _path(folder, key, suffix).unlink(missing_ok=True)
        if not _held(_path(folder, key, ".lock")):
            _path(folder, key, ".lock").unlink(missing_ok=True)


def run_job(key: str, folder: Path, *, parent: int | None = None) -> int:
    """Run the day ``key`` whose profile and status the server wrote; return the exit code.

    The caller holds ``day-KEY.lock``. Progress goes to the status file after every unit; the
    results are written once, complete; a failure leaves a one-line message in the status.
    """
    from optim._errors import InputError, OptimError
    from optim.day import DayConfig, market_day, request_profile_from_csv
    from gridgen.grid import default_grid_dir

    status = _read_json(_path(folder, key, ".status.json")) or {}
    started_at = status.get("started_at", time.time())
    total = 0
    try:
        config = DayConfig(**status["config"])
        profile = request_profile_from_csv(_path(folder, key, ".profile.csv"), config.mtu_min)
        total = int(len(profile))

        def report(state: str = "queued", done: int = 0, unit: str = "",
                   message: str = "waiting for another market day to finish") -> None:
            _write_status(folder, key, state=state, done=done, total=total, unit=unit, message=message,
                          started_at=started_at, config=config.to_dict())

        slot = _acquire_slot(folder, parent, report)
        try:
            report("running", 0, "", "loading the grid")

            def progress(done: int, n: int, message: str) -> None:
                report("running", done, message.split()[1] if message.startswith("unit ") else "", message)
                _check_parent(parent)

            day = market_day(default_grid_dir(), profile, config=config, workers=0, progress=progress)
        finally:
            slot.close()
        result = {"key": key, **day.to_dict(), "finished_at": time.time()}
        _write_atomic(_path(folder, key, ".json"), json.dumps(result, separators=(",", ":")))
        _write_status(folder, key, state="done", done=total, total=total, unit="", message="",
                      started_at=started_at, config=config.to_dict())
        _prune(folder)
        log.info("market day %s done: %d units in %.1f s", key[:8], total, day.runtime_s)
        return 0
    except _ServerGone:
        message = "the server stopped during the run; run the day again"
    except (InputError, OptimError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    except KeyboardInterrupt:
        message = "the day's run was interrupted; run it again"
    except Exception as exc:  # the user gets one line; the server log (this process's stderr) the traceback
        log.exception("market day %s failed", key[:8])
        message = f"the market day failed ({type(exc).__name__}); the server log has the details"
    done = int((_read_json(_path(folder, key, ".status.json")) or {}).get("done", 0))
    _write_status(folder, key, state="failed", done=done, total=total, unit="", message=message,
                  started_at=started_at, config=status.get("config"))
    return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m app.day_job KEY --cache-dir DIR [--lock-fd N] [--parent PID]`` (started by :func:`start_day`)."""
    parser = argparse.ArgumentParser(prog="python -m app.day_job", description="run one market day of the app")
    parser.add_argument("key")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--lock-fd", type=int, default=None, help="the inherited, locked day-KEY.lock")
    parser.add_argument("--parent", type=int, default=None, help="stop when this process (the server) ends")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s day-job %(levelname)s %(name)s: %(message)s")
    logging.getLogger("optim").setLevel(logging.WARNING)
    # SIGTERM (the server's process group stopped) ends the job like a lost server: a "failed" status
    signal.signal(signal.SIGTERM, _terminated)
    folder = Path(args.cache_dir)
    if args.lock_fd is None:  # run by hand: take the lock like the server would
        lock = open(_path(folder, args.key, ".lock"), "a")
        fcntl.flock(lock, fcntl.LOCK_EX)
    code = run_job(args.key, folder, parent=args.parent)
    logging.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
