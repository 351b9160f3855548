"""The whole generator: area -> loads -> substations -> 20 kV ring -> 0.4 kV feeders -> sized net."""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from gridgen import OSM_CREDIT
from gridgen.electrical import ElectricalConfig, net_from_layout, powerflow_summary, sized_net
from gridgen.grid import Grid
from gridgen.loads import LoadConfig, households_from_buildings
from gridgen.lv import LVConfig, densified_streets, feeders_from_streets
from gridgen.mv import feed_in_node, rings_from_substations
from gridgen.osm import Area, AreaConfig
from gridgen.substations import SubstationConfig, clusters_from_buildings, split_clusters, substation_nodes

log = logging.getLogger(__name__)

STAGES = ("loads", "substations", "0.4 kV feeders", "20 kV ring", "electrical model", "sizing loop", "export")


@dataclass(frozen=True)
class GridConfig:
    """Every option of the generator, with the defaults used for Bergwald."""

    area: AreaConfig = field(default_factory=AreaConfig)
    loads: LoadConfig = field(default_factory=LoadConfig)
    substations: SubstationConfig = field(default_factory=SubstationConfig)
    lv: LVConfig = field(default_factory=LVConfig)
    electrical: ElectricalConfig = field(default_factory=ElectricalConfig)
    feed_in_lonlat: tuple[float, float] | None = None
    random_state: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grid_from_area(
    area: Area,
    *,
    config: GridConfig = GridConfig(),
    progress: Callable[[str], None] | None = None,
) -> Grid:
    """Return the sized, power-flow-validated grid of an area.

    Parameters
    ----------
    area
        Streets and buildings (from :func:`gridgen.osm.area_from_file` or ``area_from_place``).
    config
        Generator options; ``random_state`` seeds k-means and the TSP heuristic.
    progress
        Called with each stage's name as it starts (the CLI drives a progress bar with it).
    """
    step = progress or (lambda _stage: None)
    t0 = time.perf_counter()

    step("loads")
    buildings = pd.DataFrame(area.buildings.drop(columns="geometry"))
    buildings["households"] = households_from_buildings(buildings, config.loads)

    step("substations")
    labels = clusters_from_buildings(buildings, config=config.substations, loads=config.loads, random_state=config.random_state)
    streets = densified_streets(area.streets, config.lv.max_segment_m)
    subs = substation_nodes(streets, buildings, labels)

    step("0.4 kV feeders")
    lv_cache: dict = {}  # a split re-routes only the substations it changed
    feeders = feeders_from_streets(streets, buildings, subs, labels, config=config.lv, cache=lv_cache)
    splits = 0
    while config.substations.n_substations is None and len(subs) < config.substations.max_substations:
        # A cluster whose feeders run longer than the limit along the streets (two settlements behind
        # one transformer) cannot hold the voltage: split it and route again.
        far = feeders.connection["feeder_m"].to_numpy() > config.lv.max_feeder_length_m
        if not far.any():
            break
        before = int(labels.max())
        labels = split_clusters(buildings, labels, set(labels[far].tolist()), random_state=config.random_state)
        if int(labels.max()) == before:  # only single-building clusters are too far: nothing left to split
            break
        subs = substation_nodes(streets, buildings, labels)
        feeders = feeders_from_streets(streets, buildings, subs, labels, config=config.lv, cache=lv_cache)
        splits += 1

    step("20 kV ring")
    feed = feed_in_node(streets, area.bbox, config.feed_in_lonlat)
    rings = rings_from_substations(streets, feed, subs, random_state=config.random_state)

    step("electrical model")
    net, trafo_of_sub = net_from_layout(
        streets=streets, buildings=buildings, ring=rings, substation_nodes=subs, feeders=feeders,
        loads=config.loads, config=config.electrical,
    )

    step("sizing loop")
    net, changes = sized_net(net, config=config.electrical)

    step("export")
    bus_of_load = net.load.set_index("building_id")["bus"]
    buildings["bus"] = bus_of_load.reindex(buildings.index).astype(int)
    buildings["substation"] = feeders.connection["substation"].map(trafo_of_sub).astype(int)
    buildings["peak_p_mw"] = net.load.set_index("building_id")["p_mw"].reindex(buildings.index)
    buildings["service_m"] = feeders.connection["service_m"]
    table = buildings[["bus", "substation", "lat", "lon", "area_m2", "height_m", "households", "peak_p_mw", "service_m", "housenumber"]]
    table = table.round({"lat": 7, "lon": 7, "area_m2": 2, "height_m": 2, "peak_p_mw": 9, "service_m": 2})

    lines = net.line
    mv = lines.voltage_level == "MV"
    pf = powerflow_summary(net, config.electrical)
    summary = {
        "buildings": int(len(table)),
        "households": int(table["households"].sum()),
        "substations": int(len(net.trafo)),
        "trafo_ratings_kva": [int(round(s * 1000)) for s in net.trafo.sn_mva],
        "buses": int(len(net.bus)),
        "lines": int(len(net.line)),
        "trafos": int(len(net.trafo)),
        "mv_length_km": round(float(lines.length_km[mv].sum()), 4),
        "lv_length_km": round(float(lines.length_km[~mv].sum()), 4),
        **pf,
        "peak_load_mw": round(float(net.load.p_mw.sum()), 6),
        "sizing_changes": len(changes),
        "seed": config.random_state,
        "area": area.report,
        "lv": {**feeders.report, "substation_splits": splits},
        "credit": OSM_CREDIT,
    }
    if pf["violations"]:
        from gridgen._errors import GridValidationError

        raise GridValidationError(f"the sized grid still has {pf['violations']} limit violations")
    geojson = geojson_from_grid(net, table, area, ring_open_leg=rings[0].open_leg if len(rings) == 1 else None)
    summary["runtime_s"] = round(time.perf_counter() - t0, 3)
    log.info("grid_from_area: %d buildings, %d substations, %d violations", len(table), len(net.trafo), pf["violations"])
    return Grid(net=net, buildings=table, geojson=geojson, summary=summary)


