"""Time frames, FPU assignment and bids of the DSO scenario (stand-in grid)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optim._errors import InputError
from optim.dso.scenario import (
    BID_COLUMNS,
    Scenario,
    ScenarioConfig,
    household_load_kw,
    pv_output_kw_per_kwp,
    scenario_from_grid,
    time_frame_timestamp,
)
from test_dso_standin import standin_grid


@pytest.fixture(scope="module")
def grid():
    return standin_grid()


def test_time_frame_days():
    wd = time_frame_timestamp(ScenarioConfig(day_type="weekday", hour=7))
    we = time_frame_timestamp(ScenarioConfig(day_type="weekend", hour=7))
    assert wd.weekday() == 2 and we.weekday() == 6 and wd.hour == we.hour == 7


def test_profiles_come_from_bdew_h0_and_pvlib():
    night = household_load_kw(ScenarioConfig(hour=3))
    evening = household_load_kw(ScenarioConfig(hour=19))
    assert 0.05 < night < evening < 1.5  # kW per household, BDEW H0 at 3000 kWh/a
    assert household_load_kw(ScenarioConfig(day_type="weekend", hour=10)) != household_load_kw(
        ScenarioConfig(day_type="weekday", hour=10))
    assert pv_output_kw_per_kwp(ScenarioConfig(hour=2)) == 0.0
    noon = pv_output_kw_per_kwp(ScenarioConfig(month=6, hour=13))
    assert 0.6 < noon < 1.0  # clear sky, south roof, per kWp


def test_scenario_is_seeded(grid):
    a = scenario_from_grid(grid, ScenarioConfig())
    b = scenario_from_grid(grid, ScenarioConfig())
    c = scenario_from_grid(grid, ScenarioConfig(random_state=7))
    assert a.bids.equals(b.bids) and a.buildings.equals(b.buildings)
    assert not a.bids.equals(c.bids)


def test_bids_have_the_bid_table_format(grid):
    from optim.tso.bids import bids_from_frame

    sc = scenario_from_grid(grid, ScenarioConfig(month=6, hour=13))
    assert tuple(sc.bids.columns) == BID_COLUMNS
    table = bids_from_frame(sc.bids)
    assert table.n_bids == sc.bids.bid_id.nunique()
    assert not sc.bids.building_id.duplicated().any()  # one bid row per building
    sizes = sc.bids.groupby("bid_id").building_id.nunique()
    assert (sizes > 1).sum() >= 2  # aggregators whose bids span several buildings
    assert (sc.bids.p_mw > 0).any() and (sc.bids.p_mw < 0).any()  # upward and PV curtailment at noon
    assert set(sc.bids.fpu) <= {"pv", "battery", "ev", "heat_pump", "mixed"}
    # feeder-end batteries are offered cheaply by the first aggregator
    first = sc.bids[sc.bids.aggregator == sc.config.aggregators[0]]
    assert len(first) and first.price_eur_per_mwh.mean() < sc.bids.price_eur_per_mwh[sc.bids.p_mw > 0].mean()
    assert sc.buildings.loc[first.building_id, "feeder_end"].all()


def test_p_fix_contains_households_pv_and_scheduled_fpus(grid):
    sc = scenario_from_grid(grid, ScenarioConfig(month=6, hour=13))
    b = sc.buildings
    assert (b.p_load_mw >= b.p_household_mw - 1e-12).all()
    assert np.isclose((b.p_load_mw - b.p_household_mw).sum() * 1e3,
                      (b.ev_charging_kw + b.heat_pump_kw * b.heat_pump_on).sum())
    assert (b.p_pv_mw > 0).sum() == (b.pv_kwp > 0).sum()
    night = scenario_from_grid(grid, ScenarioConfig(month=6, hour=2))
    assert night.buildings.p_pv_mw.sum() == 0.0 and not (night.bids.fpu == "pv").any()


def test_round_trips(grid):
    sc = scenario_from_grid(grid, ScenarioConfig())
    back = Scenario.from_dict(sc.to_dict())
    assert back.config == sc.config and back.timestamp == sc.timestamp
    assert np.allclose(back.buildings.p_load_mw, sc.buildings.p_load_mw)
    assert back.bids.equals(sc.bids)
    assert ScenarioConfig.from_dict(ScenarioConfig().to_dict()) == ScenarioConfig()


@pytest.mark.parametrize("bad", [dict(day_type="holiday"), dict(hour=24), dict(hour=-1), dict(pv_share=1.5),
                                 dict(annual_kwh_per_household=float("nan"))])
def test_bad_options_are_rejected(bad):
    with pytest.raises(InputError):
        ScenarioConfig(**bad)


def test_nan_buildings_are_rejected(grid):
    g = dataclasses.replace(grid, buildings=grid.buildings.assign(households=np.nan))
    with pytest.raises(InputError, match="NaN"):
        scenario_from_grid(g)
