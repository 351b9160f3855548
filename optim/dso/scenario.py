"""Time frame, flexibility-providing units (FPUs) and bids of the DSO's buildings (paper A, IV).

A **time frame** (day type and hour of a representative day of ``month``) fixes the
market-independent injections ``P_fix`` of every building:

- household load: BDEW H0 standard load profile (demandlib's dynamised ``h0_dyn``), scaled to
  ``annual_kwh_per_household`` per household, averaged over the hour; reactive power from
  ``power_factor``;
- PV output: pvlib clear-sky irradiance (Ineichen, offline) at Karlsruhe, transposed to a south
  roof (``pv_tilt_deg``), PVWatts DC model with PVsyst cell temperature and an inverter efficiency;
- scheduled FPU consumption: EV chargers that are charging in the time frame and running heat
  pumps, by the availability profiles of :mod:`optim.dso.availability` (EV charging share per
  hour and day type, heat-pump duty from the hour's outdoor temperature).

"weekday" is the Wednesday and "weekend" the Sunday of the third week of ``month`` in ``year``
(BDEW distinguishes workday, Saturday and Sunday; the Sunday profile is the weekend's lowest).

**FPUs** are assigned per building with a seeded random draw (``random_state``): PV, battery,
EV charger (per household), heat pump, with the shares of :class:`ScenarioConfig`. Buildings at the
ends of long feeders (the ``feeder_end_quantile`` farthest from their substation along the
cables) are likelier to have a battery, have larger ones, and offer it cheaply through one
aggregator ("cheap flexibility concentrated at the ends of long feeders"): a grid-blind
merit-order clearing picks them first and congests the grid.

**Reactive power of the FPUs** (``cos_phi``, per type; the Q of a unit follows its P):

- EV chargers and heat pumps: constant cos phi 0.97 inductive (consumption), so stopping ``dP`` of
  consumption raises the reactive injection by ``tan(phi) dP``;
- PV inverters: fixed cos phi 0.95 under-excited (absorbing Q while injecting P). VDE-AR-N 4105
  lets the DSO set a fixed cos phi, a cos phi(P) characteristic or Q(U); the fixed mode is chosen
  because Q then stays proportional to P, so ``tan(phi) dV/dQ`` is exact for curtailment and the
  AC validation has no kink at 50 % of the rating (cos phi(P) would need a slope per point);
- batteries: cos phi 1 (a storage inverter without a reactive mode set).

Per building the scenario stores ``q_pv_mvar`` (of ``P_fix``) and the ratios ``dq_dp_up``
(its upward offer: battery, EV, heat pump pooled by their offered kW) and ``dq_dp_down`` (PV
curtailment), reactive injection per active injection (MVAr/MW). A bid row's units are activated
pro rata, so a row's Q is its ratio times its activated P.

**Bids**: one bid row per building with upward flexibility (signed ``p_mw > 0``: battery
discharge within the energy its state of charge holds for the frame, stopping a charging EV,
switching a running heat pump off — so the offers follow the time frame and the day type); ``fpu`` names the
largest, or ``mixed``) and, for PV-only buildings, a downward bid (curtailment, ``p_mw < 0``). A
share of the buildings belongs to aggregators, which pool their buildings' rows into aggregated
bids (several buildings, one ``bid_id`` and one price per bid); the others bid directly.
Columns: ``bid_id, aggregator, building_id, p_mw, price_eur_per_mwh, fpu`` (the format of
:mod:`optim.tso.bids`).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from optim._errors import InputError
from optim.dso.availability import (BATTERY_SOC_BY_HOUR, EV_CHARGING_SHARE_BY_HOUR, MONTHLY_TEMPERATURE_C,
                                    available_units, battery_available_kw, heat_pump_duty, hourly_value,
                                    outdoor_temperature_c)

logger = logging.getLogger(__name__)

#: Karlsruhe (city centre), for pvlib.
KARLSRUHE = {"latitude": 49.0069, "longitude": 8.4037, "altitude_m": 115.0, "tz": "Europe/Berlin"}
DAY_TYPES = ("weekday", "weekend")
BID_COLUMNS = ("bid_id", "aggregator", "building_id", "p_mw", "price_eur_per_mwh", "fpu")

__all__ = ["ScenarioConfig", "Scenario", "scenario_from_grid", "time_frame_timestamp", "feeder_distance_km",
           "household_load_kw", "pv_output_kw_per_kwp", "BID_COLUMNS", "DAY_TYPES"]


def _profile(name: str, values: Any, length: int, low: float, high: float) -> tuple[float, ...]:
    """A profile option as a tuple of ``length`` finite floats within [low, high], or an InputError."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"scenario option {name} must be a list of {length} numbers") from None
    if len(out) != length or not all(np.isfinite(v) and low <= v <= high for v in out):
        raise InputError(f"scenario option {name} must be {length} numbers within [{low:g}, {high:g}]")
    return out


