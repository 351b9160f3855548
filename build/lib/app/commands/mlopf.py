"""``digiplat mlopf``: paper B's ML-based privacy-preserving AC-OPF.

``digiplat mlopf train [--samples N] [--seed S] [--out DIR]`` labels the datasets (batched AC power
flow), trains the polytope networks and the quadratic regressions and writes them (default:
``assets/mlopf``). ``digiplat mlopf benchmark --cost-sets N [--seed S] [--models DIR] [--save PATH]
[--json]`` compares the TSO's surrogate OPF with the full AC-OPF over N random cost sets; it trains
the default models first (progress bar) if none are stored.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    return value


def register(subparsers: Any) -> None:
    """Add ``mlopf train`` and ``mlopf benchmark`` to the ``digiplat`` parser."""
    parser = subparsers.add_parser("mlopf", help="paper B: ML-based privacy-preserving AC-OPF (train, benchmark)")
    sub = parser.add_subparsers(dest="mlopf_command", metavar="ACTION")
    sub.required = True

    train = sub.add_parser("train", help="label datasets, train the polytope networks and regressions")
    train.add_argument("--samples", type=_non_negative_int, default=None,
                       help="samples per dataset (default: the paper's 20,000 for DS1 and 500,000 for DS2/DS3)")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="seed of sampling and training (default 0)")
    train.add_argument("--out", type=Path, default=None, help="output directory (default: assets/mlopf)")
    train.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    train.set_defaults(func=run_train)

    bench = sub.add_parser("benchmark", help="surrogate OPF vs full AC-OPF over random cost sets")
    bench.add_argument("--cost-sets", type=_non_negative_int, required=True, help="number of random cost sets (paper: 1000)")
    bench.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the cost sets (default 0)")
    bench.add_argument("--models", type=Path, default=None, help="model directory (default: assets/mlopf)")
    bench.add_argument("--save", type=Path, default=None, help="write the per-cost-set results as JSON to this path")
    bench.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    bench.set_defaults(func=run_benchmark)


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train and store the models; return the metric summary."""
    from optim._errors import InputError
    from optim.mlopf.model_store import DEFAULT_MODEL_DIR, TrainConfig, models_from_training, save_models

    if args.samples is not None and args.samples < 50:
        raise InputError(f"--samples must be at least 50, got {args.samples}")
    if args.seed < 0:
        raise InputError(f"--seed must be non-negative, got {args.seed}")
    models, data = models_from_training(TrainConfig(samples=args.samples, seed=args.seed), progress=True)
    out = args.out or DEFAULT_MODEL_DIR
    path = save_models(models, out, ds1_data=data["DS1"])
    return {"models": str(path), "samples": models.n_samples, "seed": args.seed,
            "label_time_ms_per_sample": {k: v * 1e3 for k, v in models.label_time_s_per_sample.items()}, **models.summary()}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run the OPF benchmark; return the summary of the issue's CLI contract."""
    from optim._errors import InputError
    from optim.mlopf.benchmark import BenchmarkConfig, benchmark_from_surrogates
    from optim.mlopf.model_store import DEFAULT_MODEL_DIR, models_from_store
    from optim.mlopf.systems import integrated_system_from_cases

    if args.cost_sets <= 0:
        raise InputError(f"--cost-sets must be positive, got {args.cost_sets}")
    if args.seed < 0:
        raise InputError(f"--seed must be non-negative, got {args.seed}")
    models = models_from_store(args.models or DEFAULT_MODEL_DIR, train_if_missing=args.models is None, progress=True)
    system = integrated_system_from_cases(models.config.systems)
    result = benchmark_from_surrogates(system, models.surrogates, config=BenchmarkConfig(n_cost_sets=args.cost_sets, random_state=args.seed))
    if args.save is not None:
        result.save(args.save)
    return {**result.summary(), **models.summary()}
