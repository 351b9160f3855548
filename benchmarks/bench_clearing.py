"""Benchmark the clearing: the per-point LP decomposition (default) versus the joint MILP (highspy, one CSR) and Pyomo.

Usage::

    .venv/bin/python benchmarks/bench_clearing.py                 # synthetic Bergwald-size package
    .venv/bin/python benchmarks/bench_clearing.py --package assets/.../package.zip --bids bids.csv

Prints one table: build and solve time per path (best of ``--repeat``), model size and optimum.
The synthetic package (seeded) has Bergwald's size: 240 flexible buses on 6 substations, 1500
monitored voltages, 1600 branches, 3 points (all bids / half / none), 241 buildings' bids.
Its sensitivities are made up (dense, feeder-structured, signed loadings), not a power flow;
they only give the MILP a realistic shape and some binding limits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optim._errors import InputError  # noqa: E402
from optim.package import OperatingPoint, SensitivityPackage  # noqa: E402
from optim.tso.bids import BidRow, BidTable, read_bids  # noqa: E402
from optim.tso.clearing import clear_milp  # noqa: E402
from optim.tso.merit_order import clear_merit_order  # noqa: E402


def synthetic_case(
    *,
    n_flex: int = 240,
    n_v: int = 1500,
    n_l: int = 1600,
    n_points: int = 3,
    n_buildings: int = 241,
    n_substations: int = 6,
    random_state: int = 0,
) -> tuple[SensitivityPackage, BidTable]:
    """A seeded package and bid table of the given size (see the module docstring)."""
    rng = np.random.default_rng(random_state)
    sub_f = np.sort(rng.integers(0, n_substations, n_flex))
    sub_v = rng.integers(0, n_substations, n_v)
    sub_l = np.concatenate([np.arange(n_substations), rng.integers(0, n_substations, n_l - n_substations)])

    # bids: one building per flexible bus (a few share), mostly upward, some aggregated
    building_flex = np.concatenate([np.arange(n_flex), rng.integers(0, n_flex, n_buildings - n_flex)])
    buildings = [f"b{k:04d}" for k in range(n_buildings)]
    rows = []
    order = rng.permutation(n_buildings)
    k = 0
    bid_no = 0
    while k < n_buildings:
        size = int(rng.choice([1, 1, 1, 2, 5, 8]))
        members = order[k : k + size]
        k += size
        down = rng.random() < 0.1
        price = float(np.round(rng.uniform(20, 120), 2))
        agg = f"agg{rng.integers(0, 8)}"
        for b in members:
            p = float(np.round(rng.uniform(0.005, 0.025), 4)) * (-1 if down else 1)
            rows.append(BidRow(f"bid{bid_no:03d}", agg, buildings[b], p, price, "mixed"))
        bid_no += 1
    bids = BidTable(rows=tuple(rows), source="synthetic")
    offer = np.zeros(n_flex)
    for r in rows:
        offer[building_flex[buildings.index(r.building_id)]] += r.p_mw

    # sensitivities: strong inside a substation, weak (MV coupling) across
    same_v = sub_v[:, None] == sub_f[None, :]
    vtdf = np.where(same_v, rng.uniform(0.01, 0.06, (n_v, n_flex)), rng.uniform(0, 2e-5, (n_v, n_flex)))
    rating = rng.uniform(0.15, 0.6, n_l)
    rating[:n_substations] = 0.63
    downstream = (sub_l[:, None] == sub_f[None, :]) & (rng.random((n_l, n_flex)) < 0.3)
    downstream[:n_substations] = sub_l[:n_substations, None] == sub_f[None, :]
    ltdf = np.where(downstream, -100.0 / rating[:, None], rng.uniform(-0.5, 0.5, (n_l, n_flex)))
    v_none = rng.uniform(0.975, 1.02, n_v)
    l_none = rng.uniform(-50, 60, n_l)
    p_fix = rng.uniform(-0.01, 0.01, n_flex)
    fractions = np.linspace(1.0, 0.0, n_points)
    labels = {1.0: "all bids", 0.5: "half", 0.0: "none"}
    points = []
    for f in fractions:
        p_flex = f * offer
        wobble = 1 + 0.05 * f  # sensitivities drift with the operating point
        points.append(
            OperatingPoint(
                label=labels.get(float(f), f"{f:.0%} of bids"),
                p_mw=p_fix + p_flex,
                p_flex_mw=p_flex,
                vm_pu=v_none + vtdf @ p_flex,
                loading_percent=l_none + ltdf @ p_flex,
                vtdf_pu_per_mw=vtdf * wobble,
                ltdf_percent_per_mw=ltdf * wobble,
            )
        )
    package = SensitivityPackage(
        flex_ids=tuple(f"F{j:04d}" for j in range(n_flex)),
        bus_ids=tuple(f"V{j:04d}" for j in range(n_v)),
        branch_ids=tuple(f"L{j:04d}" for j in range(n_l)),
        points=tuple(points),
        flex_of_asset={b: f"F{building_flex[k]:04d}" for k, b in enumerate(buildings)},
        meta={"synthetic": True, "random_state": random_state},
    )
    return package, bids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, help="a saved SensitivityPackage (default: synthetic)")
    parser.add_argument("--bids", type=Path, help="bid file (required with --package)")
    parser.add_argument("--request-mw", type=float, default=1.8)
    parser.add_argument("--repeat", type=int, default=3, help="runs per path; the best is shown")
    parser.add_argument("--seed", type=int, default=0, help="random_state of the synthetic package")
    parser.add_argument(
        "--pyomo", default="appsi_highs", help="Pyomo solver name for the Pyomo path ('' to skip it)"
    )
    parser.add_argument(
        "--unscreened", action="store_true", help="also time the models without row screening (slow)"
    )
    parser.add_argument(
        "--no-joint", action="store_true",
        help="skip the joint MILP (minutes per run at large requests on the whole shared file's package)"
    )
    args = parser.parse_args(argv)

    if args.package:
        if not args.bids:
            parser.error("--bids is required with --package")
        try:
            package = SensitivityPackage.load(args.package)
            bids = read_bids(args.bids, package=package)
        except InputError as exc:
            print(f"bench_clearing: {exc}", file=sys.stderr)
            return 2
        source = str(args.package)
    else:
        package, bids = synthetic_case(random_state=args.seed)
        source = f"synthetic, seed {args.seed}"
    print(
        f"package: {source}: {len(package.flex_ids)} flexible buses, {len(package.bus_ids)} voltages, "
        f"{len(package.branch_ids)} branches, {package.n_points} points; {bids.n_bids} bids "
        f"({len(bids.rows)} rows); request {args.request_mw:g} MW"
    )

    if args.pyomo:
        import pyomo.environ  # noqa: F401 - imported before timing: the import alone takes ~2 s

    import os

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    paths = [("highspy per-point LPs (default)", "highs", True)]
    if not args.no_joint:
        paths.append(("highspy joint MILP", "highs-milp", True))
    if args.pyomo:
        paths.append((f"pyomo:{args.pyomo}", f"pyomo:{args.pyomo}", True))
    if args.unscreened:
        paths.append(("highspy per-point, no screening", "highs", False))
        if args.pyomo:
            paths.append((f"pyomo:{args.pyomo}, no screening", f"pyomo:{args.pyomo}", False))
    header = (f"{'path':<34} {'build s':>8} {'solve s':>8} {'total s':>8} {'median s':>8} {'rows':>7} {'nonzeros':>9} "
              f"{'status':>10} {'cost EUR':>10} point")
    print(header)
    print("-" * len(header))
    for name, solver, screen in paths:
        runs = []
        for _ in range(max(1, args.repeat if solver.startswith("highs") else 1)):
            t0 = time.perf_counter()
            result = clear_milp(package, bids, args.request_mw, solver=solver, screen=screen)
            runs.append((time.perf_counter() - t0, result))
        wall, result = min(runs, key=lambda r: r[0])
        st = result.stats
        median = statistics.median(r[0] for r in runs)
        print(
            f"{name:<34} {result.build_s:8.3f} {result.solve_s:8.3f} {result.runtime_s:8.3f} {median:8.3f} "
            f"{st.get('rows', 0):7d} {str(st.get('nonzeros', '-')):>9} {result.status.value:>10} "
            f"{result.cost_eur:10.2f} {result.chosen_point} ({result.chosen_point_label})"
        )
    offered = sum(b.p_mw for b in bids.bids if b.p_mw * args.request_mw > 0)
    too_much = 2.0 * offered if offered else args.request_mw
    runs = [clear_milp(package, bids, too_much) for _ in range(max(1, args.repeat))]
    result = min(runs, key=lambda r: r.runtime_s)
    print(f"{'highspy, infeasible ' + format(too_much, '.3g') + ' MW':<34} {result.build_s:8.3f} {result.solve_s:8.3f} "
          f"{result.runtime_s:8.3f} {'':8} {result.stats['rows']:7d} {result.stats['nonzeros']:9d} {result.status.value:>10} "
          f"{'':>10} max deliverable {result.max_deliverable_mw:g} MW")
    mo = clear_merit_order(package, bids, args.request_mw)
    print(f"{'merit order (grid-blind)':<34} {'':8} {'':8} {mo.runtime_s:8.3f} {'':8} {'':7} {'':9} "
          f"{mo.status.value:>10} {mo.cost_eur:10.2f}")
    print("build: arrays/CSR or Pyomo model incl. BCM split and screening; solve: hand-over to the "
          "solver and MILP solve(s); highspy: best of", args.repeat, "runs (median: wall time of all runs); Pyomo: 1 run, "
          "import excluded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
