"""20/0.4 kV substations: how many, where (k-means, seeded), which transformer."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from gridgen._errors import ConfigError, InputDataError
from gridgen.loads import LoadConfig, coincident_peak_mw

log = logging.getLogger(__name__)

TRAFO_SERIES_KVA: tuple[int, ...] = (250, 400, 630)
KMEANS_WORKERS = 2  # candidate k fitted at once (the target machine has two cores)
TRAFO_STD_TYPE = {250: "0.25 MVA 20/0.4 kV", 400: "0.4 MVA 20/0.4 kV", 630: "0.63 MVA 20/0.4 kV"}


@dataclass(frozen=True)
class SubstationConfig:
    """Substation placement and sizing.

    Parameters
    ----------
    n_substations
        Fixed number of substations, or None to derive it from capacity.
    planning_rating_kva
        Transformer size the count is planned with: k >= total coincident peak divided by
        ``planning_rating_kva * cos_phi * utilisation_cap``.
    utilisation_cap
        Share of the rating the coincident peak may use at planning (reserve for growth and for
        flexibility activation).
    max_utilisation
        A cluster whose peak exceeds this share of the largest standard transformer raises k.
    max_radius_m
        A cluster with a building farther than this (straight line) from its load-weighted centre
        raises k too: otherwise k-means can put two settlements a kilometre apart behind one
        transformer, and the 0.4 kV feeder between them cannot hold the voltage.
    """

    n_substations: int | None = None
    planning_rating_kva: int = 630
    utilisation_cap: float = 0.6
    max_utilisation: float = 0.8
    max_substations: int = 200
    max_radius_m: float = 400.0

    def __post_init__(self) -> None:
        if self.n_substations is not None and not (1 <= self.n_substations <= self.max_substations):
            raise ConfigError(f"n_substations must be between 1 and {self.max_substations}, got {self.n_substations}")
        if self.planning_rating_kva not in TRAFO_SERIES_KVA:
            raise ConfigError(f"planning_rating_kva must be one of {TRAFO_SERIES_KVA}, got {self.planning_rating_kva}")
        for name in ("utilisation_cap", "max_utilisation"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if not (math.isfinite(self.max_radius_m) and self.max_radius_m > 0):
            raise ConfigError(f"max_radius_m must be > 0, got {self.max_radius_m}")


def clusters_from_buildings(
    buildings: pd.DataFrame,
    *,
    config: SubstationConfig = SubstationConfig(),
    loads: LoadConfig = LoadConfig(),
    random_state: int = 0,
) -> np.ndarray:
    """Return the k-means label of every building.

    The count is ``config.n_substations``, or the smallest k from the planning capacity (see
    :class:`SubstationConfig`) for which every cluster fits the largest standard transformer.
    """
    xy = buildings[["x", "y"]].to_numpy(float)
    households = buildings["households"].to_numpy(float)
    cap_mw = config.planning_rating_kva / 1000.0 * loads.cos_phi * config.utilisation_cap
    max_peak_mw = TRAFO_SERIES_KVA[-1] / 1000.0 * loads.cos_phi * config.max_utilisation
    k_lower = max(1, math.ceil(coincident_peak_mw(households.sum(), loads) / cap_mw), _k_for_largest_cluster(households, loads, max_peak_mw))
    k_lower = min(k_lower, config.max_substations)
    candidates = [config.n_substations] if config.n_substations else range(k_lower, config.max_substations + 1)
    with threadpool_limits(1):  # OpenMP threads make small fits several times slower on a shared machine
        labels, k = _first_fitting_kmeans(xy, households, candidates, config, loads, random_state, max_peak_mw)
    labels = _west_to_east(xy, labels, k)
    log.info("clusters_from_buildings: %d substations for %d buildings", k, len(buildings))
    return labels


def _first_fitting_kmeans(xy, households, candidates, config, loads, random_state, max_peak_mw) -> tuple[np.ndarray, int]:
    """Return the labels and k of the first candidate k whose k-means clusters fit (or the last one).

    Candidates are fitted two at a time in threads (scikit-learn's k-means releases the GIL in its
    compiled loops; each fit is seeded, single-threaded and independent of the other), then judged
    in order: the answer is the one a loop over the candidates gives, in about half the time on a
    large area (the whole shared file tries 35 values of k).
    """
    from concurrent.futures import ThreadPoolExecutor

    def fit(k: int) -> np.ndarray:
        with threadpool_limits(1):  # per thread: OpenMP's thread count is a per-thread setting
            return KMeans(n_clusters=k, n_init=10, random_state=random_state).fit(xy, sample_weight=households).labels_

    candidates = list(candidates)
    labels, k = None, None
    with ThreadPoolExecutor(max_workers=KMEANS_WORKERS) as pool:
        for start in range(0, len(candidates), KMEANS_WORKERS):
            batch = candidates[start : start + KMEANS_WORKERS]
            fits = {c: pool.submit(fit, c) for c in batch if c <= len(xy)}
            for k in batch:
                if k > len(xy):
                    raise InputDataError(f"{k} substations for {len(xy)} buildings is too many")
                labels = fits[k].result()
                if config.n_substations:
                    return labels, k
                peaks = [coincident_peak_mw(households[labels == c].sum(), loads) for c in range(k)]
                if max(peaks) <= max_peak_mw and _max_radius_m(xy, households, labels, k) <= config.max_radius_m:
                    return labels, k
    return labels, k


def _west_to_east(xy: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Relabel clusters west->east so ids do not depend on k-means' internal order."""
    centres = np.array([xy[labels == c].mean(axis=0) for c in range(k)])
    order = np.lexsort((centres[:, 1], centres[:, 0]))
    relabel = np.empty(k, dtype=int)
    relabel[order] = np.arange(k)
    return relabel[labels]


