"""The hardened package: the DSO turns its paper-style package into rows that clear the same bids
while revealing far less (issue 10, DSO side; the reasoning is in ``docs/privacy.md``).

**Formulation.** At operating point ``i`` the paper-style package defines, for the deviation
``dP`` from the point's flexibility ``P_flex,i``, the rows ``a @ dP <= b`` with the base values
folded into ``b``: ``VTDF dP <= V_max - V``, ``-VTDF dP <= V - V_min``, ``LTDF dP <= L_max - L``,
``-LTDF dP <= L - L_min`` (a v2 package ships its rows ``a_per_mw``/``b`` directly). The bids
bound the dispatch ``x`` to the box ``[lo, hi]`` per flexible bus (sum of the negative / positive
pieces there), so ``dP`` lies in ``[lo - P_flex,i, hi - P_flex,i]``. The hardened package is made
of these rows, transformed in this order:

1. **Screening** (exact): a row whose maximum over the box, ``a+ . dP_hi + a- . dP_lo``, stays
   below ``b`` cannot bind for any dispatch the bids allow (the TSO's clearing drops the same
   rows itself, see ``optim/tso/clearing.py``). Dropping it DSO-side changes neither the feasible
   set nor the optimum, but the TSO never sees the ~99 % of rows that describe the grid far from
   its limits.
2. **Noise with a safety margin** (``privacy_level`` X, inner approximation): every coefficient
   gets ``E_rj ~ N(0, (X s_r)^2)``, ``s_r = max_j |a_rj|``, and ``b`` is lowered by the worst
   case of the noise over the box, ``m_r = sum_j |E_rj| w_ij`` with ``w_ij = max |dP_j|``. For
   every ``dP`` in the box ``(a + E) dP <= b - m`` implies ``a dP <= b``: the hardened rows are
   an inner approximation of the paper-style ones, so a dispatch they admit is one the paper-style
   rows admit too (the DSO's AC validation of the cleared dispatch then checks the linear model
   itself, as for the paper-style package). The noise hides the support pattern of the rows (which
   buses share a transformer or feeder) at the price of the margin.
3. **Positive row scaling**: row ``r`` is multiplied by ``c_r``, log-uniform in
   ``[1/scale_spread, scale_spread]``: the same half-space, no magnitude (ratings, resistances) left.
4. **Shuffle and secret ids**: rows and columns in a fresh random order, ids ``R<hex>``/``F<hex>``
   drawn from :mod:`secrets` for every package, so no id can be replayed or linked to another
   package. Asset ids optionally become keyed pseudonyms (HMAC-SHA256 with the DSO's secret):
   stable across packages (bids keep naming their assets) but without the ``B####`` numbering
   that runs west to east.

The noise and scales come from ``numpy.random.default_rng(seed)``; the seed is drawn from
:mod:`secrets` unless ``random_state`` is given (experiments, tests) and is recorded in the DSO's
privacy key, so the DSO can rebuild any package. The clearing names bids and assets, never row
ids, so secret ids change no result.

What the TSO receives: per point ``p_flex_mw`` and the rows, the limits, the asset map. No base
values (``P_fix``, voltages, loadings), no physical blocks, no row kinds.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from optim._errors import InputError
from optim.privacy.audit import Origins

logger = logging.getLogger(__name__)

__all__ = ["HardeningConfig", "Hardened", "PaperRows", "paper_rows", "flex_box_from_bids", "harden",
           "asset_pseudonyms", "DEFAULT_PRIVACY_LEVEL"]

#: The default noise level X (see ``docs/privacy.md`` and ``benchmarks/bench_privacy.py``).
DEFAULT_PRIVACY_LEVEL = 0.01
#: Lower limit written for the encoded rows (v1 encoding: a row is a "loading" with only an upper limit).
_UNBOUNDED = -1e12


@dataclass(frozen=True)
class HardeningConfig:
    """Options of :func:`harden`.

    Parameters
    ----------
    privacy_level
        Noise standard deviation X relative to each row's largest coefficient (0: no noise).
    scale_spread
        Row scale factors are log-uniform in ``[1/scale_spread, scale_spread]`` (>= 1).
    screen
        Drop the rows that cannot bind within the bids' box (exact; default True).
    pseudonymize_assets
        Replace asset ids by keyed pseudonyms (needs ``asset_secret``; the bids must then name the
        pseudonyms, see :func:`asset_pseudonyms`).
    asset_secret
        The DSO's secret for the pseudonyms (keep it: the same secret gives the same pseudonyms).
    random_state
        Seed of the noise, scales and orders; None draws one from :mod:`secrets`. Ids always come
        from :mod:`secrets`.
    """

    privacy_level: float = DEFAULT_PRIVACY_LEVEL
    scale_spread: float = 100.0
    screen: bool = True
    pseudonymize_assets: bool = False
    asset_secret: str | None = None
    random_state: int | None = None

    def __post_init__(self) -> None:
        if not np.isfinite(self.privacy_level) or self.privacy_level < 0:
            raise InputError(f"--privacy-level must be a finite number >= 0, got {self.privacy_level}")
        if not np.isfinite(self.scale_spread) or self.scale_spread < 1:
            raise InputError(f"scale_spread must be >= 1, got {self.scale_spread}")
        if self.pseudonymize_assets and not self.asset_secret:
            raise InputError("pseudonymized asset ids need the DSO's asset_secret")


@dataclass(frozen=True)
class PaperRows:
    """The rows ``a @ dP <= b`` of one paper-style point, with what each row stands for."""

    a: np.ndarray
    b: np.ndarray
    element: tuple[tuple[str, int], ...]
    tag: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Hardened:
    """What :func:`harden` returns.

    Attributes
    ----------
    package
        The hardened package (for the TSO).
    key
        The DSO key of the hardened package's columns (validation maps dispatches with it).
    origins
        What each row and column id stands for (DSO side: the audit scores with it).
    seed
        The seed of the noise, scales and orders.
    stats
        Rows before/after screening per point, mean margin share.
    """

    package: Any
    key: Any
    origins: Origins
    seed: int
    stats: dict[str, Any] = field(default_factory=dict)

    def privacy_key(self) -> dict[str, Any]:
        """The JSON the DSO keeps beside a hardened package (``<package>.privacy-key.json``)."""
        return {"format": "digiplat-privacy-key", "seed": self.seed,
                "flex_bus": dict(self.origins.flex_bus),
                "row_element": {k: list(v) for k, v in self.origins.row_element.items()},
                "row_tag": {k: list(v) for k, v in self.origins.row_tag.items()},
                "time_frame": dict(getattr(self.key, "time_frame", {}) or {}), "stats": dict(self.stats)}


def paper_rows(point: Any, package: Any, key: Any) -> PaperRows:
    """The constraint rows of a paper-style operating point, base values folded into ``b``.

    Uses the point's ``a_per_mw``/``b`` when the package format ships them; otherwise derives the
    voltage and loading rows from the VTDF/LTDF blocks and the limits.
    """
    vtdf = np.asarray(point.vtdf_pu_per_mw, dtype=float)
    ltdf = np.asarray(point.ltdf_percent_per_mw, dtype=float)
    vm, loading = np.asarray(point.vm_pu, float), np.asarray(point.loading_percent, float)
    a = np.vstack([vtdf, -vtdf, ltdf, -ltdf])
    b = np.concatenate([package.vm_max_pu - vm, vm - package.vm_min_pu,
                        package.loading_max_percent - loading, loading - package.loading_min_percent])
    buses = [("bus", int(x)) for x in key.buses]
    branches = [(str(e), int(i)) for e, i in zip(key.branch_elements, key.branch_indices)]
    element = tuple(buses + buses + branches + branches)
    tag = tuple([(*e, "max") for e in buses] + [(*e, "min") for e in buses]
                + [(*e, "max") for e in branches] + [(*e, "min") for e in branches])
    return PaperRows(a=a, b=b, element=element, tag=tag)


def flex_box_from_bids(bids: Any, package: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per flexible bus (package column order) the dispatch box ``[lo, hi]`` (MW) the bids allow."""
    from optim.tso.bcm import pieces_from_bids
    from optim.tso.bids import BidTable, bids_from_frame

    table = bids if isinstance(bids, BidTable) else bids_from_frame(bids, package=package)
    pieces = pieces_from_bids(table, package)
    lo = np.zeros(len(package.flex_ids))
    hi = np.zeros(len(package.flex_ids))
    np.add.at(lo, pieces.flex_index, pieces.lower_mw)
    np.add.at(hi, pieces.flex_index, pieces.upper_mw)
    return lo, hi


