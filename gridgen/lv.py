"""0.4 kV feeders: a minimum-cost-flow problem on the street graph per substation.

Formulation. Each substation supplies its buildings: supply at the substation node, demand 1 at
each building's street connection point, both directions of every street edge an arc with cost =
cable length in decimetres (integers) and capacity = buildings per feeder. The flow's support is
the cable network; a shortest-path tree over that support makes it strictly radial (ties in the
flow could otherwise close a mesh). Every building gets a service connection.

Search. The flow is first sought in the substation's neighbourhood (street distance up to the
farthest building + 150 m), then on the whole street graph, then with the capacity doubled up to
64 times (a substation node with two streets cannot send 81 buildings through 2 x 40).

Screening (why safe). Before any solve, each attempt is checked by necessary conditions of
feasibility: every demand node must be in the allowed streets, the substation's arcs must carry
the demand (out-degree x capacity >= demand), and finally an exact scipy max-flow from the
substation to a super sink must reach the total demand (a flow problem with one source is feasible
if and only if it does). Attempts that fail are skipped without a min-cost-flow solve; the first
attempt that passes is the one the unscreened search would have solved, so the result is the same.

Solver (why exact). The feasible attempt is solved once, as an LP, by HiGHS's simplex: a node-arc
incidence matrix is totally unimodular, so with integral demands and capacities every basic
optimum is integral, the min-cost flow itself. On every flow of the shared file HiGHS returns the
same arc flows as networkx's network simplex (the reference, kept as ``flow_solver`` option and as
the fallback if HiGHS ever returns a non-integral or non-optimal answer), 3-5 x faster.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_flow
from scipy.spatial import cKDTree

from gridgen._errors import ConfigError, InputDataError
from gridgen.street_matrix import StreetMatrix

log = logging.getLogger(__name__)

FLOW_SOLVERS = ("highs", "network_simplex")
# A feeder leaves the neighbourhood of its substation (farthest building + this margin) only to
# detour around full arcs.
REGION_MARGIN_M = 150.0
# Feeder capacity is doubled at most this often (up to 64 x) before the area is given up.
MAX_RELAXATIONS = 6
_ARRAYS_KEY = "street arrays"  # the cache entry holding (streets, its arrays)


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
    flow_solver
        ``"highs"`` (HiGHS's simplex on the LP, the default) or ``"network_simplex"`` (networkx,
        the reference); both return the same vertex optimum on every flow of the shared file.
    """

    max_buildings_per_feeder: int = 40
    max_feeder_length_m: float = 800.0
    max_segment_m: float = 25.0
    min_service_m: float = 5.0
    flow_solver: str = "highs"

    def __post_init__(self) -> None:
        if self.flow_solver not in FLOW_SOLVERS:
            raise ConfigError(f"flow_solver must be one of {', '.join(FLOW_SOLVERS)}, got {self.flow_solver!r}")
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
    the transformer); each substation's feeders come from a min-cost flow (HiGHS, see the module
    docstring) restricted to a radial tree. ``cache`` (a dict kept by the caller) reuses the feeders
    of a substation whose node and buildings did not change since an earlier call.
    """
    held = cache.get(_ARRAYS_KEY) if cache is not None else None
    if held is not None and held[0] is streets:  # a split re-routes on the same street graph
        arrays = held[1]
    else:
        arrays = _StreetArrays(streets)
        if cache is not None:
            cache[_ARRAYS_KEY] = (streets, arrays)
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
            new, k_relaxed = _feeders_of_substation(arrays, streets, sub_node, demand, hh_at, k, config)
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


def _feeders_of_substation(
    arrays: "_StreetArrays", streets: nx.Graph, sub_node, demand: dict, hh_at: dict, k: int, config: LVConfig
) -> tuple[list[dict], int]:
    """Return the radial segments of one substation and how often its feeder capacity was relaxed.

    The attempts are those of the original search, in its order: the neighbourhood of the
    substation (farthest building + ``REGION_MARGIN_M``) at the configured capacity, then the whole street graph at 1,
    2, 4, ... 64 times that capacity. Each attempt is screened first (degree x capacity, then an
    exact max-flow); only the first feasible one is solved, once.
    """
    dist = arrays.distances_m(sub_node)
    demand_idx = np.array([arrays.index[n] for n in demand], dtype=np.int64)
    if not np.all(np.isfinite(dist[demand_idx])):
        # No capacity helps a building whose street point lies in another component.
        raise InputDataError(f"substation {k}: its buildings cannot be reached along the streets")
    cutoff = float(dist[demand_idx].max(initial=0.0)) + REGION_MARGIN_M
    in_component = np.isfinite(dist)
    attempts = [(dist <= cutoff, config.max_buildings_per_feeder, 0)]
    attempts += [(in_component, config.max_buildings_per_feeder * 2**j, j) for j in range(MAX_RELAXATIONS + 1)]
    for nodes_ok, capacity, relaxed in attempts:
        problem = arrays.flow_problem(sub_node, demand, capacity, nodes_ok)
        if not problem.may_be_feasible():
            continue
        flow_arcs = problem.optimal_arcs(config.flow_solver)
        support = nx.Graph()
        support.add_node(sub_node)
        for u, v in flow_arcs:
            support.add_edge(u, v, length=streets.edges[u, v]["length"])
        return _radial_segments(streets, support, sub_node, hh_at, k), relaxed
    raise InputDataError(f"substation {k}: its buildings cannot be reached along the streets")


def _depths(segments: list[dict], root) -> dict:
    """Return the cable length from the substation to every joint of one radial network."""
    depth = {root: 0.0}
    for seg in segments:  # segments are emitted parent before child
        depth[seg["to_node"]] = depth[seg["from_node"]] + seg["length_m"]
    return depth



@dataclass
class _FlowProblem:
    """One min-cost-flow attempt: supply at ``source``, ``demand`` at street nodes, one capacity.

    Arcs are both directions of every street edge with both ends allowed, in the order of the
    street graph's edge iteration (u->v, then v->u), which is the order the original networkx
    model was built in; :meth:`optimal_arcs` returns the flow-carrying arcs in that model's order
    too, so the feeders' radial tree is built exactly as before.
    """

    arrays: "_StreetArrays"
    source_idx: int
    tail: np.ndarray  # arc tails (node positions in arrays.nodes)
    head: np.ndarray
    cost_dm: np.ndarray
    capacity: int
    demand_idx: np.ndarray  # demand nodes other than the source
    demand_count: np.ndarray

    @property
    def total_demand(self) -> int:
        return int(self.demand_count.sum())

    def may_be_feasible(self) -> bool:
        """Return False if the demand provably cannot be met (degree x capacity, then max-flow)."""
        total = self.total_demand
        if total == 0:
            return True
        if not np.isin(self.demand_idx, self.tail).all():  # a demand node outside the allowed streets
            return False
        out_degree = int(np.count_nonzero(self.tail == self.source_idx))
        if out_degree * self.capacity < total:  # the substation's own streets cannot carry it
            return False
        nodes, local = np.unique(np.concatenate([self.tail, self.head]), return_inverse=True)
        n = len(nodes)
        sink = n
        src = int(np.searchsorted(nodes, self.source_idx))
        dem_local = np.searchsorted(nodes, self.demand_idx)
        rows = np.concatenate([local[: len(self.tail)], dem_local])
        cols = np.concatenate([local[len(self.tail) :], np.full(len(dem_local), sink)])
        caps = np.concatenate([np.full(len(self.tail), self.capacity), self.demand_count]).astype(np.int32)
        graph = sp.csr_matrix((caps, (rows, cols)), shape=(n + 1, n + 1))
        return int(maximum_flow(graph, src, sink, method="dinic").flow_value) >= total

    def optimal_arcs(self, solver: str) -> list[tuple]:
        """Return the arcs (u, v) that carry flow in a minimum-cost flow, in the original model's order."""
        if self.total_demand == 0:
            return []
        x = None
        if solver == "highs":
            x = _highs_flow(self)
        if x is None:  # network simplex: the reference (also the fallback if HiGHS misbehaves)
            x = _network_simplex_flow(self)
        positive = np.flatnonzero(x > 0)
        # networkx's flow dict iterates tails in order of first appearance, then arcs as added.
        seq = np.column_stack([self.tail, self.head]).ravel()
        uniq, first = np.unique(seq, return_index=True)
        rank_of = dict(zip(uniq.tolist(), first.tolist()))
        order = sorted(positive.tolist(), key=lambda a: (rank_of[int(self.tail[a])], a))
        nodes = self.arrays.nodes
        return [(nodes[self.tail[a]], nodes[self.head[a]]) for a in order]

    def node_balance(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the model's nodes (positions) and their balance (inflow - outflow) required."""
        nodes = np.unique(np.concatenate([self.tail, self.head]))
        balance = np.zeros(len(nodes))
        balance[np.searchsorted(nodes, self.demand_idx)] = self.demand_count
        balance[np.searchsorted(nodes, self.source_idx)] = -self.total_demand
        return nodes, balance


def _highs_flow(problem: _FlowProblem) -> np.ndarray | None:
    """Return the arc flows of a vertex optimum by HiGHS's simplex, or None if it is not integral.

    Node-arc incidence matrices are totally unimodular, so with integral demands and capacities
    every basic optimum is integral: the LP is the exact min-cost flow.
    """
    import highspy

    nodes, balance = problem.node_balance()
    m = len(problem.tail)
    tail_row = np.searchsorted(nodes, problem.tail)
    head_row = np.searchsorted(nodes, problem.head)
    # Column a: -1 at its tail, +1 at its head (row = inflow - outflow).
    rows = np.column_stack([np.minimum(tail_row, head_row), np.maximum(tail_row, head_row)]).ravel()
    signs = np.where(tail_row < head_row, -1.0, 1.0)
    vals = np.column_stack([signs, -signs]).ravel()
    starts = np.arange(0, 2 * m, 2, dtype=np.int32)
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    status = h.passModel(
        m, len(nodes), 2 * m, int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMinimize), 0.0,
        problem.cost_dm.astype(float), np.zeros(m), np.full(m, float(problem.capacity)), balance, balance,
        starts, rows.astype(np.int32), vals, np.zeros(m, dtype=np.int32),
    )
    if status == highspy.HighsStatus.kError:
        return None
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    x = np.asarray(h.getSolution().col_value, dtype=float)
    flow = np.rint(x)
    if np.abs(x - flow).max(initial=0.0) > 1e-6:
        return None
    return flow.astype(np.int64)