def split_clusters(buildings: pd.DataFrame, labels: np.ndarray, clusters, *, random_state: int = 0) -> np.ndarray:
    """Return labels with each of ``clusters`` split in two by k-means (seeded), relabelled west->east.

    Used when a cluster's feeders would exceed the feeder length limit along the streets.
    """
    xy = buildings[["x", "y"]].to_numpy(float)
    households = buildings["households"].to_numpy(float)
    labels = np.asarray(labels, dtype=int).copy()
    k = int(labels.max()) + 1
    with threadpool_limits(1):
        for c in sorted(clusters):
            member = np.flatnonzero(labels == c)
            if len(member) < 2:
                continue
            halves = KMeans(n_clusters=2, n_init=10, random_state=random_state).fit(xy[member], sample_weight=households[member]).labels_
            labels[member[halves == 1]] = k
            k += 1
    return _west_to_east(xy, labels, k)


def _k_for_largest_cluster(households: np.ndarray, loads: LoadConfig, max_peak_mw: float) -> int:
    """Return the smallest k for which the largest of k clusters can fit ``max_peak_mw``.

    The largest of k clusters has at least N/k households and the coincident peak grows with the
    households, so every smaller k fails the capacity test: the search starts here instead of
    fitting k-means for each of them (the whole shared file: about 40 fits saved).
    """
    total = int(round(households.sum()))
    n_max = 0
    while n_max < total and coincident_peak_mw(float(n_max + 1), loads) <= max_peak_mw:
        n_max += 1
    return max(1, math.ceil(total / n_max)) if n_max else 1


def _max_radius_m(xy: np.ndarray, households: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Return the largest distance of a building from its cluster's load-weighted centre."""
    radius = 0.0
    for c in range(k):
        member = labels == c
        w = households[member]
        centre = (xy[member] * w[:, None]).sum(axis=0) / w.sum()
        radius = max(radius, float(np.hypot(*(xy[member] - centre).T).max()))
    return radius


def substation_nodes(streets: nx.Graph, buildings: pd.DataFrame, labels: np.ndarray) -> list:
    """Return the street node of each cluster's load-weighted centroid (distinct nodes)."""
    nodes = sorted(streets.nodes)
    tree = cKDTree([(streets.nodes[n]["x"], streets.nodes[n]["y"]) for n in nodes])
    chosen: list = []
    for c in range(int(labels.max()) + 1):
        member = labels == c
        w = buildings["households"].to_numpy(float)[member]
        centre = (buildings[["x", "y"]].to_numpy(float)[member] * w[:, None]).sum(axis=0) / w.sum()
        _, idx = tree.query(centre, k=min(20, len(nodes)))
        node = next((nodes[i] for i in np.atleast_1d(idx) if nodes[i] not in chosen), None)
        if node is None:
            raise InputDataError("too few street nodes to place the substations")
        chosen.append(node)
    return chosen


def trafo_rating_kva(peak_mw: float, *, cos_phi: float, utilisation_cap: float = 1.0) -> int:
    """Return the smallest standard rating whose capacity (times the cap) covers ``peak_mw``."""
    for rating in TRAFO_SERIES_KVA:
        if peak_mw <= rating / 1000.0 * cos_phi * utilisation_cap:
            return rating
    return TRAFO_SERIES_KVA[-1]
