"""Run every attack of :mod:`optim.privacy.attacks` on a package and score it against the real grid.

The scores (keys of :attr:`AuditReport.scores`):

- ``substation_ari``, ``feeder_ari``: adjusted Rand index (scikit-learn) of the guessed groups of
  the flexible buses against their real transformer / LV feeder (1 = exact, ~0 = chance); every
  operating point is read, rows without physical blocks are attacked as shipped and cleaned
  (small coefficients or the flat background zeroed), and the best score counts (also for the
  tree and the edges); a package of per-bus bounds (operating envelopes) is also grouped by the
  pattern and shares of its caps (:func:`~optim.privacy.attacks.cap_groups`);
- ``tree_cluster_recall``: share of the real branching clusters of the flexible buses' tree
  (the flexible buses below one bus, at least two, distinct sets) guessed exactly;
- ``edge_recall``: share of the real parent-child bus pairs (root excluded) among the guessed edges,
  a guessed row standing for its bus (voltage row) or the downstream bus of its branch;
- ``resistance_median_rel_error``: median relative error of the guessed edge resistances against
  the real resistance of the tree path between the two buses (referred to 0.4 kV); with no
  guessed edge, the error of the prior (every LV line guessed at the LV median);
- ``rating_median_rel_error``: median relative error of the guessed ratings of the branch rows
  (None with no branch row: nothing to guess from); ``*_prior_*`` give the prior's error (over all
  branches when there is no branch row);
- ``id_inversion_rate``: share of the ids (columns and rows) whose element the id replay names
  correctly (chance: about 1/n);
- ``row_link_rate``: share of the grid rows (voltages, branches) of the first package linked to the
  row of the second package that comes from the same element and side (needs ``--link-with``;
  None when the package ships no grid row); ``cap_link_rate`` the same for per-bus bounds, which
  name their asset (columns are linked across packages by design);
- ``asset_id_lon_rank_corr``: absolute Spearman correlation of the asset id numbers with the
  assets' longitudes (ids numbered west to east give 1).

Which element each id stands for comes from :class:`Origins`: the DSO key of a paper-style package,
or the row origins that :mod:`optim.privacy.hardening` keeps for a hardened one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from optim._errors import InputError
from optim.privacy import attacks
from optim.privacy.truth import GridTruth, truth_from_grid

logger = logging.getLogger(__name__)

__all__ = ["Origins", "AuditReport", "origins_from_dso_key", "monitored_of_key", "origins_beside", "audit_package", "SCORE_KEYS"]

SCORE_KEYS = ("substation_ari", "feeder_ari", "tree_cluster_recall", "edge_recall",
              "resistance_median_rel_error", "rating_median_rel_error", "id_inversion_rate",
              "row_link_rate", "cap_link_rate", "asset_id_lon_rank_corr")
LV_BASE_KV = 0.4
#: Key files beside a package: the DSO key of the linearization, the row origins of a hardened package.
DSO_KEY_SUFFIX = ".dso-key.json"
PRIVACY_KEY_SUFFIX = ".privacy-key.json"


@dataclass(frozen=True)
class Origins:
    """What each id of a package stands for (DSO side).

    Parameters
    ----------
    flex_bus
        Column id -> pandapower bus.
    row_element
        Row id -> ``("bus", bus)`` for a voltage row, ``("line" | "trafo", index)`` for a branch row.
    row_tag
        Row id -> hashable identity used for linking across packages (element plus side/face).
    buses, branches
        Every monitored bus and branch of the grid (the id replay's targets; default: those the
        rows name).
    """

    flex_bus: dict[str, int]
    row_element: dict[str, tuple[str, int]]
    row_tag: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    buses: tuple[int, ...] = ()
    branches: tuple[tuple[str, int], ...] = ()

    def tag(self, row_id: str) -> tuple[Any, ...]:
        return self.row_tag.get(row_id, self.row_element[row_id])


def origins_from_dso_key(key: Any) -> Origins:
    """Origins of a paper-style package from its :class:`~optim.dso.linearize.DsoKey`."""
    rows = {b: ("bus", int(bus)) for b, bus in zip(key.bus_ids, key.buses)}
    rows.update({b: (str(e), int(i)) for b, e, i in zip(key.branch_ids, key.branch_elements, key.branch_indices)})
    return Origins(flex_bus={f: int(b) for f, b in zip(key.flex_ids, key.flex_buses)}, row_element=rows,
                   **monitored_of_key(key))


def monitored_of_key(key: Any) -> dict[str, tuple]:
    """``buses`` and ``branches`` of :class:`Origins` from a DSO key (every monitored element)."""
    return {"buses": tuple(int(b) for b in key.buses),
            "branches": tuple((str(e), int(i)) for e, i in zip(key.branch_elements, key.branch_indices))}


@dataclass(frozen=True)
class AuditReport:
    """Scores of every attack on one package and what each recovered.

    ``substation_labels``/``feeder_labels``: the best-scoring guessed group of every column (package
    column order), for drawing.
    """

    scores: dict[str, float | None]
    counts: dict[str, int]
    style: str
    substation_labels: tuple[int, ...] = ()
    feeder_labels: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"style": self.style, **self.scores, "counts": dict(self.counts)}

    def table(self) -> str:
        """One printed table: attack, score, what a perfect and a failed attack give."""
        lines = [f"{'attack (package style: ' + self.style + ')':<44} {'score':>8}   perfect / chance"]
        rows = (("substation groups, adjusted Rand index", "substation_ari", "1 / 0"),
                ("LV feeders, adjusted Rand index", "feeder_ari", "1 / 0"),
                ("tree of the flexible buses, clusters found", "tree_cluster_recall", "1 / 0"),
                ("bus-level parent-child edges, recall", "edge_recall", "1 / 0"),
                ("edge resistances, median relative error", "resistance_median_rel_error", "0 / prior"),
                ("  (prior: LV median for every line)", "resistance_prior_median_rel_error", ""),
                ("branch ratings, median relative error", "rating_median_rel_error", "0 / prior"),
                ("  (prior: median for every branch)", "rating_prior_median_rel_error", ""),
                ("ids inverted by replaying the shuffle", "id_inversion_rate", "1 / 1/n"),
                ("grid rows linked to the second package", "row_link_rate", "1 / 1/n"),
                ("per-bus bounds linked (they name assets)", "cap_link_rate", "1 / 1/n"),
                ("asset ids vs longitude, |Spearman rho|", "asset_id_lon_rank_corr", "1 / 0"))
        for label, key, ref in rows:
            value = self.scores.get(key)
            text = "n/a" if value is None else f"{value:.3f}"
            lines.append(f"{label:<44} {text:>8}   {ref}")
        lines.append("recovered: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return "\n".join(lines)


def _ari(truth: np.ndarray, guess: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth, guess))


def _true_clusters(truth: GridTruth, flex_buses: list[int]) -> set[frozenset[int]]:
    below: dict[int, set[int]] = {}
    for col, bus in enumerate(flex_buses):
        for b in truth.ancestors(bus):
            below.setdefault(b, set()).add(col)
    return {frozenset(s) for s in below.values() if len(s) >= 2}


def _bus_of_row(element: tuple[str, int], truth: GridTruth) -> int | None:
    kind, index = element
    if kind in ("bus", "flex"):  # a voltage row, a per-bus bound
        return int(index)
    buses = truth.branch_buses.get((kind, int(index)))
    return None if buses is None else buses[1]


def _path_resistance_ohm(a: int, b: int, truth: GridTruth, edge_r: dict[int, float]) -> float:
    up_a, up_b = truth.ancestors(a), truth.ancestors(b)
    common = set(up_a) & set(up_b)
    total = 0.0
    for path in (up_a, up_b):
        for bus in path:
            if bus in common:
                break
            total += edge_r.get(bus, 0.0)
    return total


def _edge_resistance_at_lv(truth: GridTruth) -> dict[int, float]:
    """Child bus -> resistance of the branch to its parent, referred to the LV base (ohm)."""
    out: dict[int, float] = {}
    for key, (a, b) in truth.branch_buses.items():
        if truth.parent.get(b) != a:
            continue
        r = truth.resistance_ohm[key]
        if truth.voltage_level[key] == "MV":
            r *= (LV_BASE_KV / 20.0) ** 2
        out[b] = r
    return out


def _median_rel_error(estimate: np.ndarray, real: np.ndarray) -> float | None:
    ok = real > 0
    if not ok.any():
        return None
    return float(np.median(np.abs(estimate[ok] - real[ok]) / real[ok]))


def _true_rank(kind: str, element: Any, ranks: Mapping[str, Mapping[Any, int]]) -> tuple[str, int] | None:
    table = ranks.get(kind)
    return None if table is None or element not in table else (kind, table[element])


def audit_package(package: Any, *, origins: Origins, grid: Any, other: Any = None, other_origins: Origins | None = None,
                  truth: GridTruth | None = None, point: int | None = None) -> AuditReport:
    """Run every attack on ``package`` (and the link attack against ``other``) and score it.

    Parameters
    ----------
    package, other
        Packages (paper-style or hardened); ``other`` is a second time frame's package.
    origins, other_origins
        What each of their ids stands for (DSO side).
    grid
        The DSO's :class:`gridgen.grid.Grid`.
    truth
        Precomputed :func:`truth_from_grid` (saves the tree walk when auditing several packages).
    point
        Operating point whose numbers the attacks read; None (default): every point, and each
        structure score is the best over the points (an attacker reads them all).
    """
    truth = truth if truth is not None else truth_from_grid(grid)
    points = range(package.n_points) if point is None else [int(point)]
    views = [attacks.view_of_package(package, point=k) for k in points]
    view = views[0]
    flex_buses = [origins.flex_bus[f] for f in view.flex_ids]
    scores: dict[str, float | None] = {}
    counts: dict[str, int] = {"flex_buses": view.n_flex, "rows": len(view.all_row_ids())}

    # constraint rows are attacked as shipped and cleaned (attacks.DENOISE_MODES); the best counts
    real_subs = np.array([truth.substation[b] for b in flex_buses])
    real_feeders = np.array([truth.feeder[b] for b in flex_buses])
    best_sub: tuple = (-1.0, 0, "", 0, ())
    best_feed: tuple = (-1.0, 0, "", 0, ())
    for k, v in zip(points, views):
        for mode in (("none",) if v.has_blocks else attacks.DENOISE_MODES):
            subs = attacks.substation_labels(v, denoise=mode)
            feeders = attacks.feeder_labels(v, subs, denoise=mode)
            found_sub = (_ari(real_subs, subs), int(len(set(subs))), mode, k, tuple(int(x) for x in subs))
            found_feed = (_ari(real_feeders, feeders), int(len(set(feeders))), mode, k, tuple(int(x) for x in feeders))
            best_sub = found_sub if found_sub[0] > best_sub[0] else best_sub
            best_feed = found_feed if found_feed[0] > best_feed[0] else best_feed
    # per-bus bounds (an envelope package): the caps' pattern over the bands is one more guess
    for labels in attacks.cap_groups(views):
        if len(set(labels)) > 1:
            found_sub = (_ari(real_subs, labels), int(len(set(labels))), "caps", -1, tuple(int(x) for x in labels))
            found_feed = (_ari(real_feeders, labels), int(len(set(labels))), "caps", -1, tuple(int(x) for x in labels))
            best_sub = found_sub if found_sub[0] > best_sub[0] else best_sub
            best_feed = found_feed if found_feed[0] > best_feed[0] else best_feed
    scores["substation_ari"], scores["feeder_ari"] = best_sub[0], best_feed[0]
    counts["substation_groups"], counts["feeders"] = best_sub[1], best_feed[1]
    counts["substation_best_point"], counts["feeder_best_point"] = best_sub[3], best_feed[3]

    real_clusters = _true_clusters(truth, flex_buses)
    found = max(len(real_clusters & set(attacks.tree_clusters(v))) for v in views)
    scores["tree_cluster_recall"] = found / len(real_clusters) if real_clusters else None
    counts["tree_clusters_exact"] = found

    real_edges = {(p, c) for c, p in truth.parent.items() if p in truth.parent}
    edge_r = _edge_resistance_at_lv(truth)
    best_edges: tuple[int, list[float], list[float], int] = (-1, [], [], 0)
    for v in views:
        claimed = attacks.parent_edges(v, v_base_kv=LV_BASE_KV)
        hits, estimates, reals = 0, [], []
        for parent_id, child_id, r_ohm in claimed:
            pb = _bus_of_row(origins.row_element[parent_id], truth)
            cb = _bus_of_row(origins.row_element[child_id], truth)
            if pb is None or cb is None or pb == cb:
                continue
            hits += (pb, cb) in real_edges
            estimates.append(r_ohm)
            reals.append(_path_resistance_ohm(pb, cb, truth, edge_r))
        if hits > best_edges[0]:
            best_edges = (hits, estimates, reals, len(claimed))
    hits, estimates, reals, n_claimed = best_edges
    scores["edge_recall"] = hits / len(real_edges)
    counts["edges_claimed"], counts["edges_true"] = n_claimed, hits
    lv_r = np.array([r for k, r in truth.resistance_ohm.items() if truth.voltage_level[k] == "LV"])
    prior_r = _median_rel_error(np.full(lv_r.shape, np.median(lv_r)), lv_r)
    scores["resistance_prior_median_rel_error"] = prior_r
    scores["resistance_median_rel_error"] = (_median_rel_error(np.array(estimates), np.array(reals))
                                             if estimates else prior_r)

    guessed_ratings = attacks.ratings_mva(view)
    est, real = [], []
    for row_id, mva in guessed_ratings.items():
        element = origins.row_element.get(row_id)
        if element is None or element not in truth.rating_mva:  # voltages, per-bus bounds: no rating
            continue
        est.append(mva)
        real.append(truth.rating_mva[element])
    all_ratings = np.array(list(truth.rating_mva.values()))
    real_arr = np.array(real) if real else all_ratings
    scores["rating_prior_median_rel_error"] = _median_rel_error(np.full(real_arr.shape, np.median(real_arr)), real_arr)
    # no branch row shipped: nothing to guess a rating from (the prior's error stays beside it)
    scores["rating_median_rel_error"] = _median_rel_error(np.array(est), real_arr) if est else None
    counts["ratings_guessed"] = len(est)

    scores["id_inversion_rate"] = _id_inversion_rate(view, origins)
    if other is not None and other_origins is not None:
        k0 = points[0]
        if k0 >= other.n_points:
            raise InputError(f"the second package has no operating point {k0}")
        other_view = attacks.view_of_package(other, point=k0)
        links = attacks.row_links(view, other_view)
        # grid rows (voltages, branches) and per-bus bounds are scored apart: a bound names its
        # asset, which the market links across packages by design
        rows = [r for r in view.all_row_ids() if origins.row_element.get(r, ("",))[0] != "flex"]
        caps = [r for r in view.all_row_ids() if origins.row_element.get(r, ("",))[0] == "flex"]

        def linked(ids: list[str]) -> int:
            return sum(1 for r in ids if r in links and links[r] in other_origins.row_element
                       and origins.tag(r) == other_origins.tag(links[r]))

        good = linked(rows)
        scores["row_link_rate"] = good / len(rows) if rows else None
        scores["cap_link_rate"] = linked(caps) / len(caps) if caps else None
        counts["rows_linked_right"] = good
        counts["grid_rows"] = len(rows)
    else:
        scores["row_link_rate"] = None
        scores["cap_link_rate"] = None

    scores["asset_id_lon_rank_corr"] = _asset_geography(view, truth)
    logger.info("audit of a %s package: %s", view.style,
                ", ".join(f"{k}={v:.3f}" for k, v in scores.items() if v is not None))
    return AuditReport(scores=scores, counts=counts, style=view.style, substation_labels=best_sub[4],
                       feeder_labels=best_feed[4])


def _id_inversion_rate(view: attacks.PackageView, origins: Origins) -> float | None:
    guess = attacks.replayed_id_ranks(view)
    flex_sorted = sorted(origins.flex_bus.values())
    bus_set = origins.buses or [e[1] for e in origins.row_element.values() if e[0] == "bus"]
    branch_set = origins.branches or [e for e in origins.row_element.values() if e[0] != "bus"]
    buses = sorted(set(bus_set))
    branches = sorted({(e[0] == "trafo", e[1]) for e in branch_set})
    ranks: dict[str, dict[Any, int]] = {
        "flex": {b: k for k, b in enumerate(flex_sorted)},
        "bus": {b: k for k, b in enumerate(buses)},
        "branch": {b: k for k, b in enumerate(branches)},
    }
    right = total = 0
    for identifier, (kind, rank) in guess.items():
        total += 1
        if identifier in origins.flex_bus:
            real = _true_rank("flex", origins.flex_bus[identifier], ranks)
        else:
            element = origins.row_element.get(identifier)
            if element is None:
                continue
            real = (_true_rank("bus", element[1], ranks) if element[0] == "bus"
                    else _true_rank("branch", (element[0] == "trafo", element[1]), ranks))
        right += real == (kind, rank)
    return right / total if total else None


def _asset_geography(view: attacks.PackageView, truth: GridTruth) -> float | None:
    from scipy.stats import spearmanr

    numbers = attacks.asset_id_numbers(list(view.flex_of_asset))
    pairs = [(n, truth.building_lon[a]) for a, n in numbers.items() if a in truth.building_lon]
    if len(pairs) < 3:
        return 0.0
    rho = spearmanr(*zip(*pairs)).statistic
    return float(abs(rho)) if np.isfinite(rho) else 0.0


def origins_beside(package_path: str | Path) -> tuple[Origins, dict[str, Any]]:
    """Origins of the package file's ids from the key the DSO keeps beside it, and the key's time frame.

    Reads ``<package>.privacy-key.json`` (hardened package) if present, else ``<package>.dso-key.json``.

    Raises
    ------
    InputError
        No key beside the package, or a malformed one.
    """
    package_path = Path(package_path)
    privacy_key = package_path.with_name(package_path.name + PRIVACY_KEY_SUFFIX)
    dso_key = package_path.with_name(package_path.name + DSO_KEY_SUFFIX)
    if privacy_key.is_file():
        try:
            data = json.loads(privacy_key.read_text())
            origins = Origins(flex_bus={k: int(v) for k, v in data["flex_bus"].items()},
                              row_element={k: (str(v[0]), int(v[1])) for k, v in data["row_element"].items()},
                              row_tag={k: tuple(v) for k, v in data.get("row_tag", {}).items()},
                              buses=tuple(int(b) for b in data.get("buses", ())),
                              branches=tuple((str(e), int(i)) for e, i in data.get("branches", ())))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise InputError(f"cannot read the privacy key {privacy_key}: {exc}") from exc
        return origins, dict(data.get("time_frame", {}))
    if dso_key.is_file():
        from optim.dso.linearize import DsoKey

        key = DsoKey.load(dso_key)
        return origins_from_dso_key(key), dict(key.time_frame)
    raise InputError(f"no DSO key beside {package_path} (looked for {dso_key.name}): the audit scores the "
                     "attacks against the DSO's grid, so run it where the package was made")
