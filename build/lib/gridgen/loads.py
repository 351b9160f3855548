"""Households and peak loads of buildings (footprint and height, coincidence factor)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridgen._errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadConfig:
    """How buildings become loads.

    Parameters
    ----------
    storey_height_m
        Height of one storey: levels = round(height / storey_height_m).
    default_levels
        Levels assumed when the data has no height (the OSM tiles' default 3.66 m); a detached
        house in Bergwald typically has two storeys.
    usable_area_ratio
        Living area per gross floor area.
    dwelling_area_m2
        Living area of one dwelling: households = ceil(living area / dwelling_area_m2).
    household_peak_kw
        Peak of one household with heat pump and EV (pylovo uses 30 kW).
    g_inf
        Coincidence factor of infinitely many households: g(n) = g_inf + (1 - g_inf) n^(-3/4).
    cos_phi
        Power factor of the loads (inductive).
    """

    storey_height_m: float = 3.0
    default_levels: int = 2
    usable_area_ratio: float = 0.75
    dwelling_area_m2: float = 160.0
    household_peak_kw: float = 30.0
    g_inf: float = 0.07
    cos_phi: float = 0.95

    def __post_init__(self) -> None:
        positive = ("storey_height_m", "default_levels", "usable_area_ratio", "dwelling_area_m2", "household_peak_kw")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        if not 0 <= self.g_inf <= 1:
            raise ConfigError(f"g_inf must be in [0, 1], got {self.g_inf!r}")
        if not 0 < self.cos_phi <= 1:
            raise ConfigError(f"cos_phi must be in (0, 1], got {self.cos_phi!r}")


def coincidence_factor(n_households: float | np.ndarray, g_inf: float = 0.07) -> np.ndarray:
    """Return g(n) = g_inf + (1 - g_inf) n^(-3/4) (Kerber/pylovo); g(1) = 1."""
    n = np.maximum(np.asarray(n_households, dtype=float), 1.0)
    return g_inf + (1.0 - g_inf) * n ** -0.75


def households_from_buildings(buildings: pd.DataFrame, config: LoadConfig = LoadConfig()) -> pd.Series:
    """Return the number of households per building from footprint area and height."""
    levels = np.where(
        buildings["levels_known"].to_numpy(bool),
        np.maximum(1, np.round(buildings["height_m"].to_numpy(float) / config.storey_height_m)),
        config.default_levels,
    )
    living_m2 = buildings["area_m2"].to_numpy(float) * levels * config.usable_area_ratio
    households = np.maximum(1, np.ceil(living_m2 / config.dwelling_area_m2 - 1e-9)).astype(int)
    return pd.Series(households, index=buildings.index, name="households")


def coincident_peak_mw(n_households: float, config: LoadConfig = LoadConfig()) -> float:
    """Return the coincident peak (MW) of ``n_households`` households."""
    return float(n_households * config.household_peak_kw * coincidence_factor(n_households, config.g_inf) / 1000.0)
