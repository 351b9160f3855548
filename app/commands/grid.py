"""``digiplat grid build``: generate a distribution grid from OpenStreetMap."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

SUMMARY_KEYS = (
    "buildings", "substations", "buses", "lines", "trafos", "mv_length_km", "lv_length_km", "vm_min_pu",
    "vm_max_pu", "max_line_loading_percent", "max_trafo_loading_percent", "violations", "runtime_s",
)


def default_osm_path() -> Path:
    """Return the shared OSM file of Bergwald/Durlach (``$DIGIPLAT_OSM`` or ``../shared/osm``)."""
    import os

    env = os.environ.get("DIGIPLAT_OSM")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "osm" / "bergwald_karlsruhe_durlach.osm"


def register(subparsers: argparse._SubParsersAction) -> None:
    grid = subparsers.add_parser("grid", help="generate distribution grids from OpenStreetMap")
    sub = grid.add_subparsers(dest="grid_command", metavar="SUBCOMMAND")
    sub.required = True
    build = sub.add_parser(
        "build",
        help="build a 20/0.4 kV grid (default: Bergwald)",
        description="Build a sized, power-flow-validated 20/0.4 kV grid from OpenStreetMap data "
        "(© OpenStreetMap contributors, ODbL).",
    )
    source = build.add_mutually_exclusive_group()
    source.add_argument("--osm", type=Path, help="an .osm or .osm.pbf file (offline)")
    source.add_argument("--place", help="a place name, geocoded by Nominatim and downloaded by osmnx (needs a network)")
    build.add_argument(
        "--online", action="store_true",
        help="download --bbox from Overpass through osmnx instead of cropping the shared file (needs a network; "
        "endpoints from DIGIPLAT_NOMINATIM_URL/DIGIPLAT_OVERPASS_URL, cache in DIGIPLAT_OSMNX_CACHE)",
    )
    build.add_argument("--bbox", help="SOUTH,WEST,NORTH,EAST in degrees (default with the shared file: Bergwald)")
    build.add_argument("--out", type=Path, default=Path("grid-out"), help="output folder, new or a grid folder (default: grid-out)")
    build.add_argument("--seed", type=int, default=0, help="random seed of k-means and the TSP heuristic (default 0)")
    build.add_argument("--id-seed", type=int, default=0,
                       help="seed of the random order of the building ids, 0..2**32-1 (default 0 = the shipped grid; "
                            "a DSO sharing bids of a real grid sets its own secret seed)")
    build.add_argument("--substations", type=int, default=None, help="fixed number of substations (default: from capacity)")
    build.add_argument("--min-building-area", type=float, default=None, help="smallest supplied footprint in m² (default 60)")
    build.add_argument("--json", action="store_true", help="print the summary as one JSON line last")
    build.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the grid, save it to ``args.out`` and return its summary.

    Every input is checked before the build starts (options, the OSM file, the output folder), so
    a bad one costs no building time and never touches an existing output.
    """
    from dataclasses import replace

    from tqdm import tqdm

    from gridgen._errors import ConfigError, InputDataError
    from gridgen.build import STAGES, GridConfig, grid_from_area
    from gridgen.grid import Grid, check_grid_out_dir, credit, default_grid_dir
    from gridgen.osm import BERGWALD_BBOX, AreaConfig, area_from_file, area_from_place, parse_bbox
    from gridgen.substations import SubstationConfig

    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if not 0 <= args.id_seed < 2**32:
        raise ConfigError(f"--id-seed must be 0..2**32-1, got {args.id_seed}")
    if args.substations is not None and not 1 <= args.substations <= SubstationConfig().max_substations:
        raise ConfigError(f"--substations must be between 1 and {SubstationConfig().max_substations}, got {args.substations}")
    if args.min_building_area is not None and not (math.isfinite(args.min_building_area) and args.min_building_area >= 0):
        raise ConfigError(f"--min-building-area must be a number >= 0, got {args.min_building_area}")
    if args.online and args.osm is not None:
        raise ConfigError("--online downloads the area; it cannot be combined with --osm FILE")
    if args.online and not args.bbox and not args.place:
        raise ConfigError("--online needs --bbox SOUTH,WEST,NORTH,EAST (or --place NAME)")
    if args.place is not None and not args.place.strip():
        raise ConfigError("--place needs a place name, e.g. --place 'Durlach, Karlsruhe'")
    bbox = parse_bbox(args.bbox) if args.bbox else None
    check_grid_out_dir(args.out)
    online = args.online or args.place is not None
    osm = None
    if not online:
        osm = args.osm or default_osm_path()
        if args.osm is None and bbox is None and not osm.is_file():
            # No OSM file here: the shipped Bergwald grid is the default.
            grid = Grid.load(default_grid_dir())
            grid.save(args.out)
            print(f"shared OSM file not found; copied the shipped Bergwald grid to {args.out}", file=sys.stderr)
            return _report(grid, args.out, credit())
        _check_osm_file(osm)
    config = GridConfig(random_state=args.seed, substations=SubstationConfig(n_substations=args.substations))
    area_options = {"id_seed": args.id_seed}
    if args.min_building_area is not None:
        area_options["min_building_area_m2"] = args.min_building_area
    config = replace(config, area=AreaConfig(**area_options))

    bar = tqdm(total=len(STAGES) + 1, desc="grid", unit="stage", file=sys.stderr, disable=None, leave=False)
    try:
        if online:
            bar.set_postfix_str("downloading OSM data")
            area = area_from_place(args.place, bbox=bbox, config=config.area)
        else:
            bar.set_postfix_str("reading OSM data")
            area = area_from_file(osm, bbox=bbox or (None if args.osm else BERGWALD_BBOX), config=config.area)
        bar.update(1)

        def progress(stage: str) -> None:
            bar.set_postfix_str(stage)
            bar.update(1)

        grid = grid_from_area(area, config=config, progress=progress)
    finally:
        bar.close()
    grid.save(args.out)
    return _report(grid, args.out, credit())


