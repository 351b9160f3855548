"""``digiplat audit``: what a TSO can reconstruct from a sensitivity package, scored against the grid.

Runs the attacks of :mod:`optim.privacy.attacks` on the package file alone, then scores each with
the DSO's key (beside the package) and grid, and prints one table (``--json``: the scores).
A DSO-side tool: it needs the key, which never leaves the DSO.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``audit`` to the ``digiplat`` subcommands."""
    p = subparsers.add_parser(
        "audit",
        help="DSO: attack a sensitivity package as a TSO would and score what it reveals",
        description="Reconstruct substation groups, feeders, the tree, edges, resistances, ratings, id order and "
                    "links between packages from a package file alone; score each against the DSO's grid.",
    )
    p.add_argument("--package", metavar="FILE", required=True, help="package file (its key must lie beside it)")
    p.add_argument("--grid", metavar="DIR", help="grid folder (default: the one named in the key, else Bergwald)")
    p.add_argument("--link-with", metavar="FILE2", help="a second time frame's package for the row-link attack")
    p.add_argument("--point", type=int, default=None, metavar="K",
                   help="read only operating point K (default: every point, the best score counts)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON on the last line")
    p.set_defaults(func=run)


def _grid_dir(explicit: str | None, time_frame: dict[str, Any]) -> Path:
    from gridgen.grid import default_grid_dir

    if explicit:
        return Path(explicit)
    named = time_frame.get("grid_dir")
    return Path(named) if named and Path(named).is_dir() else default_grid_dir()


def _load_package(path: str) -> Any:
    from optim.package import SensitivityPackage

    return SensitivityPackage.load(path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Attack and score the package; return the JSON summary."""
    from gridgen.grid import Grid
    from optim._errors import InputError
    from optim.privacy.audit import audit_package, origins_beside
    from optim.privacy.truth import truth_from_grid

    package = _load_package(args.package)
    origins, time_frame = origins_beside(args.package)
    if args.point is not None and not 0 <= args.point < package.n_points:
        raise InputError(f"--point must be 0..{package.n_points - 1}, got {args.point}")
    other = other_origins = None
    if args.link_with:
        other = _load_package(args.link_with)
        other_origins, _ = origins_beside(args.link_with)
        if args.point is not None and args.point >= other.n_points:
            raise InputError(f"--point {args.point} is beyond the {other.n_points} points of {args.link_with}")
    grid = Grid.load(_grid_dir(args.grid, time_frame))
    truth = truth_from_grid(grid)
    missing = sorted(set(origins.flex_bus.values()) - set(truth.substation))
    if missing:
        raise InputError(f"the key names buses {missing[:5]} that the grid does not have: pass the package's --grid")
    report = audit_package(package, origins=origins, grid=grid, other=other, other_origins=other_origins,
                           truth=truth, point=args.point)
    if not args.json:
        print(report.table())
    return {"package": str(args.package), **report.to_dict()}
