"""20 kV grid: an open ring over the feed-in point and the substations, routed along the streets."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy.spatial import cKDTree

from gridgen._errors import InputDataError
from gridgen.street_matrix import StreetMatrix

log = logging.getLogger(__name__)

EXACT_TSP_MAX_NODES = 9  # 8! orderings: exact enumeration is still instant
MAX_SUBSTATIONS_PER_RING = 8  # a 20 kV ring carries a few MVA: a town gets several rings


@dataclass(frozen=True)
class Ring:
    """The 20 kV open ring.

    Parameters
    ----------
    order
        Street nodes in ring order, starting and ending at the feed-in node.
    legs
        One entry per cable between consecutive ring nodes: ``from_node``, ``to_node``,
        ``length_m``, ``lonlat`` (street polyline).
    open_leg
        Index of the leg whose far end is the normally open point.
    """

    order: list
    legs: list[dict]
    open_leg: int

    @property
    def length_m(self) -> float:
        return float(sum(leg["length_m"] for leg in self.legs))


def feed_in_node(streets: nx.Graph, bbox: tuple[float, float, float, float], lonlat: tuple[float, float] | None = None):
    """Return the street node where the 20 kV cable from the primary substation arrives.

    ``lonlat`` given: the node nearest to it. Otherwise the node nearest to the middle of the
    bbox's western edge (Bergwald is fed from Durlach, to its west); any other default would be
    just as arbitrary, so it is configurable.
    """
    south, west, north, east = bbox
    target = lonlat or (west, (south + north) / 2)
    nodes = sorted(streets.nodes)
    tree = cKDTree([(streets.nodes[n]["lon"], streets.nodes[n]["lat"] * 1.5) for n in nodes])
    _, idx = tree.query((target[0], target[1] * 1.5))
    return nodes[int(idx)]


def ring_from_substations(
    streets: nx.Graph, feed_node, substation_nodes: list, *, random_state: int = 0, matrix: StreetMatrix | None = None
) -> Ring:
    """Return the shortest closed tour (TSP on street distances) as an open ring.

    Up to ``EXACT_TSP_MAX_NODES`` ring nodes the tour is exact (enumeration, written here because
    networkx offers only approximations); beyond, networkx's simulated annealing (seeded).
    """
    ring_nodes = [feed_node] + [n for n in substation_nodes if n != feed_node]
    complete = nx.Graph()
    route: dict = {}
    matrix = matrix or StreetMatrix(streets)
    for a in ring_nodes:
        found = matrix.shortest_paths(a, ring_nodes)
        if found is None:  # a float tie on a path: networkx's own choice decides
            found = nx.single_source_dijkstra(streets, a, weight="length")
        dist, path = found
        for b in ring_nodes:
            if b != a:
                if b not in dist:
                    raise InputDataError("a substation cannot be reached from the feed-in point along the streets")
                complete.add_edge(a, b, weight=dist[b])
                route[(a, b)] = path[b]
    if len(ring_nodes) == 1:
        order = [feed_node, feed_node]
    elif len(ring_nodes) <= EXACT_TSP_MAX_NODES:
        order = _exact_tour(complete, feed_node, ring_nodes[1:])
    else:
        cycle = nx.approximation.simulated_annealing_tsp(complete, "greedy", weight="weight", source=feed_node, seed=random_state)
        order = list(cycle)
    legs = []
    for a, b in zip(order[:-1], order[1:]):
        if a == b:
            continue
        path = route[(a, b)]
        legs.append(
            {
                "from_node": a,
                "to_node": b,
                "length_m": float(sum(streets.edges[p, q]["length"] for p, q in zip(path[:-1], path[1:]))),
                "lonlat": [(streets.nodes[n]["lon"], streets.nodes[n]["lat"]) for n in path],
            }
        )
    # Normally open point: at the leg in the middle of the ring, so both halves carry similar load.
    cumulative = np.cumsum([leg["length_m"] for leg in legs])
    open_leg = int(np.argmin(np.abs(cumulative - cumulative[-1] / 2))) if legs else 0
    log.info("ring_from_substations: %d legs, %.0f m", len(legs), float(cumulative[-1]) if legs else 0.0)
    return Ring(order=order, legs=legs, open_leg=open_leg)


def _exact_tour(complete: nx.Graph, feed_node, rest: list) -> list:
    """Return the shortest tour feed -> permutation of ``rest`` -> feed, by enumeration.

    All permutations at once in numpy. Costs are summed leg by leg in tour order (the float sum of
    a Python loop, not numpy's pairwise sum) and the first tour that beats the best so far by more
    than 1e-9 wins, as in a loop over ``itertools.permutations``; a tour and its reverse have the
    same length, so only those with ``perm[0] < perm[-1]`` are scored.
    """
    nodes = [feed_node, *rest]
    weight = np.zeros((len(nodes), len(nodes)))
    for i, p in enumerate(nodes):
        for j, q in enumerate(nodes):
            if i != j:
                weight[i, j] = complete.edges[p, q]["weight"]
    perms = np.array(list(itertools.permutations(range(1, len(nodes)))), dtype=np.int64)
    if perms.shape[1] > 1:
        ids = np.array(nodes, dtype=object)
        perms = perms[~np.array([a > b for a, b in zip(ids[perms[:, 0]], ids[perms[:, -1]])], dtype=bool)]
    cost = weight[0, perms[:, 0]]
    for j in range(perms.shape[1] - 1):
        cost = cost + weight[perms[:, j], perms[:, j + 1]]
    cost = cost + weight[perms[:, -1], 0]
    best_k, best = 0, float(cost[0])
    for k in np.flatnonzero(cost < cost[0] - 1e-9).tolist():  # candidates only; the running best decides
        if cost[k] < best - 1e-9:
            best_k, best = k, float(cost[k])
    return [feed_node, *(nodes[i] for i in perms[best_k]), feed_node]


def rings_from_substations(
    streets: nx.Graph, feed_node, substation_nodes: list, *, random_state: int = 0, max_per_ring: int = MAX_SUBSTATIONS_PER_RING
) -> list[Ring]:
    """Return the open rings from the feed-in: one ring up to ``max_per_ring`` substations, else several.

    One ring of a whole town (60 substations, 40 km) drops too much voltage and overloads its
    cable. The substations are sorted by bearing from the feed-in point and cut into equal
    contiguous groups, one ring (exact TSP within the group) each. Up to ``max_per_ring``
    substations this is exactly :func:`ring_from_substations`.
    """
    if len(substation_nodes) <= max_per_ring:
        return [ring_from_substations(streets, feed_node, substation_nodes, random_state=random_state)]
    fx, fy = streets.nodes[feed_node]["x"], streets.nodes[feed_node]["y"]
    bearing = sorted(
        substation_nodes,
        key=lambda n: (float(np.arctan2(streets.nodes[n]["y"] - fy, streets.nodes[n]["x"] - fx)), str(n)),
    )
    n_rings = -(-len(bearing) // max_per_ring)
    groups = [list(g) for g in np.array_split(np.array(bearing, dtype=object), n_rings)]
    matrix = StreetMatrix(streets)  # one for all rings
    return [ring_from_substations(streets, feed_node, g, random_state=random_state, matrix=matrix) for g in groups]