def geojson_from_grid(net, buildings: pd.DataFrame, area: Area, *, ring_open_leg: int | None = None) -> dict[str, Any]:
    """Return the map's FeatureCollection (WGS84).

    Feature ``properties.kind``: ``street`` and ``footprint`` (light-grey offline base map),
    ``building`` (supplied, with its bus and load), ``mv_line``, ``lv_line``, ``service``,
    ``substation``, ``feed_in``. Ids are the pandapower indices, so results can be joined.
    """
    features: list[dict] = []

    def feature(geometry: dict, **props: Any) -> None:
        features.append({"type": "Feature", "geometry": geometry, "properties": props})

    for row in area.background_streets.itertuples():
        feature(_rounded(row.geometry.__geo_interface__), kind="street", highway=row.highway)
    footprints = area.buildings.to_crs(4326)
    for row in area.background_buildings.itertuples():
        feature(_rounded(row.geometry.__geo_interface__), kind="footprint")
    rows = buildings.to_dict("index")
    for b, geom in footprints.geometry.items():
        r = rows.get(b)
        if r is not None:
            feature(
                _rounded(geom.__geo_interface__), kind="building", building_id=b, bus=int(r["bus"]),
                substation=int(r["substation"]), households=int(r["households"]), peak_kw=round(float(r["peak_p_mw"]) * 1000, 2),
                housenumber=str(r["housenumber"]) if isinstance(r["housenumber"], str) else "",
            )
    open_lines = set(net.switch.element[(net.switch.et == "l") & ~net.switch.closed])
    line = net.line
    for li, name, std_type, parallel, length_km, level, geo in zip(
        line.index, line["name"], line.std_type, line.parallel, line.length_km, line.voltage_level, line.geo
    ):
        coords = [[round(x, 7), round(y, 7)] for x, y in json.loads(geo)["coordinates"]]
        kind = "mv_line" if level == "MV" else ("service" if name.endswith("service") else "lv_line")
        feature(
            {"type": "LineString", "coordinates": coords}, kind=kind, line=int(li), name=name, std_type=std_type,
            parallel=int(parallel), length_m=round(float(length_km) * 1000, 1), normally_open=bool(li in open_lines),
        )
    for ti, row in net.trafo.iterrows():
        lon, lat = _bus_lonlat(net, row.lv_bus)
        feature({"type": "Point", "coordinates": [lon, lat]}, kind="substation", trafo=int(ti), name=row["name"],
                sn_kva=int(round(row.sn_mva * 1000)), lv_bus=int(row.lv_bus), hv_bus=int(row.hv_bus))
    for _, row in net.ext_grid.iterrows():
        lon, lat = _bus_lonlat(net, row.bus)
        feature({"type": "Point", "coordinates": [lon, lat]}, kind="feed_in", bus=int(row.bus), name=row["name"])
    return {"type": "FeatureCollection", "features": features, "properties": {"credit": OSM_CREDIT}}


def _rounded(geometry: dict) -> dict:
    def rnd(c: Any) -> Any:
        if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
            return [round(float(c[0]), 7), round(float(c[1]), 7)]
        return [rnd(x) for x in c]

    return {"type": geometry["type"], "coordinates": rnd(geometry["coordinates"])}


def _bus_lonlat(net, bus: int) -> tuple[float, float]:
    lon, lat = json.loads(net.bus.geo.at[bus])["coordinates"]
    return round(lon, 7), round(lat, 7)


def grid_from_osm(
    osm: str | Path | None = None,
    *,
    place: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    config: GridConfig = GridConfig(),
    progress: Callable[[str], None] | None = None,
) -> Grid:
    """Return the grid of an OSM file (``osm``) or a place/bbox downloaded by osmnx."""
    from gridgen.osm import area_from_file, area_from_place

    if osm is not None:
        area = area_from_file(osm, bbox=bbox, config=config.area)
    else:
        area = area_from_place(place, bbox=bbox, config=config.area)
    return grid_from_area(area, config=config, progress=progress)
