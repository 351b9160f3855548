"""The DSO's design of the operating envelopes (``--privacy-mechanism envelope``), this tree against a baseline.

For each weekday hour the CLI's default package (9 merit levels, bisected) is linearized once per
process, then :func:`optim.privacy.hardening.harden` with the envelope mechanism (seed 0, the
DSO's AC check on the compiled grid) runs ``--repeat`` times; one fresh process per tree and hour,
the trees alternating. Printed: the points, the boxes, the best and median harden time per tree,
their ratio, and the largest difference between the two trees' box bounds (MW; the same boxes up
to the solvers' round-off if the change is a speed-up only).

The second table checks what the design's reference costs give up in this tree: for the requests
the design samples (6 per 0.25 MW band over everything the offers can deliver, both directions),
:class:`optim.tso.clearing.OptimalCosts` over every point (the exact optimum) against the 2 points
nearest each request's level (the default ``cost_candidates``): time, and at how many requests the
two agree (relative 1e-9) with the largest relative gap; ``--cost-frames all`` runs it on all 48
hourly frames (weekday and weekend).

Usage::

    .venv/bin/python benchmarks/bench_envelope.py [--baseline DIR] [--hours 12 17 18] [--repeat 3]
        [--day-type weekday] [--no-harden] [--no-costs] [--cost-frames hours|all]
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the reference-cost table runs in process: this tree's code, not the installed one

#: Runs in a fresh interpreter with the tree under test first on sys.path.
WORKER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
from app.commands.linearize import load_grid_and_scenario
from optim.dso import DEFAULT_MAX_POINTS
from optim.dso.linearize import LinearizationConfig, linearize
from optim.privacy.hardening import HardeningConfig, ac_verifier, harden
hour, repeat, out, day_type = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
grid, scenario, _ = load_grid_and_scenario(None, day_type, hour, None, None, lazy=True)
config = LinearizationConfig(n_points=9, point_method="merit-levels", max_points=DEFAULT_MAX_POINTS)
lin = linearize(grid, scenario, config=config, bound_key=False)
verify = ac_verifier(grid, scenario, lin.key)
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    hard = harden(lin.package, lin.key, scenario.bids, config=HardeningConfig(mechanism="envelope", random_state=0),
                  verify=verify)
    times.append(time.perf_counter() - t0)
# per box: its bounds keyed by (column, side), so two trees' boxes compare bus by bus
boxes = []
for p in hard.package.points:
    column = np.argmax(np.abs(p.a_per_mw), axis=1)
    side = (p.a_per_mw[np.arange(len(p.b)), column] > 0).astype(float)
    bound = p.b / p.a_per_mw[np.arange(len(p.b)), column]
    order = np.lexsort((side, column))
    boxes.append(np.column_stack([column[order], side[order], bound[order]]))
np.savez(out, *boxes)
print("RESULT " + json.dumps({"times": times, "points": lin.package.n_points, "boxes": len(boxes)}))
"""


def _run(tree: Path, hour: int, repeat: int, out: str, day_type: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r})\n" + WORKER,
                           str(tree), str(hour), str(repeat), out, day_type], capture_output=True, text=True, env=env,
                          cwd=str(tree))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_envelope: the run in {tree} failed: {tail}")
    return json.loads(lines[-1][len("RESULT "):])


def _box_difference(a_file: str, b_file: str) -> float:
    """Largest difference of the two trees' box bounds, bus by bus (MW); inf if another bus or
    side is bounded (the columns follow the same seeded order in both trees)."""
    a, b = np.load(a_file), np.load(b_file)
    if sorted(a.files) != sorted(b.files) or any(a[k].shape != b[k].shape for k in a.files):
        return float("inf")
    if any(not np.array_equal(a[k][:, :2], b[k][:, :2]) for k in a.files):
        return float("inf")
    return max((float(np.abs(a[k][:, 2] - b[k][:, 2]).max()) for k in a.files if a[k].size), default=0.0)


