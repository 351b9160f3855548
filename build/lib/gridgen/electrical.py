"""The electrical model: pandapower net from ring, substations and feeders, sized until clean."""

from __future__ import annotations

import copy
import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridgen._errors import ConfigError, GridValidationError
from gridgen.loads import LoadConfig, coincidence_factor, coincident_peak_mw
from gridgen.substations import TRAFO_SERIES_KVA, TRAFO_STD_TYPE, trafo_rating_kva

log = logging.getLogger(__name__)

MV_CABLE = "NA2XS2Y 1x185 RM/25 12/20 kV"
SERVICE_CABLE = "NAYY 4x50 SE"
# The NAYY family from service size to the largest main cable. 4x185 and 4x240 are not in
# pandapower's standard types; their data are from the manufacturers' datasheets (VDE 0276-603,
# laid in ground, 20 degC resistance, like pandapower's own NAYY entries).
EXTRA_LINE_TYPES = {
    "NAYY 4x185 SE": {"r_ohm_per_km": 0.164, "x_ohm_per_km": 0.080, "c_nf_per_km": 270.0, "max_i_ka": 0.313, "type": "cs", "q_mm2": 185, "alpha": 4.03e-3},
    "NAYY 4x240 SE": {"r_ohm_per_km": 0.125, "x_ohm_per_km": 0.079, "c_nf_per_km": 290.0, "max_i_ka": 0.357, "type": "cs", "q_mm2": 240, "alpha": 4.03e-3},
}
MAIN_FAMILY = ("NAYY 4x150 SE", "NAYY 4x185 SE", "NAYY 4x240 SE")
SERVICE_FAMILY = ("NAYY 4x50 SE", "NAYY 4x120 SE", "NAYY 4x150 SE", "NAYY 4x185 SE", "NAYY 4x240 SE")


@dataclass(frozen=True)
class ElectricalConfig:
    """Limits and options of the electrical model.

    Parameters
    ----------
    vm_min_pu, vm_max_pu, max_loading_percent
        The limits the peak-load power flow must meet (paper A: 0.95/1.05 p.u., 100 %).
    design_vm_min_pu, design_loading_percent
        Tighter targets the sizing loop aims at, leaving headroom for flexibility activation.
    design_mv_vm_min_pu
        Lowest 20 kV voltage the sizing loop accepts: below it, the 20 kV cable with the largest
        voltage drop gets a parallel cable (a long ring with many substations, e.g. a whole town,
        drops more voltage than the 0.4 kV cables can make up for); the cables with at least half
        the largest drop get one too, so a long ring needs few rounds.
    ext_grid_vm_pu
        Voltage set point at the 20 kV feed-in (a primary substation's usual 1.02 p.u.).
    max_iterations
        Sizing rounds before giving up.
    """

    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05
    max_loading_percent: float = 100.0
    design_vm_min_pu: float = 0.96
    design_loading_percent: float = 80.0
    design_mv_vm_min_pu: float = 0.995
    ext_grid_vm_pu: float = 1.02
    max_iterations: int = 40

    def __post_init__(self) -> None:
        if not 0.5 < self.vm_min_pu < self.vm_max_pu < 1.5:
            raise ConfigError("voltage limits must satisfy 0.5 < vm_min_pu < vm_max_pu < 1.5")
        if not 0.5 < self.ext_grid_vm_pu < 1.5:
            raise ConfigError("ext_grid_vm_pu must be between 0.5 and 1.5")
        if self.max_loading_percent <= 0 or self.max_iterations < 1:
            raise ConfigError("max_loading_percent and max_iterations must be positive")


def empty_net():
    """Return an empty pandapower net with the extra NAYY standard types."""
    return copy.deepcopy(_empty_net_template())


@functools.lru_cache(maxsize=1)
def _empty_net_template():
    # Cached: pandapower builds its ~90 empty tables in about 0.4 s; a deep copy takes a few ms.
    import pandapower as pp

    net = pp.create_empty_network(name="DigIPlat distribution grid", f_hz=50.0)
    for name, data in EXTRA_LINE_TYPES.items():
        pp.create_std_type(net, data, name, element="line")
    return net


