"""End to end: linearize (DSO) -> clear (TSO) -> validate (DSO), on the stand-in and on Bergwald."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optim._errors import InputError
from optim.dso.linearize import linearize
from optim.dso.scenario import ScenarioConfig, scenario_from_grid
from optim.market import MarketOutcome, RefineConfig, clear_market
from test_dso_standin import standin_grid

REQUEST_STANDIN_MW = 0.5


@pytest.fixture(scope="module")
def standin():
    grid = standin_grid()
    scenario = scenario_from_grid(grid, ScenarioConfig())
    return grid, scenario, linearize(grid, scenario)


def test_grid_aware_clearing_avoids_the_congestion_of_the_merit_order(standin):
    grid, scenario, lin = standin
    milp = clear_market(grid, scenario, request_mw=REQUEST_STANDIN_MW, linearization=lin)
    merit = clear_market(grid, scenario, request_mw=REQUEST_STANDIN_MW, method="merit-order", linearization=lin)
    assert milp.clearing.ok and merit.clearing.ok
    assert milp.clearing.delivered_mw == pytest.approx(REQUEST_STANDIN_MW, abs=1e-6)
    assert milp.validation.n_violations == 0
    assert merit.validation.n_violations > 0
    assert merit.clearing.cost_eur <= milp.clearing.cost_eur + 1e-6  # grid-blind is cheaper, and congests
    s = milp.summary()
    for k in ("status", "requested_mw", "delivered_mw", "cost_eur", "chosen_point", "activations", "validation",
              "runtime_s"):
        assert k in s
    assert {"bid_id", "offered_mw", "activated_mw"} <= set(s["activations"][0])
    for k in ("vm_mae_pu", "vm_rmse_pu", "loading_mae_percent", "loading_rmse_percent", "violations", "vm_min_pu",
              "vm_max_pu", "max_loading_percent"):
        assert k in s["validation"]
    assert merit.summary()["validation"]["vm_mae_pu"] is None
    back = MarketOutcome.from_dict(json.loads(json.dumps(milp.to_dict(), default=float)))
    assert back.clearing.delivered_mw == milp.clearing.delivered_mw


def test_refinement_reduces_the_linearization_error(standin):
    grid, scenario, lin = standin
    out = clear_market(grid, scenario, request_mw=REQUEST_STANDIN_MW, linearization=lin, refine=True,
                       refine_config=RefineConfig(max_iterations=3))
    assert out.refined and 1 <= len(out.rounds) <= 3
    first, last = out.rounds[0], out.rounds[-1]
    assert last["violations"] == 0 and last["delivered_mw"] == pytest.approx(REQUEST_STANDIN_MW, abs=1e-6)
    assert last["vm_mae_pu"] <= first["vm_mae_pu"]
    assert out.package.n_points == 3 + len(out.rounds) - 1


def test_undeliverable_request_and_bad_input(standin):
    grid, scenario, lin = standin
    out = clear_market(grid, scenario, request_mw=50.0, linearization=lin)
    assert out.clearing.status.value == "infeasible" and out.validation is None
    assert 0 < out.clearing.max_deliverable_mw < 50.0
    with pytest.raises(InputError):
        clear_market(grid, scenario, request_mw=0.5, linearization=lin, method="pay-as-bid")
    with pytest.raises(InputError):
        clear_market(grid, scenario, request_mw=0.5, linearization=lin, method="merit-order", refine=True)
    with pytest.raises(InputError):
        clear_market(grid, scenario, request_mw=float("nan"), linearization=lin)


# --- Bergwald (the shipped grid) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bergwald():
    from gridgen.grid import Grid, default_grid_dir

    if not (default_grid_dir() / "grid.json").is_file():
        pytest.skip("the shipped Bergwald grid is not built yet (assets/bergwald)")
    grid = Grid.load(default_grid_dir())
    scenario = scenario_from_grid(grid, ScenarioConfig())
    return grid, scenario, linearize(grid, scenario)


def test_bergwald_merit_order_congests(bergwald):
    grid, scenario, lin = bergwald
    out = clear_market(grid, scenario, request_mw=1.8, method="merit-order", linearization=lin)
    assert out.clearing.ok and out.clearing.delivered_mw == pytest.approx(1.8, abs=1e-6)
    assert out.validation.n_violations >= 1


def test_bergwald_milp_delivers_1_8_mw_without_violation(bergwald):
    grid, scenario, lin = bergwald
    out = clear_market(grid, scenario, request_mw=1.8, linearization=lin, refine=True)
    assert out.clearing.ok and out.clearing.delivered_mw == pytest.approx(1.8, abs=1e-6)
    assert out.validation.n_violations == 0
    assert out.validation.vm_mae_pu <= 2.3e-5
    assert out.validation.loading_mae_percent <= 6.1e-3
