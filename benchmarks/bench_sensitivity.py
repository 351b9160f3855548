"""Analytic VTDF/LTDF versus perturbation, side by side in one run (issue 3, "Done when").

At one operating point of the default scenario (default: "half of each bid"), the sensitivities of
all monitored voltages and branch loadings to every flexible bus are computed twice:

- analytic: one sparse LU of the power-flow Jacobian and a multi-right-hand-side solve
  (:func:`optim.dso.sensitivity.sensitivities_from_net`);
- perturbation: one pandapower AC power flow per flexible bus (+h MW, warm-started from the
  point's solution), forward differences.

Prints a table with both timings, the speed-up and the largest relative difference
(``max |analytic - perturbation| / max |perturbation|`` per matrix, and element-wise over the
entries above 1 % of the largest).

Usage::

    .venv/bin/python benchmarks/bench_sensitivity.py [--grid DIR] [--point I] [--step-mw H] [--repeat N] [--central]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", help="grid folder (default: the shipped Bergwald grid)")
    parser.add_argument("--point", type=int, default=1, help="operating point index (default 1: half of each bid)")
    parser.add_argument("--step-mw", type=float, default=1e-6, help="perturbation step (MW, default 1e-6)")
    parser.add_argument("--repeat", type=int, default=5, help="analytic repetitions, best time is reported")
    parser.add_argument("--central", action="store_true",
                        help="central differences (2 power flows per flexible bus) instead of forward differences")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import pandapower as pp

    from gridgen.grid import Grid, default_grid_dir
    from optim.dso.linearize import apply_flex, flex_table, net_at_time_frame, point_fractions, run_power_flow
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.dso.sensitivity import monitored_elements_of_net, sensitivities_from_net, signed_loading_percent

    grid_dir = Path(args.grid) if args.grid else default_grid_dir()
    grid = Grid.load(grid_dir)
    scenario = scenario_from_grid(grid, ScenarioConfig())
    flex = flex_table(grid, scenario.bids)
    buses = flex.index.to_numpy(dtype=np.int64)
    fraction = point_fractions(3)[args.point]
    net = net_at_time_frame(grid, scenario, flex_buses=buses)
    apply_flex(net, buses, fraction * flex.p_offered_mw.to_numpy())
    tol = 1e-11
    run_power_flow(net, where=f"point {args.point}", tolerance_mva=tol)
    mb, be, bi = monitored_elements_of_net(net)

    best = np.inf
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        sens = sensitivities_from_net(net, buses, monitored_buses=mb, branches=(be, bi))
        best = min(best, time.perf_counter() - t0)

    # perturbation: one warm-started power flow per flexible bus
    vm0 = net.res_bus.vm_pu.loc[mb].to_numpy().copy()
    ld0 = signed_loading_percent(net, be, bi)
    row_of = dict(zip(net.sgen.flex_bus[net.sgen.flex_bus >= 0].astype(int), net.sgen.index[net.sgen.flex_bus >= 0]))
    v_fd = np.zeros_like(sens.vtdf_pu_per_mw)
    l_fd = np.zeros_like(sens.ltdf_percent_per_mw)
    opts = dict(tolerance_mva=tol, numba=False, init="results", calculate_voltage_angles=True)
    h = args.step_mw
    t0 = time.perf_counter()
    for j, b in enumerate(buses):
        idx = row_of[int(b)]
        p0 = net.sgen.at[idx, "p_mw"]
        net.sgen.at[idx, "p_mw"] = p0 + h
        pp.runpp(net, **opts)
        v_up, l_up = net.res_bus.vm_pu.loc[mb].to_numpy(), signed_loading_percent(net, be, bi)
        if args.central:
            net.sgen.at[idx, "p_mw"] = p0 - h
            pp.runpp(net, **opts)
            v_fd[:, j] = (v_up - net.res_bus.vm_pu.loc[mb].to_numpy()) / (2 * h)
            l_fd[:, j] = (l_up - signed_loading_percent(net, be, bi)) / (2 * h)
        else:
            v_fd[:, j] = (v_up - vm0) / h
            l_fd[:, j] = (l_up - ld0) / h
        net.sgen.at[idx, "p_mw"] = p0
    t_pert = time.perf_counter() - t0
    n_pf = len(buses) * (2 if args.central else 1)

    def rel(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        matrix = float(np.abs(a - b).max() / np.abs(b).max())
        big = np.abs(b) > 1e-2 * np.abs(b).max()
        element = float((np.abs(a - b)[big] / np.abs(b)[big]).max())
        return matrix, element

    rv, ev = rel(sens.vtdf_pu_per_mw, v_fd)
    rl, el = rel(sens.ltdf_percent_per_mw, l_fd)
    n_bus = len(net.bus)
    print(f"grid {grid_dir.name}: {n_bus} buses, {len(net.line)} lines, {len(net.trafo)} trafos; "
          f"point {args.point} ({fraction:.0%} of each bid), {len(buses)} flexible buses, "
          f"{len(mb)} voltages x {len(bi)} branches")
    print()
    print(f"{'method':<34}{'time (s)':>12}{'power flows':>14}")
    print(f"{'analytic (1 LU, multi-RHS solve)':<34}{best:>12.4f}{0:>14d}")
    label = f"perturbation ({'2 PFs, central' if args.central else '1 PF, forward'})"
    print(f"{label:<34}{t_pert:>12.4f}{n_pf:>14d}")
    print()
    print(f"speed-up: {t_pert / best:.0f}x")
    print(f"largest relative difference, VTDF: {rv:.2e} (matrix), {ev:.2e} (element-wise above 1 % of max)")
    print(f"largest relative difference, LTDF: {rl:.2e} (matrix), {el:.2e} (element-wise above 1 % of max)")
    print(f"largest relative difference overall: {max(rv, rl):.2e}  (target <= 1e-3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
