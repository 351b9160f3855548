"""Districts: the exact split of a grid into its 20 kV feeders, and one request cleared across them."""

from __future__ import annotations

import numpy as np
import pytest

from optim._errors import InputError


@pytest.fixture(scope="module")
def split(bergwald_grid):
    from optim.dso.districts import districts_of_grid, scenario_of_district
    from optim.dso.linearize import LinearizationConfig, linearize
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    scenario = scenario_from_grid(bergwald_grid, ScenarioConfig())
    districts = districts_of_grid(bergwald_grid)
    config = LinearizationConfig(n_points=3, point_method="all-half-none")
    packages = {d.name: linearize(d.grid, scenario_of_district(scenario, d), config=config).package
                for d in districts}
    whole = linearize(bergwald_grid, scenario, config=config).package
    return scenario, districts, packages, whole


def test_every_building_in_one_district_and_the_split_is_exact(bergwald_grid, split):
    from optim.dso.districts import district_net_matches_whole

    scenario, districts, _, _ = split
    assert len(districts) == 2  # Bergwald's ring: two radial halves from the feed-in
    members = [b for d in districts for b in d.buildings]
    assert sorted(members) == sorted(bergwald_grid.buildings.index.astype(str))
    assert sum(d.grid.summary["substations"] for d in districts) == len(bergwald_grid.net.trafo)
    for d in districts:
        # the fixed feed-in voltage decouples the feeders: the district's power flow is the whole grid's
        assert district_net_matches_whole(bergwald_grid, d, scenario=scenario) < 1e-10


@pytest.mark.parametrize("request_mw", [0.5, 1.8, -0.1])
def test_joint_clearing_is_no_worse_than_the_whole_package(split, request_mw):
    from optim.tso.bids import bids_from_frame
    from optim.tso.clearing import clear_milp
    from optim.tso.districts import clear_districts_milp

    scenario, _, packages, whole = split
    bids = bids_from_frame(scenario.bids)
    joint, single = clear_districts_milp(packages, bids, request_mw), clear_milp(whole, bids, request_mw)
    assert joint.status == single.status
    if joint.ok:
        assert joint.delivered_mw == pytest.approx(request_mw, abs=1e-6)
        assert sum(r.delivered_mw for r in joint.districts.values()) == pytest.approx(request_mw, abs=1e-6)
        # each district picks its own point: a superset of the whole package's choices
        assert joint.cost_eur <= single.cost_eur + 1e-6
        offered = {a["bid_id"]: a["offered_mw"] for a in single.activations}
        for a in joint.activations:
            assert a["offered_mw"] == pytest.approx(offered[a["bid_id"]])
            assert abs(a["activated_mw"]) <= abs(a["offered_mw"]) + 1e-9


def test_infeasible_request_reports_the_deliverable_volume(split):
    from optim.tso.bids import bids_from_frame
    from optim.tso.clearing import clear_milp
    from optim.tso.districts import clear_districts_milp

    scenario, _, packages, whole = split
    bids = bids_from_frame(scenario.bids)
    joint = clear_districts_milp(packages, bids, 2.6)
    assert joint.status.value == "infeasible" and 0 < joint.max_deliverable_mw < 2.6
    single = clear_milp(whole, bids, 2.6)
    assert joint.max_deliverable_mw >= single.max_deliverable_mw - 1e-6
    # and the reported volume is deliverable
    assert clear_districts_milp(packages, bids, joint.max_deliverable_mw).ok


def test_merit_order_across_districts_equals_the_single_package(split):
    from optim.tso.bids import bids_from_frame
    from optim.tso.districts import clear_districts_merit_order
    from optim.tso.merit_order import clear_merit_order

    scenario, _, packages, whole = split
    bids = bids_from_frame(scenario.bids)
    joint, single = clear_districts_merit_order(packages, bids, 1.8), clear_merit_order(whole, bids, 1.8)
    assert joint.cost_eur == pytest.approx(single.cost_eur, rel=1e-12)
    by_bid = {a["bid_id"]: a["activated_mw"] for a in single.activations}
    assert {a["bid_id"]: pytest.approx(by_bid[a["bid_id"]]) for a in joint.activations} == \
        {a["bid_id"]: a["activated_mw"] for a in joint.activations}


def test_bids_outside_every_district_are_refused(split):
    from optim.tso.bids import bids_from_frame
    from optim.tso.districts import clear_districts_milp

    scenario, _, packages, _ = split
    bids = bids_from_frame(scenario.bids)
    only_first = {k: v for k, v in packages.items() if k == "D01"}
    with pytest.raises(InputError, match="in no district package"):
        clear_districts_milp(only_first, bids, 0.3)


def test_day_over_districts_clears_clean(bergwald_grid):
    import pandas as pd

    from gridgen.grid import default_grid_dir
    from optim.day import DayConfig, market_day

    profile = pd.DataFrame({"start": ["18:00"], "request_mw": [1.8]})
    day = market_day(default_grid_dir(), profile,
                     config=DayConfig(districts=True, n_points=3, point_method="all-half-none"))
    unit, merit = day.units[0], day.merit_order[0]
    assert unit["status"] == "optimal" and unit["validation"]["violations"] == 0
    assert set(unit["districts"]) == {"D01", "D02"} and set(unit["chosen_point"]) == {"D01", "D02"}
    assert sum(d["delivered_mw"] for d in unit["districts"].values()) == pytest.approx(1.8, abs=1e-6)
    assert merit["validation"]["violations"] > 0  # the grid-blind merit order still congests
    assert np.isfinite(unit["validation"]["vm_mae_pu"])
