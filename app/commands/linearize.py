"""``digiplat linearize``: operating points, AC power flows and the SensitivityPackage (paper A, III-B).

Writes the package (all the TSO may see) to ``--out`` and, beside it, the DSO's private key
(``<out>.dso-key.json``: opaque ids -> buses and branches, the grid folder and the scenario) that
``digiplat clear`` needs for the power-flow validation. Keep the key at the DSO.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from app.commands._paths import writable_below

DEFAULT_OUT = "sensitivity_package.zip"
KEY_SUFFIX = ".dso-key.json"
#: Most operating points of one linearization (each costs an AC power flow and a sensitivity
#: matrix; the package grows linearly and the clearing's binaries too).
MAX_POINTS = 64
MAX_SEED = 2**32 - 1


def key_path_for(package_path: str | Path) -> Path:
    """Where the DSO key of a package file lives."""
    package_path = Path(package_path)
    return package_path.with_name(package_path.name + KEY_SUFFIX)


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None


def points_arg(text: str) -> int:
    """Parse ``--points``: 1 to :data:`MAX_POINTS` operating points."""
    value = _int(text, "--points")
    if not 1 <= value <= MAX_POINTS:
        raise argparse.ArgumentTypeError(f"--points must be 1..{MAX_POINTS}, got {value}")
    return value


def max_points_arg(text: str) -> int:
    """Parse ``--max-points``: 1 to :data:`MAX_POINTS`."""
    value = _int(text, "--max-points")
    if not 1 <= value <= MAX_POINTS:
        raise argparse.ArgumentTypeError(f"--max-points must be 1..{MAX_POINTS}, got {value}")
    return value


def gap_arg(text: str) -> float:
    """Parse ``--point-gap``: a positive number (times paper A's Table I errors)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--point-gap must be a number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"--point-gap must be a positive number, got {text!r}")
    return value


def add_point_arguments(p: argparse.ArgumentParser, *, when: str = "") -> None:
    """``--points``, ``--point-method``, ``--max-points``, ``--point-gap`` (linearize and clear)."""
    from optim.dso import DEFAULT_MAX_POINTS, DEFAULT_POINT_GAP

    p.add_argument("--points", type=points_arg, default=9, metavar="M",
                   help=f"operating points{when}, 1..{MAX_POINTS} (default 9; all-half-none with 3 is paper A's "
                        "all, half, none; merit-levels: the first levels before the bisection)")
    p.add_argument("--point-method", default="merit-levels", metavar="NAME",
                   help=f"operating points{when}: merit-levels (default: the DSO's pre-market clearings) or "
                        "all-half-none (paper A)")
    p.add_argument("--max-points", type=max_points_arg, default=None, metavar="N",
                   help=f"merit-levels: bisect level intervals up to N points in all (default {DEFAULT_MAX_POINTS}; "
                        "N = --points: no bisection)")
    p.add_argument("--point-gap", type=gap_arg, default=DEFAULT_POINT_GAP, metavar="X",
                   help="merit-levels: bisect an interval whose end points' tangents miss each other by more than X "
                        f"times paper A's Table I errors (default {DEFAULT_POINT_GAP:g})")


def point_config(args: argparse.Namespace) -> dict[str, Any]:
    """The LinearizationConfig fields of the point arguments (bisection only for merit-levels)."""
    from optim._errors import InputError

    from optim.dso import DEFAULT_MAX_POINTS

    bisect = args.point_method == "merit-levels"
    if args.max_points is None:  # the default never refuses --points above it (1..64 stay valid)
        args.max_points = max(DEFAULT_MAX_POINTS, args.points)
    if bisect and args.max_points < args.points:
        raise InputError(f"--max-points ({args.max_points}) is below --points ({args.points}): raise it or lower --points")
    return {"n_points": args.points, "point_method": args.point_method,
            "max_points": args.max_points if bisect and args.max_points > args.points else None,
            "point_gap": args.point_gap}


def hour_arg(text: str) -> int:
    """Parse ``--hour``: 0 to 23."""
    value = _int(text, "--hour")
    if not 0 <= value <= 23:
        raise argparse.ArgumentTypeError(f"--hour must be 0..23, got {value}")
    return value


def time_arg(text: str) -> tuple[int, int]:
    """Parse ``--time HH:MM``: the start of a 15-minute market time unit (minutes 00, 15, 30, 45)."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not match or not 0 <= int(match[1]) <= 23 or int(match[2]) not in (0, 15, 30, 45):
        raise argparse.ArgumentTypeError(f"--time must be HH:MM from 00:00 to 23:45 in 15-minute steps, got {text!r}")
    return int(match[1]), int(match[2])


def time_frame_of(hour: int | None, time: tuple[int, int] | None) -> dict[str, int | None]:
    """The scenario's time-frame fields of ``--hour H`` (the whole hour) or ``--time HH:MM`` (15 minutes)."""
    if hour is not None and time is not None:
        from optim._errors import InputError

        raise InputError("give --hour (a whole hour) or --time (a 15-minute unit), not both")
    if time is not None:
        return {"hour": time[0], "minute": time[1], "duration_min": 15}
    return {"hour": hour, "minute": None, "duration_min": None}


def seed_arg(text: str) -> int:
    """Parse ``--seed``: 0 to 2**32 - 1 (numpy and scikit-learn accept that range)."""
    value = _int(text, "--seed")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"--seed must be 0..{MAX_SEED}, got {value}")
    return value


