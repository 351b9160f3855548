"""Linearization time (power flows included), this tree against a baseline checkout, in one run (issue 12).

For each grid and case (point method, m) a fresh Python process loads the grid and the default
scenario and runs :func:`optim.dso.linearize.linearize` three times: the first call pays what a
process pays once (this tree: the grid's one pandapower power flow, then cached); 'warm' is the
better of the next two, what a further time frame or click costs in a warm process (on this
Firecracker VM the first touch of guest memory no process has used before costs ~2.5 s of system
time per GB, and a whole-grid linearization allocates ~1 GB: the second call can pay that, the
third reuses the pages). The same worker runs on the baseline
checkout (today's method, e.g. ``git worktree add --detach /tmp/perf-base 77ee9c2``), so both
columns and their ratio come from the same run. Then ``digiplat linearize`` end to end in a
fresh process (imports, grid load, scenario, linearization, writing the package and key), for
both trees: once with an empty private cache (cold) and then for new hours of the same day. The load average is printed before and after (2-core machine shared with other jobs).

Usage::

    .venv/bin/python benchmarks/bench_linearize.py [--baseline DIR] [--grid DIR ...] [--cases all-half-none:3,...]
        [--cli-cases all-half-none:3,merit-levels:9] [--no-cli] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Runs in a fresh interpreter with the tree under test first on sys.path (old and new API alike).
WORKER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from app.commands.linearize import load_grid_and_scenario
from optim.dso.linearize import LinearizationConfig, linearize
grid_dir, method, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
grid, scenario, _ = load_grid_and_scenario(None if grid_dir == "-" else grid_dir, None, None)
t_load = time.perf_counter() - t0
config = LinearizationConfig(n_points=m, point_method=method)
times = []
for _ in range(3):
    t1 = time.perf_counter()
    lin = None  # the previous result is freed first, as in a worker that moves on to the next frame
    lin = linearize(grid, scenario, config=config)
    times.append(time.perf_counter() - t1)
print(json.dumps({"load_s": t_load, "first_s": times[0], "warm_s": min(times[1:]),
                  "flex": len(lin.package.flex_ids), "buildings": int(len(grid.buildings)),
                  "rows": int(sum(p.n_rows for p in lin.package.points))}))
"""


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    return env


def _worker(tree: Path, grid: str, method: str, m: int) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, grid, method, str(m)], env=_env(tree), cwd=tree,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"worker failed in {tree} ({grid}, {method}, m={m}): {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cli(tree: Path, grid: str, method: str, m: int, hour: int, cache: Path) -> float:
    """Wall time of ``digiplat linearize --hour H`` in a fresh process with the private cache ``cache``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "app.cli", "linearize", "--points", str(m), "--point-method", method,
               "--hour", str(hour), "--out", str(Path(tmp) / "pkg.zip")]
        if grid != "-":
            cmd += ["--grid", grid]
        env = dict(_env(tree), DIGIPLAT_CACHE_DIR=str(cache))
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"digiplat linearize failed in {tree}: {out.stderr.strip()[-400:]}")
    return wall


def _cases(text: str) -> list[tuple[str, int]]:
    cases = []
    for item in text.split(","):
        method, _, m = item.partition(":")
        cases.append((method.strip(), int(m)))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="checkout of today's method (e.g. a worktree of main)")
    parser.add_argument("--grid", action="append", default=None,
                        help="grid folder (repeatable; default: the shipped Bergwald grid)")
    parser.add_argument("--cases", default="all-half-none:3,all-half-none:5,merit-levels:9",
                        help="point-method:m, comma-separated (default all-half-none:3,all-half-none:5,merit-levels:9)")
    parser.add_argument("--cli-cases", default="all-half-none:3,merit-levels:9",
                        help="cases of 'digiplat linearize' end to end, on the first grid")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI timings")
    parser.add_argument("--repeat", type=int, default=3,
                        help="new hours per CLI case after the cold run, old and new alternating; the median is "
                             "reported (default 3)")
    args = parser.parse_args(argv)
    grids = args.grid or ["-"]
    if args.baseline is not None and not (args.baseline / "optim" / "dso" / "linearize.py").is_file():
        print(f"--baseline {args.baseline} is not a checkout of this project; create one with "
              "'git worktree add --detach DIR <commit>'", file=sys.stderr)
        return 2
    for grid in grids:
        if grid != "-" and not (Path(grid) / "net.json").is_file() and not Path(grid).is_dir():
            print(f"--grid {grid} is not a grid folder; build one with 'digiplat grid build'", file=sys.stderr)
            return 2
    print(f"load average before: {_load()}")
    print("linearize() in a fresh process per row; 'first' pays the per-process work once, 'warm' is the better of "
          "the next two calls (another time frame or click)")
    head = f"{'grid':<16}{'bldgs':>6}{'flex':>6}{'case':>18}{'rows':>9}{'new first s':>13}{'new warm s':>12}"
    if args.baseline:
        head += f"{'old first s':>13}{'old warm s':>12}{'ratio warm':>12}{'ratio first':>12}"
    print(head)
    for grid in grids:
        name = "Bergwald" if grid == "-" else Path(grid).name
        for method, m in _cases(args.cases):
            new = _worker(ROOT, grid, method, m)
            line = (f"{name:<16}{new['buildings']:>6}{new['flex']:>6}{f'{method} m={m}':>18}{new['rows']:>9}"
                    f"{new['first_s']:>13.3f}{new['warm_s']:>12.3f}")
            if args.baseline:
                old = _worker(args.baseline, grid, method, m)
                line += (f"{old['first_s']:>13.3f}{old['warm_s']:>12.3f}{old['warm_s'] / new['warm_s']:>11.1f}x"
                         f"{old['first_s'] / new['first_s']:>11.1f}x")
            print(line, flush=True)
    if not args.no_cli:
        print()
        print(f"digiplat linearize end to end, fresh process, grid {'Bergwald' if grids[0] == '-' else grids[0]}")
        print("cold: an empty private cache (the first linearization of this grid file and day: the grid is "
              "compiled with pandapower, the day's profiles computed); new hour: another hour of the same day "
              f"with that cache (median of {max(1, args.repeat)} hours, each a fresh process)")
        head = f"{'case':<22}{'new cold s':>12}{'new hour s':>12}"
        if args.baseline:
            head += f"{'old cold s':>12}{'old hour s':>12}{'ratio hour':>12}"
        print(head)
        for method, m in _cases(args.cli_cases):
            with tempfile.TemporaryDirectory() as new_cache, tempfile.TemporaryDirectory() as old_cache:
                runs: dict[str, list[float]] = {"new": [], "old": []}
                trees = [("new", ROOT, Path(new_cache))] + ([("old", args.baseline, Path(old_cache))] if args.baseline else [])
                for hour in [18] + [17 - j for j in range(max(1, args.repeat))]:
                    for name, tree, cache in trees:  # old and new alternate: the same load for both
                        runs[name].append(_cli(tree, grids[0], method, m, hour, cache))
            line = f"{f'{method} m={m}':<22}{runs['new'][0]:>12.2f}{statistics.median(runs['new'][1:]):>12.2f}"
            if args.baseline:
                old_hour = statistics.median(runs["old"][1:])
                line += (f"{runs['old'][0]:>12.2f}{old_hour:>12.2f}"
                         f"{old_hour / statistics.median(runs['new'][1:]):>11.1f}x")
            print(line, flush=True)
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
