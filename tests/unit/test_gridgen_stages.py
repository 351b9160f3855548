"""Grid generator, stage by stage, on a small hand-written OSM fixture (tests/data/small_area.osm).

The fixture: two parallel streets joined at both ends (a loop), a footway across, a motorway (never
a cable route), a separate street 80 m away (bridged by a trench), 14 houses of 120-224 m² and
two 30 m² sheds (not supplied).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from gridgen import OSM_CREDIT
from gridgen._errors import ConfigError, InputDataError
from gridgen.build import GridConfig, grid_from_area
from gridgen.electrical import (
    MAIN_FAMILY,
    SERVICE_FAMILY,
    ElectricalConfig,
    _max_i_ka,
    _run_pf,
    cable_for_current,
    powerflow_summary,
    sized_net,
)
from gridgen.grid import GRID_FILES, Grid
from gridgen.loads import LoadConfig, coincidence_factor, coincident_peak_mw, households_from_buildings
from gridgen.lv import LVConfig, densified_streets, feeders_from_streets
from gridgen.mv import feed_in_node, ring_from_substations
from gridgen.osm import AreaConfig, area_from_file, parse_bbox
from gridgen.substations import (
    TRAFO_SERIES_KVA,
    SubstationConfig,
    _k_for_largest_cluster,
    clusters_from_buildings,
    substation_nodes,
    trafo_rating_kva,
)

SMALL_OSM = Path(__file__).resolve().parent.parent / "data" / "small_area.osm"
GEOJSON_KINDS = {"building", "mv_line", "lv_line", "service", "substation", "feed_in", "street", "footprint"}


@pytest.fixture(scope="module")
def small_area():
    return area_from_file(SMALL_OSM)


@pytest.fixture(scope="module")
def small_grid(small_area):
    return grid_from_area(small_area, config=GridConfig(substations=SubstationConfig(n_substations=2)))


# --- area -------------------------------------------------------------------------------------


def test_area_filters_sheds_and_bridges_the_separate_street(small_area):
    assert small_area.report["footprints_in_bbox"] == 16
    assert len(small_area.buildings) == 14  # the two 30 m² sheds are out
    assert (small_area.buildings["area_m2"] >= AreaConfig().min_building_area_m2).all()
    assert small_area.report["street_components_bridged"] == 1
    assert nx.is_connected(small_area.streets)
    highways = {d["highway"] for _, _, d in small_area.streets.edges(data=True)}
    assert "motorway" not in highways
    assert {"residential", "footway", "tertiary", "trench"} <= highways
    # ids sorted west->east, stable
    assert sorted(small_area.buildings.index) == [f"B{k:04d}" for k in range(1, 15)]
    assert small_area.buildings["lon"].is_monotonic_increasing  # processed west to east ...


def test_building_ids_are_a_seeded_random_order(small_area):
    """... but the ids are handed out in a seeded random order: no geography in an id number."""
    from scipy.stats import spearmanr

    other = area_from_file(SMALL_OSM, config=AreaConfig(id_seed=7))
    assert list(other.buildings.index) != list(small_area.buildings.index)
    assert sorted(other.buildings.index) == sorted(small_area.buildings.index)
    pd.testing.assert_frame_equal(pd.DataFrame(other.buildings.drop(columns="geometry")).reset_index(drop=True),
                                  pd.DataFrame(small_area.buildings.drop(columns="geometry")).reset_index(drop=True))
    assert list(area_from_file(SMALL_OSM).buildings.index) == list(small_area.buildings.index)  # seeded
    numbers = small_area.buildings.index.str[1:].astype(int)
    assert abs(spearmanr(numbers, small_area.buildings["lon"]).statistic) < 0.9
    with pytest.raises(ConfigError, match="id_seed"):
        AreaConfig(id_seed=-1)


def test_single_pass_reader_matches_osmnx_readers():
    """gridgen reads the XML once; osmnx's own two readers must give the same graph and footprints."""
    import osmnx as ox

    from gridgen.osm import _graph_and_footprints, _read_osm_xml

    graph, footprints = _graph_and_footprints(_read_osm_xml(SMALL_OSM)[0])
    ref_graph = ox.graph_from_xml(SMALL_OSM, simplify=False, retain_all=True)
    ref_footprints = ox.features_from_xml(SMALL_OSM, tags={"building": True})
    street_edges = {(u, v, d["highway"]) for u, v, d in ref_graph.edges(data=True) if "highway" in d}
    assert {(u, v, d["highway"]) for u, v, d in graph.edges(data=True)} == street_edges
    for n in graph.nodes:
        assert graph.nodes[n]["x"] == ref_graph.nodes[n]["x"] and graph.nodes[n]["y"] == ref_graph.nodes[n]["y"]
    assert list(footprints.index) == list(ref_footprints.index)
    assert footprints.geometry.geom_equals_exact(ref_footprints.geometry, tolerance=0).all()
    assert footprints["render_height"].tolist() == ref_footprints["render_height"].tolist()


