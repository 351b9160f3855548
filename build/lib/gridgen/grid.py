"""The generator's output: a pandapower net with geodata, the building table and a summary.

On disk a grid is a folder (the shipped default is ``assets/bergwald``)::

    grid.json            pandapower JSON (every bus and line has WGS84 geodata in ``geo``)
    buildings.csv        one row per supplied building (index ``building_id``)
    map.geojson          buildings, substations, MV and LV lines, feed-in point, for the map
    summary.json         the figures ``digiplat grid build --json`` prints

Conventions other stages rely on:

- ``net.bus.zone`` is ``"MV"`` or ``"LV"``; ``net.line.voltage_level`` likewise.
- ``net.load`` has one row per building, ``net.load.building_id`` names it, ``p_mw`` is the
  building's peak load with its own coincidence, ``q_mvar`` from the configured power factor.
- ``buildings`` has columns ``bus`` (pandapower bus index of the house connection), ``substation``
  (trafo index), ``lat``, ``lon``, ``area_m2``, ``height_m``, ``households``, ``peak_p_mw``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gridgen import OSM_CREDIT
from gridgen._errors import InputDataError

GRID_FILES = ("grid.json", "buildings.csv", "map.geojson", "summary.json")


@dataclass(frozen=True)
class Grid:
    """A generated distribution grid.

    Parameters
    ----------
    net
        pandapower net (20 kV ring, 20/0.4 kV transformers, 0.4 kV feeders, one load per building).
    buildings
        Building table indexed by ``building_id`` (see module docstring for the columns).
    geojson
        FeatureCollection for the map (buildings, substations, lines, feed-in).
    summary
        Figures of the build (counts, lengths, power-flow extremes, violations, runtime).
    """

    net: Any
    buildings: pd.DataFrame
    geojson: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> Path:
        """Write the grid folder atomically: all files, or none (an old folder stays intact)."""
        import pandapower as pp

        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".grid-", dir=out_dir.parent))
        try:
            pp.to_json(self.net, str(tmp / "grid.json"))
            self.buildings.to_csv(tmp / "buildings.csv", float_format="%.9g")
            (tmp / "map.geojson").write_text(json.dumps(self.geojson, separators=(",", ":")))
            (tmp / "summary.json").write_text(json.dumps(self.summary, indent=1, sort_keys=True) + "\n")
            if out_dir.exists():
                for name in GRID_FILES:
                    (out_dir / name).unlink(missing_ok=True)
            out_dir.mkdir(exist_ok=True)
            for name in GRID_FILES:
                (tmp / name).replace(out_dir / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out_dir

    @classmethod
    def load(cls, grid_dir: str | Path) -> "Grid":
        """Read a grid folder written by :meth:`save`."""
        import pandapower as pp

        grid_dir = Path(grid_dir)
        missing = [n for n in GRID_FILES if not (grid_dir / n).is_file()]
        if missing:
            raise InputDataError(
                f"{grid_dir} is not a grid folder (missing {', '.join(missing)}); run 'digiplat grid build --out {grid_dir}'"
            )
        try:
            net = pp.from_json(str(grid_dir / "grid.json"))
            buildings = pd.read_csv(
                grid_dir / "buildings.csv", index_col="building_id", dtype={"building_id": str, "housenumber": str}
            )
            if "housenumber" in buildings:  # "" is written as an empty field and would come back as NaN
                buildings["housenumber"] = buildings["housenumber"].fillna("")
            geojson = json.loads((grid_dir / "map.geojson").read_text())
            summary = json.loads((grid_dir / "summary.json").read_text())
        except (ValueError, KeyError, OSError) as exc:
            raise InputDataError(f"cannot read grid folder {grid_dir}: {exc}") from exc
        return cls(net=net, buildings=buildings, geojson=geojson, summary=summary)


def default_grid_dir() -> Path:
    """Return the folder of the shipped Bergwald grid, ``assets/bergwald`` of the checkout."""
    return Path(__file__).resolve().parent.parent / "assets" / "bergwald"


def credit() -> str:
    """Return the data credit every output carries."""
    return f"Map data {OSM_CREDIT}"
