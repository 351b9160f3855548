"""The real answers to the attacks, from the DSO's grid and key (DSO side only).

The radial tree of the net (open switches respected) rooted at the feed-in gives, per bus, its
parent, its substation (the transformer above it) and its feeder (the first LV bus below the
transformer on its path). Branch resistances (ohm) and ratings (MVA, ``sqrt(3) V_n I_max`` for
lines, ``sn_mva`` for transformers) come from the pandapower tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["GridTruth", "truth_from_grid"]


@dataclass(frozen=True)
class GridTruth:
    """Per-bus and per-branch facts of the DSO's grid.

    Parameters
    ----------
    parent
        Bus -> parent bus in the tree rooted at the feed-in (the root is absent).
    substation, feeder
        Bus -> transformer index / first LV bus of its feeder (``-1`` for MV buses).
    branch_buses
        ``(element, index)`` -> ``(from bus, to bus)`` oriented from the feed-in.
    resistance_ohm, rating_mva
        ``(element, index)`` -> series resistance (ohm, at the branch's own voltage) / rating.
    voltage_level
        ``(element, index)`` -> ``"MV"``, ``"LV"`` or ``"trafo"``.
    bus_lon
        Building id -> longitude of the building (for the geography test).
    """

    parent: dict[int, int]
    substation: dict[int, int]
    feeder: dict[int, int]
    branch_buses: dict[tuple[str, int], tuple[int, int]]
    resistance_ohm: dict[tuple[str, int], float]
    rating_mva: dict[tuple[str, int], float]
    voltage_level: dict[tuple[str, int], str]
    building_lon: dict[str, float]

    def ancestors(self, bus: int) -> list[int]:
        """Buses from ``bus`` (included) up to the root."""
        out = [bus]
        while out[-1] in self.parent:
            out.append(self.parent[out[-1]])
        return out


def truth_from_grid(grid: Any) -> GridTruth:
    """Build the :class:`GridTruth` of a :class:`gridgen.grid.Grid`."""
    import networkx as nx
    import pandapower.topology as top

    net = grid.net
    graph = top.create_nxgraph(net, respect_switches=True, include_out_of_service=False)
    root = int(net.ext_grid.bus.iloc[0])
    parent = {int(child): int(par) for par, child in nx.bfs_edges(graph, root)}
    lv_of_trafo = {int(t): int(b) for t, b in net.trafo.lv_bus.items()}
    trafo_of_lv = {b: t for t, b in lv_of_trafo.items()}
    substation: dict[int, int] = {}
    feeder: dict[int, int] = {}
    for bus in net.bus.index:
        bus = int(bus)
        path = [bus]
        while path[-1] in parent:
            path.append(parent[path[-1]])
        sub = next((k for k, b in enumerate(path) if b in trafo_of_lv), None)
        substation[bus] = trafo_of_lv[path[sub]] if sub is not None else -1
        feeder[bus] = path[sub - 1] if sub is not None and sub >= 1 else -1
    branch_buses: dict[tuple[str, int], tuple[int, int]] = {}
    resistance: dict[tuple[str, int], float] = {}
    rating: dict[tuple[str, int], float] = {}
    level: dict[tuple[str, int], str] = {}
    vn = net.bus.vn_kv
    for idx, row in net.line.iterrows():
        a, b = int(row.from_bus), int(row.to_bus)
        key = ("line", int(idx))
        branch_buses[key] = (a, b) if parent.get(b) == a else (b, a)
        parallel = float(row.get("parallel", 1) or 1)
        resistance[key] = float(row.r_ohm_per_km * row.length_km / parallel)
        rating[key] = float(np.sqrt(3) * vn.loc[a] * row.max_i_ka * parallel * float(row.get("df", 1.0) or 1.0))
        level[key] = str(row.get("voltage_level", "LV"))
    for idx, row in net.trafo.iterrows():
        key = ("trafo", int(idx))
        branch_buses[key] = (int(row.hv_bus), int(row.lv_bus))
        resistance[key] = float(row.vkr_percent / 100 * row.vn_lv_kv ** 2 / row.sn_mva)
        rating[key] = float(row.sn_mva * float(row.get("parallel", 1) or 1))
        level[key] = "trafo"
    lon = {str(b): float(v) for b, v in grid.buildings.lon.items()}
    logger.info("grid truth: %d buses in the tree, %d branches", len(parent) + 1, len(branch_buses))
    return GridTruth(parent=parent, substation=substation, feeder=feeder, branch_buses=branch_buses,
                     resistance_ohm=resistance, rating_mva=rating, voltage_level=level, building_lon=lon)