def test_bbox_selection_equals_the_whole_file_cropped():
    """Reading only what the bbox needs gives the area the whole file's graph and footprints give."""
    from gridgen.osm import _area_from_raw, _graph_and_footprints, _read_osm_xml

    whole = _read_osm_xml(SMALL_OSM)[0]
    full = area_from_file(SMALL_OSM)
    south, west, north, east = full.bbox
    bbox = (south, west, (south + north) / 2 + 0.0002, east)  # the southern half and a little more
    selected = area_from_file(SMALL_OSM, bbox=bbox)
    cropped = _area_from_raw(*_graph_and_footprints(whole), bbox=bbox, config=AreaConfig(), source=SMALL_OSM.name)
    assert len(_read_osm_xml(SMALL_OSM, bbox=bbox, street_buffer_m=0.0)[0]["elements"]) < len(whole["elements"])
    assert list(selected.streets.nodes(data=True)) == list(cropped.streets.nodes(data=True))
    assert list(selected.streets.edges(data=True)) == list(cropped.streets.edges(data=True))
    pd.testing.assert_frame_equal(pd.DataFrame(selected.buildings), pd.DataFrame(cropped.buildings))
    assert selected.background_buildings.geometry.equals(cropped.background_buildings.geometry)
    assert selected.report == cropped.report


def test_parse_bbox():
    assert parse_bbox("48.9,8.4,49.0,8.5") == (48.9, 8.4, 49.0, 8.5)
    for bad in ("48.9,8.4,49.0", "a,b,c,d", "49.0,8.4,48.9,8.5", "48.9,8.4,49.0,nan"):
        with pytest.raises(ConfigError):
            parse_bbox(bad)


def test_bbox_without_buildings_and_outside_data(small_area):
    south, west, north, east = small_area.bbox
    with pytest.raises(InputDataError, match="no buildings"):
        # a strip between the two streets (the sheds' centroids are not in it either)
        area_from_file(SMALL_OSM, bbox=(south + 0.0004, west + 0.0001, south + 0.0006, west + 0.0005))
    with pytest.raises(InputDataError, match="outside the data"):
        area_from_file(SMALL_OSM, bbox=(50.0, 9.0, 50.1, 9.1))


# --- loads ------------------------------------------------------------------------------------


def test_households_from_footprint_and_height():
    buildings = pd.DataFrame(
        {
            "area_m2": [120.0, 120.0, 400.0, 10.0],
            "height_m": [3.66, 9.0, 12.0, 3.66],
            "levels_known": [False, True, True, False],
        },
        index=["a", "b", "c", "d"],
    )
    hh = households_from_buildings(buildings, LoadConfig())
    # a: 120 m² x 2 default levels x 0.75 = 180 m² -> 2; b: 3 levels -> 270 m² -> 2;
    # c: 4 levels -> 1200 m² -> 7.5 -> 8; d: at least one household
    assert hh.tolist() == [2, 2, 8, 1]
    big = households_from_buildings(buildings, LoadConfig(dwelling_area_m2=80.0))
    assert big.tolist() == [3, 4, 15, 1]