def _network_simplex_flow(problem: _FlowProblem) -> np.ndarray:
    """Return the arc flows of networkx's network simplex on the same model (the reference solver)."""
    digraph = nx.DiGraph()
    for a in range(len(problem.tail)):
        digraph.add_edge(problem.tail[a], problem.head[a], weight=int(problem.cost_dm[a]), capacity=problem.capacity)
    nx.set_node_attributes(digraph, 0, "demand")
    for n, d in zip(problem.demand_idx.tolist(), problem.demand_count.tolist()):
        digraph.nodes[n]["demand"] = d
    digraph.nodes[problem.source_idx]["demand"] = -problem.total_demand
    _, flow = nx.network_simplex(digraph)
    return np.array([flow[t][h] for t, h in zip(problem.tail.tolist(), problem.head.tolist())], dtype=np.int64)


_HIGHS_BANNER_SHOWN = False


def _new_highs():
    """Return a ``highspy.Highs``; the first one of the process is created with stdout silenced.

    HiGHS prints a banner on stdout when its first instance is created, before any option can be
    set; it would spoil the JSON line of ``digiplat grid build --json``.
    """
    import os

    import highspy

    global _HIGHS_BANNER_SHOWN
    if _HIGHS_BANNER_SHOWN:
        return highspy.Highs()
    import sys

    sys.stdout.flush()
    fd = 1  # the C library writes to the process's standard output, whatever sys.stdout is
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            h = highspy.Highs()
    finally:
        os.dup2(saved, fd)
        os.close(saved)
    _HIGHS_BANNER_SHOWN = True
    return h


class _StreetArrays(StreetMatrix):
    """The street graph as arrays, with the min-cost-flow model of one attempt."""

    def __init__(self, streets: nx.Graph) -> None:
        super().__init__(streets)
        # Integer costs in decimetres, as the network simplex model had them.
        self.cost_dm = np.maximum(1, np.rint(self.edge_length_m * 10)).astype(np.int64)

    def flow_problem(self, source, demand: dict, capacity: int, nodes_ok: np.ndarray) -> _FlowProblem:
        """Return the min-cost-flow model over the street edges whose both ends are allowed."""
        keep = nodes_ok[self.eu] & nodes_ok[self.ev]
        eu, ev, cost = self.eu[keep], self.ev[keep], self.cost_dm[keep]
        tail = np.column_stack([eu, ev]).ravel()
        head = np.column_stack([ev, eu]).ravel()
        src = self.index[source]
        others = [(self.index[n], d) for n, d in demand.items() if n != source]
        return _FlowProblem(
            arrays=self, source_idx=src, tail=tail, head=head, cost_dm=np.repeat(cost, 2), capacity=int(capacity),
            demand_idx=np.array([i for i, _ in others], dtype=np.int64),
            demand_count=np.array([d for _, d in others], dtype=np.int64),
        )


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
