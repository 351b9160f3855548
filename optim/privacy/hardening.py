"""The hardened package: the DSO turns its paper-style package into rows that clear the same bids
while revealing far less (issue 10, DSO side; the reasoning and measurements: ``docs/privacy.md``).

**Formulation.** At operating point ``i`` the paper-style package defines, for the deviation
``dP`` from the point's flexibility ``P_flex,i``, the rows ``a @ dP <= b`` of
:func:`optim.package.constraint_rows`, base values folded into ``b``: voltage upper and lower rows
and the faces of every branch's current polygon. The offers bound the dispatch ``x`` to the box
``[lo, hi]`` per flexible bus (the package's ``row_box``: sums of the downward / upward volumes),
so ``dP`` lies in ``[lo - P_flex,i, hi - P_flex,i]``. The hardened package holds these rows,
transformed in this order:

1. **Screening** (exact): a row whose maximum over the box, ``a+ . dP_hi + a- . dP_lo``, stays
   below ``b`` cannot bind for any dispatch the bids allow (the TSO's clearing would drop it
   itself). Leaving it out changes neither the feasible set nor the optimum, and the TSO never
   sees the ~98 % of rows that describe the grid away from its limits.
2. **Flattening with a safety margin** (``privacy_level`` X; optional noise ``noise_level``),
   an inner approximation: coefficients below X of their row's largest become one value (their
   width-weighted median), optional Gaussian noise is added, and ``b`` is lowered by the worst
   case of the change over the box, ``m_r = sum_j |a_rj - a'_rj| w_ij`` with ``w_ij = max |dP_j|``.
   For every ``dP`` in the box ``a' dP <= b - m`` implies ``a dP <= b``, so the hardened rows admit
   only dispatches the paper-style rows admit (the DSO's AC validation of the cleared dispatch then
   checks the linear model itself, as for the paper-style package). This is why it is safe; the
   flattened small coefficients are what tells a row's transformer and feeder apart.
3. **Positive row scaling**: row ``r`` times ``c_r``, log-uniform in ``[1/scale_spread,
   scale_spread]``: the same half-space, no magnitude (ratings, resistances) left.
4. **Shuffle and secret ids**: rows and columns in a fresh random order, column ids ``F<hex>``
   from :mod:`secrets` for every package (rows carry no id in format 2), so nothing can be replayed
   or linked by name. Asset ids optionally become keyed pseudonyms (HMAC-SHA256 with the DSO's
   secret): stable across packages (bids keep naming their assets) but without the ``B####``
   numbering that runs west to east.

Why not exact and private at once: an irredundant description of a polyhedron is unique up to
row scaling and order, so any exact package ships the binding facets (which buses load the
congested branch); only an inner approximation can blur them, at a cost (``benchmarks/bench_privacy.py``).

The flattening noise, scales and orders come from ``numpy.random.default_rng(seed)``; the seed is
drawn from :mod:`secrets` unless ``random_state`` is given (experiments, tests) and is kept in the
DSO's privacy key, so the DSO can rebuild any package. The clearing names bids and assets, never
row ids, so secret ids change no result.

What the TSO receives: per point ``p_flex_mw`` and the rows, the limits, the box, the asset map.
No base values (``P_fix``, voltages, loadings, currents), no physical blocks, no row kinds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optim._errors import InputError
from optim.privacy.audit import DSO_KEY_SUFFIX, PRIVACY_KEY_SUFFIX, Origins, monitored_of_key
from optim.privacy.envelope import EnvelopeConfig, envelope_rows, operating_envelopes

logger = logging.getLogger(__name__)

__all__ = ["HardeningConfig", "Hardened", "ac_verifier", "MECHANISMS", "PaperRows", "paper_rows", "flex_box_from_bids", "obscured_rows",
           "harden", "load_hardened", "asset_pseudonyms", "bids_with_pseudonyms", "DEFAULT_PRIVACY_LEVEL", "DEFAULT_NOISE_LEVEL"]

#: The default privacy level X: coefficients below X of their row's largest are flattened. 0 (exact):
#: below X ~ 0.085 flattening hides nothing the strongest audit measures, and from there on it costs
#: +1.8 % and more (see ``docs/privacy.md`` and ``benchmarks/bench_privacy.py``).
DEFAULT_PRIVACY_LEVEL = 0.0
#: The default Gaussian noise, relative to each row's largest coefficient.
DEFAULT_NOISE_LEVEL = 0.0
#: What replaces the grid rows: the screened, obscured rows, or operating envelopes (boxes).
MECHANISMS = ("rows", "envelope")
#: The DSO's private paper-style copy beside a hardened package file.
PRIVATE_SUFFIX = ".dso-paper.zip"


@dataclass(frozen=True)
class HardeningConfig:
    """Options of :func:`harden`.

    Parameters
    ----------
    privacy_level
        X: coefficients below X times their row's largest are flattened to one value (0: none).
    noise_level
        Gaussian noise on every coefficient, relative to its row's largest (0: none).
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
    mechanism
        ``"rows"`` (the screened, obscured grid rows) or ``"envelope"`` (per-bus boxes per request
        band instead of any grid row: :mod:`optim.privacy.envelope`; needs the bids' prices).
    envelope
        Band width and sampled requests of the envelopes.
    """

    privacy_level: float = DEFAULT_PRIVACY_LEVEL
    noise_level: float = DEFAULT_NOISE_LEVEL
    scale_spread: float = 100.0
    screen: bool = True
    pseudonymize_assets: bool = False
    asset_secret: str | None = None
    random_state: int | None = None
    mechanism: str = "rows"
    envelope: EnvelopeConfig = EnvelopeConfig()

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise InputError(f"unknown privacy mechanism {self.mechanism!r}; choose one of {', '.join(MECHANISMS)}")
        if not np.isfinite(self.privacy_level) or not 0 <= self.privacy_level <= 1:
            raise InputError(f"--privacy-level must be a number from 0 to 1, got {self.privacy_level}")
        if not np.isfinite(self.noise_level) or self.noise_level < 0:
            raise InputError(f"the noise level must be a finite number >= 0, got {self.noise_level}")
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
    """What :func:`harden` returns; it also serves as the ``linearization`` of
    :func:`optim.market.clear_market` (``package``, ``key``, ``private_package``).

    Attributes
    ----------
    package
        The hardened package (for the TSO).
    key
        The DSO key of the hardened package (its columns; fingerprint of the hardened package).
    private_package
        The DSO's paper-style package in the hardened package's column order and ids (validation,
        Table I).
    origins
        What each row and column stands for (DSO side: the audit scores with it).
    seed
        The seed of the noise, scales and orders.
    stats
        Rows of the paper-style and of the hardened package per point, mean margin share of ``b``.
    """

    package: Any
    key: Any
    private_package: Any
    origins: Origins
    seed: int
    stats: dict[str, Any] = field(default_factory=dict)
    runtime_s: float = 0.0

    def privacy_key(self) -> dict[str, Any]:
        """The JSON the DSO keeps beside a hardened package (``<package>.privacy-key.json``)."""
        return {"format": "digiplat-privacy-key", "seed": self.seed,
                "package_fingerprint": self.package.fingerprint(),
                "flex_bus": dict(self.origins.flex_bus),
                "row_element": {k: list(v) for k, v in self.origins.row_element.items()},
                "row_tag": {k: list(v) for k, v in self.origins.row_tag.items()},
                "buses": list(self.origins.buses), "branches": [list(b) for b in self.origins.branches],
                "time_frame": dict(getattr(self.key, "time_frame", {}) or {}), "stats": dict(self.stats)}

    def save(self, path: str | Path) -> Path:
        """Write the hardened package, its DSO key, the privacy key and the DSO's private paper-style copy.

        ``path`` (for the TSO), and beside it, for the DSO only: ``.dso-key.json`` (the pair is
        written atomically by :func:`optim.dso.linearize.save_pair`), ``.privacy-key.json`` (row
        origins and seed) and ``.dso-paper.zip`` (validation and Table I). The two DSO files are
        written to temporary siblings first and moved in only after the pair succeeded.
        """
        from optim.dso.linearize import save_pair

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        targets = (path.with_name(path.name + PRIVACY_KEY_SUFFIX), path.with_name(path.name + PRIVATE_SUFFIX))
        temps = {target: target.with_name(f".{target.name}.tmp") for target in targets}
        try:
            privacy, private = list(temps.values())
            privacy.write_text(json.dumps(self.privacy_key()))
            self.private_package.write(private, compress=False)  # stays with the DSO: no deflate time
            save_pair(self.package, self.key, path, path.with_name(path.name + DSO_KEY_SUFFIX))
            for target, tmp in temps.items():
                tmp.replace(target)
        finally:
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
        logger.info("hardened package written: %s (and its DSO files beside it)", path)
        return path


def load_hardened(path: str | Path) -> Hardened:
    """Read a hardened package written by :meth:`Hardened.save` with its DSO key, origins and private copy."""
    from optim.dso.linearize import load_pair
    from optim.package import SensitivityPackage
    from optim.privacy.audit import origins_beside

    path = Path(path)
    package, key = load_pair(path, path.with_name(path.name + DSO_KEY_SUFFIX))
    if key is None or package.style != "hardened":
        raise InputError(f"{path} is not a hardened package with its DSO key beside it")
    private_path = path.with_name(path.name + PRIVATE_SUFFIX)
    if not private_path.is_file():
        raise InputError(f"the DSO's private copy {private_path.name} is missing beside {path.name}")
    origins, _ = origins_beside(path)
    seed = int(json.loads(path.with_name(path.name + PRIVACY_KEY_SUFFIX).read_text()).get("seed", 0))
    return Hardened(package=package, key=key, private_package=SensitivityPackage.load(private_path),
                    origins=origins, seed=seed)


def _branch_sides(point: Any, package: Any) -> int:
    """Rows per branch: the polygon's sides (currents) or the signed loading's two."""
    return package.polygon_sides if point.has_currents else 2


def _check_key(point: Any, package: Any, key: Any) -> int:
    """The point's number of rows before screening; refuses a key that names other rows."""
    n_rows = 2 * len(point.vm_pu) + _branch_sides(point, package) * (
        len(point.i_re_percent) if point.has_currents else len(point.loading_percent))
    if 2 * len(key.buses) + _branch_sides(point, package) * len(key.branch_indices) != n_rows:
        raise InputError("the DSO key does not match the package's rows; re-run 'digiplat linearize'")
    return n_rows


def paper_rows(point: Any, package: Any, key: Any, box: tuple[np.ndarray, np.ndarray] | None = None) -> PaperRows:
    """The constraint rows of a paper-style point, with their origins.

    Derived by :func:`optim.package.constraint_rows` from the physical blocks (the one place rows
    are defined): voltage upper rows, voltage lower rows, then per polygon side the rows of every
    branch (or the signed-loading upper and lower rows). With ``box`` (``dP`` bounds) only the
    rows that can bind within it, in the same order (:func:`~optim.package.screened_constraint_rows`:
    the same rows as screening all of them, without forming the 8,000 of a Bergwald point).
    """
    from optim.package import OperatingPoint, constraint_rows, screened_constraint_rows

    _check_key(point, package, key)
    blocks = {k: v for k, v in point.arrays().items() if k not in ("a_per_mw", "b")}
    physical = OperatingPoint(label=point.label, **blocks)
    if box is None:
        a, b = constraint_rows(physical, package.limits, package.polygon_sides)
        index = None
    else:
        a, b, index = screened_constraint_rows(physical, package.limits, package.polygon_sides, *box,
                                               return_index=True)
    buses = [("bus", int(x)) for x in key.buses]
    branches = [(str(e), int(i)) for e, i in zip(key.branch_elements, key.branch_indices)]
    sides = _branch_sides(point, package)
    element = buses + buses + branches * sides
    tag = ([(*e, "max") for e in buses] + [(*e, "min") for e in buses]
           + [(*e, f"side {s}") for s in range(sides) for e in branches])
    if index is not None:
        element, tag = [element[i] for i in index], [tag[i] for i in index]
    return PaperRows(a=a, b=b, element=tuple(element), tag=tuple(tag))


def flex_box_from_bids(bids: Any, package: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per flexible bus (package column order) the dispatch box ``[lo, hi]`` (MW) the bids allow."""
    from optim.tso.bcm import pieces_from_bids

    pieces = pieces_from_bids(_bid_table(bids, package), package)
    return pieces.p_flex_mw(pieces.lower_mw), pieces.p_flex_mw(pieces.upper_mw)


def _bid_table(bids: Any, package: Any) -> Any:
    """A :class:`~optim.tso.bids.BidTable` of a table or a bid-table DataFrame (checked against the package)."""
    from optim.tso.bids import BidTable, bids_from_frame

    return bids if isinstance(bids, BidTable) else bids_from_frame(bids, package=package)


def asset_pseudonyms(asset_ids: Any, secret: str) -> dict[str, str]:
    """Keyed pseudonyms of asset ids: ``A`` + 12 hex digits of HMAC-SHA256(secret, id).

    Stable for one secret (bids and packages of every time frame agree), unrelated to the id's
    number or the asset's place.
    """
    key = secret.encode()
    return {str(a): "A" + hmac.new(key, str(a).encode(), hashlib.sha256).hexdigest()[:12] for a in asset_ids}


def bids_with_pseudonyms(bids: Any, names: dict[str, str]) -> Any:
    """A copy of a bid-table DataFrame whose ``building_id`` names the pseudonyms."""
    out = bids.copy()
    out["building_id"] = out["building_id"].astype(str).map(lambda b: names.get(b, b))
    return out


def _fresh_ids(prefix: str, n: int) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        candidate = prefix + secrets.token_hex(6)
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return ids


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    if cum[-1] <= 0:
        return float(np.median(values))
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def obscured_rows(a: np.ndarray, b: np.ndarray, width: np.ndarray, *, flatten_share: float, noise_share: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(a', b')`` that imply ``a @ dP <= b`` for every ``|dP_j| <= width_j`` (inner approximation).

    Coefficients below ``flatten_share`` of the row's largest are set to one value (their
    width-weighted median: the cheapest constant), every coefficient then gets Gaussian noise of
    ``noise_share`` times the row's largest; ``b`` is lowered by the worst case of the change over
    the box, ``sum_j |a_j - a'_j| width_j``.
    """
    a_new = a.copy()
    scale = np.abs(a).max(axis=1) if a.size else np.zeros(0)
    for r in range(a.shape[0]):
        small = np.abs(a[r]) < flatten_share * scale[r]
        if small.sum() > 1:
            a_new[r, small] = _weighted_median(a[r, small], width[small] + 1e-12)
    if noise_share > 0:
        a_new = a_new + rng.normal(size=a.shape) * noise_share * scale[:, None]
    margin = np.abs(a - a_new) @ width
    return a_new, b - margin


def _envelope_points(package: Any, key: Any, bids: Any, design_rows: list[tuple[np.ndarray, np.ndarray]],
                     lo: np.ndarray, hi: np.ndarray, col_order: np.ndarray, config: HardeningConfig,
                     verify: Callable[[np.ndarray], int] | None, rng: np.random.Generator, log_spread: float,
                     row_element: dict, row_tag: dict, stats: dict[str, Any],
                     progress: Callable[[int, int, str], None] | None = None) -> list[Any]:
    """The envelope mechanism's points: one box per request band, as scaled, shuffled unit rows."""
    from optim.package import OperatingPoint

    boxes = operating_envelopes(package, design_rows, _bid_table(bids, package), config=config.envelope, verify=verify,
                                progress=progress)
    if not boxes:
        raise InputError("the offers cannot deliver any request within the grid's limits: no envelope to share")
    flex_bus = dict(zip(key.flex_ids, key.flex_buses))
    n = len(package.flex_ids)
    points = []
    stats["envelopes"] = []
    for k, box in enumerate(boxes):
        a, b, what = envelope_rows(box, lo, hi)
        c = np.exp(rng.uniform(-log_spread, log_spread, size=len(b)))
        order = rng.permutation(len(b))
        for position, j in enumerate(order):
            column, side = what[j]
            bus = int(flex_bus[package.flex_ids[column]])
            rid = f"p{k}r{position}"
            row_element[rid] = ("flex", bus)
            row_tag[rid] = ("flex", bus, side)
        stats["rows_hardened"].append(int(len(b)))
        stats["envelopes"].append({"band_mw": list(box.band_mw), "design_max_increase": box.design_max_increase,
                                   **box.stats})
        points.append(OperatingPoint(label=f"E{k + 1}", p_flex_mw=np.zeros(n),
                                     a_per_mw=(a * c[:, None])[order][:, col_order].reshape(len(b), n),
                                     b=(b * c)[order]))
    return points


def ac_verifier(grid: Any, scenario: Any, key: Any, *, engine: str = "compiled") -> Callable[[np.ndarray], int]:
    """The DSO's AC check for the envelopes: dispatch per flexible bus (the key's column order) ->
    number of limit violations of the AC power flow, the units' reactive power following P.

    ``engine="compiled"`` (default) solves on the compiled grid the linearization uses
    (:func:`optim.validation.compiled_state`, equal to pandapower within the power-flow
    tolerance, about 5 ms a dispatch on Bergwald); ``"pandapower"`` runs
    :func:`optim.validation.validate_dispatch` (about 0.2 s). Limits and tolerances are the
    validation's.
    """
    from optim.validation import ENGINES, LOADING_TOLERANCE_PERCENT, VM_TOLERANCE_PU, validate_dispatch

    if engine == "pandapower":
        def by_pandapower(p_flex_mw: np.ndarray) -> int:
            return int(validate_dispatch(grid, scenario, key, np.asarray(p_flex_mw, dtype=float)).n_violations)

        return by_pandapower
    if engine not in ENGINES:
        raise InputError(f"unknown AC engine {engine!r}; choose {' or '.join(ENGINES)}")
    from optim.dso.linearize import LinearizationConfig
    from optim.validation import compiled_state

    config = LinearizationConfig()
    state = compiled_state(grid, scenario, key)
    ratio = np.asarray(getattr(key, "dq_dp", ()) or np.zeros(len(key.flex_ids)), dtype=float)

    def compiled(p_flex_mw: np.ndarray) -> int:
        p = np.asarray(p_flex_mw, dtype=float)
        vm, loading = state(p, ratio * p, "an envelope corner")
        return int(np.sum(vm < config.vm_min_pu - VM_TOLERANCE_PU) + np.sum(vm > config.vm_max_pu + VM_TOLERANCE_PU)
                   + np.sum(np.abs(loading) > config.loading_max_percent + LOADING_TOLERANCE_PERCENT))

    return compiled


def _permuted_point(point: Any, order: np.ndarray) -> Any:
    from optim.package import OperatingPoint

    values: dict[str, Any] = {}
    for name, arr in point.arrays().items():
        if name in ("p_flex_mw", "p_mw"):
            values[name] = arr[order]
        elif arr.ndim == 2:
            values[name] = arr[:, order]
        else:
            values[name] = arr
    return OperatingPoint(label=point.label, **values)


def harden(package: Any, key: Any, bids: Any = None, *, config: HardeningConfig = HardeningConfig(),
           verify: Callable[[np.ndarray], int] | None = None,
           progress: Callable[[int, int, str], None] | None = None) -> Hardened:
    """Make the hardened package of a paper-style package (DSO side).

    Parameters
    ----------
    package
        Paper-style :class:`~optim.package.SensitivityPackage` (format 2).
    key
        Its :class:`~optim.dso.linearize.DsoKey`.
    bids
        The bid table the package will be cleared with; its pieces give the dispatch box when the
        package stores none (``row_box``). Needed by the envelope mechanism (its prices).
    config
        Mechanism, noise level, scaling, screening, pseudonyms, seed.
    verify
        Envelope mechanism: the DSO's AC check of a dispatch (package column order) -> number of
        violations (:func:`ac_verifier`); None: the boxes rest on the linear model alone.
    progress
        Envelope mechanism: ``progress(done, total, message)`` after each request band.

    Returns
    -------
    Hardened
        The package for the TSO, the DSO's key, private paper-style package and origins.
    """
    import time

    from optim.package import OperatingPoint, SensitivityPackage, constraint_rows_at, screened_constraint_rows

    t0 = time.perf_counter()
    if getattr(package, "style", "paper") != "paper":
        raise InputError("harden needs the DSO's paper-style package (it derives the rows from the blocks)")
    seed = int(config.random_state) if config.random_state is not None else secrets.randbits(63)
    rng = np.random.default_rng(seed)
    if package.row_box_lower_mw is not None:
        lo, hi = np.asarray(package.row_box_lower_mw), np.asarray(package.row_box_upper_mw)
    elif bids is not None:
        lo, hi = flex_box_from_bids(bids, package)
    else:
        raise InputError("the package stores no dispatch box: pass the bids it will be cleared with")
    n_flex = len(package.flex_ids)
    col_order = rng.permutation(n_flex)
    flex_ids = _fresh_ids("F", n_flex)
    flex_id_of = dict(zip(np.asarray(package.flex_ids)[col_order], flex_ids))

    envelope = config.mechanism == "envelope"
    if envelope and bids is None:
        raise InputError("the envelope mechanism needs the bids the package will be cleared with (their prices)")
    stats: dict[str, Any] = {"rows_paper": [], "rows_hardened": [], "margin_share_of_b": []}
    points, row_element, row_tag = [], {}, {}
    design_rows: list[Any] = []
    design_index: list[np.ndarray] = []
    log_spread = float(np.log(config.scale_spread))
    for k, point in enumerate(package.points):
        p_flex = np.asarray(point.p_flex_mw, dtype=float)
        d_lo, d_hi = lo - p_flex, hi - p_flex
        n_paper = _check_key(point, package, key)
        stats["rows_paper"].append(int(n_paper))
        if envelope:  # aligned over the points below: the same row index is the same constraint
            design_index.append(screened_constraint_rows(point, package.limits, package.polygon_sides, d_lo, d_hi,
                                                         return_index=True)[2] if config.screen else np.arange(n_paper))
            continue
        # screened: only the rows that can bind are formed (the same rows in the same order)
        rows = paper_rows(point, package, key, box=(d_lo, d_hi) if config.screen else None)
        a, b = rows.a, rows.b
        width = np.maximum(np.abs(d_lo), np.abs(d_hi))
        a_obs, b_obs = obscured_rows(a, b, width, flatten_share=config.privacy_level,
                                     noise_share=config.noise_level, rng=rng)
        if len(b):
            stats["margin_share_of_b"].append(float(np.median((b - b_obs) / np.maximum(np.abs(b), 1e-12))))
        c = np.exp(rng.uniform(-log_spread, log_spread, size=len(b)))
        order = rng.permutation(len(b))
        a_out = (a_obs * c[:, None])[order][:, col_order]
        b_out = (b_obs * c)[order]
        for position, j in enumerate(order):
            rid = f"p{k}r{position}"
            row_element[rid] = rows.element[j]
            row_tag[rid] = rows.tag[j]
        stats["rows_hardened"].append(int(len(b)))
        points.append(OperatingPoint(label=point.label, p_flex_mw=p_flex[col_order], a_per_mw=a_out, b=b_out))
    if envelope:
        # every row some point keeps, formed at every point (a row another point keeps may still
        # be checked at this one's worst corners); only these few hundred of the ~8,000 are formed
        union = np.unique(np.concatenate(design_index)) if design_index else np.zeros(0, dtype=np.int64)
        design_rows = [constraint_rows_at(point, package.limits, package.polygon_sides, union)
                       for point in package.points]
        points = _envelope_points(package, key, bids, design_rows, lo, hi, col_order, config, verify, rng,
                                  log_spread, row_element, row_tag, stats, progress)

    assets = dict(package.flex_of_asset)
    names = asset_pseudonyms(assets, config.asset_secret) if config.pseudonymize_assets else {a: a for a in assets}
    flex_of_asset = {names[a]: flex_id_of[f] for a, f in assets.items()}
    meta = {k: v for k, v in package.meta.items() if k in ("time_frame", "point_fractions", "point_definition",
                                                           "point_method", "credit")}
    meta["hardening"] = {"privacy_level": float(config.privacy_level), "noise_level": float(config.noise_level),
                         "rows": "screened within row_box, obscured with a safety margin, positively scaled, shuffled"}
    if envelope:
        # the points are boxes, not linearizations: the paper-style fractions no longer apply
        meta.pop("point_fractions", None)
        meta["hardening"] = {"mechanism": "envelope", "band_mw": float(config.envelope.band_mw),
                             "rows": "per-bus bounds where a request band's box cuts into the offers, positively "
                                     "scaled, shuffled"}
    common = dict(flex_ids=tuple(flex_ids), flex_of_asset=flex_of_asset, vm_min_pu=package.vm_min_pu,
                  vm_max_pu=package.vm_max_pu, loading_min_percent=package.loading_min_percent,
                  loading_max_percent=package.loading_max_percent, polygon_sides=package.polygon_sides,
                  row_box_lower_mw=lo[col_order], row_box_upper_mw=hi[col_order])
    hardened = SensitivityPackage(points=tuple(points), style="hardened", meta=meta, **common)
    private = SensitivityPackage(points=tuple(_permuted_point(p, col_order) for p in package.points), style="paper",
                                 bus_ids=package.bus_ids, branch_ids=package.branch_ids, meta=dict(package.meta),
                                 **common)
    bus_of = dict(zip(key.flex_ids, key.flex_buses))
    old_ids = np.asarray(package.flex_ids)[col_order]
    dq_dp = tuple(np.asarray(key.dq_dp, dtype=float)[col_order]) if len(key.dq_dp) == n_flex else key.dq_dp
    new_key = replace(key, flex_ids=tuple(flex_ids), flex_buses=tuple(int(bus_of[f]) for f in old_ids), dq_dp=dq_dp,
                      buildings_of_flex={flex_id_of[f]: tuple(names.get(b, b) for b in blds)
                                         for f, blds in key.buildings_of_flex.items()},
                      dq_dp_of_building={names.get(b, b): v for b, v in key.dq_dp_of_building.items()},
                      package_fingerprint=hardened.fingerprint())
    origins = Origins(flex_bus=dict(zip(new_key.flex_ids, new_key.flex_buses)), row_element=row_element,
                      row_tag=row_tag, **monitored_of_key(key))
    shares = stats.pop("margin_share_of_b")
    stats["median_margin_share_of_b"] = float(np.median(shares)) if shares else 0.0
    runtime = time.perf_counter() - t0
    logger.info("hardened package: %d of %d rows over %d points, flatten %g, noise %g in %.2f s",
                sum(stats["rows_hardened"]), sum(stats["rows_paper"]), len(points), config.privacy_level,
                config.noise_level, runtime)
    return Hardened(package=hardened, key=new_key, private_package=private, origins=origins, seed=seed,
                    stats=stats, runtime_s=runtime)
