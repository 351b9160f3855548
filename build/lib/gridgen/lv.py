"""0.4 kV feeders: a minimum-cost-flow problem on the street graph per substation.

Each substation supplies its buildings: supply at the substation node, demand at each building's
street connection point, cost = cable length, arc capacity = buildings per feeder. The flow's
support is the cable network; a shortest-path tree over that support makes it strictly radial
(ties in the flow could otherwise close a mesh). Every building gets a service connection.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gridgen._errors import ConfigError, InputDataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LVConfig:
    """Feeder routing options.

    Parameters
    ----------
    max_buildings_per_feeder
        Capacity of every street arc in the min-cost flow (buildings a cable may supply).
    max_feeder_length_m
        Buildings farther than this along their feeder from the substation are reported.
    max_segment_m
        Street edges longer than this are split so buildings connect close to their house.
    min_service_m
        Shortest service cable (house connection).
    """

    max_buildings_per_feeder: int = 40
    max_feeder_length_m: float = 800.0
    max_segment_m: float = 25.0
    min_service_m: float = 5.0

    def __post_init__(self) -> None:
        if self.max_buildings_per_feeder < 1:
            raise ConfigError("max_buildings_per_feeder must be >= 1")
        for name in ("max_feeder_length_m", "max_segment_m", "min_service_m"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"{name} must be > 0")


@dataclass(frozen=True)
class Feeders:
    """Radial LV networks of all substations.

    Parameters
    ----------
    segments
        One row per cable segment: ``substation``, ``from_node``, ``to_node`` (street nodes, from
        is the substation side), ``length_m``, ``coords`` (metric polyline), ``downstream_households``.
    connection
        Per building: ``conn_node`` (street node), ``service_m``, ``substation``, ``feeder_m`` (cable
        length from the substation to its street point).
    report
        Counts and relaxations made.
    """

    segments: pd.DataFrame
    connection: pd.DataFrame
    report: dict = field(default_factory=dict)


def densified_streets(streets: nx.Graph, max_segment_m: float) -> nx.Graph:
    """Return a copy of ``streets`` whose edges are at most ``max_segment_m`` long."""
    graph = nx.Graph()
    graph.add_nodes_from(streets.nodes(data=True))
    next_id = 10**12
    for u, v, d in sorted(streets.edges(data=True), key=lambda e: (min(e[0], e[1]), max(e[0], e[1]))):
        pieces = max(1, math.ceil(d["length"] / max_segment_m))
        if pieces == 1:
            graph.add_edge(u, v, **d)
            continue
        a, b = streets.nodes[u], streets.nodes[v]
        chain = [u]
        for k in range(1, pieces):
            t = k / pieces
            graph.add_node(
                next_id,
                x=a["x"] + t * (b["x"] - a["x"]),
                y=a["y"] + t * (b["y"] - a["y"]),
                lon=a["lon"] + t * (b["lon"] - a["lon"]),
                lat=a["lat"] + t * (b["lat"] - a["lat"]),
            )
            chain.append(next_id)
            next_id += 1
        chain.append(v)
        for p, q in zip(chain[:-1], chain[1:]):
            graph.add_edge(p, q, length=d["length"] / pieces, highway=d["highway"], bridge=d.get("bridge", False))
    return graph


def feeders_from_streets(
    streets: nx.Graph,
    buildings: pd.DataFrame,
    substation_nodes: list,
    labels: np.ndarray,
    *,
    config: LVConfig = LVConfig(),
    cache: dict | None = None,
) -> Feeders:
    """Return the radial feeders and service connections of every substation.

    Building ``b`` is served by substation ``labels[b]`` (its k-means cluster, which was sized for
    the transformer); each substation's feeders come from a min-cost flow (networkx network
    simplex) restricted to a radial tree. ``cache`` (a dict kept by the caller) reuses the feeders
    of a substation whose node and buildings did not change since an earlier call.
    """
    nodes = sorted(streets.nodes)
    tree = cKDTree([(streets.nodes[n]["x"], streets.nodes[n]["y"]) for n in nodes])
    dist, idx = tree.query(buildings[["x", "y"]].to_numpy(float))
    conn_node = [nodes[i] for i in idx]
    service_m = np.maximum(dist, config.min_service_m)

    substation = np.asarray(labels, dtype=int)
    far = []
    feeder_m = np.zeros(len(buildings))

    segments = []
    relaxed = 0
    households = buildings["households"].to_numpy(int)
    for k, sub_node in enumerate(substation_nodes):
        members = np.flatnonzero(substation == k)
        if len(members) == 0:
            continue
        demand: dict = {}
        hh_at: dict = {}
        for m in members:
            demand[conn_node[m]] = demand.get(conn_node[m], 0) + 1
            hh_at[conn_node[m]] = hh_at.get(conn_node[m], 0) + int(households[m])
        key = (sub_node, tuple(buildings.index[members]))
        if cache is not None and key in cache:
            cached_segments, k_relaxed = cache[key]
            new = [{**seg, "substation": k} for seg in cached_segments]
        else:
            new, k_relaxed = _feeders_of_substation(streets, sub_node, demand, hh_at, k, config)
            if cache is not None:
                cache[key] = (new, k_relaxed)
        relaxed += k_relaxed
        depth = _depths(new, sub_node)
        for m in members:
            feeder_m[m] = depth[conn_node[m]]
        far.extend(buildings.index[m] for m in members if depth[conn_node[m]] > config.max_feeder_length_m)
        segments.extend(new)

    seg = pd.DataFrame(segments)
    connection = pd.DataFrame(
        {"conn_node": conn_node, "service_m": service_m, "substation": substation, "feeder_m": feeder_m}, index=buildings.index
    )
    report = {
        "feeder_capacity_relaxations": relaxed,
        "buildings_beyond_max_feeder_length": len(far),
        "lv_segments": len(seg),
    }
    log.info("feeders_from_streets: %d LV segments for %d buildings", len(seg), len(buildings))
    return Feeders(segments=seg, connection=connection, report=report)


def _feeders_of_substation(streets: nx.Graph, sub_node, demand: dict, hh_at: dict, k: int, config: LVConfig) -> tuple[list[dict], int]:
    """Return the radial segments of one substation and how often its feeder capacity was relaxed."""
    relaxed = 0
    region = _flow_region(streets, sub_node, demand)
    flow, capacity = None, config.max_buildings_per_feeder
    while flow is None:
        try:
            flow = _min_cost_flow(streets, sub_node, demand, capacity, region)
        except nx.NetworkXUnfeasible:
            if region is not None:  # not within the region: try the whole graph before relaxing
                region = None
                continue
            # The substation node has too few streets for the feeders: allow bigger feeders.
            capacity *= 2
            relaxed += 1
            if capacity > 64 * config.max_buildings_per_feeder:
                raise InputDataError(f"substation {k}: its buildings cannot be reached along the streets") from None
    support = nx.Graph()
    support.add_node(sub_node)
    for u, targets in flow.items():
        for v, f in targets.items():
            if f > 0:
                support.add_edge(u, v, length=streets.edges[u, v]["length"])
    new = _radial_segments(streets, support, sub_node, hh_at, k)
    return new, relaxed


def _depths(segments: list[dict], root) -> dict:
    """Return the cable length from the substation to every joint of one radial network."""
    depth = {root: 0.0}
    for seg in segments:  # segments are emitted parent before child
        depth[seg["to_node"]] = depth[seg["from_node"]] + seg["length_m"]
    return depth


def _flow_region(streets: nx.Graph, source, demand: dict) -> set | None:
    """Return the street nodes within the farthest building's distance + 150 m of ``source``.

    Arc cost is cable length, so a feeder leaves this neighbourhood only to detour around full
    arcs; solving the flow there instead of on the whole street graph makes a large area (the
    whole shared file: 40+ substations on 10,000 nodes) fast. None (whole graph) if a building's
    street point is not reachable.
    """
    dist = nx.single_source_dijkstra_path_length(streets, source, weight="length")
    if any(n not in dist for n in demand):
        return None
    cutoff = max((dist[n] for n in demand), default=0.0) + 150.0
    return {n for n, d in dist.items() if d <= cutoff}


def _min_cost_flow(streets: nx.Graph, source, demand: dict, capacity: int, region: set | None = None) -> dict:
    """Solve the feeder flow: integer costs in decimetres (network simplex wants integers).

    ``region``: street nodes the flow may use (None: all).
    """
    digraph = nx.DiGraph()
    for u, v, d in streets.edges(data=True):
        if region is not None and (u not in region or v not in region):
            continue
        cost = max(1, int(round(d["length"] * 10)))
        digraph.add_edge(u, v, weight=cost, capacity=capacity)
        digraph.add_edge(v, u, weight=cost, capacity=capacity)
    total = sum(demand.values())
    for n in digraph.nodes:
        digraph.nodes[n]["demand"] = 0
    for n, d in demand.items():
        if n != source:
            digraph.nodes[n]["demand"] = d
    digraph.nodes[source]["demand"] = -(total - demand.get(source, 0))
    _, flow = nx.network_simplex(digraph)
    return flow


def _radial_segments(streets: nx.Graph, support: nx.Graph, root, hh_at: dict, substation: int) -> list[dict]:
    """Return the segments of the shortest-path tree over ``support`` from ``root``.

    Chains of street nodes without a house connection or branching become one segment with a
    polyline, so a segment is a cable between two cable joints.
    """
    _, paths = nx.single_source_dijkstra(support, root, weight="length")
    parent: dict = {}
    for target in sorted(hh_at, key=str):
        path = paths.get(target)
        if path is None:
            raise InputDataError(f"substation {substation}: a building's street point is unreachable")
        for a, b in zip(path[:-1], path[1:]):
            parent.setdefault(b, a)
    children: dict = {}
    for child, par in parent.items():
        children.setdefault(par, []).append(child)
    for c in children.values():
        c.sort(key=str)
    # Households downstream of every node (post-order over the tree).
    downstream: dict = {}
    order = list(nx.dfs_preorder_nodes(nx.DiGraph([(p, c) for c, p in parent.items()]), root)) if parent else [root]
    for n in reversed(order):
        downstream[n] = hh_at.get(n, 0) + sum(downstream[c] for c in children.get(n, []))
    joints = {root} | set(hh_at) | {n for n, c in children.items() if len(c) > 1}
    segments = []
    stack = [root]
    while stack:
        start = stack.pop()
        for first in children.get(start, []):
            chain = [start, first]
            while chain[-1] not in joints:
                chain.append(children[chain[-1]][0])
            end = chain[-1]
            coords = [(streets.nodes[n]["x"], streets.nodes[n]["y"]) for n in chain]
            lonlat = [(streets.nodes[n]["lon"], streets.nodes[n]["lat"]) for n in chain]
            length = sum(streets.edges[p, q]["length"] for p, q in zip(chain[:-1], chain[1:]))
            segments.append(
                {
                    "substation": substation,
                    "from_node": start,
                    "to_node": end,
                    "length_m": length,
                    "lonlat": lonlat,
                    "coords": coords,
                    "downstream_households": int(downstream[end]),
                }
            )
            stack.append(end)
    return segments
