"""Grid build benchmark: today's generator against the one before issue 12, side by side, over sizes.

Each row builds one area of the shared OSM file from the ``.osm`` file, reading included, in a
fresh interpreter (nothing warmed up by an earlier row), once with this checkout's ``gridgen`` and
once with the ``gridgen`` of ``--baseline-rev`` (default ``9e763cb``, the method before issue 12:
network simplex for every flow attempt, the whole file parsed and turned into graphs for any bbox,
networkx Dijkstra for the ring), extracted with ``git archive`` into a temporary folder. Both
builds must give the same grid (buses, lines, cable lengths, power-flow extremes): the ``same``
column says so. Times are wall-clock seconds of read + generate; the imports (gridgen's and
pandapower's, which the build would otherwise import on first use) are not included: pandapower's
import is timed on its own and printed in its own column. The load average is printed before
every row, since the machine may be shared.

Targets (issue 12, a quiet machine: load average <= 1.2): Bergwald <= 1.5 s, the whole file
<= 12 s, and a cost per building that does not grow with the size (the scaling table: growth
exponent <= 1 between Bergwald and every larger area).

Usage::

    .venv/bin/python benchmarks/bench_grid.py [--osm FILE] [--runs N] [--sizes bergwald,800,1700,whole]
                                              [--skip-baseline] [--baseline-rev REV] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The child imports gridgen from BENCH_GRID_CODE (the baseline's extracted tree) or this checkout.
sys.path.insert(0, os.environ.get("BENCH_GRID_CODE", str(REPO)))

# Areas of the shared file (S, W, N, E); None: the whole file. Buildings are counted by the build.
SIZES: dict[str, tuple[float, float, float, float] | None] = {
    "bergwald": (48.9695, 8.4600, 48.9755, 8.4745),
    "800": (48.9568, 8.4499, 48.9741, 8.4742),
    "1700": (48.9568, 8.4499, 48.9780, 8.4799),
    "whole": None,
}
TARGETS_S = {"bergwald": 1.5, "whole": 12.0}
SAME_KEYS = ("buildings", "substations", "buses", "lines", "mv_length_km", "lv_length_km", "vm_min_pu",
             "max_line_loading_percent", "max_trafo_loading_percent", "violations")


def _child(osm: str, bbox: str | None, warm: bool = False) -> None:
    """Build one grid in this process and print its figures as one JSON line.

    ``warm``: build it a second time in the same process and report that time too (pandapower's
    one-time start-up, e.g. loading its numba-compiled functions, is then paid already).
    """
    from gridgen.build import grid_from_area
    from gridgen.osm import area_from_file

    # pandapower is imported on first use inside the build (about 1 s, the same for both methods):
    # imported here, timed on its own, so the build time is the generator's.
    t0 = time.perf_counter()
    import pandapower  # noqa: F401

    t1, c1 = time.perf_counter(), time.process_time()
    area = area_from_file(osm, bbox=tuple(map(float, bbox.split(","))) if bbox else None)
    t2, c2 = time.perf_counter(), time.process_time()
    row: dict = {"read_s": t2 - t1, "pandapower_import_s": t1 - t0}
    marks: list[tuple[str, float]] = []
    try:
        grid = grid_from_area(area, progress=lambda stage: marks.append((stage, time.perf_counter())))
    except Exception as exc:  # report the failure as a row, do not hide it
        row.update(error=f"{type(exc).__name__}: {exc}", generate_s=time.perf_counter() - t2, buildings=len(area.buildings))
    else:
        row["generate_s"] = time.perf_counter() - t2
        row.update({k: grid.summary[k] for k in SAME_KEYS})
    ends = [t for _, t in marks[1:]] + [t2 + row["generate_s"]]
    row["stages_s"] = {stage: round(end - start, 3) for (stage, start), end in zip(marks, ends)}
    row["total_s"] = row["read_s"] + row["generate_s"]
    row["total_cpu_s"] = time.process_time() - c1
    if warm and "error" not in row:
        t4 = time.perf_counter()
        grid_from_area(area_from_file(osm, bbox=tuple(map(float, bbox.split(","))) if bbox else None))
        row["warm_total_s"] = time.perf_counter() - t4
    print(json.dumps(row))


def _run_row(osm: str, bbox: str | None, code: Path, warm: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", osm] + (["--bbox", bbox] if bbox else [])
    cmd += ["--warm"] if warm else []
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "BENCH_GRID_CODE": str(code), "PYTHONPATH": str(code)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=code, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _baseline_tree(rev: str, into: Path) -> Path:
    """Extract ``gridgen`` and ``app`` of commit ``rev`` into ``into``; return it."""
    proc = subprocess.run(["git", "-C", str(REPO), "archive", rev, "gridgen", "app"], capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_grid: cannot extract the baseline {rev!r}: {proc.stderr.decode().strip()} (use --skip-baseline)")
    with tarfile.open(fileobj=BytesIO(proc.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def _best(runs: list[dict]) -> dict:
    ok = [r for r in runs if "total_s" in r and "error" not in r]
    return min(ok, key=lambda r: r["total_s"]) if ok else runs[0]


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--osm", help="OSM file (default: $DIGIPLAT_OSM or ../shared/osm/bergwald_karlsruhe_durlach.osm)")
    parser.add_argument("--runs", type=int, default=1, help="runs per row and method; the table shows the fastest (default 1)")
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated subset of {','.join(SIZES)}")
    parser.add_argument("--skip-baseline", action="store_true", help="only this checkout's generator")
    parser.add_argument("--baseline-rev", default="9e763cb", help="git revision of today's method (default 9e763cb)")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line last")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--bbox", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.bbox, args.warm)
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes or not 1 <= args.runs <= 20:
        print(f"bench_grid: --sizes must name some of {', '.join(SIZES)} and --runs be 1..20", file=sys.stderr)
        return 2

    from app.commands.grid import default_osm_path

    osm = Path(args.osm) if args.osm else default_osm_path()
    if not osm.is_file():
        print(f"bench_grid: OSM file {osm} not found (set DIGIPLAT_OSM or pass --osm)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        baseline = None if args.skip_baseline else _baseline_tree(args.baseline_rev, Path(tmp))
        print(f"grid build benchmark: {osm.name}, {os.cpu_count()} cores, {args.runs} run(s) per row and method, "
              f"fresh process each; today = this checkout, before = gridgen@{args.baseline_rev}")
        header = (f"{'area':<9} {'buildings':>9} {'load avg (1,5,15 min)':>22} {'pp import s':>11} {'read s':>7} "
                  f"{'generate s':>10} {'total s':>8} {'target':>7} {'before s':>9} {'speed-up':>8} {'same':>5}")
        print(header)
        print("-" * len(header))
        rows = []
        for name in sizes:
            bbox = SIZES[name]
            bbox_arg = ",".join(map(str, bbox)) if bbox else None
            load = _load()
            warm = name == "bergwald"  # a second build in the same process: the generator without start-up costs
            new = _best([_run_row(str(osm), bbox_arg, REPO, warm) for _ in range(args.runs)])
            old = _best([_run_row(str(osm), bbox_arg, baseline, warm) for _ in range(args.runs)]) if baseline else None
            row = {"area": name, "bbox": bbox, "load_avg": load, "today": new, "before": old}
            rows.append(row)
            if "total_s" not in new:
                print(f"{name:<9} failed: {new['error']}")
                continue
            target = TARGETS_S.get(name)
            meets = "-" if target is None else ("ok" if new["total_s"] <= target and "error" not in new else "MISSED")
            before = f"{old['total_s']:>9.2f}" if old and "total_s" in old else f"{'-':>9}"
            speedup = f"{old['total_s'] / new['total_s']:>7.2f}x" if old and "total_s" in old else f"{'-':>8}"
            same = ("yes" if all(old.get(k) == new.get(k) for k in SAME_KEYS) else "NO") if old and "total_s" in old else "-"
            row["same"] = same
            print(f"{name:<9} {new.get('buildings', '-'):>9} {load:>22} {new['pandapower_import_s']:>11.2f} "
                  f"{new['read_s']:>7.2f} {new['generate_s']:>10.2f} "
                  f"{new['total_s']:>8.2f} {meets:>7} {before} {speedup} {same:>5}")
            if "error" in new:
                print(f"{'':<9} generation failed: {new['error']}")
            stages = ", ".join(f"{k} {v:.2f}" for k, v in new.get("stages_s", {}).items())
            print(f"{'':<9} today's stages (s): {stages}")
            if old and old.get("stages_s"):
                print(f"{'':<9} before, stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in old["stages_s"].items()))
            if "warm_total_s" in new:
                before_warm = f", before {old['warm_total_s']:.2f} s" if old and "warm_total_s" in old else ""
                print(f"{'':<9} second build in the same process (pandapower started): today {new['warm_total_s']:.2f} s{before_warm}")
            print(f"{'':<9} cpu s: today {new['total_cpu_s']:.2f}" + (f", before {old['total_cpu_s']:.2f}" if old and "total_cpu_s" in old else ""))

    ok = [r for r in rows if "total_s" in r["today"] and "error" not in r["today"]]
    if len(ok) >= 2:
        print()
        print("scaling (growth exponent = log(time ratio) / log(buildings ratio), against the first row and against the")
        print("previous row (step); <= 1 means no faster than linear)")
        head = f"{'area':<9} {'buildings':>9} {'total s':>8} {'ms/building':>11} {'exponent':>8} {'step':>6}"
        if any(r["before"] for r in ok):
            head += f" {'before ms/b':>11} {'before exp.':>11}"
        print(head)
        print("-" * len(head))
        first, previous = ok[0], None
        for r in ok:
            n, t = r["today"]["buildings"], r["today"]["total_s"]
            n0, t0 = first["today"]["buildings"], first["today"]["total_s"]
            exp = f"{math.log(t / t0) / math.log(n / n0):>8.2f}" if n != n0 else f"{'-':>8}"
            n1, t1 = (previous["today"]["buildings"], previous["today"]["total_s"]) if previous else (n, t)
            step = f"{math.log(t / t1) / math.log(n / n1):>6.2f}" if n != n1 else f"{'-':>6}"
            previous = r
            line = f"{r['area']:<9} {n:>9} {t:>8.2f} {1000 * t / n:>11.2f} {exp} {step}"
            b, b0 = r.get("before"), first.get("before")
            if b and b0 and "total_s" in b and "total_s" in b0:
                bexp = f"{math.log(b['total_s'] / b0['total_s']) / math.log(n / n0):>11.2f}" if n != n0 else f"{'-':>11}"
                line += f" {1000 * b['total_s'] / n:>11.2f} {bexp}"
            print(line)
    print(f"load average after the run: {_load()}")
    print("targets (quiet machine, load <= 1.2): Bergwald 1.5 s, whole file 12 s, exponent <= 1")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