@dataclass(frozen=True)
class ScenarioConfig:
    """Assumptions of a scenario; frozen, seeded.

    Parameters
    ----------
    day_type, hour, month, year
        The time frame: ``"weekday"`` or ``"weekend"``, hour 0-23 (the hour starting then),
        representative day of ``month`` in ``year``.
    minute, duration_min
        Start minute within the hour (0, 15, 30, 45) and length of the frame in minutes (15, 30 or
        60; a market time unit of the balancing market is 15 minutes). Profiles are averaged over
        the frame's quarter-hours. Default: the whole hour (``minute=0, duration_min=60``).
    annual_kwh_per_household, power_factor
        H0 scaling and the loads' power factor (inductive).
    pv_share, pv_kwp_per_m2, pv_kwp_min, pv_kwp_max, pv_tilt_deg, pv_azimuth_deg, inverter_efficiency
        PV: share of buildings with PV, size from the footprint area, orientation, inverter.
    battery_share, battery_kw_per_household, battery_kw_max
        Home batteries: share of buildings, discharge power offered.
    battery_soc_by_hour, battery_energy_h, battery_soc_min
        State of charge at the start of each hour (24 values, an input of the frame), energy per
        rated power (h) and the lowest state of charge a battery discharges to.
    ev_share_per_household, ev_charger_kw, ev_charging_share_by_hour
        EVs: probability per household, charger power, share of EVs charging in each hour per day
        type (``{"weekday": 24 values, "weekend": 24 values}``).
    heat_pump_share, heat_pump_kw_per_household
        Heat pumps: share of buildings, electric power per household.
    monthly_temperature_c, temperature_amplitude_k, heating_limit_c, design_temperature_c, heat_pump_hot_water_share
        Heat-pump duty (:func:`optim.dso.availability.heat_pump_duty`): monthly mean outdoor
        temperature (12 values), half the daily swing, heating limit, design temperature (the
        heat pump runs continuously there), share running for hot water at any temperature.
    feeder_end_quantile, feeder_end_battery_share, feeder_end_battery_factor, feeder_end_price_factor
        Buildings farther from their substation than this quantile of the cable distance: their
        battery share, battery size factor and price factor (cheap flexibility at feeder ends).
    min_bid_kw
        Smaller offers are not bid (e.g. PV curtailment after sunset).
    cos_phi
        Power factor per FPU type (``battery``, ``ev``, ``heat_pump``: consumption inductive or
        generation under-excited; ``pv``: under-excited), see the module docstring.
    price_ranges_eur_per_mwh
        Uniform price range per FPU type (``pv`` is the curtailment price).
    aggregators, aggregated_share, max_buildings_per_bid
        Aggregator names (the first one takes the feeder-end batteries), share of the other
        buildings that belong to an aggregator, largest aggregated bid.
    random_state
        Seed of every random draw.
    """

    day_type: str = "weekday"
    hour: int = 18
    minute: int = 0
    duration_min: int = 60
    month: int = 3
    year: int = 2025
    annual_kwh_per_household: float = 3000.0
    power_factor: float = 0.97
    pv_share: float = 0.4
    pv_kwp_per_m2: float = 0.06
    pv_kwp_min: float = 3.0
    pv_kwp_max: float = 30.0
    pv_tilt_deg: float = 30.0
    pv_azimuth_deg: float = 180.0
    inverter_efficiency: float = 0.96
    battery_share: float = 0.3
    battery_kw_per_household: float = 4.0
    battery_kw_max: float = 30.0
    battery_soc_by_hour: tuple[float, ...] = BATTERY_SOC_BY_HOUR
    battery_energy_h: float = 2.0
    battery_soc_min: float = 0.1
    ev_share_per_household: float = 0.3
    ev_charger_kw: float = 11.0
    ev_charging_share_by_hour: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: dict(EV_CHARGING_SHARE_BY_HOUR))
    heat_pump_share: float = 0.3
    heat_pump_kw_per_household: float = 2.0
    monthly_temperature_c: tuple[float, ...] = MONTHLY_TEMPERATURE_C
    temperature_amplitude_k: float = 4.0
    heating_limit_c: float = 15.0
    design_temperature_c: float = -12.0
    heat_pump_hot_water_share: float = 0.1
    feeder_end_quantile: float = 0.7
    feeder_end_battery_share: float = 0.9
    feeder_end_battery_factor: float = 2.0
    feeder_end_price_factor: float = 0.5
    price_ranges_eur_per_mwh: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"battery": (90.0, 160.0), "ev": (70.0, 140.0), "heat_pump": (110.0, 200.0),
                                 "pv": (30.0, 80.0)}
    )
    cos_phi: dict[str, float] = field(
        default_factory=lambda: {"battery": 1.0, "ev": 0.97, "heat_pump": 0.97, "pv": 0.95}
    )
    aggregators: tuple[str, ...] = ("VoltEdge", "Stadtwerk Flex", "HomePower", "GridBee")
    aggregated_share: float = 0.5
    max_buildings_per_bid: int = 8
    min_bid_kw: float = 1.0
    random_state: int = 42

    def __post_init__(self) -> None:
        if self.day_type not in DAY_TYPES:
            raise InputError(f"day type must be one of {', '.join(DAY_TYPES)}, got {self.day_type!r}")
        if not isinstance(self.hour, (int, np.integer)) or not 0 <= int(self.hour) <= 23:
            raise InputError(f"hour must be an integer from 0 to 23, got {self.hour!r}")
        if not isinstance(self.minute, (int, np.integer)) or int(self.minute) not in (0, 15, 30, 45):
            raise InputError(f"minute must be 0, 15, 30 or 45, got {self.minute!r}")
        if not isinstance(self.duration_min, (int, np.integer)) or int(self.duration_min) not in (15, 30, 60):
            raise InputError(f"duration_min must be 15, 30 or 60, got {self.duration_min!r}")
        if int(self.minute) + int(self.duration_min) > 60:
            raise InputError(f"a time frame stays within its hour: {self.minute} + {self.duration_min} min > 60")
        if not 1 <= int(self.month) <= 12:
            raise InputError(f"month must be 1..12, got {self.month!r}")
        for name, value in asdict(self).items():
            if isinstance(value, float) and not np.isfinite(value):
                raise InputError(f"scenario option {name} must be finite, got {value!r}")
        for name in ("pv_share", "battery_share", "ev_share_per_household", "heat_pump_share", "battery_soc_min",
                     "heat_pump_hot_water_share", "feeder_end_quantile", "feeder_end_battery_share",
                     "aggregated_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"scenario option {name} must be within [0, 1]")
        object.__setattr__(self, "battery_soc_by_hour",
                           _profile("battery_soc_by_hour", self.battery_soc_by_hour, 24, 0.0, 1.0))
        object.__setattr__(self, "monthly_temperature_c",
                           _profile("monthly_temperature_c", self.monthly_temperature_c, 12, -60.0, 60.0))
        try:
            ev = dict(self.ev_charging_share_by_hour)
        except (TypeError, ValueError):
            raise InputError("ev_charging_share_by_hour must map each day type to 24 shares") from None
        if set(ev) != set(DAY_TYPES):
            raise InputError(f"ev_charging_share_by_hour needs one profile per day type ({', '.join(DAY_TYPES)})")
        object.__setattr__(self, "ev_charging_share_by_hour",
                           {k: _profile(f"ev_charging_share_by_hour[{k!r}]", ev[k], 24, 0.0, 1.0) for k in DAY_TYPES})
        if not self.battery_energy_h > 0:
            raise InputError("battery_energy_h must be positive (hours of rated power the battery holds)")
        if not self.design_temperature_c < self.heating_limit_c:
            raise InputError("design_temperature_c must be below heating_limit_c")
        if not self.aggregators:
            raise InputError("at least one aggregator is needed")
        object.__setattr__(self, "price_ranges_eur_per_mwh",
                           {k: (float(v[0]), float(v[1])) for k, v in dict(self.price_ranges_eur_per_mwh).items()})
        object.__setattr__(self, "aggregators", tuple(self.aggregators))
        cos_phi = {str(k): float(v) for k, v in dict(self.cos_phi).items()}
        for kind in ("battery", "ev", "heat_pump", "pv"):
            if kind not in cos_phi or not 0.0 < cos_phi[kind] <= 1.0:
                raise InputError(f"cos_phi[{kind!r}] must be within (0, 1], got {cos_phi.get(kind)!r}")
        object.__setattr__(self, "cos_phi", cos_phi)

    def __hash__(self) -> int:  # the dict field is not hashable; hash the JSON form
        return hash(tuple(sorted((k, repr(v)) for k, v in self.to_dict().items())))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["price_ranges_eur_per_mwh"] = {k: list(v) for k, v in self.price_ranges_eur_per_mwh.items()}
        data["aggregators"] = list(self.aggregators)
        data["cos_phi"] = dict(self.cos_phi)
        data["battery_soc_by_hour"] = list(self.battery_soc_by_hour)
        data["monthly_temperature_c"] = list(self.monthly_temperature_c)
        data["ev_charging_share_by_hour"] = {k: list(v) for k, v in self.ev_charging_share_by_hour.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScenarioConfig":
        data = dict(data)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown scenario option(s): {sorted(unknown)}")
        if "price_ranges_eur_per_mwh" in data:
            data["price_ranges_eur_per_mwh"] = {k: tuple(v) for k, v in data["price_ranges_eur_per_mwh"].items()}
        if "aggregators" in data:
            data["aggregators"] = tuple(data["aggregators"])
        return cls(**data)

    def with_time_frame(self, *, day_type: str | None = None, hour: int | None = None, minute: int | None = None,
                        duration_min: int | None = None) -> "ScenarioConfig":
        """Return a copy with another day type, hour, start minute and/or duration."""
        changes = (("day_type", day_type), ("hour", hour), ("minute", minute), ("duration_min", duration_min))
        return replace(self, **{k: v for k, v in changes if v is not None})

    @property
    def start(self) -> str:
        """Start of the time frame as ``HH:MM``."""
        return f"{int(self.hour):02d}:{int(self.minute):02d}"


@dataclass(frozen=True)
class Scenario:
    """A time frame's ``P_fix``, FPUs and bids for one grid.

    Attributes
    ----------
    config
        The assumptions.
    timestamp
        Start of the time frame (ISO, local time of Karlsruhe).
    buildings
        Index ``building_id``; columns ``bus``, ``households``, ``feeder_km``, ``feeder_end``,
        ``p_load_mw``, ``q_load_mvar`` (household load plus scheduled FPU consumption),
        ``p_household_mw``, ``p_pv_mw``, ``q_pv_mvar``, ``dq_dp_up``, ``dq_dp_down``, ``pv_kwp``, ``battery_kw``, ``n_ev``, ``ev_charging_kw``,
        ``heat_pump_kw``, ``heat_pump_on``.
    bids
        The bid table (:data:`BID_COLUMNS`), one row per building that bids.
    """

    config: ScenarioConfig
    timestamp: str
    buildings: pd.DataFrame
    bids: pd.DataFrame

    @property
    def time_frame(self) -> dict[str, Any]:
        """Day type, hour, timestamp and the full config (for the DSO key)."""
        return {"day_type": self.config.day_type, "hour": int(self.config.hour), "start": self.config.start,
                "duration_min": int(self.config.duration_min), "timestamp": self.timestamp,
                "scenario": self.config.to_dict()}

    def summary(self) -> dict[str, Any]:
        """Totals of the time frame (MW) and counts."""
        b, bids = self.buildings, self.bids
        return {
            "timestamp": self.timestamp,
            "buildings": int(len(b)),
            "load_mw": float(b.p_load_mw.sum()),
            "pv_mw": float(b.p_pv_mw.sum()),
            "bids": int(bids.bid_id.nunique()),
            "bid_rows": int(len(bids)),
            "offered_up_mw": float(bids.p_mw[bids.p_mw > 0].sum()),
            "offered_down_mw": float(bids.p_mw[bids.p_mw < 0].sum()),
            "aggregated_bids": int((bids.groupby("bid_id").size() > 1).sum()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "timestamp": self.timestamp,
            "buildings": self.buildings.reset_index().to_dict(orient="list"),
            "bids": self.bids.to_dict(orient="list"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scenario":
        try:
            buildings = pd.DataFrame(data["buildings"]).set_index("building_id")
            buildings.index = buildings.index.astype(str)
            return cls(config=ScenarioConfig.from_dict(data["config"]), timestamp=str(data["timestamp"]),
                       buildings=buildings, bids=pd.DataFrame(data["bids"], columns=list(BID_COLUMNS)))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"malformed scenario: {exc}") from exc


def time_frame_timestamp(config: ScenarioConfig) -> pd.Timestamp:
    """Start of the time frame: Wednesday (weekday) or Sunday (weekend) of the month's third week."""
    first = dt.date(int(config.year), int(config.month), 15)
    target = 2 if config.day_type == "weekday" else 6  # Mon=0: Wednesday / Sunday
    day = first + dt.timedelta(days=(target - first.weekday()) % 7)
    return pd.Timestamp(dt.datetime(day.year, day.month, day.day, int(config.hour), int(config.minute)))


@functools.lru_cache(maxsize=4)
def _h0_profile_kw(year: int, annual_kwh: float) -> pd.Series:
    """The year's BDEW H0 profile (kW per quarter-hour), kept in the private cache: demandlib's
    import and the year's profile cost about a second per fresh process, the stored series 5 ms."""
    from optim.private_cache import stored

    def build() -> pd.Series:
        from demandlib import bdew

        slp = bdew.ElecSlp(year)
        return slp.get_scaled_power_profiles({"h0_dyn": annual_kwh})["h0_dyn"]

    return stored("profiles", f"h0-{int(year)}-{float(annual_kwh)!r}", build)


def household_load_kw(config: ScenarioConfig) -> float:
    """Mean household load (kW) of the BDEW H0 profile over the time frame's quarter-hours (demandlib)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = _h0_profile_kw(int(config.year), float(config.annual_kwh_per_household))
    start = time_frame_timestamp(config)
    window = profile.loc[start : start + pd.Timedelta(minutes=int(config.duration_min) - 15)]
    value = float(window.mean())
    logger.info("household load at %s: %.3f kW (BDEW H0, %g kWh/a)", start, value, config.annual_kwh_per_household)
    return value


def pv_output_kw_per_kwp(config: ScenarioConfig) -> float:
    """Mean AC output per kWp over the time frame's quarter-hours: pvlib clear sky at Karlsruhe, PVWatts."""
    start = time_frame_timestamp(config)
    first = (int(config.hour) * 60 + int(config.minute)) // 15
    day = _pv_day_kw_per_kwp(start.strftime("%Y-%m-%d"), int(config.month), float(config.pv_tilt_deg),
                             float(config.pv_azimuth_deg), float(config.inverter_efficiency))
    value = float(day[first:first + int(config.duration_min) // 15].mean())
    logger.info("PV output at %s: %.3f kW/kWp (clear sky)", start, value)
    return value


@functools.lru_cache(maxsize=8)
def _pv_day_kw_per_kwp(day: str, month: int, tilt_deg: float, azimuth_deg: float, inverter_efficiency: float) -> np.ndarray:
    """AC output per kWp at the middle of each of the day's 96 quarter-hours (pvlib clear sky, PVWatts).

    Every pvlib step is element-wise in time, so a frame's mean over its quarter-hours is the same
    as computing those alone. Kept in the private cache: pvlib's import costs about 1.5 s per
    fresh process, the stored day 5 ms, and every time frame of the day reads it.
    """
    from optim.private_cache import stored

    def build() -> np.ndarray:
        import pvlib

        loc = pvlib.location.Location(KARLSRUHE["latitude"], KARLSRUHE["longitude"], tz=KARLSRUHE["tz"],
                                      altitude=KARLSRUHE["altitude_m"])
        naive = pd.date_range(pd.Timestamp(day), periods=96, freq="15min")
        times = naive.tz_localize(KARLSRUHE["tz"], nonexistent="shift_forward", ambiguous=False) + pd.Timedelta(minutes=7.5)
        clear = loc.get_clearsky(times, model="ineichen")
        sun = loc.get_solarposition(times)
        poa = pvlib.irradiance.get_total_irradiance(tilt_deg, azimuth_deg, sun.apparent_zenith, sun.azimuth,
                                                    clear.dni, clear.ghi, clear.dhi)["poa_global"].fillna(0.0)
        t_air = 5.0 + 15.0 * np.sin(np.pi * (month - 4) / 6.0) ** 2 if 4 <= month <= 10 else 5.0
        t_cell = pvlib.temperature.pvsyst_cell(poa, temp_air=t_air)
        dc = pvlib.pvsystem.pvwatts_dc(poa, t_cell, pdc0=1.0, gamma_pdc=-0.004)
        return np.clip(np.asarray(dc, dtype=float) * inverter_efficiency, 0.0, None)

    name = f"pv-{day}-{month}-{tilt_deg!r}-{azimuth_deg!r}-{inverter_efficiency!r}-{KARLSRUHE['latitude']!r}-{KARLSRUHE['longitude']!r}"
    return stored("profiles", name, build)


def feeder_distance_km(grid: Any) -> pd.Series:
    """Cable distance (km) of each building's bus from its substation's LV busbar.

    Shortest path along in-service lines below the transformers (networkx, Dijkstra), so a large
    value marks the end of a long feeder. Buildings not reached get the largest finite distance.
    """
    from optim.dso.compiled_grid import compiled

    # the grid file's alone: kept with the compiled grid (no pandapower import for a known grid)
    return compiled(grid, "feeder-km", lambda: _feeder_distance_km(grid))


def _feeder_distance_km(grid: Any) -> pd.Series:
    import networkx as nx
    import pandapower.topology as top

    net = grid.net
    graph = top.create_nxgraph(net, respect_switches=True, include_trafos=False, calc_branch_impedances=False)
    lv_sources = [int(b) for b in net.trafo.lv_bus[net.trafo.in_service]]
    if not lv_sources:
        raise InputError("the grid has no in-service transformer")
    dist = nx.multi_source_dijkstra_path_length(graph, lv_sources, weight="weight")
    values = grid.buildings.bus.astype(int).map(lambda b: dist.get(b, np.nan))
    finite = values[np.isfinite(values)]
    values = values.fillna(float(finite.max()) if len(finite) else 0.0)
    logger.info("feeder distances: %d buildings, max %.3f km", len(values), float(values.max()))
    return values.astype(float)


def _price(rng: np.random.Generator, config: ScenarioConfig, fpu: str) -> float:
    low, high = config.price_ranges_eur_per_mwh.get(fpu, config.price_ranges_eur_per_mwh.get("battery", (50.0, 150.0)))
    return float(rng.uniform(low, high))


def scenario_from_grid(grid: Any, config: ScenarioConfig = ScenarioConfig()) -> Scenario:
    """Build the time frame's ``P_fix``, the FPU assignment and the bids of every building.

    Parameters
    ----------
    grid
        :class:`gridgen.grid.Grid` (``buildings`` with ``bus``, ``households``, ``area_m2``).
    config
        Assumptions and seed.

    Returns
    -------
    Scenario
        Deterministic for a given grid and config.
    """
    b = grid.buildings
    for col in ("bus", "households", "area_m2"):
        if col not in b:
            raise InputError(f"the grid's building table has no column {col!r}")
    n = len(b)
    if n == 0:
        raise InputError("the grid has no buildings")
    households = pd.to_numeric(b.households, errors="coerce").to_numpy(dtype=float)
    area = pd.to_numeric(b.area_m2, errors="coerce").to_numpy(dtype=float)
    if not (np.all(np.isfinite(households)) and np.all(np.isfinite(area))):
        raise InputError("the building table has NaN households or area")
    households = np.maximum(households, 1.0)
    rng = np.random.default_rng(config.random_state)

    feeder_km = feeder_distance_km(grid).reindex(b.index).to_numpy()
    threshold = float(np.quantile(feeder_km, config.feeder_end_quantile)) if n > 1 else np.inf
    at_end = feeder_km > threshold

    # --- FPUs (seeded) ---------------------------------------------------------------------
    has_pv = rng.random(n) < config.pv_share
    pv_kwp = np.where(has_pv, np.clip(config.pv_kwp_per_m2 * area, config.pv_kwp_min, config.pv_kwp_max), 0.0)
    battery_p = np.where(at_end, config.feeder_end_battery_share, config.battery_share)
    has_battery = rng.random(n) < battery_p
    battery_kw = np.minimum(config.battery_kw_per_household * households
                            * np.where(at_end, config.feeder_end_battery_factor, 1.0), config.battery_kw_max)
    battery_kw = np.where(has_battery, battery_kw, 0.0)
    n_ev = rng.binomial(households.astype(int), config.ev_share_per_household)
    has_hp = rng.random(n) < config.heat_pump_share
    hp_kw = np.where(has_hp, config.heat_pump_kw_per_household * households, 0.0)

    # --- availability in the time frame (common random numbers: a stream of its own, the same
    # for every frame, so ownership and prices never depend on the frame) -----------------------
    frame_rng = np.random.default_rng([int(config.random_state), 1])
    ev_uniforms = frame_rng.random((n, int(n_ev.max(initial=0))))
    hp_uniforms = frame_rng.random(n)
    ev_share = hourly_value(config.ev_charging_share_by_hour[config.day_type], config.hour)
    ev_kw = available_units(n_ev, ev_share, ev_uniforms) * config.ev_charger_kw
    temperature_c = outdoor_temperature_c(config.monthly_temperature_c, config.month, config.hour, config.minute,
                                          config.duration_min, config.temperature_amplitude_k)
    duty = heat_pump_duty(temperature_c, config.heating_limit_c, config.design_temperature_c,
                          config.heat_pump_hot_water_share)
    hp_on = has_hp & (hp_uniforms < duty)
    hp_on_kw = np.where(hp_on, hp_kw, 0.0)
    battery_rated_kw = battery_kw
    battery_kw = battery_available_kw(battery_rated_kw, hourly_value(config.battery_soc_by_hour, config.hour),
                                      config.battery_soc_min, config.battery_energy_h, config.duration_min)

    # --- P_fix of the time frame -----------------------------------------------------------
    h0_kw = household_load_kw(config)
    pv_per_kwp = pv_output_kw_per_kwp(config)
    p_household_kw = h0_kw * households
    p_load_kw = p_household_kw + ev_kw + hp_on_kw
    tan_phi = float(np.tan(np.arccos(config.power_factor)))
    p_pv_kw = pv_kwp * pv_per_kwp
    tan_of = {kind: float(np.tan(np.arccos(c))) for kind, c in config.cos_phi.items()}
    up_kw = battery_kw + ev_kw + hp_on_kw
    with np.errstate(invalid="ignore", divide="ignore"):
        # battery discharge is generation (under-excited: -tan); stopping EV or heat-pump consumption
        # lowers the inductive load (+tan)
        dq_dp_up = np.where(up_kw > 0, (-tan_of["battery"] * battery_kw + tan_of["ev"] * ev_kw
                                        + tan_of["heat_pump"] * hp_on_kw) / np.where(up_kw > 0, up_kw, 1.0), 0.0)

    frame = pd.DataFrame(
        {
            "bus": b.bus.astype(int).to_numpy(),
            "households": households.astype(int),
            "feeder_km": feeder_km,
            "feeder_end": at_end,
            "p_household_mw": p_household_kw / 1e3,
            "p_load_mw": p_load_kw / 1e3,
            "q_load_mvar": (p_household_kw * tan_phi + ev_kw * tan_of["ev"] + hp_on_kw * tan_of["heat_pump"]) / 1e3,
            "pv_kwp": pv_kwp,
            "p_pv_mw": p_pv_kw / 1e3,
            "q_pv_mvar": -tan_of["pv"] * p_pv_kw / 1e3,
            "dq_dp_up": dq_dp_up,
            "dq_dp_down": np.full(n, -tan_of["pv"]),
            "battery_rated_kw": battery_rated_kw,
            "battery_kw": battery_kw,
            "n_ev": n_ev,
            "ev_charging_kw": ev_kw,
            "heat_pump_kw": hp_kw,
            "heat_pump_on": hp_on,
        },
        index=b.index.astype(str),
    )
    frame.index.name = "building_id"

    # --- one bid row per building ------------------------------------------------------------
    rows = []
    for k, bid_building in enumerate(frame.index):
        parts = {"battery": battery_kw[k], "ev": ev_kw[k], "heat_pump": hp_on_kw[k]}
        up_kw = sum(parts.values())
        if up_kw >= config.min_bid_kw:
            fpu = max(parts, key=parts.get) if sum(v > 0 for v in parts.values()) == 1 else "mixed"
            main = max(parts, key=parts.get)
            price = _price(rng, config, main)
            if at_end[k] and battery_kw[k] > 0:
                price *= config.feeder_end_price_factor
            rows.append({"building_id": bid_building, "p_mw": up_kw / 1e3, "price": price, "fpu": fpu,
                         "end_battery": bool(at_end[k] and battery_kw[k] > 0)})
        elif p_pv_kw[k] >= config.min_bid_kw:
            rows.append({"building_id": bid_building, "p_mw": -p_pv_kw[k] / 1e3, "price": _price(rng, config, "pv"),
                         "fpu": "pv", "end_battery": False})
    if not rows:
        raise InputError("the scenario gives no building any flexibility; raise the FPU shares")
    raw = pd.DataFrame(rows)

    # --- aggregators: the first pools the feeder-end batteries, others a random share ---------
    agg = np.full(len(raw), "", dtype=object)
    agg[raw.end_battery.to_numpy()] = config.aggregators[0]
    others = ~raw.end_battery.to_numpy()
    joins = others & (rng.random(len(raw)) < config.aggregated_share)
    if len(config.aggregators) > 1:
        agg[joins] = rng.choice(np.array(config.aggregators[1:], dtype=object), size=int(joins.sum()))
    else:
        agg[joins] = config.aggregators[0]
    raw["aggregator"] = agg
    raw["substation"] = b.substation.reindex(raw.building_id).to_numpy() if "substation" in b else 0
    raw["sign"] = np.sign(raw.p_mw)

    bid_rows = []
    counter = 0
    direct = raw[raw.aggregator == ""]
    pooled = raw[raw.aggregator != ""]
    for (aggregator, _sub, _sign), group in pooled.groupby(["aggregator", "substation", "sign"], sort=True):
        group = group.sort_values("building_id")
        for start in range(0, len(group), config.max_buildings_per_bid):
            chunk = group.iloc[start : start + config.max_buildings_per_bid]
            counter += 1
            price = float(np.average(chunk.price, weights=np.abs(chunk.p_mw)))
            for _, r in chunk.iterrows():
                bid_rows.append({"bid_id": f"A{counter:04d}", "aggregator": aggregator, "building_id": r.building_id,
                                 "p_mw": float(r.p_mw), "price_eur_per_mwh": round(price, 2), "fpu": r.fpu})
    for _, r in direct.sort_values("building_id").iterrows():
        counter += 1
        bid_rows.append({"bid_id": f"D{counter:04d}", "aggregator": f"prosumer {r.building_id}",
                         "building_id": r.building_id, "p_mw": float(r.p_mw),
                         "price_eur_per_mwh": round(float(r.price), 2), "fpu": r.fpu})
    bids = pd.DataFrame(bid_rows, columns=list(BID_COLUMNS))
    bids["p_mw"] = bids.p_mw.round(9)
    scenario = Scenario(config=config, timestamp=time_frame_timestamp(config).isoformat(), buildings=frame, bids=bids)
    s = scenario.summary()
    logger.info("scenario %s: load %.3f MW, PV %.3f MW, %d bids (%d aggregated), %.3f MW up / %.3f MW down offered",
                s["timestamp"], s["load_mw"], s["pv_mw"], s["bids"], s["aggregated_bids"], s["offered_up_mw"],
                s["offered_down_mw"])
    return scenario