def test_coincidence_factor_and_peak():
    assert coincidence_factor(1) == pytest.approx(1.0)
    assert coincidence_factor(16, 0.07) == pytest.approx(0.07 + 0.93 / 8)
    assert coincidence_factor(1e9, 0.07) == pytest.approx(0.07, abs=1e-6)
    n = np.arange(1, 500)
    g = coincidence_factor(n)
    assert np.all(np.diff(g) < 0)  # falls with the number of households
    peaks = [coincident_peak_mw(k) for k in n]
    assert np.all(np.diff(peaks) > 0)  # the coincident peak still grows
    assert coincident_peak_mw(10) == pytest.approx(10 * 30.0 * float(coincidence_factor(10)) / 1000)
    with pytest.raises(ConfigError):
        LoadConfig(g_inf=1.5)
    with pytest.raises(ConfigError):
        LoadConfig(household_peak_kw=0)


# --- substations ------------------------------------------------------------------------------


def _town(n_side: int = 12, spacing: float = 30.0, households: int = 3) -> pd.DataFrame:
    xs, ys = np.meshgrid(np.arange(n_side) * spacing, np.arange(n_side) * spacing)
    return pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "households": households})


def test_cluster_count_given():
    labels = clusters_from_buildings(_town(), config=SubstationConfig(n_substations=4))
    assert sorted(set(labels)) == [0, 1, 2, 3]


def test_cluster_count_from_capacity_is_the_smallest_that_fits():
    town = _town(households=4)  # 144 buildings, 576 households
    loads = LoadConfig()
    config = SubstationConfig()
    cap = TRAFO_SERIES_KVA[-1] / 1000 * loads.cos_phi * config.max_utilisation
    labels = clusters_from_buildings(town, config=config, loads=loads)
    k = int(labels.max()) + 1
    peaks = [coincident_peak_mw(town.households[labels == c].sum(), loads) for c in range(k)]
    assert max(peaks) <= cap
    assert k >= math.ceil(coincident_peak_mw(576, loads) / (0.63 * 0.95 * 0.6))
    # one fewer does not fit (k-means with k-1 leaves a cluster over the cap or too wide)
    fewer = clusters_from_buildings(town, config=SubstationConfig(n_substations=k - 1), loads=loads)
    peaks_fewer = [coincident_peak_mw(town.households[fewer == c].sum(), loads) for c in range(k - 1)]
    assert max(peaks_fewer) > cap
    # more load, more substations
    heavier = clusters_from_buildings(_town(households=8), config=config, loads=loads)
    assert heavier.max() + 1 > k


def test_cluster_count_lower_bound_is_safe():
    loads = LoadConfig()
    cap = 0.63 * 0.95 * 0.8
    hh = np.full(500, 3.0)
    k0 = _k_for_largest_cluster(hh, loads, cap)
    # with k0 - 1 clusters the largest has at least ceil(N / (k0 - 1)) households: over the cap
    assert coincident_peak_mw(math.ceil(hh.sum() / (k0 - 1)), loads) > cap
    assert coincident_peak_mw(math.ceil(hh.sum() / k0), loads) <= cap


def test_cluster_radius_splits_distant_settlements():
    a, b = _town(n_side=4, households=1), _town(n_side=4, households=1)
    b["x"] += 2000.0  # a second hamlet 2 km east: little load, but one transformer cannot reach both
    labels = clusters_from_buildings(pd.concat([a, b], ignore_index=True))
    assert labels.max() + 1 == 2
    assert len(set(labels[:16])) == 1 and len(set(labels[16:])) == 1 and labels[0] != labels[16]


def test_substation_nodes_are_distinct_street_nodes(small_area):
    buildings = pd.DataFrame(small_area.buildings.drop(columns="geometry"))
    buildings["households"] = households_from_buildings(buildings)
    labels = clusters_from_buildings(buildings, config=SubstationConfig(n_substations=3))
    streets = densified_streets(small_area.streets, 25.0)
    nodes = substation_nodes(streets, buildings, labels)
    assert len(nodes) == 3 == len(set(nodes))
    assert all(n in streets for n in nodes)


def test_trafo_rating_is_smallest_standard_size():
    assert trafo_rating_kva(0.2, cos_phi=0.95) == 250
    assert trafo_rating_kva(0.25 * 0.95 + 1e-6, cos_phi=0.95) == 400
    assert trafo_rating_kva(0.5, cos_phi=0.95) == 630
    assert trafo_rating_kva(5.0, cos_phi=0.95) == 630  # the largest; the sizing loop adds parallel units
    with pytest.raises(ConfigError):
        SubstationConfig(planning_rating_kva=500)


