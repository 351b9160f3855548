"""Privacy against utility: the attack suite and the market outcome over the hardening's settings.

Linearizes the shipped Bergwald scenario for two time frames (paper style, the DSO's own
package), hardens both at every setting, runs every attack of ``optim.privacy`` on the first
(the row-link attack against the second) and clears requests of 0.25-1.0 MW on both (within the
noon frame's offers), validated by AC power flow. Prints one table: per setting the attack scores, the rows shipped, the clearing
cost increase over the paper-style package (max and mean over the 8 clearings), whether every
delivered volume equals the paper-style one, the AC violations and the Table I errors (voltage
and loading MAE of the DSO's own linearization at the chosen point against the AC power flow, the
mean, and how many clearings meet paper A's Table I: 2.3e-5 p.u., 6.1e-3 %, 0 violations and a
solve within 0.5 s, as in ``bench_validation.py``).
Writes the frontier as an interactive plot (plotly HTML; a PNG needs kaleido, not installed).

Usage::

    .venv/bin/python benchmarks/bench_privacy.py [--grid DIR] [--hours 18 12] [--requests 0.25 0.5 0.75 1]
        [--levels 0 0.005 0.01 0.02 0.05 0.1 0.2] [--noise 0.001 0.003] [--point-method all-half-none]
        [--points 3] [--max-points N] [--envelope-bands 0.25] [--plot privacy_frontier.html]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COLUMNS = (("setting", "{:<18}"), ("rows", "{:>5}"), ("subst", "{:>6.3f}"), ("feeder", "{:>6.3f}"),
           ("edges", "{:>6.3f}"), ("R err", "{:>6.2f}"), ("S err", "{:>6.2f}"), ("ids", "{:>6.3f}"),
           ("links", "{:>6.3f}"), ("harden s", "{:>8.1f}"), ("cost max%", "{:>9.3f}"), ("cost mean%", "{:>10.3f}"), ("same MW", "{:>7}"),
           ("viol", "{:>4}"), ("V MAE pu", "{:>9.2e}"), ("L MAE %", "{:>9.2e}"), ("Table I", "{:>7}"))
#: Paper A's Table I (weekday 18:00, 1.8 MW): a clearing meets it with V and loading MAE at most these.
TABLE_I_VM_MAE_PU, TABLE_I_LOADING_MAE_PERCENT = 2.3e-5, 6.1e-3
#: ... and a MILP solve within this (the same test as ``bench_validation.py``).
TABLE_I_SOLVE_S = 0.5


def _width(spec: str) -> int:
    return int(re.search(r"[<>](\d+)", spec).group(1))


def _cell(spec: str, value: object) -> str:
    if value is None:
        return f"{'-':>{_width(spec)}}"
    return spec.format(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", help="grid folder (default: the shipped Bergwald grid)")
    parser.add_argument("--hours", type=int, nargs=2, default=(18, 12), metavar="H", help="two time frames")
    parser.add_argument("--requests", type=float, nargs="+", default=(0.25, 0.5, 0.75, 1.0), metavar="MW")
    parser.add_argument("--levels", type=float, nargs="+", default=(0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2),
                        metavar="X", help="privacy levels (flattening share) to sweep, without noise")
    parser.add_argument("--noise", type=float, nargs="*", default=(0.001, 0.003), metavar="N",
                        help="noise levels to sweep at privacy level 0")
    parser.add_argument("--envelope-bands", type=float, nargs="*", default=(0.25,), metavar="W",
                        help="operating-envelope settings to sweep: band widths in MW (none: skip)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the hardening's noise, scales and orders")
    parser.add_argument("--point-method", default="all-half-none", help="operating points of the linearization")
    parser.add_argument("--points", type=int, default=3, help="operating points (merit-levels: the first levels)")
    parser.add_argument("--max-points", type=int, default=None,
                        help="merit-levels only: bisect up to this many points (the CLI's default: --points 9 "
                             "--max-points 33)")
    parser.add_argument("--plot", default="privacy_frontier.html", help="plot file (plotly HTML)")
    args = parser.parse_args(argv)
    if not 1 <= args.points <= 64 or (args.max_points is not None and args.max_points > 64):
        parser.error("--points and --max-points must be 1..64")
    if args.max_points is not None and (args.point_method != "merit-levels" or args.max_points < args.points):
        parser.error("--max-points needs --point-method merit-levels and at least --points")
    warnings.simplefilter("ignore")

    import numpy as np

    from gridgen.grid import Grid, default_grid_dir
    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.market import clear_market
    from optim.privacy.audit import audit_package, origins_from_dso_key
    from optim.privacy.envelope import EnvelopeConfig
    from optim.privacy.hardening import HardeningConfig, ac_verifier, harden
    from optim.privacy.truth import truth_from_grid

    t0 = time.perf_counter()
    grid = Grid.load(Path(args.grid) if args.grid else default_grid_dir())
    truth = truth_from_grid(grid)
    frames = []
    for hour in args.hours:
        scenario = scenario_from_grid(grid, ScenarioConfig().with_time_frame(hour=hour))
        frames.append((hour, scenario, linearize(grid, scenario,
                                                 config=LinearizationConfig(
            n_points=args.points, point_method=args.point_method,
            max_points=args.max_points if args.max_points and args.max_points > args.points else None))))
        print(f"linearized hour {hour}: {len(frames[-1][2].package.flex_ids)} flexible buses", file=sys.stderr)

    def market(lin: object, scenario: object, request: float) -> object:
        return clear_market(grid, scenario, request_mw=request, linearization=lin)

    baseline = {(h, r): market(SimpleNamespace(package=lin.package, key=lin.key, private_package=lin.package,
                                                runtime_s=0.0), sc, r)
                for h, sc, lin in frames for r in args.requests}
    settings = [("paper", None)] + [(f"X={x:g}", (x, 0.0)) for x in args.levels] + \
               [(f"X=0 noise={n:g}", (0.0, n)) for n in args.noise] + \
               [(f"envelope {w:g} MW", ("envelope", w)) for w in args.envelope_bands]
    rows = []
    for name, setting in settings:
        t1 = time.perf_counter()
        if setting is None:
            (_, _, first), (_, _, second) = frames
            report = audit_package(first.package, origins=origins_from_dso_key(first.key), grid=grid,
                                   other=second.package, other_origins=origins_from_dso_key(second.key), truth=truth)
            outcomes = baseline
            n_rows = first.package.points[0].n_rows
            harden_s = None
        else:
            if setting[0] == "envelope":  # boxes from the bids, checked by the DSO's AC power flow
                config = HardeningConfig(mechanism="envelope", envelope=EnvelopeConfig(band_mw=setting[1]),
                                         random_state=args.seed)
                hardened = {h: harden(lin.package, lin.key, sc.bids, config=config, verify=ac_verifier(grid, sc, lin.key))
                            for h, sc, lin in frames}
            else:
                config = HardeningConfig(privacy_level=setting[0], noise_level=setting[1], random_state=args.seed)
                hardened = {h: harden(lin.package, lin.key, config=config) for h, _, lin in frames}
            harden_s = max(x.runtime_s for x in hardened.values())
            (h1, _, _), (h2, _, _) = frames
            report = audit_package(hardened[h1].package, origins=hardened[h1].origins, grid=grid,
                                   other=hardened[h2].package, other_origins=hardened[h2].origins, truth=truth)
            outcomes = {(h, r): market(hardened[h], sc, r) for h, sc, _ in frames for r in args.requests}
            n_rows = sum(p.n_rows for p in hardened[h1].package.points) // hardened[h1].package.n_points
        increase, same, violations, vm_mae, l_mae, table_i = [], True, 0, [], [], 0
        for k, out in outcomes.items():
            base = baseline[k].clearing
            c = out.clearing
            same &= c.ok and abs(c.delivered_mw - base.delivered_mw) <= 1e-6
            if c.ok and base.cost_eur:
                increase.append(100.0 * (c.cost_eur / base.cost_eur - 1.0))
            if out.validation is not None:
                violations += out.validation.n_violations
                if out.validation.vm_mae_pu is not None:
                    vm_mae.append(out.validation.vm_mae_pu)
                    l_mae.append(out.validation.loading_mae_percent)
                    table_i += (out.validation.n_violations == 0 and out.validation.vm_mae_pu <= TABLE_I_VM_MAE_PU
                                and out.validation.loading_mae_percent <= TABLE_I_LOADING_MAE_PERCENT
                                and out.clearing.solve_s <= TABLE_I_SOLVE_S)
        s = report.scores
        rows.append({"setting": name, "rows": n_rows, "subst": s["substation_ari"], "feeder": s["feeder_ari"],
                     "edges": s["edge_recall"], "R err": s["resistance_median_rel_error"],
                     "S err": s["rating_median_rel_error"], "ids": s["id_inversion_rate"], "links": s["row_link_rate"],
                     "harden s": harden_s,
                     "cost max%": max(increase) if increase else None,
                     "cost mean%": float(np.mean(increase)) if increase else None, "same MW": "yes" if same else "NO",
                     "viol": violations, "V MAE pu": float(np.mean(vm_mae)) if vm_mae else None,
                     "L MAE %": float(np.mean(l_mae)) if l_mae else None,
                     "Table I": f"{table_i}/{len(outcomes)}",
                     "prior R err": s["resistance_prior_median_rel_error"]})
        print(f"{name}: done in {time.perf_counter() - t1:.1f} s", file=sys.stderr)

    points = "/".join(str(lin.package.n_points) for _, _, lin in frames)
    print(f"Privacy against utility, Bergwald, hours {args.hours[0]} and {args.hours[1]}, points {args.point_method} "
          f"(m = {points}), requests "
          f"{', '.join(f'{r:g}' for r in args.requests)} MW (cost: increase over the paper-style package)")
    print(" ".join(f"{head:<{_width(spec)}}" if i == 0 else f"{head:>{_width(spec)}}"
                   for i, (head, spec) in enumerate(COLUMNS)))
    for row in rows:
        print(" ".join(_cell(spec, row[head]) for head, spec in COLUMNS))
    print(f"prior (every LV line at the LV median): resistance median relative error {rows[0]['prior R err']:.3f}; "
          "ids/links chance ~1/n; ARI chance ~0")
    print(f"targets: subst, feeder <= 0.2; edges <= 0.1; R err, S err no better than the prior; ids, links <= 1/n; "
          f"cost <= +0.5 %; 0 violations")
    print("rows: per point (mean); links: grid rows linked ('-': no grid row shipped); harden s: the slower frame's "
          "hardening (envelopes: design LPs, the DSO's own clearings and AC checks)")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; total {time.perf_counter() - t0:.0f} s")

    import plotly.graph_objects as go

    hardened_rows = [r for r in rows if r["setting"] != "paper" and r["cost max%"] is not None]
    fig = go.Figure()
    for key, label in (("subst", "substation ARI"), ("feeder", "feeder ARI"), ("edges", "edge recall"),
                       ("links", "row-link rate")):
        fig.add_trace(go.Scatter(x=[r["cost max%"] for r in hardened_rows], y=[r[key] for r in hardened_rows],
                                 mode="lines+markers+text", name=label, text=[r["setting"] for r in hardened_rows],
                                 textposition="top center"))
    fig.add_vline(x=0.5, line_dash="dash", annotation_text="cost target +0.5 %")
    fig.add_hline(y=0.2, line_dash="dot", annotation_text="ARI target 0.2")
    fig.update_layout(title="Privacy against utility (Bergwald): attack scores vs clearing cost increase",
                      xaxis_title="largest clearing cost increase over the paper-style package (%)",
                      yaxis_title="attack score (1 = grid recovered)")
    fig.write_html(args.plot, include_plotlyjs="cdn")
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