def _cost_check(frames: list[tuple[str, int]]) -> list[tuple]:
    """Exact reference costs against the 2 nearest points, at the requests the design samples."""
    from app.commands.linearize import load_grid_and_scenario
    from optim.dso import DEFAULT_MAX_POINTS
    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.privacy.envelope import EnvelopeConfig, band_requests, deliverable_range, request_bands
    from optim.tso.bids import bids_from_frame
    from optim.tso.clearing import OptimalCosts

    rows = []
    for day_type, hour in frames:
        grid, scenario, _ = load_grid_and_scenario(None, day_type, hour, None, None, lazy=True)
        config = LinearizationConfig(n_points=9, point_method="merit-levels", max_points=DEFAULT_MAX_POINTS)
        package = linearize(grid, scenario, config=config, bound_key=False).package
        bids = bids_from_frame(scenario.bids, package=package)
        config = EnvelopeConfig()  # the requests operating_envelopes samples in its first bands
        requests = np.concatenate([band_requests(band, config.requests_per_band)
                                   for band in request_bands(*deliverable_range(package, bids), config.band_mw)]
                                  or [np.zeros(0)])
        out = []
        for candidates in (None, 2):
            costs = OptimalCosts(package, bids, candidates=candidates)
            t0 = time.perf_counter()
            value = costs(requests)
            out.append((time.perf_counter() - t0, value))
        (t_all, exact), (t_two, two) = out
        both = np.isfinite(exact) & np.isfinite(two)
        gap = np.abs(two[both] - exact[both]) / np.maximum(1.0, np.abs(exact[both]))
        same = int(np.sum(gap <= 1e-9) + np.sum(~np.isfinite(exact) & ~np.isfinite(two)))
        rows.append((f"{day_type} {hour:02d}:00", package.n_points, len(requests), t_all, t_two, same,
                     float(gap.max()) if len(gap) else 0.0))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout (e.g. a git worktree) to compare with")
    parser.add_argument("--hours", type=int, nargs="+", default=[12, 17, 18], help="weekday hours (default 12 17 18)")
    parser.add_argument("--repeat", type=int, default=3, help="harden calls per process (default 3)")
    parser.add_argument("--day-type", choices=("weekday", "weekend"), default="weekday")
    parser.add_argument("--no-costs", action="store_true", help="skip the reference-cost table")
    parser.add_argument("--no-harden", action="store_true", help="skip the design's timing table")
    parser.add_argument("--cost-frames", choices=("hours", "all"), default="hours",
                        help="the reference-cost table on --hours of --day-type (default) or on all 48 hourly frames")
    args = parser.parse_args(argv)
    if args.repeat < 1 or any(not 0 <= h <= 23 for h in args.hours):
        parser.error("--repeat must be >= 1 and --hours 0..23")
    if args.baseline is not None and not (args.baseline / "optim").is_dir():
        parser.error(f"--baseline {args.baseline} is not a checkout of this project (no optim/ in it)")
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    if not args.no_harden:
        _harden_table(args, trees)
    if not args.no_costs:
        frames = ([(d, h) for d in ("weekday", "weekend") for h in range(24)] if args.cost_frames == "all"
                  else [(args.day_type, h) for h in args.hours])
        print("\n| frame | points | requests | every point s | 2 nearest s | same cost | largest relative gap |")
        print("|---|---|---|---|---|---|---|")
        totals = [0, 0]
        for frame, m, n, t_all, t_two, same, gap in _cost_check(frames):
            totals[0] += same
            totals[1] += n
            print(f"| {frame} | {m} | {n} | {t_all:.2f} | {t_two:.2f} | {same} of {n} | {gap:.1e} |", flush=True)
        print(f"same cost at {totals[0]} of {totals[1]} requests")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


def _harden_table(args: argparse.Namespace, trees: list[tuple[str, Path]]) -> None:
    print("| hour | points | boxes | " + " | ".join(f"{name} best / median s" for name, _ in trees)
          + (" | ratio (median) | boxes differ by (MW) |" if len(trees) > 1 else " |"))
    print("|---" * (3 + len(trees) + (2 if len(trees) > 1 else 0)) + "|")
    with tempfile.TemporaryDirectory(prefix="bench-envelope-") as tmp:
        for hour in args.hours:
            results, files = [], []
            order = trees if hour % 2 == 0 else trees[::-1]  # alternate which tree runs first
            for name, tree in order:
                out = str(Path(tmp) / f"{name.replace(' ', '_')}-{hour}.npz")
                results.append((name, _run(tree, hour, args.repeat, out, args.day_type)))
                files.append((name, out))
            results.sort(key=lambda r: [n for n, _ in trees].index(r[0]))
            files.sort(key=lambda r: [n for n, _ in trees].index(r[0]))
            first = results[0][1]
            cells = [f"{min(r['times']):.2f} / {statistics.median(r['times']):.2f}" for _, r in results]
            line = f"| {hour}:00 | {first['points']} | {first['boxes']} | " + " | ".join(cells)
            if len(trees) > 1:
                ratio = statistics.median(results[0][1]["times"]) / statistics.median(results[1][1]["times"])
                line += f" | {ratio:.2f} | {_box_difference(files[0][1], files[1][1]):.1e}"
            print(line + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
