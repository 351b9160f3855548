"""``digiplat linearize``: operating points, AC power flows and the SensitivityPackage (paper A, III-B).

Writes the package (all the TSO may see) to ``--out`` and, beside it, the DSO's private key
(``<out>.dso-key.json``: opaque ids -> buses and branches, the grid folder and the scenario) that
``digiplat clear`` needs for the power-flow validation. Keep the key at the DSO.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = "sensitivity_package.zip"
KEY_SUFFIX = ".dso-key.json"


def key_path_for(package_path: str | Path) -> Path:
    """Where the DSO key of a package file lives."""
    package_path = Path(package_path)
    return package_path.with_name(package_path.name + KEY_SUFFIX)


def register(subparsers: Any) -> None:
    """Add ``linearize`` to the ``digiplat`` subcommands."""
    p = subparsers.add_parser(
        "linearize",
        help="DSO: operating points, AC power flows, VTDF/LTDF sensitivities -> SensitivityPackage",
        description="Linearize the DSO grid at m operating points of a time frame (paper A, III-B) and write the "
                    "SensitivityPackage for the TSO, plus the DSO's private key beside it.",
    )
    p.add_argument("--grid", metavar="DIR", help="grid folder (default: the shipped Bergwald grid)")
    p.add_argument("--day-type", choices=("weekday", "weekend"), default=None, help="day type (default: scenario's)")
    p.add_argument("--hour", type=int, default=None, metavar="H", help="hour of the day 0-23 (default: scenario's)")
    p.add_argument("--points", type=int, default=9, metavar="M",
                   help="operating points (default 9; all-half-none with 3 is paper A's all, half, none)")
    p.add_argument("--point-method", default="merit-levels", metavar="NAME",
                   help="operating points: merit-levels (default: the DSO's pre-market clearings) or all-half-none (paper A)")
    p.add_argument("--polygon-sides", type=int, default=16, metavar="N",
                   help="sides of the inscribed polygon of |I| <= I_max (default 16: at most 1.9 %% of a rating lost)")
    p.add_argument("--seed", type=int, default=None, help="scenario seed (default: scenario's)")
    p.add_argument("--out", metavar="FILE", default=DEFAULT_OUT, help=f"package file (default {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=run)


def load_grid_and_scenario(grid_dir: str | None, day_type: str | None, hour: int | None,
                           seed: int | None = None) -> tuple[Any, Any, Path]:
    """Load the grid folder and build the (default) scenario for the time frame."""
    from dataclasses import replace

    from gridgen.grid import Grid, default_grid_dir
    from optim._errors import InputError
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    path = Path(grid_dir) if grid_dir else default_grid_dir()
    grid = Grid.load(path)
    if hour is not None and not 0 <= hour <= 23:
        raise InputError(f"--hour must be 0..23, got {hour}")
    config = ScenarioConfig().with_time_frame(day_type=day_type, hour=hour)
    if seed is not None:
        config = replace(config, random_state=int(seed))
    return grid, scenario_from_grid(grid, config), path


def _progress(disable: bool):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int, message: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, file=sys.stderr, disable=disable, leave=False, desc="linearize")
        bar.n = done
        bar.set_postfix_str(message[:60])
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Linearize and write the package and key; return the JSON summary."""
    import dataclasses

    from optim._errors import InputError
    from optim.dso.linearize import LinearizationConfig, linearize, save_pair

    t0 = time.perf_counter()
    if args.points is None or args.points < 1:
        raise InputError(f"--points must be a positive integer, got {args.points}")
    grid, scenario, grid_dir = load_grid_and_scenario(args.grid, args.day_type, args.hour, args.seed)
    config = LinearizationConfig(n_points=args.points, point_method=args.point_method,
                                 polygon_sides=args.polygon_sides)
    lin = linearize(grid, scenario, config=config, progress=_progress(disable=not sys.stderr.isatty()))
    out = Path(args.out)
    key = dataclasses.replace(lin.key, time_frame={**lin.key.time_frame, "grid_dir": str(Path(grid_dir).resolve())})
    key_file = key_path_for(out)
    save_pair(lin.package, key, out, key_file)
    summary = {**lin.summary(), "day_type": scenario.config.day_type, "hour": scenario.config.hour,
               "timestamp": scenario.timestamp, "out": str(out), "key": str(key_file),
               "offered_up_mw": scenario.summary()["offered_up_mw"], "runtime_s": round(time.perf_counter() - t0, 3),
               "linearize_s": round(lin.runtime_s, 3)}
    if not args.json:
        print(f"{summary['points']} operating points, {summary['flex_buses']} flexible buses, "
              f"{summary['monitored_buses']} voltages, {summary['monitored_branches']} branches -> {out} "
              f"(DSO key: {key_file}) in {summary['runtime_s']:.2f} s")
    return summary
