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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gridgen import OSM_CREDIT
from gridgen._errors import InputDataError
from gridgen.folders import swapped_folder

GRID_FILES = ("grid.json", "buildings.csv", "map.geojson", "summary.json")


@dataclass(frozen=True, init=False)
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
    source
        ``(path of grid.json, SHA-256 of its bytes)`` of a grid read by :meth:`load`, whose net is
        then parsed on first use of :attr:`net`: the DSO's linearization of a known grid reads
        what it needs from the compiled grid (:mod:`optim.dso.compiled_grid`) and never pays the
        pandapower import and JSON parse (about 3 s of a fresh process).
    """

    _net: Any = field(repr=False)
    buildings: pd.DataFrame = field(repr=False)
    geojson: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    source: tuple[str, str] | None = field(default=None, compare=False)

    def __init__(self, net: Any = None, buildings: pd.DataFrame | None = None, geojson: dict[str, Any] | None = None,
                 summary: dict[str, Any] | None = None, source: tuple[str, str] | None = None, *, _net: Any = None) -> None:
        # ``_net`` is the name dataclasses.replace passes the net by
        for name, value in (("_net", net if net is not None else _net), ("buildings", buildings),
                            ("geojson", geojson if geojson is not None else {}),
                            ("summary", summary if summary is not None else {}), ("source", source)):
            object.__setattr__(self, name, value)
        if self._net is None and source is None:
            raise TypeError("Grid needs a net or the source it is read from")

    @property
    def net(self) -> Any:
        """The pandapower net (parsed from ``source`` on first use, then kept)."""
        if self._net is None:
            net = _net_from_json(Path(self.source[0]))
            object.__setattr__(self, "_net", net)
            object.__setattr__(self, "_read_signature", net_signature(net))
        return self._net

    @property
    def net_loaded(self) -> bool:
        """Whether the net has been parsed (a parsed net may have been changed in memory)."""
        return self._net is not None

    def pristine(self) -> bool:
        """Whether the grid is its file's: read by :meth:`load` and its net not changed since."""
        if self.source is None:
            return False
        if self._net is None:
            return True
        read = self.__dict__.get("_read_signature")
        return read is not None and net_signature(self._net) == read

    def save(self, out_dir: str | Path) -> Path:
        """Write the grid folder atomically: the complete new folder, or the old one untouched.

        The files are written to a temporary sibling folder (same file system); only when all of
        them are complete is the old folder renamed aside, the new one renamed into its place and
        the old one removed. If the second rename fails the old folder is renamed back. A failure
        at any step leaves the previous folder as it was and no temporary folder behind.
        """
        import pandapower as pp

        out_dir = Path(out_dir)
        check_grid_out_dir(out_dir)
        with swapped_folder(out_dir) as tmp:
            pp.to_json(self.net, str(tmp / "grid.json"))
            self.buildings.to_csv(tmp / "buildings.csv", float_format="%.9g")
            (tmp / "map.geojson").write_text(json.dumps(self.geojson, separators=(",", ":")))
            (tmp / "summary.json").write_text(json.dumps(self.summary, indent=1, sort_keys=True) + "\n")
        return out_dir

    @classmethod
    def load(cls, grid_dir: str | Path, *, lazy: bool = False) -> "Grid":
        """Read a grid folder written by :meth:`save`; raise InputDataError if it is not a complete one.

        With ``lazy`` the net is parsed on first use of :attr:`net` (the other files now), and an
        unreadable grid.json raises then.
        """
        import hashlib

        grid_dir = Path(grid_dir)
        rebuild = f"rebuild it with 'digiplat grid build --out {grid_dir}'"
        missing = [n for n in GRID_FILES if not (grid_dir / n).is_file()]
        if missing:
            raise InputDataError(
                f"{grid_dir} is not a grid folder (missing {', '.join(missing)}); run 'digiplat grid build --out {grid_dir}'"
            )
        path = grid_dir / "grid.json"
        try:
            source = (str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest())
        except OSError as exc:
            raise InputDataError(f"cannot read {path} ({exc.strerror}); {rebuild}") from None
        net = None if lazy else _net_from_json(path)
        read_signature = None if net is None else net_signature(net)
        try:
            buildings = pd.read_csv(
                grid_dir / "buildings.csv", index_col="building_id", dtype={"building_id": str, "housenumber": str}
            )
            if "housenumber" in buildings:  # "" is written as an empty field and would come back as NaN
                buildings["housenumber"] = buildings["housenumber"].fillna("")
            geojson = json.loads((grid_dir / "map.geojson").read_text())
            summary = json.loads((grid_dir / "summary.json").read_text())
        except (ValueError, KeyError, OSError, pd.errors.ParserError) as exc:
            raise InputDataError(f"cannot read grid folder {grid_dir}: {str(exc).splitlines()[0][:200]}; {rebuild}") from exc
        if not isinstance(geojson, dict) or not isinstance(summary, dict):
            raise InputDataError(f"map.geojson or summary.json of {grid_dir} is not a JSON object; {rebuild}")
        grid = cls(net=net, buildings=buildings, geojson=geojson, summary=summary, source=source)
        object.__setattr__(grid, "_read_signature", read_signature)
        return grid