def test_feeder_length_limit_splits_clusters(small_area):
    from gridgen.lv import LVConfig

    grid = grid_from_area(small_area, config=GridConfig(lv=LVConfig(max_feeder_length_m=120.0)))
    s = grid.summary
    assert s["lv"]["substation_splits"] >= 1
    assert s["substations"] >= 2 and s["violations"] == 0
    assert s["lv"]["buildings_beyond_max_feeder_length"] == 0
    radial_checks(grid.net)


# --- 20 kV ring -------------------------------------------------------------------------------


def _mv_ring_checks(net):
    mv = net.line[net.line.voltage_level == "MV"]
    ring_buses = set(net.trafo.hv_bus) | set(net.ext_grid.bus)
    graph = nx.MultiGraph()
    graph.add_edges_from(zip(mv.from_bus, mv.to_bus))
    # one closed tour: every ring bus has degree 2 and the ring is one cycle through all of them
    assert set(graph.nodes) == ring_buses
    assert all(d == 2 for _, d in graph.degree())
    assert nx.is_connected(graph) and graph.number_of_edges() == len(ring_buses)
    # exactly one normally open point, on an MV line
    switches = net.switch[(net.switch.et == "l") & ~net.switch.closed]
    assert len(switches) == 1
    assert int(switches.element.iloc[0]) in set(mv.index)
    open_graph = nx.Graph()
    open_graph.add_edges_from(zip(mv.drop(index=switches.element.iloc[0]).from_bus, mv.drop(index=switches.element.iloc[0]).to_bus))
    assert nx.is_tree(open_graph)  # open ring: two radial halves from the feed-in



def _layout(area, n_substations: int):
    """Return densified streets, buildings with households, k-means labels and substation nodes."""
    streets = densified_streets(area.streets, 25.0)
    buildings = pd.DataFrame(area.buildings.drop(columns="geometry"))
    buildings["households"] = households_from_buildings(buildings)
    labels = clusters_from_buildings(buildings, config=SubstationConfig(n_substations=n_substations))
    return streets, buildings, labels, substation_nodes(streets, buildings, labels)


def test_ring_is_one_tour_over_feed_in_and_substations(small_area):
    streets, buildings, labels, subs = _layout(small_area, 4)
    feed = feed_in_node(streets, small_area.bbox)
    ring = ring_from_substations(streets, feed, subs)
    assert ring.order[0] == ring.order[-1] == feed
    assert sorted(ring.order[:-1], key=str) == sorted(set([feed, *subs]), key=str)
    assert len(ring.legs) == len(set([feed, *subs]))
    for a, b in zip(ring.legs, ring.legs[1:]):
        assert a["to_node"] == b["from_node"]
    assert 0 <= ring.open_leg < len(ring.legs)
    # exact TSP: no other ordering is shorter
    import itertools

    def tour_length(order):
        return sum(nx.shortest_path_length(streets, a, b, weight="length") for a, b in zip(order[:-1], order[1:]))

    best = min(tour_length([feed, *p, feed]) for p in itertools.permutations([n for n in subs if n != feed]))
    assert ring.length_m == pytest.approx(best)


def test_ring_heuristic_for_many_substations_visits_each_once():
    streets = nx.grid_2d_graph(8, 8)
    streets = nx.convert_node_labels_to_integers(streets, label_attribute="ij")
    for n, d in streets.nodes(data=True):
        d.update(x=d["ij"][0] * 100.0, y=d["ij"][1] * 100.0, lon=8.4 + d["ij"][0] * 0.001, lat=48.9 + d["ij"][1] * 0.001)
    nx.set_edge_attributes(streets, 100.0, "length")
    subs = [3, 10, 17, 22, 29, 35, 40, 46, 51, 58, 63]  # 12 ring nodes: simulated annealing
    ring = ring_from_substations(streets, 0, subs, random_state=1)
    assert ring.order[0] == ring.order[-1] == 0
    assert sorted(ring.order[:-1]) == sorted([0, *subs])
    assert len(ring.legs) == 12


