"""The app's market round for new time frames in one server process, this tree against a baseline.

A click on a quarter-hour not linearized before pays the DSO's linearization (9 merit levels,
bisected), stores what the server's other workers need in the private cache, and clears and
validates the round. This benchmark runs :func:`app.session.market_round` for ``--frames`` such
quarter-hours in a row in one fresh process per tree (a private cache directory each, under
``$TMPDIR``, default ``/tmp``, on the disk), the trees alternating, and prints every frame's time,
the median and the ratio. In a row matters: a tree that stores each frame's whole package leaves
a 60-85 MB pickle per frame, and once the disk's writeback falls behind the clicks stall (seen:
0.8 s frames becoming 1.5-3.4 s); this tree stores the frame's point selection (44 kB).
``bench_app.py`` measures the same clicks through the browser.

Usage::

    .venv/bin/python benchmarks/bench_frames.py [--baseline DIR] [--frames 9] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Weekday quarter-hours, none of them on the hour the app warms up (18:00).
FRAMES = [(17, 15), (19, 30), (16, 45), (20, 15), (17, 45), (19, 0), (16, 15), (20, 45), (18, 30), (15, 15), (21, 30),
          (14, 45)]

#: Runs in a fresh interpreter with the tree under test first on sys.path.
WORKER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from app import session
session.warm_up()
times = []
for hour, minute in json.loads(sys.argv[2]):
    records = session.default_bid_records("weekday", hour, minute)
    t0 = time.perf_counter()
    session.market_round("weekday", hour, 1.8, records, minute=minute)
    times.append(time.perf_counter() - t0)
print("RESULT " + json.dumps(times))
"""


def _run(tree: Path, frames: list[tuple[int, int]]) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-frames-", dir=os.environ.get("TMPDIR", "/tmp")) as cache:
        env = dict(os.environ, DIGIPLAT_CACHE_DIR=cache, PYTHONPATH=str(tree))
        proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r})\n" + WORKER,
                               str(tree), json.dumps(frames)], capture_output=True, text=True, env=env, cwd=str(tree))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_frames: the run in {tree} failed: {tail}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="a second checkout to compare with")
    parser.add_argument("--frames", type=int, default=9, help=f"new frames per run, 1..{len(FRAMES)} (default 9)")
    parser.add_argument("--runs", type=int, default=2, help="runs per tree, alternating (default 2)")
    args = parser.parse_args(argv)
    if not 1 <= args.frames <= len(FRAMES):
        parser.error(f"--frames must be 1..{len(FRAMES)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.baseline is not None and not (args.baseline / "app" / "session.py").is_file():
        parser.error(f"--baseline {args.baseline} is not a checkout of this project")
    trees = [("new", ROOT)] + ([("old", args.baseline.resolve())] if args.baseline else [])
    frames = FRAMES[:args.frames]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("new frames in one process (s): " + ", ".join(f"{h:02d}:{m:02d}" for h, m in frames))
    medians: dict[str, list[float]] = {name: [] for name, _ in trees}
    for run in range(args.runs):
        for name, tree in trees:
            times = _run(tree, frames)
            medians[name].append(statistics.median(times))
            print(f"{name} run {run + 1}: median {statistics.median(times):.2f}  max {max(times):.2f}  "
                  f"[{' '.join(f'{t:.2f}' for t in times)}]", flush=True)
    print(f"{'tree':<6}{'median of run medians s':>26}")
    for name, _ in trees:
        print(f"{name:<6}{statistics.median(medians[name]):>26.2f}")
    if args.baseline:
        print(f"ratio old/new: {statistics.median(medians['old']) / statistics.median(medians['new']):.2f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
