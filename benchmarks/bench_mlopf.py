"""Benchmarks of paper B (not tests).

    python benchmarks/bench_mlopf.py [--samples 20000] [--loop-samples 200] [--cost-sets 100]

1. DS2 labelling, side by side in one run: the batched power flow of ``optim.mlopf.sampling`` on
   ``--samples`` Latin hypercube samples vs a pandapower ``runpp`` loop (one net, set-points changed
   per sample) on the first ``--loop-samples`` of them; per-sample times, speed-up and the largest
   voltage difference between the two.
2. The OPF benchmark over ``--cost-sets`` random cost sets with the shipped models (assets/mlopf;
   trained first if absent): feasibility, cost and time differences.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _ds2_pandapower_net(ds):
    import pandapower as pp
    import pandapower.networks as pn

    from optim.mlopf.systems import SECOND_PCC_DS_BUS

    net = pn.case33bw()
    net.line["in_service"] = True
    pp.create_ext_grid(net, SECOND_PCC_DS_BUS, vm_pu=1.0, va_degree=0.0)
    for bus in ds.dg_buses:
        pp.create_sgen(net, bus, p_mw=0.0, q_mvar=0.0)
    return net


def bench_labelling(n_samples: int, n_loop: int) -> dict[str, float]:
    """Return per-sample times of batched labelling and of a pandapower runpp loop on DS2."""
    import pandapower as pp

    from optim.mlopf.sampling import dataset_from_samples, ds_power_flows, latin_hypercube_samples
    from optim.mlopf.systems import integrated_system_from_cases

    ds = integrated_system_from_cases().ds_by_name("DS2")
    x = latin_hypercube_samples(ds, n_samples, random_state=0)
    ds_power_flows(ds, x[:100])  # warm-up
    t0 = time.perf_counter()
    data = dataset_from_samples(ds, x, progress=False)
    t_batch = (time.perf_counter() - t0) / n_samples
    net = _ds2_pandapower_net(ds)
    pp.runpp(net)  # warm-up (numba compilation if available)
    vm_loop = []
    t0 = time.perf_counter()
    for row in x[:n_loop]:
        net.ext_grid["vm_pu"] = row[:2]
        net.sgen["p_mw"] = row[2:7]
        net.sgen["q_mvar"] = row[7:12]
        pp.runpp(net)
        vm_loop.append(net.res_bus.vm_pu.to_numpy().copy())
    t_loop = (time.perf_counter() - t0) / n_loop
    vm_batch = np.abs(ds_power_flows(ds, x[:n_loop]).v)
    return {"samples": n_samples, "loop_samples": n_loop, "batched_ms_per_sample": 1e3 * t_batch, "runpp_loop_ms_per_sample": 1e3 * t_loop,
            "speedup": t_loop / t_batch, "max_vm_diff_pu": float(np.max(np.abs(vm_batch - np.array(vm_loop)))),
            "feasible_share": float(data.feasible.mean())}


def bench_opf(n_cost_sets: int) -> dict[str, float]:
    """Return the OPF benchmark summary over ``n_cost_sets`` cost sets."""
    from optim.mlopf.benchmark import BenchmarkConfig, benchmark_from_surrogates
    from optim.mlopf.model_store import models_from_store
    from optim.mlopf.systems import integrated_system_from_cases

    models = models_from_store()
    system = integrated_system_from_cases(models.config.systems)
    res = benchmark_from_surrogates(system, models.surrogates, config=BenchmarkConfig(n_cost_sets=n_cost_sets))
    return res.summary()


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--loop-samples", type=int, default=200)
    parser.add_argument("--cost-sets", type=int, default=100)
    args = parser.parse_args(argv)
    lab = bench_labelling(args.samples, args.loop_samples)
    print("DS2 labelling (AC power flow per sample)")
    print(f"  {'method':<34}{'samples':>10}{'ms/sample':>12}")
    print(f"  {'batched Newton/Z-bus (numpy)':<34}{lab['samples']:>10d}{lab['batched_ms_per_sample']:>12.4f}")
    print(f"  {'pandapower runpp loop':<34}{lab['loop_samples']:>10d}{lab['runpp_loop_ms_per_sample']:>12.4f}")
    print(f"  speed-up {lab['speedup']:.0f}x, largest |V| difference {lab['max_vm_diff_pu']:.1e} p.u., feasible {100 * lab['feasible_share']:.1f} %")
    if args.cost_sets > 0:
        s = bench_opf(args.cost_sets)
        print(f"\nOPF benchmark over {s['cost_sets']} cost sets (surrogate OPF vs full AC-OPF, casadi/IPOPT)")
        for key in ("feasible_ratio", "mean_cost_diff_percent", "max_cost_diff_percent", "mean_time_proposed_s", "mean_time_full_s",
                    "mean_time_diff_s"):
            print(f"  {key:<28}{s[key]:>12.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
