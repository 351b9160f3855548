"""Load an area from OpenStreetMap: the street graph and the supplied buildings.

From an ``.osm``/``.osm.pbf`` file (offline) or, for users with a network, by place name or
bounding box through osmnx (online, osmnx's own cache). Everything downstream works in a metric
projection (UTM) and keeps WGS84 coordinates for the map.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gridgen._errors import ConfigError, InputDataError

log = logging.getLogger(__name__)

# Bergwald, Karlsruhe-Durlach: the settlement between Hooverstraße, Elsa-Brändström-Straße and
# Straße des Roten Kreuzes. With the default building filter it holds about 248 supplied
# buildings (paper A: 241).
BERGWALD_BBOX: tuple[float, float, float, float] = (48.9695, 8.4600, 48.9755, 8.4745)  # S, W, N, E

# Ways a distribution cable is not laid along.
EXCLUDED_HIGHWAYS = frozenset(
    {"motorway", "motorway_link", "trunk", "trunk_link", "steps", "platform", "raceway", "proposed",
     "construction", "bus_guideway", "corridor", "elevator", "via_ferrata"}
)
# Building tags that are never supplied (used when the data has building types).
UNSUPPLIED_BUILDING_TYPES = frozenset(
    {"garage", "garages", "shed", "carport", "hut", "roof", "cabin", "greenhouse", "kiosk",
     "transformer_tower", "service", "ruins", "construction", "bunker", "parking"}
)
DEFAULT_HEIGHT_M = 3.66  # the tile generator's value for buildings without height/levels


@dataclass(frozen=True)
class AreaConfig:
    """How an area is read.

    Parameters
    ----------
    min_building_area_m2
        Footprints below this are sheds, garages or carports and are not supplied.
    street_buffer_m
        Streets this far outside the bbox are kept, so feeders can leave and re-enter it.
    max_bridge_m
        Street-graph components within this distance of the main component are joined to it by a
        short cable trench; farther ones (and buildings that can only reach them) are dropped.
    id_seed
        Seed of the order in which the building ids ``B0001 ...`` are handed out. The buildings are
        processed in a stable west-to-east order, but their ids are a seeded random permutation,
        so an id number says nothing about where a building is (bids name building ids). The
        default 0 reproduces the shipped grid; a DSO that shares bids of a real grid sets its own
        secret seed.
    """

    min_building_area_m2: float = 60.0
    street_buffer_m: float = 150.0
    max_bridge_m: float = 150.0
    id_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("min_building_area_m2", "street_buffer_m", "max_bridge_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.id_seed, int) and 0 <= self.id_seed < 2**32):
            raise ConfigError(f"id_seed must be an integer 0..2**32-1, got {self.id_seed!r}")


@dataclass(frozen=True)
class Area:
    """Street graph and supplied buildings of one area.

    Parameters
    ----------
    streets
        Undirected street graph in the metric CRS ``crs``; nodes have ``x``, ``y`` (metres) and
        ``lon``, ``lat``; edges have ``length`` (m), ``highway`` and ``coords`` (metric polyline).
    buildings
        GeoDataFrame in ``crs`` indexed by ``building_id`` with ``area_m2``, ``height_m``,
        ``levels_known``, ``x``, ``y``, ``lon``, ``lat``.
    background
        Streets and all footprints in WGS84 (for the offline base map), as GeoDataFrames.
    """

    streets: nx.Graph
    buildings: gpd.GeoDataFrame
    crs: Any
    bbox: tuple[float, float, float, float]
    background_streets: gpd.GeoDataFrame
    background_buildings: gpd.GeoDataFrame
    report: dict[str, Any] = field(default_factory=dict)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Return ``(south, west, north, east)`` from ``"S,W,N,E"``; raise ConfigError if malformed."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--bbox must be four numbers SOUTH,WEST,NORTH,EAST, got {text!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--bbox must be four numbers SOUTH,WEST,NORTH,EAST, got {text!r}")
    south, west, north, east = values
    if not (-90 <= south < north <= 90 and -180 <= west < east <= 180):
        raise ConfigError(f"--bbox {text!r} is not SOUTH<NORTH and WEST<EAST in degrees")
    return values  # type: ignore[return-value]


def area_from_file(
    path: str | Path,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    config: AreaConfig = AreaConfig(),
) -> Area:
    """Return the area inside ``bbox`` (S, W, N, E) of an OSM XML or PBF file.

    Without ``bbox`` the whole file is used.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"OSM file {path} does not exist; pass an existing .osm/.osm.pbf file with --osm")
    try:
        if path.suffix == ".pbf":
            response, facts = _read_pbf(path, bbox=bbox, street_buffer_m=config.street_buffer_m)
        else:
            response, facts = _read_osm_xml(path, bbox=bbox, street_buffer_m=config.street_buffer_m)
        _check_file_facts(facts, bbox, path.name)
        raw_graph, footprints = _graph_and_footprints(response)
    except InputDataError:
        raise
    except Exception as exc:  # osmnx raises a zoo of parser errors; one line for the user
        raise InputDataError(f"cannot parse OSM file {path}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    # Only the file name is recorded: the summary must not carry a path of the build machine.
    return _area_from_raw(raw_graph, footprints, bbox=bbox, config=config, source=path.name, facts=facts)


def area_from_place(
    place: str | None = None,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    config: AreaConfig = AreaConfig(),
) -> Area:
    """Return an area downloaded by osmnx, by place name (Nominatim) or bbox (Overpass).

    Endpoints and cache come from the environment (:func:`configure_osmnx`); a second request for
    the same area is answered from osmnx's cache without a network. Every failure to get an answer
    (no connection, time-out, an HTTP error, an answer that is not OSM data) is one InputDataError.
    """
    import osmnx as ox

    if place is None and bbox is None:
        raise ConfigError("give a place name or a bbox")
    endpoints = configure_osmnx()
    stage = "Nominatim" if place is not None else "Overpass"
    try:
        if place is not None:
            polygon = ox.geocode_to_gdf(place).union_all()
            west, south, east, north = polygon.bounds
            bbox = bbox or (south, west, north, east)
        south, west, north, east = bbox  # type: ignore[misc]
        pad = config.street_buffer_m / 111_000
        stage = "Overpass"
        raw_graph = ox.graph_from_bbox(
            (west - pad, south - pad, east + pad, north + pad), network_type="all", simplify=False, retain_all=True
        )
        footprints = ox.features_from_bbox((west, south, east, north), tags={"building": True})
    except (ConfigError, InputDataError):
        raise
    except Exception as exc:
        raise InputDataError(_download_error(exc, stage, endpoints, place or bbox)) from exc
    return _area_from_raw(raw_graph, footprints, bbox=bbox, config=config, source=place or f"Overpass bbox {tuple(bbox)}")


def configure_osmnx() -> dict[str, str]:
    """Set osmnx's endpoints, cache and time-out from the environment; return the endpoints used.

    ``DIGIPLAT_NOMINATIM_URL`` and ``DIGIPLAT_OVERPASS_URL`` (default: osmnx's public servers),
    ``DIGIPLAT_OSMNX_CACHE`` (default ``$XDG_CACHE_HOME/digiplat/osmnx``, else
    ``~/.cache/digiplat/osmnx``) and ``DIGIPLAT_OSMNX_TIMEOUT_S`` (per request, default 60 s).
    osmnx's Overpass slot check (``/status``) is kept for the public server only: a configured
    server (a local mirror) need not have that endpoint, and osmnx waits 60 s when it cannot read it.
    """
    import os

    import osmnx as ox

    public = _OSMNX_PUBLIC
    ox.settings.nominatim_url = os.environ.get("DIGIPLAT_NOMINATIM_URL") or public["nominatim"]
    ox.settings.overpass_url = os.environ.get("DIGIPLAT_OVERPASS_URL") or public["overpass"]
    ox.settings.overpass_rate_limit = not os.environ.get("DIGIPLAT_OVERPASS_URL")
    cache = os.environ.get("DIGIPLAT_OSMNX_CACHE")
    if not cache:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache = str(Path(base) / "digiplat" / "osmnx")
    ox.settings.cache_folder = cache
    ox.settings.use_cache = True
    timeout = os.environ.get("DIGIPLAT_OSMNX_TIMEOUT_S", "60")
    try:
        timeout_s = int(float(timeout))
    except ValueError:
        raise ConfigError(f"DIGIPLAT_OSMNX_TIMEOUT_S must be a number of seconds, got {timeout!r}") from None
    if not 1 <= timeout_s <= 3600:
        raise ConfigError(f"DIGIPLAT_OSMNX_TIMEOUT_S must be between 1 and 3600 s, got {timeout!r}")
    ox.settings.requests_timeout = timeout_s  # an integer: it is also Overpass's [timeout:N] in the query
    return {"Nominatim": ox.settings.nominatim_url, "Overpass": ox.settings.overpass_url, "timeout_s": str(timeout_s)}


# osmnx's own defaults (its settings module is mutated by configure_osmnx).
_OSMNX_PUBLIC = {"nominatim": "https://nominatim.openstreetmap.org/", "overpass": "https://overpass-api.de/api"}


def _download_error(exc: Exception, stage: str, endpoints: dict[str, str], what: Any) -> str:
    """Return one line saying which server failed how, and what to do."""
    import requests

    url = endpoints.get(stage, stage)
    hint = "check the network or DIGIPLAT_NOMINATIM_URL/DIGIPLAT_OVERPASS_URL, or build offline with --osm FILE"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"the {stage} server {url} did not answer within {endpoints['timeout_s']} s; {hint}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot reach the {stage} server {url}; {hint}"
    detail = " ".join(str(exc).split())[:160]
    return f"the {stage} server {url} gave no usable answer for {what!r} ({type(exc).__name__}: {detail}); {hint}"


def _read_pbf(path: Path, **selection: Any) -> tuple[dict[str, Any], "FileFacts"]:
    """Read a PBF file by converting it to OSM XML with osmium (optional dependency)."""
    try:
        import osmium  # noqa: F401
    except ImportError:
        raise InputDataError(
            f"reading {path.name} needs the 'osmium' package (pip install osmium), or convert it to .osm"
        ) from None
    import tempfile

    import osmium

    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "area.osm"
        writer = osmium.SimpleWriter(str(xml))
        for obj in osmium.FileProcessor(str(path)):
            writer.add(obj)
        writer.close()
        return _read_osm_xml(xml, **selection)


@dataclass(frozen=True)
class FileFacts:
    """What the whole file holds, counted while it is read (for the bbox checks and the node order).

    Parameters
    ----------
    street_nodes
        Nodes with at least one cable-worthy street edge (highway not in ``EXCLUDED_HIGHWAYS``).
    street_extent
        ``(south, west, north, east)`` of those nodes, None if there are none.
    buildings
        Elements tagged ``building``.
    """

    street_nodes: int
    street_extent: tuple[float, float, float, float] | None
    buildings: int


def _read_osm_xml(
    path: Path, *, bbox: tuple[float, float, float, float] | None = None, street_buffer_m: float = 0.0
) -> tuple[dict[str, Any], FileFacts]:
    """Return the elements of an OSM XML file that ``bbox`` needs, as osmnx's Overpass-like JSON.

    One pass with expat (C) stores nodes as coordinates only; element dicts (those
    osmnx's own reader makes: ``type``, ``id``, ``lat``/``lon`` or ``nodes``/``members``,
    ``tags``) are then made only for what the area needs: street ways with a node within
    ``street_buffer_m`` of the bbox, building ways whose extent meets the bbox, every relation
    with its member ways, and the nodes of those ways. Those are exactly the streets the area
    keeps and the footprints whose representative point can lie in the bbox (it lies in the
    footprint, so in its extent). Without ``bbox`` every element is returned.
    """
    import bz2
    import gzip
    import xml.parsers.expat

    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    node_ids: list[int] = []
    node_lat: list[float] = []
    node_lon: list[float] = []
    node_tags: dict[int, dict[str, str]] = {}
    ways: list[tuple[int, list[int], dict[str, str]]] = []
    relations: list[dict[str, Any]] = []
    # expat's start-tag callback, no element objects: the file is read in one pass of C parsing
    # with one small Python call per tag. `tags_of` is where the next <tag> goes.
    state: dict[str, Any] = {"tags_of": None, "refs": None, "members": None}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "node":
            node_ids.append(int(attrs["id"]))
            node_lat.append(float(attrs["lat"]))
            node_lon.append(float(attrs["lon"]))
            state["tags_of"] = ("node", node_ids[-1])
        elif name == "nd":
            state["refs"].append(int(attrs["ref"]))
        elif name == "tag":
            target = state["tags_of"]
            if isinstance(target, tuple):
                node_tags.setdefault(target[1], {})[attrs["k"]] = attrs["v"]
            elif target is not None:
                target[attrs["k"]] = attrs["v"]
        elif name == "way":
            ways.append((int(attrs["id"]), [], {}))
            state["refs"], state["tags_of"] = ways[-1][1], ways[-1][2]
        elif name == "member":
            state["members"].append({k: (int(v) if k == "ref" else v) for k, v in attrs.items()})
        elif name == "relation":
            relations.append({"type": "relation", "id": int(attrs["id"]), "members": [], "tags": {}})
            state["members"], state["tags_of"] = relations[-1]["members"], relations[-1]["tags"]

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = start
    parser.buffer_text = True
    with opener(path, "rb") as file:
        parser.ParseFile(file)
    position = {nid: i for i, nid in enumerate(node_ids)}
    lat, lon = np.asarray(node_lat), np.asarray(node_lon)

    street_nodes: set[int] = set()
    for _, refs, tags in ways:
        if "highway" in tags and tags["highway"] not in EXCLUDED_HIGHWAYS and len(set(refs)) >= 2:
            street_nodes.update(refs)
    street_idx = np.array([position[n] for n in street_nodes if n in position], dtype=np.int64)
    extent = (
        (float(lat[street_idx].min()), float(lon[street_idx].min()), float(lat[street_idx].max()), float(lon[street_idx].max()))
        if len(street_idx) else None
    )
    facts = FileFacts(
        street_nodes=len(street_idx),
        street_extent=extent,
        buildings=sum("building" in t for _, _, t in ways) + sum("building" in r["tags"] for r in relations)
        + sum("building" in t for t in node_tags.values()),
    )

    if bbox is None:
        keep_way = [True] * len(ways)
        keep_node = np.ones(len(node_ids), dtype=bool)
    else:
        south, west, north, east = bbox
        pad_lat, pad_lon = _pad_deg(street_buffer_m, south, north)
        in_padded = (lat >= south - pad_lat) & (lat <= north + pad_lat) & (lon >= west - pad_lon) & (lon <= east + pad_lon)
        members = {m["ref"] for r in relations for m in r["members"] if m.get("type") == "way"}
        # All node references at once: per way, whether a node lies in the padded bbox and the extent.
        counts = np.fromiter((len(refs) for _, refs, _ in ways), dtype=np.int64, count=len(ways))
        flat = np.fromiter((position.get(n, -1) for _, refs, _ in ways for n in refs), dtype=np.int64, count=int(counts.sum()))
        way_of = np.repeat(np.arange(len(ways)), counts)
        known = flat >= 0  # references to nodes the file does not hold are ignored, as osmnx does
        way_k, node_k = way_of[known], flat[known]
        touches = np.zeros(len(ways), dtype=bool)
        np.logical_or.at(touches, way_k, in_padded[node_k])
        lat_min, lat_max = np.full(len(ways), np.inf), np.full(len(ways), -np.inf)
        lon_min, lon_max = np.full(len(ways), np.inf), np.full(len(ways), -np.inf)
        np.minimum.at(lat_min, way_k, lat[node_k])
        np.maximum.at(lat_max, way_k, lat[node_k])
        np.minimum.at(lon_min, way_k, lon[node_k])
        np.maximum.at(lon_max, way_k, lon[node_k])
        meets_bbox = (lat_max >= south) & (lat_min <= north) & (lon_max >= west) & (lon_min <= east)
        keep_way = [
            wid in members or (bool(touches[w]) if "highway" in tags else "building" in tags and bool(meets_bbox[w]))
            for w, (wid, _, tags) in enumerate(ways)
        ]
        keep_node = np.zeros(len(node_ids), dtype=bool)
        keep_node[node_k[np.asarray(keep_way, dtype=bool)[way_k]]] = True
        for nid, tags in node_tags.items():
            if "building" in tags:
                keep_node[position[nid]] = True

    elements: list[dict[str, Any]] = []
    for i in np.flatnonzero(keep_node).tolist():
        nid = node_ids[i]
        elements.append({"type": "node", "id": nid, "lat": node_lat[i], "lon": node_lon[i], "tags": node_tags.get(nid, {})})
    elements += [
        {"type": "way", "id": wid, "nodes": refs, "tags": tags} for (wid, refs, tags), keep in zip(ways, keep_way) if keep
    ]
    elements += relations
    return {"elements": elements}, facts


def _pad_deg(buffer_m: float, south: float, north: float) -> tuple[float, float]:
    """Return ``buffer_m`` in degrees of latitude and of longitude at the bbox's mean latitude."""
    return buffer_m / 111_320, buffer_m / (111_320 * math.cos(math.radians((south + north) / 2)))


def _check_file_facts(facts: FileFacts, bbox: tuple[float, float, float, float] | None, source: str) -> None:
    """Raise InputDataError if the file holds no streets or buildings, or ``bbox`` misses its data."""
    if facts.street_nodes == 0:
        raise InputDataError(f"{source} holds no streets to route cables along")
    if facts.buildings == 0:
        raise InputDataError(f"{source} holds no buildings")
    if bbox is not None and facts.street_extent is not None:
        south, west, north, east = bbox
        s, w, n, e = facts.street_extent
        if east < w or west > e or north < s or south > n:
            raise InputDataError(
                f"bbox {tuple(bbox)} lies outside the data of {source} (lat {s:.4f}..{n:.4f}, lon {w:.4f}..{e:.4f})"
            )


def _graph_and_footprints(response: dict[str, Any]) -> tuple[nx.MultiDiGraph, gpd.GeoDataFrame]:
    """Return osmnx's unsimplified street graph and building footprints of one parsed file.

    The graph gets only the ways tagged ``highway`` (and their nodes): the others (buildings)
    would become edges that :func:`_area_from_raw` drops anyway.
    """
    from osmnx import features as ox_features
    from osmnx import graph as ox_graph
    from osmnx import settings as ox_settings
    from shapely.geometry import Polygon

    elements = response["elements"]
    ways = [e for e in elements if e["type"] == "way" and "highway" in e["tags"]]
    used = {n for w in ways for n in w["nodes"]}
    if ways:
        street_json = {"elements": [e for e in elements if e["type"] == "node" and e["id"] in used] + ways}
        graph = ox_graph._create_graph([street_json], bidirectional=False)
    else:
        graph = nx.MultiDiGraph(crs=ox_settings.default_crs)
    if not any("building" in e["tags"] for e in elements):
        return graph, gpd.GeoDataFrame(geometry=[], crs=ox_settings.default_crs)
    # _create_gdf consumes the element dicts (pops their tags): the graph must be built first.
    footprints = ox_features._create_gdf([response], Polygon(), {"building": True})
    return graph, footprints


def _area_from_raw(
    raw_graph: nx.MultiDiGraph,
    footprints: gpd.GeoDataFrame,
    *,
    bbox: tuple[float, float, float, float] | None,
    config: AreaConfig,
    source: str,
    facts: FileFacts | None = None,
) -> Area:
    """Return the area of the street graph and footprints of a source (a file's selection or a download).

    ``facts`` (from a file): what the whole file held, when only the bbox's part was passed.
    """
    # graph_from_xml turns every way into edges, buildings included: keep the cable-worthy streets.
    graph = raw_graph.copy()
    drop = [
        (u, v, k)
        for u, v, k, d in graph.edges(keys=True, data=True)
        if "highway" not in d or not set(_as_list(d["highway"])).isdisjoint(EXCLUDED_HIGHWAYS)
    ]
    graph.remove_edges_from(drop)
    graph.remove_nodes_from([n for n in list(graph) if graph.degree(n) == 0])
    selected = facts is not None and bbox is not None  # a file's bbox selection: the whole file was checked
    if graph.number_of_nodes() == 0 and not selected:
        raise InputDataError(f"{source} holds no streets to route cables along")
    if (footprints is None or len(footprints) == 0) and not selected:
        raise InputDataError(f"{source} holds no buildings")

    if bbox is None:
        b = footprints.total_bounds  # minx, miny, maxx, maxy
        bbox = (float(b[1]), float(b[0]), float(b[3]), float(b[2]))
    south, west, north, east = bbox
    if not selected:
        lons = np.array([d["x"] for _, d in graph.nodes(data=True)])
        lats = np.array([d["y"] for _, d in graph.nodes(data=True)])
        if east < lons.min() or west > lons.max() or north < lats.min() or south > lats.max():
            raise InputDataError(
                f"bbox {bbox} lies outside the data of {source} "
                f"(lat {lats.min():.4f}..{lats.max():.4f}, lon {lons.min():.4f}..{lons.max():.4f})"
            )

    pad_lat, pad_lon = _pad_deg(config.street_buffer_m, south, north)
    keep = [
        n
        for n, d in graph.nodes(data=True)
        if south - pad_lat <= d["y"] <= north + pad_lat and west - pad_lon <= d["x"] <= east + pad_lon
    ]
    graph = _induced_subgraph(graph, keep, facts.street_nodes if facts is not None else graph.number_of_nodes())
    if graph.number_of_edges() == 0:
        raise InputDataError(f"bbox {bbox} holds no streets in {source}; choose a larger or another bbox")

    crs, node_xy = _utm_node_coordinates(graph)
    streets = _undirected_streets(graph, node_xy)

    # Buildings: polygons whose centroid lies in the bbox, sheds and garages out.
    polys = footprints[footprints.geometry.geom_type.isin(["Polygon", "MultiPolygon"])].copy()
    centroids = polys.geometry.representative_point()
    inside = (centroids.y >= south) & (centroids.y <= north) & (centroids.x >= west) & (centroids.x <= east)
    polys = polys[inside.values]
    if len(polys) == 0:
        raise InputDataError(f"bbox {bbox} holds no buildings in {source}; choose another bbox")
    projected_polys = polys.to_crs(crs)
    area_m2 = projected_polys.geometry.area
    btype = polys["building"].astype(str) if "building" in polys else pd.Series("yes", index=polys.index)
    supplied = (area_m2 >= config.min_building_area_m2) & ~btype.isin(UNSUPPLIED_BUILDING_TYPES)
    n_footprints = len(polys)
    polys, projected_polys, area_m2 = polys[supplied], projected_polys[supplied], area_m2[supplied]
    if len(polys) == 0:
        raise InputDataError(
            f"bbox {bbox} holds {n_footprints} footprints but none of at least {config.min_building_area_m2:g} m²"
        )

    height = pd.to_numeric(polys.get("render_height", pd.Series(np.nan, index=polys.index)), errors="coerce")
    if "height" in polys:
        height = height.fillna(pd.to_numeric(polys["height"], errors="coerce"))
    if "building:levels" in polys:
        height = height.fillna(pd.to_numeric(polys["building:levels"], errors="coerce") * DEFAULT_HEIGHT_M)
    levels_known = height.notna() & ~np.isclose(height.fillna(DEFAULT_HEIGHT_M), DEFAULT_HEIGHT_M)
    height = height.fillna(DEFAULT_HEIGHT_M)

    point_m = projected_polys.geometry.representative_point()
    point_ll = gpd.GeoSeries(point_m, crs=crs).to_crs(4326)
    # Stable ids from position (the data has no OSM ids): sorted west->east, south->north.
    order = np.lexsort((np.round(point_ll.y.values, 7), np.round(point_ll.x.values, 7)))
    buildings = gpd.GeoDataFrame(
        {
            "area_m2": area_m2.values[order],
            "height_m": height.values[order],
            "levels_known": levels_known.values[order],
            "x": point_m.x.values[order],
            "y": point_m.y.values[order],
            "lon": point_ll.x.values[order],
            "lat": point_ll.y.values[order],
            "housenumber": (polys["addr:housenumber"].astype(str).values[order] if "addr:housenumber" in polys else ""),
        },
        geometry=projected_polys.geometry.values[order],
        crs=crs,
    )
    # ids in a seeded random order: the processing order stays geographic (stable results), the
    # labels carry no geography
    labels = np.random.default_rng(config.id_seed).permutation(len(buildings)) + 1
    buildings.index = pd.Index([f"B{k:04d}" for k in labels], name="building_id")
    buildings["housenumber"] = buildings["housenumber"].replace({"nan": ""})

    streets, bridged, dropped_nodes = _join_components(streets, config.max_bridge_m)
    report = {
        "source": source,
        "bbox": list(bbox),
        "footprints_in_bbox": int(n_footprints),
        "supplied_buildings": int(len(buildings)),
        "street_components_bridged": bridged,
        "street_nodes_dropped": dropped_nodes,
    }
    background_streets = _street_lines(graph)
    log.info("area_from_file: %d supplied buildings, %d street nodes (%s)", len(buildings), len(streets), source)
    return Area(
        streets=streets,
        buildings=buildings,
        crs=crs,
        bbox=tuple(bbox),  # type: ignore[arg-type]
        background_streets=background_streets,
        background_buildings=footprints[footprints.geometry.geom_type.isin(["Polygon", "MultiPolygon"])][
            inside.values
        ][["geometry"]].reset_index(drop=True),
        report=report,
    )


def _induced_subgraph(graph: nx.MultiDiGraph, keep: list, full_nodes: int) -> nx.MultiDiGraph:
    """Return ``graph.subgraph(keep).copy()`` with the node order it has on the whole file's graph.

    networkx iterates a subgraph view over ``set(keep)`` when ``keep`` is less than half of the
    graph (``full_nodes`` street nodes), else over the graph's own order. Node and edge order
    decide ties downstream (shortest paths, flows), so the order of the whole file's graph is kept
    when only the bbox's streets were read: the same grid as from the whole graph.
    """
    order = list(set(keep)) if 2 * len(keep) < full_nodes else keep
    keep_set = set(keep)
    sub = nx.MultiDiGraph(**graph.graph)
    sub.add_nodes_from((n, graph.nodes[n].copy()) for n in order)
    sub.add_edges_from(
        (u, v, key, data.copy())
        for u in order
        for v, keydict in graph._adj[u].items()
        if v in keep_set
        for key, data in keydict.items()
    )
    return sub


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _utm_node_coordinates(graph: nx.MultiDiGraph) -> tuple[Any, dict]:
    """Return the UTM CRS osmnx's ``project_graph`` would choose and every node's metric (x, y).

    The same steps as ``project_graph`` (the nodes' ``estimate_utm_crs``, then ``to_crs``) without
    its round trip through GeoDataFrames and back into a new graph, which cost more than the
    projection itself; only the node coordinates are used downstream.
    """
    from osmnx import settings as ox_settings

    nodes = list(graph.nodes)
    lon = np.array([graph.nodes[n]["x"] for n in nodes], dtype=float)
    lat = np.array([graph.nodes[n]["y"] for n in nodes], dtype=float)
    points = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs=graph.graph.get("crs", ox_settings.default_crs))
    mean_lat = float(lat.mean())
    crs = "epsg:32761" if mean_lat < -80 else "epsg:32661" if mean_lat > 84 else points.estimate_utm_crs()
    projected = points.to_crs(crs)
    crs = projected.crs
    return crs, dict(zip(nodes, zip(projected.x.to_numpy(), projected.y.to_numpy())))