def out_file_arg(text: str) -> Path:
    """Parse an output file path; refuse one that cannot be a file before any work is done."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output path is empty")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name, e.g. {path / DEFAULT_OUT}")
    writable_below(text, path.parent)
    return path


def register(subparsers: Any) -> None:
    """Add ``linearize`` to the ``digiplat`` subcommands."""
    p = subparsers.add_parser(
        "linearize",
        help="DSO: operating points, AC power flows, VTDF/LTDF sensitivities -> SensitivityPackage",
        description="Linearize the DSO grid at m operating points of a time frame (paper A, III-B) and write the "
                    "SensitivityPackage for the TSO, plus the DSO's private key beside it.",
        epilog=f"limits: --points 1..{MAX_POINTS}, --hour 0..23, --seed 0..2**32-1. exit codes: 0 written; 2 bad "
               "input (one line on stderr says what is wrong and what to do); 1 an internal error (a bug; "
               "DIGIPLAT_DEBUG=1 shows the traceback).",
    )
    p.add_argument("--grid", metavar="DIR", help="grid folder (default: the shipped Bergwald grid)")
    p.add_argument("--day-type", choices=("weekday", "weekend"), default=None, help="day type (default: scenario's)")
    p.add_argument("--hour", type=hour_arg, default=None, metavar="H", help="hour of the day 0-23 (default: scenario's)")
    p.add_argument("--time", type=time_arg, default=None, metavar="HH:MM",
                   help="instead of --hour: the 15-minute market time unit starting then (00:00 ... 23:45)")
    add_point_arguments(p)
    p.add_argument("--polygon-sides", type=int, default=16, metavar="N",
                   help="sides of the inscribed polygon of |I| <= I_max (default 16: at most 1.9 %% of a rating lost)")
    p.add_argument("--package-style", choices=("hardened", "paper"), default="hardened",
                   help="hardened (default): only the rows that can bind, scaled, shuffled, secret ids "
                        "(docs/privacy.md); paper: paper A's full matrices and base values, for comparison")
    p.add_argument("--privacy-level", type=float, default=None, metavar="X",
                   help="hardened only: flatten coefficients below X times their row's largest, 0..1 "
                        "(default 0: exact; 0.1 hides the substation groups at about +2.5 %% cost)")
    p.add_argument("--privacy-mechanism", choices=("rows", "envelope"), default="rows",
                   help="hardened only: rows (default: the screened grid rows, exact) or envelope (per-bus "
                        "bounds per request band instead of any grid row, checked by AC power flow; "
                        "docs/privacy.md)")
    p.add_argument("--envelope-band-mw", type=float, default=None, metavar="W",
                   help="envelope only: width of a request band, MW (default 0.25)")
    p.add_argument("--seed", type=seed_arg, default=None, help="scenario seed, 0..2**32-1 (default: scenario's)")
    p.add_argument("--out", metavar="FILE", type=out_file_arg, default=DEFAULT_OUT,
                   help=f"package file (default {DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=run)


def load_grid_and_scenario(grid_dir: str | None, day_type: str | None, hour: int | None,
                           seed: int | None = None, time: tuple[int, int] | None = None, *,
                           lazy: bool = False) -> tuple[Any, Any, Path]:
    """Load the grid folder and build the (default) scenario for the time frame (``--hour`` or ``--time``).

    ``lazy``: see :func:`grid_from_folder`.
    """
    from dataclasses import replace

    from gridgen.grid import Grid, default_grid_dir
    from optim._errors import InputError
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    path = Path(grid_dir) if grid_dir else default_grid_dir()
    grid = grid_from_folder(path, lazy=lazy)
    if hour is not None and not 0 <= hour <= 23:
        raise InputError(f"--hour must be 0..23, got {hour}")
    config = ScenarioConfig().with_time_frame(day_type=day_type, **time_frame_of(hour, time))
    if seed is not None:
        config = replace(config, random_state=int(seed))
    return grid, scenario_from_grid(grid, config), path


#: The grid loaded last in this process, by :func:`_folder_stamp` (the pandapower JSON load is
#: paid once per process; the linearization never changes the grid, it works on copies).
_GRIDS: dict[tuple, Any] = {}


def _folder_stamp(path: str | Path) -> tuple | None:
    """The folder's resolved path and each file's name, size and modification time (None: unreadable)."""
    try:
        folder = Path(path).resolve()
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    except OSError:
        return None
    return (str(folder), tuple(files))


def grid_from_folder(path: str | Path, *, lazy: bool = False) -> Any:
    """Return ``Grid.load(path)``; a folder whose files cannot be read gives one InputError.

    ``lazy``: a grid file the compiled-grid store knows (:mod:`optim.dso.compiled_grid`) is not
    parsed until its net is used (the linearization does not use it); any other is parsed now, so
    a damaged file is reported here either way.

    Grid.load raises GridGenError for what it checks; a damaged file (truncated JSON, ``{}``, wrong
    tables) can fail deeper, in pandapower or pandas, and is still the user's folder, not a bug.
    A folder loaded before in this process, unchanged since (same files, sizes and times), gives
    the same Grid again.
    """
    from gridgen._errors import GridGenError
    from gridgen.grid import Grid
    from optim._errors import InputError, OptimError

    stamp = _folder_stamp(path)
    cached = _GRIDS.get(stamp) if stamp is not None else None
    if cached is not None:
        return cached
    try:
        grid = Grid.load(path, lazy=lazy)
        if lazy:
            from optim.dso.compiled_grid import is_stored

            if not is_stored(grid):
                grid.net  # noqa: B018 - parsed (and checked) now
        if stamp is not None:
            _GRIDS.clear()  # one grid per process is what the commands, the app and a market day use
            _GRIDS[stamp] = grid
        return grid
    except (GridGenError, OptimError, OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure to read the folder is its content
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise InputError(f"grid folder {path} is damaged or incomplete ({type(exc).__name__}"
                         f"{': ' + text if text else ''}); rebuild it with 'digiplat grid build' or give another "
                         "--grid") from exc


def checked_points(n_points: int | None) -> int:
    """Return ``n_points`` if it is 1..MAX_POINTS, else raise LimitError (for callers without the parser)."""
    from optim._errors import LimitError

    if n_points is None or not 1 <= int(n_points) <= MAX_POINTS:
        raise LimitError(f"--points must be 1..{MAX_POINTS}, got {n_points}")
    return int(n_points)


def _progress(disable: bool):
    from app.commands._progress import progress_bar

    return progress_bar("linearize", disable=disable)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Linearize and write the package and key; return the JSON summary."""
    import dataclasses

    from optim._errors import InputError
    from optim.dso.linearize import LinearizationConfig, linearize, save_pair

    t0 = time.perf_counter()
    checked_points(args.points)
    points = point_config(args)
    if args.package_style == "hardened":  # bad hardening options fail before the linearization, not after
        from optim.privacy.hardening import DEFAULT_PRIVACY_LEVEL, HardeningConfig

        from optim.privacy.envelope import EnvelopeConfig

        if args.envelope_band_mw is not None and args.privacy_mechanism != "envelope":
            raise InputError("--envelope-band-mw applies to --privacy-mechanism envelope only")
        envelope = EnvelopeConfig() if args.envelope_band_mw is None else EnvelopeConfig(band_mw=args.envelope_band_mw)
        hardening = HardeningConfig(privacy_level=DEFAULT_PRIVACY_LEVEL if args.privacy_level is None
                                    else args.privacy_level, mechanism=args.privacy_mechanism, envelope=envelope)
    elif args.privacy_level is not None or args.privacy_mechanism != "rows" or args.envelope_band_mw is not None:
        raise InputError("--privacy-level, --privacy-mechanism and --envelope-band-mw apply to --package-style "
                         "hardened only")
    grid, scenario, grid_dir = load_grid_and_scenario(args.grid, args.day_type, args.hour, args.seed, args.time, lazy=True)
    config = LinearizationConfig(**points, polygon_sides=args.polygon_sides)
    lin = linearize(grid, scenario, config=config, progress=_progress(disable=not sys.stderr.isatty()),
                    bound_key=args.package_style == "paper")  # a hardened package gets a key of its own
    out = Path(args.out)
    key = dataclasses.replace(lin.key, time_frame={**lin.key.time_frame, "grid_dir": str(Path(grid_dir).resolve())})
    key_file = key_path_for(out)
    if args.package_style == "hardened":
        from optim.privacy.hardening import harden

        if hardening.mechanism == "envelope":  # boxes from the bids' prices, checked by the DSO's AC power flow
            from optim.privacy.hardening import ac_verifier

            from app.commands._progress import progress_bar

            harden(lin.package, key, scenario.bids, config=hardening, verify=ac_verifier(grid, scenario, key),
                   progress=progress_bar("envelopes", disable=not sys.stderr.isatty(), unit="band")).save(out)
        else:
            harden(lin.package, key, config=hardening).save(out)
    else:
        save_pair(lin.package, key, out, key_file)
    summary = {**lin.summary(), "package_style": args.package_style,
               "privacy_mechanism": args.privacy_mechanism if args.package_style == "hardened" else None,
               "day_type": scenario.config.day_type, "hour": scenario.config.hour,
               "timestamp": scenario.timestamp, "out": str(out), "key": str(key_file),
               "offered_up_mw": scenario.summary()["offered_up_mw"], "runtime_s": round(time.perf_counter() - t0, 3),
               "linearize_s": round(lin.runtime_s, 3)}
    if not args.json:
        print(f"{summary['points']} operating points, {summary['flex_buses']} flexible buses, "
              f"{summary['monitored_buses']} voltages, {summary['monitored_branches']} branches -> {out} "
              f"(DSO key: {key_file}) in {summary['runtime_s']:.2f} s")
    return summary