def asset_pseudonyms(asset_ids: Any, secret: str) -> dict[str, str]:
    """Keyed pseudonyms of asset ids: ``A`` + 12 hex digits of HMAC-SHA256(secret, id).

    Stable for one secret (bids and packages of every time frame agree), unrelated to the id's
    number or the asset's place.
    """
    key = secret.encode()
    return {str(a): "A" + hmac.new(key, str(a).encode(), hashlib.sha256).hexdigest()[:12] for a in asset_ids}


def _fresh_ids(prefix: str, n: int) -> list[str]:
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(prefix + secrets.token_hex(6))
    return list(ids)


def harden(package: Any, key: Any, bids: Any, *, config: HardeningConfig = HardeningConfig()) -> Hardened:
    """Make the hardened package of a paper-style package (DSO side).

    Parameters
    ----------
    package
        Paper-style :class:`~optim.package.SensitivityPackage`.
    key
        Its :class:`~optim.dso.linearize.DsoKey`.
    bids
        The bid table the package will be cleared with (its pieces give the dispatch box).
    config
        Noise level, scaling, screening, pseudonyms, seed.

    Returns
    -------
    Hardened
        The package for the TSO and the DSO's key and origins.
    """
    from optim.package import OperatingPoint, SensitivityPackage

    seed = int(config.random_state) if config.random_state is not None else secrets.randbits(63)
    rng = np.random.default_rng(seed)
    lo, hi = flex_box_from_bids(bids, package)
    n_flex = len(package.flex_ids)
    col_order = rng.permutation(n_flex)
    flex_ids = _fresh_ids("F", n_flex)

    stats: dict[str, Any] = {"rows_paper": [], "rows_kept": [], "margin_share": []}
    blocks = []
    for point in package.points:
        rows = paper_rows(point, package, key)
        p_flex = np.asarray(point.p_flex_mw, dtype=float)
        d_lo, d_hi = lo - p_flex, hi - p_flex
        reach = np.clip(rows.a, 0, None) @ d_hi + np.clip(rows.a, None, 0) @ d_lo
        keep = reach > rows.b - 1e-9 * np.maximum(1.0, np.abs(rows.b)) if config.screen else np.ones(len(rows.b), bool)
        idx = np.flatnonzero(keep)
        a, b = rows.a[idx].copy(), rows.b[idx].copy()
        if config.privacy_level > 0 and len(idx):
            scale = np.abs(a).max(axis=1, keepdims=True)
            noise = rng.normal(size=a.shape) * config.privacy_level * scale
            width = np.maximum(np.abs(d_lo), np.abs(d_hi))
            margin = np.abs(noise) @ width
            stats["margin_share"].append(float(np.mean(margin / np.maximum(np.abs(b), 1e-12))))
            a, b = a + noise, b - margin
        log_spread = np.log(config.scale_spread)
        c = np.exp(rng.uniform(-log_spread, log_spread, size=len(idx)))
        a, b = a * c[:, None], b * c
        stats["rows_paper"].append(int(len(rows.b)))
        stats["rows_kept"].append(int(len(idx)))
        blocks.append((a[:, col_order], b, [rows.element[k] for k in idx], [rows.tag[k] for k in idx],
                       p_flex[col_order]))

    # One id space over all points: point k's rows are ids row_ids[offset_k : offset_k + n_k].
    n_rows = sum(len(blk[1]) for blk in blocks)
    row_ids = _fresh_ids("R", n_rows)
    row_element: dict[str, tuple[str, int]] = {}
    row_tag: dict[str, tuple[Any, ...]] = {}
    points = []
    offset = 0
    for k, (a, b, elements, tags, p_flex) in enumerate(blocks):
        order = rng.permutation(len(b))
        ids = row_ids[offset:offset + len(b)]
        offset += len(b)
        for rid, j in zip(ids, order):
            row_element[rid] = elements[j]
            row_tag[rid] = (k, *tags[j])
        points.append((package.points[k].label, p_flex, a[order], b[order], ids))

    # The clearing reads one row set for all points; rows of other points get a zero row there that
    # never binds (0 <= 1): each point keeps exactly its own rows, in one matrix.
    all_ids = tuple(row_ids)
    position = {rid: n for n, rid in enumerate(all_ids)}
    encoded = []
    for label, p_flex, a, b, ids in points:
        a_full = np.zeros((n_rows, n_flex))
        b_full = np.ones(n_rows)
        where = [position[r] for r in ids]
        a_full[where], b_full[where] = a, b
        encoded.append(OperatingPoint(label=label, p_mw=p_flex, p_flex_mw=p_flex, vm_pu=np.zeros(0),
                                      loading_percent=package.loading_max_percent - b_full,
                                      vtdf_pu_per_mw=np.zeros((0, n_flex)), ltdf_percent_per_mw=a_full))
    flex_id_of = dict(zip(np.asarray(package.flex_ids)[col_order], flex_ids))
    assets = dict(package.flex_of_asset)
    names = asset_pseudonyms(assets, config.asset_secret) if config.pseudonymize_assets else {a: a for a in assets}
    meta = {k: v for k, v in package.meta.items() if k in ("time_frame", "point_fractions", "point_definition", "credit")}
    meta.update({"style": "hardened", "privacy_level": float(config.privacy_level),
                 "rows": "a @ dP <= b per point, encoded as ltdf_percent_per_mw = a, loading_percent = L_max - b",
                 "p_mw": "equals p_flex_mw (P_fix is not shared; (14h) needs only differences)"})
    hardened = SensitivityPackage(
        flex_ids=tuple(flex_ids), bus_ids=(), branch_ids=all_ids, points=tuple(encoded),
        flex_of_asset={names[a]: flex_id_of[f] for a, f in assets.items()},
        vm_min_pu=package.vm_min_pu, vm_max_pu=package.vm_max_pu,
        loading_min_percent=_UNBOUNDED, loading_max_percent=package.loading_max_percent, meta=meta)

    bus_of = dict(zip(key.flex_ids, key.flex_buses))
    new_key = replace(key, flex_ids=tuple(flex_ids),
                      flex_buses=tuple(int(bus_of[f]) for f in np.asarray(package.flex_ids)[col_order]),
                      buildings_of_flex={flex_id_of[f]: tuple(names.get(b, b) for b in blds)
                                         for f, blds in key.buildings_of_flex.items()})
    origins = Origins(flex_bus=dict(zip(new_key.flex_ids, new_key.flex_buses)), row_element=row_element,
                      row_tag=row_tag)
    stats["margin_share"] = float(np.mean(stats["margin_share"])) if stats["margin_share"] else 0.0
    logger.info("hardened package: %d of %d rows kept over %d points, noise X=%g", n_rows,
                sum(stats["rows_paper"]), len(points), config.privacy_level)
    return Hardened(package=hardened, key=new_key, origins=origins, seed=seed, stats=stats)