def _street_lines(graph: nx.MultiDiGraph) -> gpd.GeoDataFrame:
    """Return every street edge as a straight WGS84 line with its ``highway`` (the base map).

    The lines osmnx's ``graph_to_gdfs`` makes for an unsimplified graph (from the end nodes), in
    its order, without building the edge table of all attributes.
    """
    from shapely import linestrings

    rows = [(u, v, d) for u, v, _, d in graph.edges(keys=True, data=True)]
    coords = np.array(
        [[[graph.nodes[u]["x"], graph.nodes[u]["y"]], [graph.nodes[v]["x"], graph.nodes[v]["y"]]] for u, v, _ in rows],
        dtype=float,
    ).reshape(-1, 2, 2)
    return gpd.GeoDataFrame(
        {"geometry": linestrings(coords), "highway": [_as_list(d["highway"])[0] for _, _, d in rows]},
        geometry="geometry", crs=graph.graph.get("crs"),
    )


def _undirected_streets(wgs84: nx.MultiDiGraph, node_xy: dict) -> nx.Graph:
    """Return a simple undirected graph with metric lengths and polylines (shortest parallel edge)."""
    streets = nx.Graph()
    for n, d in wgs84.nodes(data=True):
        x, y = node_xy[n]
        streets.add_node(n, x=float(x), y=float(y), lon=float(d["x"]), lat=float(d["y"]))
    for u, v, d in wgs84.edges(data=True):
        if u == v:
            continue
        (x0, y0), (x1, y1) = node_xy[u], node_xy[v]
        length = float(math.hypot(x1 - x0, y1 - y0))
        if streets.has_edge(u, v) and streets.edges[u, v]["length"] <= length:
            continue
        streets.add_edge(u, v, length=max(length, 0.1), highway=_as_list(d.get("highway", "road"))[0], bridge=False)
    return streets


