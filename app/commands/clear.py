"""``digiplat clear``: clear balancing-energy bids on the SensitivityPackage and validate by AC power flow.

Without ``--package`` the shipped Bergwald grid and scenario are linearized first (9 merit levels,
bisected up to 33 points; see ``digiplat linearize``).
With ``--package FILE`` the DSO key ``FILE.dso-key.json`` written by ``digiplat linearize`` is used
for the validation (without it the validation is skipped and reported as null).

A request the bids and the grid cannot deliver is an answer, not an error: the result (status
``infeasible``, ``max_deliverable_mw``) is printed as usual and the exit code is 3.

``--export DIR`` writes the round's files (:mod:`app.export`: ``activations.csv``,
``violations.csv``, ``grid_results.geojson``, ``grid_results.json``, ``report.html``, the same as
the app's download) as one folder, all or nothing: a failed write leaves a previous DIR as it was.
DIR must be a new folder or a previous export (it is replaced as a whole), checked before any work.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from app.commands.linearize import MAX_POINTS, add_point_arguments, hour_arg, point_config, time_arg
from optim.tso.bids import MAX_FILE_BYTES, MAX_JSON_DEPTH, MAX_ROWS

EXIT_INFEASIBLE = 3


def _solver(value: str) -> str:
    if value in ("highs", "highspy") or (value.startswith("pyomo:") and len(value) > 6):
        return value
    raise argparse.ArgumentTypeError(f"unknown solver {value!r}: use highs or pyomo:NAME")


def _request(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(x) or x == 0.0:
        raise argparse.ArgumentTypeError(f"the request must be a finite, non-zero number of MW, got {value!r}")
    return x


def _iterations(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max-iterations must be an integer, got {value!r}") from None
    if not 1 <= n <= MAX_POINTS:
        raise argparse.ArgumentTypeError(f"--max-iterations must be 1..{MAX_POINTS}, got {n}")
    return n


def exit_code_of(summary: dict[str, Any]) -> int:
    """Return the exit code of a clearing: 0 delivered, 3 not deliverable (infeasible)."""
    return EXIT_INFEASIBLE if summary.get("status") == "infeasible" else 0


def register(subparsers: Any) -> None:
    """Add ``clear`` to the ``digiplat`` subcommands."""
    p = subparsers.add_parser(
        "clear",
        help="TSO: clear bids (piecewise MILP or merit order), then validate by AC power flow",
        description="Clear balancing-energy bids against a request on the DSO's SensitivityPackage (paper A, eq. 14) "
                    "or by grid-blind merit order, and validate the dispatch by AC power flow (paper A, IV).",
        epilog=f"limits: a bid file is at most {MAX_FILE_BYTES / 1e6:.0f} MB, {MAX_ROWS:,} rows and (JSON) "
               f"{MAX_JSON_DEPTH} levels of nesting; --points "
               f"1..{MAX_POINTS}; --max-iterations 1..{MAX_POINTS}; --hour 0..23. exit codes: 0 the request is "
               "delivered; 3 it cannot be delivered (the result is printed anyway: status infeasible and "
               "max_deliverable_mw, with --json as the last line); 2 bad input or a failed solver (one line on stderr says "
               "what is wrong and what to do, for a bid file followed by up to 10 lines, one per bad row); 1 an "
               "internal error "
               "(a bug; DIGIPLAT_DEBUG=1 shows the traceback).",
    )
    p.add_argument("--package", metavar="FILE", help="sensitivity package (default: linearize the shipped scenario)")
    p.add_argument("--bids", metavar="FILE",
                   help="bid file, .csv or .json, format in docs/bids.md (default: the scenario's bids)")
    p.add_argument("--request-mw", type=_request, required=True, metavar="X", help="requested balancing power P_E (MW, + up)")
    p.add_argument("--method", choices=("milp", "merit-order"), default="milp", help="clearing method (default milp)")
    p.add_argument("--solver", type=_solver, default="highs", help="highs (default) or pyomo:NAME, e.g. pyomo:appsi_highs")
    p.add_argument("--refine", action="store_true", help="add the dispatch as a linearization point until it is clean")
    p.add_argument("--max-iterations", type=_iterations, default=4, help="clearings of --refine at most (default 4)")
    p.add_argument("--grid", metavar="DIR", help="grid folder when no --package is given (default: Bergwald)")
    p.add_argument("--day-type", choices=("weekday", "weekend"), default=None, help="day type when no --package")
    p.add_argument("--hour", type=hour_arg, default=None, metavar="H", help="hour when no --package")
    p.add_argument("--time", type=time_arg, default=None, metavar="HH:MM",
                   help="instead of --hour: the 15-minute market time unit starting then, when no --package")
    add_point_arguments(p, when=" when no --package")
    p.add_argument("--polygon-sides", type=int, default=16, metavar="N", help="current polygon sides when no --package")
    p.add_argument("--export", metavar="DIR",
                   help="write the round's activations.csv, violations.csv, grid_results.geojson, grid_results.json "
                        "and report.html to this folder (a new one or a previous export)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=run, exit_code_of=exit_code_of)


def checked_export_dir(text: str) -> Path:
    """Return ``--export``'s folder if it can receive an export, else raise ``InputError`` (one line).

    It must be a new folder or one holding only export files: it is replaced as a whole, so
    nothing else may be lost; its closest existing ancestor must be a writable folder.
    """
    from app.commands._paths import writable_below
    from app.export import EXPORT_FILES
    from optim._errors import InputError

    path = Path(text)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise InputError(f"--export {text} is a file; give a new folder (or a previous export folder) for the files")
        other = sorted(p.name for p in path.iterdir() if p.name not in EXPORT_FILES)
        if other:
            raise InputError(f"--export {text} holds other files than an export ({', '.join(other[:3])}"
                             f"{', ...' if len(other) > 3 else ''}); choose a new folder or a previous export folder")
    try:
        return writable_below(f"--export {text}", path)
    except argparse.ArgumentTypeError as exc:
        raise InputError(str(exc)) from None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Linearize (if needed), clear, validate; return the JSON summary."""
    from app.commands.linearize import checked_points, grid_from_folder, key_path_for, load_grid_and_scenario
    from optim._errors import InputError, SolverError
    from optim.dso.linearize import Linearization, LinearizationConfig, linearize, load_pair
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid
    from optim.market import RefineConfig, clear_market
    from optim.tso.bids import read_bids

    t0 = time.perf_counter()
    if args.max_iterations < 1:
        raise InputError("--max-iterations must be at least 1")
    export_dir = checked_export_dir(args.export) if getattr(args, "export", None) else None
    if args.package:
        key_file = key_path_for(args.package)
        package, key = load_pair(args.package, key_file)
        grid = scenario = None
        if key is not None:
            grid = grid_from_folder(key.time_frame.get("grid_dir", ""))
            scenario = scenario_from_grid(grid, ScenarioConfig.from_dict(key.time_frame["scenario"]))
        elif args.refine:
            raise InputError(f"--refine needs the DSO key {key_file} beside the package")
        elif export_dir is not None:
            raise InputError(f"--export needs the DSO key {key_file} beside the package (the exports hold the "
                             "grid's power flow)")
        if package.style == "hardened" and key is not None:
            from optim.privacy.hardening import load_hardened

            # the DSO's own paper-style copy beside it: validation and Table I against the method itself
            linearization = load_hardened(args.package)
        else:
            linearization = Linearization(package=package, key=key, runtime_s=0.0, power_flow_s=0.0,
                                          sensitivity_s=0.0)
    else:
        checked_points(args.points)
        points = point_config(args)
        grid, scenario, _ = load_grid_and_scenario(args.grid, args.day_type, args.hour, time=args.time)
        config = LinearizationConfig(**points, polygon_sides=args.polygon_sides)
        linearization = linearize(grid, scenario, config=config, bound_key=False)  # not written: no fingerprint
    package = linearization.package
    bids = read_bids(args.bids, package=package) if args.bids else None
    if bids is None and scenario is None:
        raise InputError("--bids is needed with a package whose DSO key is not available")
    if grid is None:
        # TSO only: clear without validation
        from optim.market import MarketOutcome, clear_package

        clearing = clear_package(args.method, package, bids, args.request_mw, args.solver)
        outcome = MarketOutcome(clearing=clearing, validation=None, package=package, key=None,
                                rounds=({"points": package.n_points, "status": clearing.status.value},),
                                runtime_s=time.perf_counter() - t0)
    else:
        outcome = clear_market(grid, scenario, bids, args.request_mw, method=args.method, solver=args.solver,
                               refine=args.refine, linearization=linearization,
                               refine_config=RefineConfig(max_iterations=args.max_iterations))
    summary = outcome.summary()
    if summary["status"] == "solver_error":
        raise SolverError(f"the solver failed: {summary.get('message') or 'no message'}; try another --solver "
                          "(e.g. pyomo:appsi_highs) or --method merit-order")
    summary["linearize_s"] = round(linearization.runtime_s, 4)
    if export_dir is not None:
        summary["export"] = str(_write_export(export_dir, grid, scenario, bids, package, args.request_mw, outcome))
    summary["runtime_s"] = round(time.perf_counter() - t0, 4)
    if not args.json:
        v = summary["validation"]
        line = (f"{summary['status']}: {summary['delivered_mw']:.4g} of {summary['requested_mw']:.4g} MW "
                f"for {summary['cost_eur']:.2f} EUR ({args.method}")
        line += f", point {summary['chosen_point']} '{summary['chosen_point_label']}')" if summary["chosen_point"] is not None else ")"
        if summary["status"] != "optimal" and summary.get("max_deliverable_mw") is not None:
            line += f"; at most {summary['max_deliverable_mw']:.4g} MW deliverable"
        print(line)
        if summary["status"] == "infeasible" and summary.get("message"):
            print(summary["message"])
        if v is not None:
            err = ("" if v["vm_mae_pu"] is None else
                   f", MAE {v['vm_mae_pu']:.2e} p.u. / {v['loading_mae_percent']:.2e} %")
            print(f"AC power flow: {v['violations']} violations, vm {v['vm_min_pu']:.4f}..{v['vm_max_pu']:.4f} p.u., "
                  f"max loading {v['max_loading_percent']:.1f} %{err}")
        elif grid is None:
            print("validation skipped: no DSO key beside the package", file=sys.stderr)
        if export_dir is not None:
            print(f"exported to {summary['export']}")
    return summary


def _write_export(out: Path, grid: Any, scenario: Any, bids: Any, package: Any, request_mw: float, outcome: Any) -> Path:
    """Build the round's export files (:mod:`app.export`) and swap them in as the folder ``out``."""
    from app.commands._paths import replace_folder
    from app.export import MarketRound, export_files
    from optim.tso.bids import bids_from_frame

    table = bids if bids is not None else bids_from_frame(scenario.bids, package=package)
    rnd = MarketRound(grid=grid, scenario=scenario, bids=table, request_mw=float(request_mw),
                      outcomes={outcome.clearing.method: outcome})
    return replace_folder(out, export_files(rnd))