def net_from_layout(
    *,
    streets,
    buildings: pd.DataFrame,
    ring,
    substation_nodes: list,
    feeders,
    loads: LoadConfig,
    config: ElectricalConfig,
):
    """Return the pandapower net (buses, cables, transformers, loads) of a grid layout.

    Load of a building at peak = households x household peak x g(N), N the households of its
    substation: the power flow checks the transformer's coincident peak, spread over its houses.

    Elements are collected first and created with pandapower's bulk functions (``create_buses``,
    ``create_lines``, ``create_loads``): one ``create_*`` call per element costs about 5 ms, which
    was most of the build time. Indices follow the order of a per-element construction: MV buses,
    per substation its LV busbar, then feeder joints and house connections as they are first met.
    """
    import pandapower as pp

    net = empty_net()
    node_ll = lambda n: (streets.nodes[n]["lon"], streets.nodes[n]["lat"])  # noqa: E731
    bus_rows: list[tuple] = []  # (name, vn_kv, zone, type, (lon, lat))
    line_rows: list[tuple] = []  # (from_bus, to_bus, length_km, std_type, parallel, name, geodata, voltage_level)

    def new_bus(name: str, vn_kv: float, zone: str, kind: str, lonlat) -> int:
        bus_rows.append((name, vn_kv, zone, kind, lonlat))
        return len(bus_rows) - 1

    rings = list(ring) if isinstance(ring, (list, tuple)) else [ring]  # one ring or several from the feed-in
    mv_bus: dict = {}
    for r in rings:
        for k, node in enumerate(r.order[:-1]):
            if node not in mv_bus:
                mv_bus[node] = new_bus("feed-in" if not mv_bus else "", 20.0, "MV", "b", node_ll(node))
    open_lines: list[tuple[int, int]] = []  # (line, bus at the open end)
    for ri, r in enumerate(rings):
        for k, leg in enumerate(r.legs):
            name = f"MV ring {k + 1}" if len(rings) == 1 else f"MV ring {ri + 1}.{k + 1}"
            if k == r.open_leg:
                open_lines.append((len(line_rows), mv_bus[leg["to_node"]]))
            line_rows.append(
                (mv_bus[leg["from_node"]], mv_bus[leg["to_node"]], max(leg["length_m"], 1.0) / 1000.0, MV_CABLE, 1,
                 name, leg["lonlat"], "MV")
            )

    conn = feeders.connection
    households = buildings["households"]
    lv_bus: dict = {}
    trafo_rows: list[tuple] = []  # (hv_bus, lv_bus, std_type, name)
    for k, node in enumerate(substation_nodes):
        members = conn.index[conn["substation"] == k]
        n_hh = float(households.loc[members].sum())
        rating = trafo_rating_kva(coincident_peak_mw(n_hh, loads), cos_phi=loads.cos_phi)
        lv_bus[(k, node)] = new_bus(f"S{k + 1} LV busbar", 0.4, "LV", "b", node_ll(node))
        trafo_rows.append((mv_bus[node], lv_bus[(k, node)], TRAFO_STD_TYPE[rating], f"S{k + 1} {rating} kVA"))
        name, *rest = bus_rows[mv_bus[node]]
        bus_rows[mv_bus[node]] = (f"S{k + 1} MV", *rest)

    def bus_of(k: int, node) -> int:
        if (k, node) not in lv_bus:
            lv_bus[(k, node)] = new_bus("", 0.4, "LV", "n", node_ll(node))
        return lv_bus[(k, node)]

    for row in feeders.segments.itertuples():
        i_ka = coincident_current_ka(row.downstream_households, loads)
        std_type, parallel = cable_for_current(i_ka, MAIN_FAMILY)
        line_rows.append(
            (bus_of(row.substation, row.from_node), bus_of(row.substation, row.to_node), max(row.length_m, 1.0) / 1000.0,
             std_type, parallel, f"S{row.substation + 1} feeder", row.lonlat, "LV")
        )

    g_sub = {k: float(coincidence_factor(households.loc[conn.index[conn["substation"] == k]].sum(), loads.g_inf))
             for k in range(len(substation_nodes))}
    tan_phi = math.tan(math.acos(loads.cos_phi))
    load_rows: list[tuple] = []  # (bus, p_mw, q_mvar, building_id)
    conn_sub = conn["substation"].astype(int).to_dict()
    conn_node = conn["conn_node"].to_dict()
    conn_service = conn["service_m"].to_dict()
    for b, n_hh, lon, lat in zip(buildings.index, buildings["households"], buildings["lon"], buildings["lat"]):
        k = conn_sub[b]
        street_bus = bus_of(k, conn_node[b])
        house = new_bus(f"{b} house connection", 0.4, "LV", "n", (lon, lat))
        std_type, parallel = cable_for_current(coincident_current_ka(n_hh, loads), SERVICE_FAMILY)
        line_rows.append(
            (street_bus, house, float(conn_service[b]) / 1000.0, std_type, parallel, f"{b} service",
             [node_ll(conn_node[b]), (lon, lat)], "LV")
        )
        p_mw = n_hh * loads.household_peak_kw / 1000.0 * g_sub[k]
        load_rows.append((house, p_mw, p_mw * tan_phi, b))

    names, vn_kv, zones, kinds, geodata = map(list, zip(*bus_rows))
    pp.create_buses(net, len(bus_rows), vn_kv=vn_kv, name=names, type=kinds, zone=zones, geodata=geodata)
    pp.create_ext_grid(net, mv_bus[rings[0].order[0]], vm_pu=config.ext_grid_vm_pu, va_degree=0.0, name="110/20 kV feed-in")
    fb, tb, length, std, par, lname, lgeo, level = map(list, zip(*line_rows))
    pp.create_lines(net, fb, tb, length_km=length, std_type=std, name=lname, geodata=lgeo, parallel=par, voltage_level=level)
    for open_line, bus in open_lines:
        pp.create_switch(net, bus, open_line, et="l", closed=False, name="normally open point")
    trafo_of_sub: dict = {}
    for k, (hv, lv, std_type, name) in enumerate(trafo_rows):
        trafo_of_sub[k] = pp.create_transformer(net, hv, lv, std_type=std_type, name=name)
    lb, lp, lq, lbid = map(list, zip(*load_rows))
    pp.create_loads(net, lb, p_mw=lp, q_mvar=lq, name=lbid, building_id=lbid)
    net.line["voltage_level"] = net.line["voltage_level"].astype(str)
    net.load["building_id"] = net.load["building_id"].astype(str)
    return net, trafo_of_sub