def test_many_substations_get_several_rings_from_the_feed_in():
    from gridgen.mv import rings_from_substations

    streets = nx.grid_2d_graph(10, 10)
    streets = nx.convert_node_labels_to_integers(streets, label_attribute="ij")
    for n, d in streets.nodes(data=True):
        d.update(x=d["ij"][0] * 100.0, y=d["ij"][1] * 100.0, lon=8.4 + d["ij"][0] * 0.001, lat=48.9 + d["ij"][1] * 0.001)
    nx.set_edge_attributes(streets, 100.0, "length")
    feed = 44
    subs = [n for n in range(0, 100, 5) if n != feed]  # 20 substations: 3 rings of at most 8
    rings = rings_from_substations(streets, feed, subs, max_per_ring=8)
    assert len(rings) == 3
    seen = []
    for ring in rings:
        assert ring.order[0] == ring.order[-1] == feed
        assert len(ring.order[1:-1]) <= 8 and len(set(ring.order[1:-1])) == len(ring.order[1:-1])
        seen += ring.order[1:-1]
    assert sorted(seen) == sorted(subs)  # every substation on exactly one ring
    assert len(rings_from_substations(streets, feed, subs[:8])) == 1


def test_ring_in_the_small_grid_net(small_grid):
    _mv_ring_checks(small_grid.net)


# --- 0.4 kV feeders ---------------------------------------------------------------------------


def radial_checks(net):
    """Every transformer's LV network is a tree, and every load bus hangs on exactly one of them."""
    import pandapower.topology as top

    graph = top.create_nxgraph(net, respect_switches=True, include_trafos=False)
    graph.remove_nodes_from(net.bus.index[net.bus.zone == "MV"])
    lv_of_trafo = {int(b): int(t) for t, b in net.trafo.lv_bus.items()}
    trafo_of_bus = {}
    for component in nx.connected_components(graph):
        sub = graph.subgraph(component)
        roots = [b for b in component if b in lv_of_trafo]
        assert len(roots) == 1, f"an LV network with {len(roots)} transformers"
        assert sub.number_of_edges() == len(component) - 1 and nx.is_connected(sub)  # a tree: no cycles
        trafo_of_bus.update({b: lv_of_trafo[roots[0]] for b in component})
    assert set(net.load.bus) <= set(trafo_of_bus)
    assert len(net.load) == net.load.building_id.nunique()
    return trafo_of_bus


def test_feeders_are_radial_with_every_building_connected(small_grid):
    trafo_of_bus = radial_checks(small_grid.net)
    buildings = small_grid.buildings
    assert len(buildings) == 14
    for b, row in buildings.iterrows():
        assert trafo_of_bus[int(row["bus"])] == int(row["substation"])


def test_feeder_segments_form_trees_per_substation(small_area):
    streets, buildings, labels, subs = _layout(small_area, 2)
    feeders = feeders_from_streets(streets, buildings, subs, labels)
    for k, node in enumerate(subs):
        seg = feeders.segments[feeders.segments.substation == k]
        tree = nx.DiGraph(list(zip(seg.from_node, seg.to_node)))
        assert nx.is_arborescence(tree) and tree.in_degree(node) == 0
        members = feeders.connection.index[feeders.connection.substation == k]
        assert set(feeders.connection.loc[members, "conn_node"]) <= set(tree.nodes) | {node}
        # downstream households at the root segments add up to the substation's households
        roots = seg[seg.from_node == node]
        assert roots.downstream_households.sum() == buildings.loc[members, "households"].sum()
    assert (feeders.connection.service_m >= 5.0).all()


def _unscreened_search(streets, sub_node, demand: dict, config: LVConfig):
    """The search before issue 12: network simplex on every attempt, the first that is feasible wins."""
    from gridgen.lv import REGION_MARGIN_M, _StreetArrays

    arrays = _StreetArrays(streets)
    dist = arrays.distances_m(sub_node)
    cutoff = max(dist[arrays.index[n]] for n in demand) + REGION_MARGIN_M
    attempts = [(dist <= cutoff, config.max_buildings_per_feeder, 0)]
    attempts += [(np.isfinite(dist), config.max_buildings_per_feeder * 2**j, j) for j in range(7)]
    for nodes_ok, capacity, relaxed in attempts:
        problem = arrays.flow_problem(sub_node, demand, capacity, nodes_ok)
        try:
            return problem.optimal_arcs("network_simplex"), relaxed
        except nx.NetworkXUnfeasible:
            continue
    raise AssertionError("no feasible attempt")


