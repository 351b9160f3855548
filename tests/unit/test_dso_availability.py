"""Time-dependent offers: EVs by charging share, heat pumps by heat demand, batteries by state of charge."""

from __future__ import annotations

import numpy as np
import pytest

from optim._errors import InputError
from optim.dso.availability import (available_units, battery_available_kw, heat_pump_duty, outdoor_temperature_c)
from optim.dso.scenario import ScenarioConfig, scenario_from_grid
from test_dso_standin import standin_grid


@pytest.fixture(scope="module")
def grid():
    return standin_grid()


def offered_kw(grid, **frame) -> dict[str, float]:
    b = scenario_from_grid(grid, ScenarioConfig(**frame)).buildings
    return {"ev": float(b.ev_charging_kw.sum()), "heat_pump": float((b.heat_pump_kw * b.heat_pump_on).sum()),
            "battery": float(b.battery_kw.sum()), "battery_rated": float(b.battery_rated_kw.sum())}


def test_ev_offers_follow_the_charging_profile_and_the_day_type(bergwald_grid):
    evening, noon = offered_kw(bergwald_grid, hour=19), offered_kw(bergwald_grid, hour=12)
    assert evening["ev"] > 2 * noon["ev"] > 0  # weekday cars are away at noon, charge after the return
    assert offered_kw(bergwald_grid, day_type="weekend", hour=12)["ev"] > noon["ev"]


def test_heat_pumps_run_by_heat_demand():
    january = heat_pump_duty(outdoor_temperature_c(ScenarioConfig().monthly_temperature_c, 1, 6, 0, 60, 4.0),
                             15.0, -12.0, 0.1)
    july = heat_pump_duty(outdoor_temperature_c(ScenarioConfig().monthly_temperature_c, 7, 15, 0, 60, 4.0),
                          15.0, -12.0, 0.1)
    assert july == pytest.approx(0.1)  # hot water only above the heating limit
    assert 0.5 < january <= 1.0
    assert heat_pump_duty(-20.0, 15.0, -12.0, 0.1) == 1.0  # below the design temperature: always on


def test_heat_pump_offers_change_with_season_and_hour(grid):
    assert offered_kw(grid, month=1, hour=6)["heat_pump"] > offered_kw(grid, month=3, hour=15)["heat_pump"]
    assert offered_kw(grid, month=3, hour=15)["heat_pump"] >= offered_kw(grid, month=7, hour=15)["heat_pump"]


def test_battery_offer_is_bounded_by_the_state_of_charge(grid):
    morning, evening = offered_kw(grid, hour=8), offered_kw(grid, hour=18)
    assert evening["battery"] == pytest.approx(evening["battery_rated"])  # charged by noon PV
    assert morning["battery"] < 0.2 * morning["battery_rated"]  # discharged overnight
    rated = np.array([10.0, 4.0])
    # 0.4 - 0.1 of 2 h: 6 kWh for a 10 kW battery; over 1 h 6 kW, over 15 min the full 10 kW
    assert battery_available_kw(rated, 0.4, 0.1, 2.0, 60) == pytest.approx([6.0, 2.4])
    assert battery_available_kw(rated, 0.4, 0.1, 2.0, 15) == pytest.approx(rated)
    assert battery_available_kw(rated, 0.05, 0.1, 2.0, 15) == pytest.approx([0.0, 0.0])


def test_units_are_drawn_with_common_random_numbers(grid):
    uniforms = np.random.default_rng(3).random((50, 4))
    n = np.random.default_rng(4).integers(0, 5, 50)
    low, high = available_units(n, 0.2, uniforms), available_units(n, 0.6, uniforms)
    assert (low <= high).all() and (high <= n).all() and high.sum() > low.sum()
    # ownership and prices do not depend on the frame: the same buildings own the same units
    a = scenario_from_grid(grid, ScenarioConfig(hour=19)).buildings
    b = scenario_from_grid(grid, ScenarioConfig(hour=3, day_type="weekend")).buildings
    assert a.n_ev.equals(b.n_ev) and a.heat_pump_kw.equals(b.heat_pump_kw) and a.pv_kwp.equals(b.pv_kwp)
    assert a.battery_rated_kw.equals(b.battery_rated_kw)


def test_bids_change_with_the_time_frame(grid):
    volumes = {(d, h): scenario_from_grid(grid, ScenarioConfig(day_type=d, hour=h)).bids.p_mw.sum()
               for d in ("weekday", "weekend") for h in (8, 12, 18)}
    assert len({round(v, 9) for v in volumes.values()}) == len(volumes)


def test_quarter_hours_of_an_hour_keep_the_hourly_availability_but_not_the_load(grid):
    q0 = scenario_from_grid(grid, ScenarioConfig(hour=18, minute=0, duration_min=15)).buildings
    q3 = scenario_from_grid(grid, ScenarioConfig(hour=18, minute=45, duration_min=15)).buildings
    assert q0.ev_charging_kw.equals(q3.ev_charging_kw)
    assert not np.allclose(q0.p_household_mw, q3.p_household_mw)


@pytest.mark.parametrize("bad", [dict(battery_soc_by_hour=(0.5,) * 23), dict(battery_soc_by_hour=(1.5,) * 24),
                                 dict(ev_charging_share_by_hour={"weekday": (0.1,) * 24}),
                                 dict(ev_charging_share_by_hour=3), dict(monthly_temperature_c=("x",) * 12),
                                 dict(battery_energy_h=0.0), dict(design_temperature_c=20.0)])
def test_bad_profiles_are_rejected_with_a_line(bad):
    with pytest.raises(InputError, match="battery|ev_charging|monthly|design"):
        ScenarioConfig(**bad)


def test_profiles_round_trip_through_json():
    import json

    config = ScenarioConfig(battery_soc_by_hour=tuple(np.linspace(0.1, 0.9, 24)))
    assert ScenarioConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