def _check_osm_file(path: Path) -> None:
    """Raise InputDataError unless ``path`` is a readable, non-empty file."""
    import os

    from gridgen._errors import InputDataError

    if path.is_dir():
        raise InputDataError(f"OSM file {path} is a folder; pass an .osm or .osm.pbf file with --osm")
    if not path.is_file():
        raise InputDataError(f"OSM file {path} does not exist; pass an existing .osm or .osm.pbf file with --osm")
    if not os.access(path, os.R_OK):
        raise InputDataError(f"OSM file {path} is not readable; check its permissions")
    if path.stat().st_size == 0:
        raise InputDataError(f"OSM file {path} is empty; pass an .osm file exported from OpenStreetMap")


def _report(grid, out: Path, credit_line: str) -> dict[str, Any]:
    s = grid.summary
    print(
        f"{s['buildings']} buildings, {s['substations']} substations ({', '.join(str(r) for r in s.get('trafo_ratings_kva', []))} kVA), "
        f"{s['buses']} buses, {s['lines']} lines; MV {s['mv_length_km']:.2f} km, LV {s['lv_length_km']:.2f} km"
    )
    print(
        f"peak-load power flow: {s['vm_min_pu']:.4f}..{s['vm_max_pu']:.4f} p.u., max line loading "
        f"{s['max_line_loading_percent']:.1f} %, max trafo loading {s['max_trafo_loading_percent']:.1f} %, "
        f"{s['violations']} violations; built in {s['runtime_s']:.1f} s"
    )
    print(f"saved to {out}/ ({credit_line})")
    summary = {k: s[k] for k in SUMMARY_KEYS}
    summary.update(households=s.get("households"), out=str(out), credit=credit_line, seed=s.get("seed"))
    return summary
