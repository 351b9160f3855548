"""A Table I-like report (paper A): the Bergwald 1.8 MW case validated by AC power flow, from one command.

Linearizes the default scenario (3 points), clears the request with the MILP (HiGHS), with the
MILP plus refinement, and with the grid-blind merit order, validates each dispatch by AC power flow
and prints MAE/RMSE of voltages and loadings (all monitored elements and the critical 10 %),
violations, extremes and timings.

Usage::

    .venv/bin/python benchmarks/bench_validation.py [--grid DIR] [--request-mw 1.8] [--points 3] [--pyomo NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _fmt(x: float | None, spec: str = ".2e") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", help="grid folder (default: the shipped Bergwald grid)")
    parser.add_argument("--request-mw", type=float, default=1.8)
    parser.add_argument("--points", type=int, default=3)
    parser.add_argument("--max-iterations", type=int, default=4, help="clearings of the refined run at most")
    parser.add_argument("--pyomo", metavar="NAME", help="also time the Pyomo path with this solver, e.g. appsi_highs")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    from gridgen.grid import Grid, default_grid_dir
    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.market import RefineConfig, clear_market

    grid_dir = Path(args.grid) if args.grid else default_grid_dir()
    t0 = time.perf_counter()
    grid = Grid.load(grid_dir)
    scenario = scenario_from_grid(grid, ScenarioConfig())
    t_setup = time.perf_counter() - t0
    lin = linearize(grid, scenario, config=LinearizationConfig(n_points=args.points))
    runs = [
        ("MILP, highs", dict(method="milp")),
        ("MILP + refinement", dict(method="milp", refine=True,
                                   refine_config=RefineConfig(max_iterations=args.max_iterations))),
        ("merit order (grid-blind)", dict(method="merit-order")),
    ]
    if args.pyomo:
        runs.insert(1, (f"MILP, pyomo:{args.pyomo}", dict(method="milp", solver=f"pyomo:{args.pyomo}")))
    results = []
    for name, kw in runs:
        out = clear_market(grid, scenario, request_mw=args.request_mw, linearization=lin, **kw)
        results.append((name, out))

    s = scenario.summary()
    print(f"grid {grid_dir.name}: {len(grid.net.bus)} buses, {len(grid.buildings)} buildings; time frame {s['timestamp']} "
          f"({scenario.config.day_type}), load {s['load_mw']:.3f} MW, PV {s['pv_mw']:.3f} MW; "
          f"{s['bids']} bids, {s['offered_up_mw']:.3f} MW up offered")
    print(f"linearization: {lin.package.n_points} points, {len(lin.package.flex_ids)} flexible buses, "
          f"{len(lin.package.bus_ids)} voltages, {len(lin.package.branch_ids)} branches in {lin.runtime_s:.2f} s "
          f"(power flows {lin.power_flow_s:.2f} s, sensitivities {lin.sensitivity_s:.3f} s); setup {t_setup:.2f} s")
    print(f"request {args.request_mw:g} MW\n")
    head = (f"{'method':<26}{'status':>11}{'MW':>8}{'EUR':>9}{'pt':>4}{'viol':>6}{'V MAE':>10}{'V RMSE':>10}"
            f"{'L MAE %':>10}{'L RMSE %':>10}{'Vc MAE':>10}{'Lc MAE %':>10}{'vm min':>8}{'vm max':>8}{'L max %':>9}"
            f"{'clear s':>9}{'valid s':>9}{'rounds':>7}")
    print(head)
    print("-" * len(head))
    for name, out in results:
        c, v = out.clearing, out.validation
        print(f"{name:<26}{c.status.value:>11}{c.delivered_mw:>8.3f}{c.cost_eur:>9.2f}"
              f"{'-' if c.chosen_point is None else c.chosen_point:>4}"
              f"{'-' if v is None else v.n_violations:>6}"
              f"{_fmt(v and v.vm_mae_pu):>10}{_fmt(v and v.vm_rmse_pu):>10}"
              f"{_fmt(v and v.loading_mae_percent):>10}{_fmt(v and v.loading_rmse_percent):>10}"
              f"{_fmt(v and v.critical_vm_mae_pu):>10}{_fmt(v and v.critical_loading_mae_percent):>10}"
              f"{_fmt(v and v.vm_min_pu, '.4f'):>8}{_fmt(v and v.vm_max_pu, '.4f'):>8}"
              f"{_fmt(v and v.max_loading_percent, '.1f'):>9}"
              f"{sum(r.get('clearing_s', 0) for r in [out.summary()]):>9.3f}{_fmt(v and v.runtime_s, '.2f'):>9}"
              f"{len(out.rounds):>7}")
    print("\npaper A, Table I (1.8 MW, Bergwald): V MAE 2.3e-05, RMSE 2.6e-05 p.u.; L MAE 6.1e-03, RMSE 9.8e-03 %")
    print("critical = the 10 % of buses / branches closest to their limits in the power flow")
    for name, out in results:
        if out.refined:
            print(f"\n{name}: rounds")
            for k, r in enumerate(out.rounds):
                print(f"  {k + 1}: {r['points']} points, {r['status']}, {r['delivered_mw']:.4f} MW, point "
                      f"{r['chosen_point']}, {r['violations']} violations, V MAE {_fmt(r['vm_mae_pu'])}, "
                      f"L MAE {_fmt(r['loading_mae_percent'])} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