@pytest.mark.parametrize("capacity", [40, 3, 1])
def test_screened_flows_equal_the_unscreened_search(small_area, monkeypatch, capacity):
    """Screening skips only infeasible attempts: the same arcs and relaxations, one solve per substation."""
    import gridgen.lv as lv

    streets, buildings, labels, subs = _layout(small_area, 2)
    conn_node = feeders_from_streets(streets, buildings, subs, labels).connection.conn_node.to_numpy()
    config = LVConfig(max_buildings_per_feeder=capacity)
    solves = []
    real_solve = lv._highs_flow
    monkeypatch.setattr(lv, "_highs_flow", lambda problem: solves.append(problem.capacity) or real_solve(problem))
    arrays = lv._StreetArrays(streets)
    relaxations = 0
    for k, node in enumerate(subs):
        demand: dict = {}
        for conn in conn_node[labels == k]:
            demand[conn] = demand.get(conn, 0) + 1
        demand.pop(node, None)
        expected_arcs, expected_relaxed = _unscreened_search(streets, node, demand, config)
        before = len(solves)
        problem_arcs = None
        dist = arrays.distances_m(node)
        cutoff = max(dist[arrays.index[n]] for n in demand) + lv.REGION_MARGIN_M
        for nodes_ok, cap, relaxed in [(dist <= cutoff, capacity, 0)] + [(np.isfinite(dist), capacity * 2**j, j) for j in range(7)]:
            problem = arrays.flow_problem(node, demand, cap, nodes_ok)
            if problem.may_be_feasible():
                problem_arcs = problem.optimal_arcs("highs")
                break
        assert problem_arcs == expected_arcs and relaxed == expected_relaxed
        assert len(solves) - before == 1  # infeasible attempts were screened, not solved
        relaxations += relaxed
    if capacity == 1:
        assert relaxations > 0  # the case exercises the relaxation path


def test_highs_and_network_simplex_give_the_same_feeders(small_area):
    streets, buildings, labels, subs = _layout(small_area, 2)
    highs = feeders_from_streets(streets, buildings, subs, labels, config=LVConfig(flow_solver="highs"))
    simplex = feeders_from_streets(streets, buildings, subs, labels, config=LVConfig(flow_solver="network_simplex"))
    pd.testing.assert_frame_equal(highs.segments, simplex.segments)
    pd.testing.assert_frame_equal(highs.connection, simplex.connection)
    assert highs.report == simplex.report
    with pytest.raises(ConfigError, match="flow_solver"):
        LVConfig(flow_solver="cplex")