def coincident_current_ka(n_households: float, loads: LoadConfig) -> float:
    """Return the coincident peak current (kA) of ``n_households`` at 0.4 kV."""
    return coincident_peak_mw(n_households, loads) / (math.sqrt(3) * 0.4 * loads.cos_phi)


def cable_for_current(i_ka: float, family: tuple[str, ...]) -> tuple[str, int]:
    """Return the smallest (type, parallel cables) of ``family`` that carries ``i_ka``."""
    ratings = [_max_i_ka(t) for t in family]
    for name, rating in zip(family, ratings):
        if i_ka <= rating:
            return name, 1
    return family[-1], max(1, math.ceil(i_ka / ratings[-1]))


@functools.lru_cache(maxsize=None)
def _max_i_ka(std_type: str) -> float:
    if std_type in EXTRA_LINE_TYPES:
        return EXTRA_LINE_TYPES[std_type]["max_i_ka"]
    from pandapower.std_types import basic_line_std_types

    return float(basic_line_std_types()[std_type]["max_i_ka"])


def sized_net(net, *, config: ElectricalConfig = ElectricalConfig()) -> tuple[object, list[str]]:
    """Upsize cables and transformers until the peak-load power flow meets the design targets.

    Each round upsizes every overloaded element, and for every LV bus below the voltage target the
    cable on its supply path that drops the most voltage. Returns the net and the list of changes
    made; raises GridValidationError if the targets are not met within ``config.max_iterations``.
    """
    changes: list[str] = []
    paths = _supply_paths(net)
    for _ in range(config.max_iterations):
        _run_pf(net)
        lines_over = set(net.line.index[net.res_line.loading_percent > config.design_loading_percent])
        trafos_over = set(net.trafo.index[net.res_trafo.loading_percent > config.design_loading_percent])
        lv_buses = net.bus.index[net.bus.zone == "LV"]
        low = lv_buses[net.res_bus.vm_pu.reindex(lv_buses).to_numpy() < config.design_vm_min_pu].tolist()
        mv_buses = net.bus.index[net.bus.zone == "MV"]
        mv_low = bool((net.res_bus.vm_pu.reindex(mv_buses).to_numpy() < config.design_mv_vm_min_pu).any())
        if not lines_over and not trafos_over and not low and not mv_low:
            return net, changes
        vm = net.res_bus.vm_pu.to_dict()
        from_bus, to_bus = net.line.from_bus.to_dict(), net.line.to_bus.to_dict()
        if mv_low:
            mv_lines = net.line.index[net.line.voltage_level == "MV"]
            drops = {li: abs(vm[from_bus[li]] - vm[to_bus[li]]) for li in mv_lines}
            top = max(drops.values())
            lines_over.update(li for li, d in drops.items() if d >= 0.5 * top)  # the heavy end of each half ring
            low = []  # the 20 kV drop first: the 0.4 kV cables are judged again with the new voltages
        for b in low:
            trafo, path = paths[b]
            drops = [(abs(vm[from_bus[li]] - vm[to_bus[li]]), li) for li in path]
            trafo_drop = abs(vm[net.trafo.hv_bus.at[trafo]] - vm[net.trafo.lv_bus.at[trafo]])
            if not drops or trafo_drop > max(drops)[0]:
                trafos_over.add(trafo)
            else:
                lines_over.add(max(drops)[1])
        changes.extend(_upsize_line(net, li) for li in sorted(lines_over))
        changes.extend(_upsize_trafo(net, ti) for ti in sorted(trafos_over))
    _run_pf(net)
    raise GridValidationError(
        f"the grid still violates its design targets after {config.max_iterations} sizing rounds "
        f"(vm_min {net.res_bus.vm_pu.min():.3f} p.u., max loading {net.res_line.loading_percent.max():.0f} %)"
    )


