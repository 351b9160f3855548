"""``digiplat day``: a market day, every market time unit linearized, cleared and validated.

``digiplat day [--grid DIR] [--day-type weekday|weekend] [--request-profile FILE | --request-mw X]
[--mtu-min 15] [--districts] [--workers N] [--scheduler ADDRESS] [--out DIR] [--json]``: without a profile or
request the shipped weekday profile (``assets/profiles/request_weekday.csv``) is used. ``--workers
0`` runs the units one after another in this process; ``--workers N`` on an embedded dask
``LocalCluster`` of N processes; ``--scheduler tcp://host:8786`` on an existing dask cluster.
``--districts`` splits the grid into its districts (a package per district and unit, one clearing
per unit across them). ``--out DIR`` writes ``units.csv`` and ``day.json`` (both replaced together,
never half-written).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from app.commands._paths import replace_folder, writable_below


def _request(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"the request must be a finite number of MW, got {value!r}")
    return x


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 0 <= n <= 256:
        raise argparse.ArgumentTypeError(f"--workers must be 0..256, got {n}")
    return n


def register(subparsers: Any) -> None:
    """Add ``day`` to the ``digiplat`` subcommands."""
    p = subparsers.add_parser(
        "day",
        help="a market day: every 15-minute unit linearized, cleared (MILP and merit order) and validated",
        description="For each market time unit of a day: the unit's time frame and bids, its sensitivity "
                    "package, the clearing of the unit's request by the MILP and by the grid-blind merit order, "
                    "and the AC validation of both. Units run in parallel on dask.distributed.",
    )
    p.add_argument("--grid", metavar="DIR", help="grid folder (default: the shipped Bergwald grid)")
    p.add_argument("--day-type", choices=("weekday", "weekend"), default="weekday", help="day type (default weekday)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--request-profile", metavar="FILE",
                     help="CSV with columns start (HH:MM) and request_mw (default: the shipped weekday profile)")
    src.add_argument("--request-mw", type=_request, metavar="X", help="the same request in every unit (MW, + up)")
    p.add_argument("--mtu-min", type=int, choices=(15, 30, 60), default=15, help="market time unit (default 15 min)")
    p.add_argument("--points", type=int, default=9, metavar="M", help="linearization points per unit (default 9)")
    p.add_argument("--point-method", default="merit-levels", metavar="NAME",
                   help="how the DSO places each unit's points: merit-levels (default) or all-half-none (paper A)")
    p.add_argument("--districts", action="store_true",
                   help="split the grid into its districts (20 kV feeders): a package per district, one joint clearing")
    p.add_argument("--workers", type=_workers, default=2, metavar="N",
                   help="dask worker processes of an embedded LocalCluster; 0 = serial in this process (default 2)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--out", metavar="DIR", type=_out_dir_arg, help="write units.csv and day.json to this folder")
    p.add_argument("--json", action="store_true", help="print the day as one JSON object on the last line")
    p.set_defaults(func=run)


def _out_dir_arg(text: str) -> Path:
    """``--out``: a folder (existing or to be made) that can be written, checked before the day runs."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder for units.csv and day.json")
    return writable_below(text, path)


def _write_outputs(out: Path, day: Any) -> None:
    """``units.csv`` and ``day.json`` into a temporary sibling folder, then swapped in as a whole."""
    from gridgen.grid import credit

    frame = day.units_frame()
    replace_folder(out, {
        "units.csv": (f"# {credit()}\n" + frame.to_csv(index=False)).encode(),
        "day.json": (json.dumps({**day.to_dict(), "credit": credit()}, indent=1) + "\n").encode(),
    })


def _progress(disable: bool):
    from app.commands._progress import progress_bar

    return progress_bar("market day", disable=disable, unit="unit", width=40)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the day; return its JSON (units, merit_order, totals, runtime_s)."""
    from gridgen.grid import default_grid_dir
    from optim.day import (DayConfig, constant_request_profile, default_request_profile, market_day,
                           request_profile_from_csv)

    out = args.out
    config = DayConfig(day_type=args.day_type, mtu_min=args.mtu_min, n_points=args.points,
                       point_method=args.point_method, districts=args.districts)
    if args.request_profile:
        profile = request_profile_from_csv(args.request_profile, args.mtu_min)
    elif args.request_mw is not None:
        profile = constant_request_profile(args.request_mw, args.mtu_min)
    else:
        profile = default_request_profile(args.mtu_min)
    grid_dir = Path(args.grid) if args.grid else default_grid_dir()
    day = market_day(grid_dir, profile, config=config, workers=args.workers, scheduler=args.scheduler,
                     progress=_progress(disable=not sys.stderr.isatty()))
    if out is not None:
        _write_outputs(out, day)
    summary = day.to_dict()
    if not args.json:
        m, mo = day.totals["milp"], day.totals["merit_order"]
        print(f"{m['units']} units ({args.mtu_min} min, {args.day_type}) in {day.runtime_s:.1f} s on "
              f"{day.workers or 'no'} worker(s): MILP {m['units_optimal']} cleared, {m['units_infeasible']} "
              f"infeasible, {m['units_with_violations']} with violations, {m['cost_eur']:.2f} EUR; merit order "
              f"{mo['units_with_violations']} units with violations" + (f" -> {out}" if out else ""))
    return summary