def test_street_matrix_paths_equal_networkx(small_area):
    from gridgen.street_matrix import StreetMatrix

    streets = densified_streets(small_area.streets, 25.0)
    matrix = StreetMatrix(streets)
    nodes = sorted(streets.nodes)[:: max(1, len(streets) // 12)]
    for source in nodes:
        found = matrix.shortest_paths(source, nodes)
        ref_dist, ref_path = nx.single_source_dijkstra(streets, source, weight="length")
        if found is None:  # a float tie: the caller uses networkx; check the tie is real
            continue
        dist, path = found
        for t in nodes:
            assert dist[t] == ref_dist[t] and path[t] == ref_path[t]


# --- cable sizing and the sizing loop ----------------------------------------------------------


@pytest.mark.parametrize("family", [MAIN_FAMILY, SERVICE_FAMILY])
def test_cable_for_current_picks_smallest_sufficient_type(family):
    ratings = [_max_i_ka(t) for t in family]
    assert ratings == sorted(ratings)
    for i_ka in np.linspace(0.01, 3 * ratings[-1], 97):
        std_type, parallel = cable_for_current(float(i_ka), family)
        pos = family.index(std_type)
        assert parallel * ratings[pos] >= i_ka  # sufficient
        if parallel == 1:
            assert pos == 0 or ratings[pos - 1] < i_ka  # and the smallest
        else:
            assert std_type == family[-1] and (parallel - 1) * ratings[-1] < i_ka
    assert cable_for_current(0.1, MAIN_FAMILY) == ("NAYY 4x150 SE", 1)
    assert cable_for_current(0.30, MAIN_FAMILY) == ("NAYY 4x185 SE", 1)
    assert cable_for_current(0.5, MAIN_FAMILY) == ("NAYY 4x240 SE", 2)


def test_sizing_loop_fixes_an_undersized_net(small_grid):
    net = copy.deepcopy(small_grid.net)
    config = ElectricalConfig()
    lv = net.line.voltage_level == "LV"
    net.line.loc[lv, "std_type"] = "NAYY 4x50 SE"
    for col in ("r_ohm_per_km", "x_ohm_per_km", "c_nf_per_km", "max_i_ka"):
        net.line.loc[lv, col] = {"r_ohm_per_km": 0.642, "x_ohm_per_km": 0.083, "c_nf_per_km": 210.0, "max_i_ka": 0.142}[col]
    net.load[["p_mw", "q_mvar"]] *= 4.0
    net.trafo.loc[:, "sn_mva"] = 0.25
    _run_pf(net)
    assert powerflow_summary(net, config)["violations"] > 0
    sized, changes = sized_net(net, config=config)
    summary = powerflow_summary(sized, config)
    assert summary["violations"] == 0
    assert summary["vm_min_pu"] >= config.design_vm_min_pu
    assert len(changes) > 0 and any("->" in c or "parallel" in c for c in changes)
    assert (sized.res_line.loading_percent <= config.design_loading_percent + 1e-9).all()


def test_small_grid_summary_and_power_flow(small_grid):
    s = small_grid.summary
    assert s["buildings"] == 14 and s["substations"] == 2 and s["violations"] == 0
    assert s["households"] == int(small_grid.buildings.households.sum())
    assert 0.95 <= s["vm_min_pu"] <= s["vm_max_pu"] <= 1.05
    assert s["max_line_loading_percent"] <= 100 and s["max_trafo_loading_percent"] <= 100
    assert s["credit"] == OSM_CREDIT
    net = small_grid.net
    assert net.bus.geo.notna().all() and net.line.geo.notna().all()
    assert set(net.load.building_id) == set(small_grid.buildings.index)


# --- GeoJSON, save/load -----------------------------------------------------------------------


def test_geojson_has_all_kinds_and_the_credit(small_grid):
    gj = small_grid.geojson
    assert gj["type"] == "FeatureCollection"
    assert gj["properties"]["credit"] == OSM_CREDIT
    kinds = [f["properties"]["kind"] for f in gj["features"]]
    assert set(kinds) == GEOJSON_KINDS
    assert kinds.count("building") == len(small_grid.buildings)
    assert kinds.count("substation") == len(small_grid.net.trafo)
    assert kinds.count("feed_in") == 1
    assert kinds.count("footprint") == 16  # the sheds are drawn, not supplied
    mv = [f for f in gj["features"] if f["properties"]["kind"] == "mv_line"]
    assert sum(f["properties"]["normally_open"] for f in mv) == 1
    for f in gj["features"]:
        if f["properties"]["kind"] == "building":
            assert small_grid.buildings.loc[f["properties"]["building_id"], "bus"] == f["properties"]["bus"]
        lon, lat = np.asarray(_first_coordinate(f["geometry"]))
        assert 8.46 < lon < 8.48 and 48.96 < lat < 48.98


def _first_coordinate(geometry: dict):
    c = geometry["coordinates"]
    while isinstance(c[0], list):
        c = c[0]
    return c


def test_grid_save_load_round_trip(small_grid, tmp_path):
    import pandapower as pp
    from pandapower.toolbox import nets_equal

    out = small_grid.save(tmp_path / "grid")
    assert sorted(p.name for p in out.iterdir()) == sorted(GRID_FILES)
    loaded = Grid.load(out)
    assert nets_equal(small_grid.net, loaded.net, check_only_results=False)
    pd.testing.assert_frame_equal(loaded.buildings, small_grid.buildings, check_dtype=False, check_exact=False, rtol=1e-9)
    assert loaded.geojson == json.loads(json.dumps(small_grid.geojson))
    assert loaded.summary == json.loads(json.dumps(small_grid.summary))
    # saving the loaded grid again gives the same bytes
    again = loaded.save(tmp_path / "again")
    for name in GRID_FILES:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    pp.runpp(loaded.net, numba=False)
    assert loaded.net.res_bus.vm_pu.min() >= 0.95


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_save_leaves_existing_folder_intact(small_grid, tmp_path):
    out = small_grid.save(tmp_path / "grid")
    before = _folder_bytes(out)
    broken = Grid(net=small_grid.net, buildings=small_grid.buildings, geojson={"bad": object()}, summary=small_grid.summary)
    with pytest.raises(TypeError):
        broken.save(out)
    assert _folder_bytes(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid"]  # no temporary folder left behind


def _other_grid(small_grid) -> Grid:
    """The small grid with another summary, so a successful save would change summary.json."""
    return Grid(net=small_grid.net, buildings=small_grid.buildings, geojson=small_grid.geojson,
                summary={**small_grid.summary, "seed": 99})


@pytest.mark.parametrize("fail_at", ["buildings.csv", "summary.json"])
def test_write_failing_half_way_leaves_old_folder(small_grid, tmp_path, monkeypatch, fail_at):
    """A write that fails after part of the folder is written (a full disk) leaves the old folder."""
    out = small_grid.save(tmp_path / "grid")
    before = _folder_bytes(out)
    if fail_at == "buildings.csv":
        def failing_to_csv(self, path, *args, **kwargs):
            Path(path).write_text("building_id,bus\nB0001,")  # half a file, then the disk is full
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(pd.DataFrame, "to_csv", failing_to_csv)
    else:
        real_write_text = Path.write_text

        def failing_write_text(self, text, *args, **kwargs):
            if self.name == "summary.json":
                real_write_text(self, text[: len(text) // 2])
                raise OSError(28, "No space left on device")
            return real_write_text(self, text, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", failing_write_text)
    with pytest.raises(OSError, match="No space"):
        _other_grid(small_grid).save(out)
    assert _folder_bytes(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid"]


def test_swap_failing_restores_old_folder(small_grid, tmp_path, monkeypatch):
    """If the new folder cannot be renamed into place, the old one is renamed back."""
    import os as os_module

    import gridgen.folders as folders_module

    out = small_grid.save(tmp_path / "grid")
    before = _folder_bytes(out)
    real_replace = os_module.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name.startswith(".grid.new-"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(folders_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="Input/output"):
        _other_grid(small_grid).save(out)
    assert calls[0][1].startswith(".grid.old-") and calls[-1][0].startswith(".grid.old-")  # aside, then back
    assert _folder_bytes(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid"]


def test_save_replaces_a_grid_folder_and_refuses_other_folders(small_grid, tmp_path):
    out = small_grid.save(tmp_path / "grid")
    _other_grid(small_grid).save(out)
    assert json.loads((out / "summary.json").read_text())["seed"] == 99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    with pytest.raises(InputDataError, match="other files than a grid"):
        small_grid.save(tmp_path / "docs")
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputDataError, match="which is a file"):
        small_grid.save(tmp_path / "file" / "grid")


@pytest.mark.parametrize(
    "content, words",
    [
        ("{}", "not a readable pandapower grid"),
        ("", "not a readable pandapower grid"),
        ("half", "not a readable pandapower grid"),
        ("empty net", "holds no complete grid"),
    ],
)
def test_load_rejects_a_truncated_or_empty_grid_json(small_grid, tmp_path, content, words):
    import pandapower as pp

    out = small_grid.save(tmp_path / "grid")
    text = (out / "grid.json").read_text()
    if content == "half":
        content = text[: len(text) // 2]
    elif content == "empty net":
        content = pp.to_json(pp.create_empty_network())
    (out / "grid.json").write_text(content)
    with pytest.raises(InputDataError, match=words) as exc:
        Grid.load(out)
    assert "\n" not in str(exc.value) and "digiplat grid build" in str(exc.value)


def test_load_rejects_a_corrupt_summary(small_grid, tmp_path):
    out = small_grid.save(tmp_path / "grid")
    (out / "summary.json").write_text('{"buildings": 14,')
    with pytest.raises(InputDataError, match="cannot read grid folder"):
        Grid.load(out)


def test_load_rejects_a_folder_that_is_not_a_grid(tmp_path):
    (tmp_path / "grid.json").write_text("{}")
    with pytest.raises(InputDataError, match="not a grid folder"):
        Grid.load(tmp_path)