def net_signature(net: Any) -> str:
    """SHA-1 of every numeric and boolean column and the index of the tables a power flow reads
    (a few ms on the whole shared-file grid): equal signatures, equal power flows."""
    import hashlib

    import numpy as np

    digest = hashlib.sha1()
    for table in ("bus", "line", "trafo", "trafo3w", "switch", "ext_grid", "gen", "sgen", "load", "shunt", "impedance",
                  "ward", "xward", "storage", "dcline"):
        if table not in net:
            continue
        frame = net[table]
        values = frame.select_dtypes(include=["number", "bool"])
        digest.update(f"{table}{frame.shape}{list(values.columns)}".encode())
        digest.update(np.ascontiguousarray(values.to_numpy(dtype=float)).tobytes())
        digest.update(np.ascontiguousarray(frame.index.to_numpy()).tobytes())
    return digest.hexdigest()


def _net_from_json(path: Path) -> Any:
    """The pandapower net of a grid folder's grid.json; InputDataError if it is not a complete grid."""
    import pandapower as pp

    rebuild = f"rebuild it with 'digiplat grid build --out {path.parent}'"
    try:
        net = pp.from_json(str(path))
    except Exception as exc:  # pandapower raises many types on a truncated or foreign JSON file
        raise InputDataError(f"{path} is not a readable pandapower grid ({type(exc).__name__}); {rebuild}") from exc
    if not all(hasattr(net, t) and len(getattr(net, t)) for t in ("bus", "line", "trafo", "load")):
        raise InputDataError(f"{path} holds no complete grid (buses, lines, transformers, loads); {rebuild}")
    return net


def check_grid_out_dir(out_dir: str | Path) -> None:
    """Raise InputDataError unless ``out_dir`` can receive a grid folder (checked before a build).

    It must be a new folder or a grid folder (only the files of :data:`GRID_FILES`), so that
    swapping the new folder in never deletes anything else; no existing ancestor may be a file,
    and the first existing ancestor must be writable.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise InputDataError(f"--out {out_dir} exists and is not a folder; choose a new folder or a grid folder")
        other = sorted(p.name for p in out_dir.iterdir() if p.name not in GRID_FILES)
        if other:
            raise InputDataError(
                f"--out {out_dir} holds other files than a grid ({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); "
                "choose a new folder or a grid folder"
            )
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputDataError(f"--out {out_dir} lies below {parent}, which is a file; choose another folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputDataError(f"--out {out_dir}: {parent} is not writable; choose another folder")


def default_grid_dir() -> Path:
    """Return the folder of the shipped Bergwald grid (``assets/bergwald``, checkout or installed)."""
    from gridgen.paths import assets_dir

    return assets_dir(strict=False) / "bergwald"


def credit() -> str:
    """Return the data credit every output carries."""
    return f"Map data {OSM_CREDIT}"
