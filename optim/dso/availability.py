"""When the flexibility-providing units can offer: availability of EVs, heat pumps and batteries.

A time frame's upward offer is what its units can stop or start *in that frame*, so the offer
follows the units' schedules (issue: "the upward offers ignore the time frame"):

- **EV chargers** offer to stop charging only while an EV is plugged in and charging. The share of
  EVs charging is an hourly profile per day type (:data:`EV_CHARGING_SHARE_BY_HOUR`), shaped like
  uncontrolled home charging: cars leave on weekday mornings and charge after the evening return,
  so the weekday profile peaks at 18-20 h; on weekends charging is spread over the day with a
  lower evening peak. The figures are this project's assumptions (configurable in
  :class:`optim.dso.scenario.ScenarioConfig`), not measured data.
- **Heat pumps** offer to switch off only while they run. Their duty (share of heat pumps running)
  follows the heat demand of the hour: a degree-hour model with the outdoor temperature
  ``T(h) = T_month + A cos(2 pi (h - 15) / 24)`` (daily maximum at 15 h, minimum at 3 h),
  space-heating share ``clip((T_limit - T) / (T_limit - T_design), 0, 1)`` of a heat pump sized
  to run continuously at the design temperature, plus a domestic-hot-water share that runs at any
  temperature. Monthly means are rounded long-term means for Karlsruhe (about 2 degC in January,
  20 degC in July).
- **Batteries** offer discharge power limited by the energy they hold: the state of charge at the
  start of the frame is an *input* of the time frame (an hourly profile, default a PV
  self-consumption cycle: charged by the roof PV around noon, discharged in the evening and
  night), not simulated from frame to frame, so every frame stays independent (the market-day
  units run in parallel). Offered power ``min(P_rated, (SoC - SoC_min) E / t_frame)`` with
  ``E = battery_energy_h * P_rated``.
- **PV curtailment** follows the irradiance of the frame (pvlib, in :mod:`optim.dso.scenario`).

Which unit is available is drawn with *common random numbers*: every EV and every heat pump
gets one uniform number from a stream seeded by the scenario's ``random_state`` (independent of
the time frame), and is available when that number is below the frame's share. A unit charging at
a share of 20 % is therefore also charging at 25 %, and neighbouring frames differ only by the
units whose threshold lies between their shares, as a real fleet does; the ownership draws
(who has PV, a battery, an EV, a heat pump) do not depend on the frame at all.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EV_CHARGING_SHARE_BY_HOUR", "BATTERY_SOC_BY_HOUR", "MONTHLY_TEMPERATURE_C", "hourly_value",
           "outdoor_temperature_c", "heat_pump_duty", "battery_available_kw", "available_units"]

#: Share of EVs charging at home in each hour (0-23), per day type.
EV_CHARGING_SHARE_BY_HOUR: dict[str, tuple[float, ...]] = {
    "weekday": (0.12, 0.09, 0.06, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02, 0.03, 0.03,
                0.04, 0.04, 0.05, 0.07, 0.11, 0.17, 0.25, 0.27, 0.24, 0.20, 0.17, 0.14),
    "weekend": (0.12, 0.09, 0.06, 0.04, 0.03, 0.02, 0.02, 0.02, 0.03, 0.05, 0.07, 0.08,
                0.09, 0.09, 0.09, 0.10, 0.12, 0.15, 0.19, 0.21, 0.19, 0.16, 0.14, 0.13),
}

#: State of charge of a home battery at the start of each hour (0-23): PV self-consumption cycle.
BATTERY_SOC_BY_HOUR: tuple[float, ...] = (0.38, 0.34, 0.30, 0.27, 0.24, 0.21, 0.18, 0.15, 0.12, 0.12, 0.18, 0.28,
                                          0.40, 0.52, 0.63, 0.72, 0.78, 0.80, 0.75, 0.66, 0.57, 0.50, 0.45, 0.41)

#: Monthly mean outdoor temperature (degC), January to December, Karlsruhe (rounded long-term means).
MONTHLY_TEMPERATURE_C: tuple[float, ...] = (2.4, 3.6, 7.4, 11.2, 15.3, 18.7, 20.6, 20.1, 15.9, 11.3, 6.3, 3.1)


def hourly_value(profile: tuple[float, ...] | list[float], hour: int) -> float:
    """The value of a 24-entry hourly profile for the hour starting at ``hour`` (piecewise constant)."""
    return float(profile[int(hour) % 24])


def outdoor_temperature_c(monthly_c: tuple[float, ...] | list[float], month: int, hour: int, minute: int,
                          duration_min: int, amplitude_k: float) -> float:
    """Mean outdoor temperature (degC) over the frame: monthly mean plus a cosine day cycle.

    Evaluated at the midpoints of the frame's quarter-hours and averaged.
    """
    start_h = int(hour) + int(minute) / 60.0
    mids_h = start_h + (np.arange(int(duration_min) // 15) * 15 + 7.5) / 60.0
    cycle = np.cos(2.0 * np.pi * (mids_h - 15.0) / 24.0)
    return float(monthly_c[int(month) - 1] + amplitude_k * cycle.mean())


def heat_pump_duty(temperature_c: float, heating_limit_c: float, design_temperature_c: float,
                   hot_water_share: float) -> float:
    """Share of heat pumps running: space heating by degree-hours plus domestic hot water, within [0, 1]."""
    heating = np.clip((heating_limit_c - temperature_c) / (heating_limit_c - design_temperature_c), 0.0, 1.0)
    return float(np.clip(hot_water_share + (1.0 - hot_water_share) * heating, 0.0, 1.0))


def battery_available_kw(rated_kw: np.ndarray, soc: float, soc_min: float, energy_h: float,
                         duration_min: int) -> np.ndarray:
    """Discharge power each battery can hold over the whole frame (kW), ``min(P, (SoC - SoC_min) E / t)``."""
    usable_kwh = max(float(soc) - float(soc_min), 0.0) * float(energy_h) * rated_kw
    return np.minimum(rated_kw, usable_kwh / (int(duration_min) / 60.0))


def available_units(n_units: np.ndarray, share: float, uniforms: np.ndarray) -> np.ndarray:
    """Per building, how many of its ``n_units`` units are available at ``share`` (common random numbers).

    Parameters
    ----------
    n_units
        Units per building (integers).
    share
        The frame's share of available units, within [0, 1].
    uniforms
        One uniform number per unit slot, shape ``(buildings, >= max(n_units))``, drawn once per
        scenario independently of the frame.

    Returns
    -------
    numpy.ndarray
        Integer count per building, ``0 <= count <= n_units``.
    """
    n_units = np.asarray(n_units, dtype=int)
    if uniforms.shape[1] == 0:
        return np.zeros(len(n_units), dtype=int)
    slot = np.arange(uniforms.shape[1])[None, :] < n_units[:, None]
    return ((uniforms < share) & slot).sum(axis=1).astype(int)