def _supply_paths(net) -> dict[int, tuple[int, list[int]]]:
    """Return, per LV bus, its transformer and the lines from the transformer to it (radial)."""
    import networkx as nx

    graph = nx.Graph()
    lv_lines = net.line[net.line.voltage_level == "LV"]
    for li, fb, tb in zip(lv_lines.index, lv_lines.from_bus, lv_lines.to_bus):
        graph.add_edge(int(fb), int(tb), line=int(li))
    paths: dict[int, tuple[int, list[int]]] = {}
    for ti, lv in net.trafo.lv_bus.items():
        paths[int(lv)] = (int(ti), [])
        if lv not in graph:
            continue
        for bus, node_path in nx.single_source_shortest_path(graph, int(lv)).items():
            paths[bus] = (int(ti), [graph.edges[a, b]["line"] for a, b in zip(node_path[:-1], node_path[1:])])
    return paths


def _run_pf(net) -> None:
    import pandapower as pp

    try:
        pp.runpp(net, algorithm="nr", calculate_voltage_angles=True, max_iteration=30, numba=False)
    except pp.LoadflowNotConverged as exc:
        raise GridValidationError("the AC power flow of the generated grid does not converge") from exc


def _line_between(net, a: int, b: int) -> int:
    hit = net.line.index[((net.line.from_bus == a) & (net.line.to_bus == b)) | ((net.line.from_bus == b) & (net.line.to_bus == a))]
    return int(hit[0])


def _upsize_line(net, li: int) -> str:
    import pandapower as pp

    current = net.line.std_type.at[li]
    family = MAIN_FAMILY if current in MAIN_FAMILY and "service" not in net.line.name.at[li] else SERVICE_FAMILY
    if net.line.voltage_level.at[li] == "MV":
        net.line.at[li, "parallel"] += 1
        return f"{net.line.name.at[li]}: parallel MV cable"
    pos = family.index(current) if current in family else len(family) - 1
    if pos + 1 < len(family):
        pp.change_std_type(net, li, family[pos + 1], element="line")
        return f"{net.line.name.at[li]}: {current} -> {family[pos + 1]}"
    net.line.at[li, "parallel"] += 1
    return f"{net.line.name.at[li]}: {net.line.parallel.at[li]} x {current} in parallel"


def _upsize_trafo(net, ti: int) -> str:
    import pandapower as pp

    current = net.trafo.sn_mva.at[ti] * 1000
    bigger = [r for r in TRAFO_SERIES_KVA if r > current + 1e-6]
    if bigger:
        pp.change_std_type(net, ti, TRAFO_STD_TYPE[bigger[0]], element="trafo")
        name = net.trafo.name.at[ti].split(" ")[0]
        net.trafo.at[ti, "name"] = f"{name} {bigger[0]} kVA"
        return f"{name}: {current:.0f} -> {bigger[0]} kVA"
    net.trafo.at[ti, "parallel"] += 1
    return f"{net.trafo.name.at[ti]}: second transformer in parallel"


def powerflow_summary(net, config: ElectricalConfig = ElectricalConfig()) -> dict:
    """Return the power-flow extremes and the count of limit violations of a solved net."""
    vm = net.res_bus.vm_pu
    line_loading = net.res_line.loading_percent.fillna(0.0)
    trafo_loading = net.res_trafo.loading_percent.fillna(0.0)
    energized = vm.notna()
    violations = int(((vm[energized] < config.vm_min_pu) | (vm[energized] > config.vm_max_pu)).sum())
    violations += int((line_loading > config.max_loading_percent).sum() + (trafo_loading > config.max_loading_percent).sum())
    return {
        "vm_min_pu": round(float(vm[energized].min()), 6),
        "vm_max_pu": round(float(vm[energized].max()), 6),
        "max_line_loading_percent": round(float(line_loading.max()), 4),
        "max_trafo_loading_percent": round(float(trafo_loading.max()), 4),
        "violations": violations,
    }
