"""``digiplat mlopf``: paper B's ML-based privacy-preserving AC-OPF.

``digiplat mlopf train [--samples N] [--seed S] [--out DIR]`` labels the datasets (batched AC power
flow), trains the polytope networks and the quadratic regressions and writes them (default:
``assets/mlopf``). ``digiplat mlopf benchmark --cost-sets N [--seed S] [--models DIR] [--save PATH]
[--json]`` compares the TSO's surrogate OPF with the full AC-OPF over N random cost sets; it trains
the default models first (progress bar) if none are stored.

Every output path is checked before the work starts (training takes minutes to hours), and every
file is written to a temporary sibling and swapped in when complete
(:func:`optim.mlopf.model_store.atomic_write`): a failure leaves the previous output intact.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.commands._paths import writable_below

#: Bounds of the arguments (the paper uses 20,000 / 500,000 samples and 1000 cost sets).
MIN_SAMPLES = 50
MAX_SAMPLES = 1_000_000
MAX_COST_SETS = 10_000
MAX_SEED = 2**32 - 1

EXIT_CODES = ("exit codes: 0 done; 2 bad input (one line on stderr says what is wrong and what to do), e.g. a "
              "missing, truncated or corrupt models.json; 1 an internal error (a bug; DIGIPLAT_DEBUG=1 shows the "
              "traceback).")


def _bounded_int(name: str, low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be {low:,}..{high:,}, got {value:,}")
        return value

    return parse


def _folder_arg(text: str) -> Path:
    """An output folder: an existing folder or one that can be created."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; give a folder for the models")
    return writable_below(text, path)


def _models_arg(text: str) -> Path:
    """A folder of trained models (it must hold models.json; checked when loading)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist; give the folder holding models.json "
                                         "(written by `digiplat mlopf train --out DIR`)")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; give the folder holding models.json")
    return path


def _save_arg(text: str) -> Path:
    """A result file: not a folder, in a folder that exists or can be created."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name, e.g. {path / 'benchmark.json'}")
    writable_below(text, path.parent)
    return path


def register(subparsers: Any) -> None:
    """Add ``mlopf train`` and ``mlopf benchmark`` to the ``digiplat`` parser."""
    parser = subparsers.add_parser("mlopf", help="paper B: ML-based privacy-preserving AC-OPF (train, benchmark)",
                                   epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="mlopf_command", metavar="ACTION")
    sub.required = True

    seed = _bounded_int("--seed", 0, MAX_SEED)
    train = sub.add_parser("train", help="label datasets, train the polytope networks and regressions",
                           epilog=f"limits: --samples {MIN_SAMPLES:,}..{MAX_SAMPLES:,}, --seed 0..2**32-1. " + EXIT_CODES)
    train.add_argument("--samples", type=_bounded_int("--samples", MIN_SAMPLES, MAX_SAMPLES), default=None,
                       help=f"samples per dataset, {MIN_SAMPLES:,}..{MAX_SAMPLES:,} (default: the paper's 20,000 for "
                            "DS1 and 500,000 for DS2/DS3)")
    train.add_argument("--seed", type=seed, default=0, help="seed of sampling and training (default 0)")
    train.add_argument("--out", type=_folder_arg, default=None,
                       help="output folder (default: assets/mlopf); its files are replaced only when complete")
    train.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    train.set_defaults(func=run_train)

    bench = sub.add_parser("benchmark", help="surrogate OPF vs full AC-OPF over random cost sets",
                           epilog=f"limits: --cost-sets 1..{MAX_COST_SETS:,}, --seed 0..2**32-1. " + EXIT_CODES)
    bench.add_argument("--cost-sets", type=_bounded_int("--cost-sets", 1, MAX_COST_SETS), required=True,
                       help=f"number of random cost sets, 1..{MAX_COST_SETS:,} (paper: 1000)")
    bench.add_argument("--seed", type=seed, default=0, help="seed of the cost sets (default 0)")
    bench.add_argument("--models", type=_models_arg, default=None, help="model folder (default: assets/mlopf)")
    bench.add_argument("--save", type=_save_arg, default=None,
                       help="write the per-cost-set results as JSON to this file (replaced only when complete)")
    bench.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    bench.set_defaults(func=run_benchmark)


def _progress() -> bool:
    # bars only on a terminal: in a pipe or a log they would come before the one line of an error
    return sys.stderr.isatty()


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train and store the models; return the metric summary."""
    from optim._errors import InputError
    from optim.mlopf.model_store import DEFAULT_MODEL_DIR, TrainConfig, models_from_training, output_dir, save_models

    if args.samples is not None and not MIN_SAMPLES <= args.samples <= MAX_SAMPLES:
        raise InputError(f"--samples must be {MIN_SAMPLES:,}..{MAX_SAMPLES:,}, got {args.samples}")
    if not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"--seed must be 0..{MAX_SEED}, got {args.seed}")
    out = output_dir(args.out or DEFAULT_MODEL_DIR)  # before the training, not after it
    models, data = models_from_training(TrainConfig(samples=args.samples, seed=args.seed), progress=_progress())
    path = save_models(models, out, ds1_data=data["DS1"])
    return {"models": str(path), "samples": models.n_samples, "seed": args.seed,
            "label_time_ms_per_sample": {k: v * 1e3 for k, v in models.label_time_s_per_sample.items()}, **models.summary()}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run the OPF benchmark; return the summary of the issue's CLI contract."""
    from optim._errors import InputError
    from optim.mlopf.benchmark import BenchmarkConfig, benchmark_from_surrogates
    from optim.mlopf.model_store import DEFAULT_MODEL_DIR, atomic_write, models_fit_system, models_from_store
    from optim.mlopf.systems import integrated_system_from_cases

    if not 1 <= args.cost_sets <= MAX_COST_SETS:
        raise InputError(f"--cost-sets must be 1..{MAX_COST_SETS:,}, got {args.cost_sets}")
    if not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"--seed must be 0..{MAX_SEED}, got {args.seed}")
    models = models_from_store(args.models or DEFAULT_MODEL_DIR, train_if_missing=args.models is None,
                               progress=_progress())
    system = integrated_system_from_cases(models.config.systems)
    models_fit_system(models, system)
    result = benchmark_from_surrogates(system, models.surrogates, progress=_progress(),
                                       config=BenchmarkConfig(n_cost_sets=args.cost_sets, random_state=args.seed))
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result.to_dict())
        atomic_write(args.save, lambda tmp: tmp.write_text(text))
    return {**result.summary(), **models.summary()}