def _join_components(streets: nx.Graph, max_bridge_m: float) -> tuple[nx.Graph, int, int]:
    """Join street components to the largest one by short trenches, drop the unreachable rest.

    Components are joined in order of their distance to the growing main component, so a chain
    of small gaps is bridged; each bridge is a straight edge marked ``bridge=True``.
    """
    components = sorted(nx.connected_components(streets), key=lambda c: (-len(c), min(c)))
    main = set(components[0])
    rest = [set(c) for c in components[1:]]
    bridged = 0
    while rest:
        main_nodes = sorted(main)
        tree = cKDTree([(streets.nodes[n]["x"], streets.nodes[n]["y"]) for n in main_nodes])
        best = None
        for idx, comp in enumerate(rest):
            nodes = sorted(comp)
            dist, pos = tree.query([(streets.nodes[n]["x"], streets.nodes[n]["y"]) for n in nodes])
            k = int(np.argmin(dist))
            if best is None or dist[k] < best[0]:
                best = (float(dist[k]), idx, nodes[k], main_nodes[int(pos[k])])
        assert best is not None
        dist, idx, a, b = best
        if dist > max_bridge_m:
            break
        streets.add_edge(a, b, length=max(dist, 0.1), highway="trench", bridge=True)
        main |= rest.pop(idx)
        bridged += 1
    dropped = sum(len(c) for c in rest)
    streets = streets.subgraph(main).copy()
    return streets, bridged, dropped
