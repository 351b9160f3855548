"""Attacks on a sensitivity package: what a curious TSO can reconstruct from the file alone.

Every function here takes a :class:`PackageView` (the numbers of one package file, nothing else)
and returns a guess; :mod:`optim.privacy.audit` scores the guesses against the DSO's grid. The
attacks use only the package, public code conventions and textbook physics:

- **Shared paths.** In a radial grid ``dV_i/dP_j`` is (to first order) the resistance of the path
  that buses ``i`` and ``j`` share with the feed-in, divided by ``V^2``. The block of the VTDF at the
  flexible buses is therefore an ultrametric-like similarity ``S``: two buses of one substation share
  the transformer (``S`` large), two buses of different substations share only MV cable (``S``
  tiny). Average-linkage clustering of the distance ``-log S_ij``, cut
  at the largest gap of merge heights, gives the substation groups; the same inside each group
  gives its feeders; splitting a set of buses at its minimum ``S`` gives the children of the set's
  branching point, recursively the whole tree of the flexible buses.
- **Bus-level edges.** Bus ``p`` is an ancestor of bus ``i`` exactly when ``p``'s VTDF row is
  dominated by ``i``'s column by column (equal outside ``p``'s subtree, smaller inside); the
  parent is the deepest dominated row, and the smallest rise between the two rows times ``V^2``
  is the resistance of the edge.
- **Ratings.** ``dL/dP = 100 / S_rated`` (% per MW) for a flexible bus below a branch, so
  ``100 / max_j |LTDF_lj|`` is the branch's rating in MVA.
- **Ids.** The paper-style package shuffles ids with ``numpy.random.default_rng(0)`` in public
  code; replaying the three permutations maps each id to its position in pandapower's index order.
- **Linking.** Ids equal across packages link rows directly; failing that, rows are matched by
  the direction of their coefficients on the flexible buses both packages share (asset ids name
  the columns in both), with a maximum-weight assignment.

A hardened package has no VTDF/LTDF blocks and no physical row ids, only scaled constraint rows
``a @ dP <= b``; the same attacks then run on those rows (similarity from the column Gram matrix of
the normalized ``|a|``, optionally cleaned of noise or of a flat background, rows treated as bus
rows, ``100 / max |a_r|`` as rating). They are the
same algorithms, so a lower score means the package reveals less, not that the attack got weaker.

numpy/scipy/scikit-learn only: no grid data is read here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: The seed of the paper-style id shuffle (``LinearizationConfig.random_state``): public code.
PUBLIC_ID_SEED = 0
#: Mean cosine similarity above which the link attack trusts an id-based linking.
LINK_AGREEMENT = 0.8

__all__ = [
    "PackageView",
    "view_of_package",
    "column_similarity",
    "groups_by_largest_gap",
    "substation_labels",
    "feeder_labels",
    "tree_clusters",
    "parent_edges",
    "ratings_mva",
    "replayed_id_ranks",
    "row_links",
    "asset_id_numbers",
    "cap_groups",
]


@dataclass(frozen=True)
class PackageView:
    """The numbers of one package that the attacks read (one operating point).

    Parameters
    ----------
    flex_ids
        Column ids.
    flex_of_asset
        Asset (building) id -> column id, as shipped for the bid congestion manager.
    vtdf, ltdf
        The physical blocks (rows: voltages, branches) or ``None`` when the package has none.
    bus_ids, branch_ids
        Their row ids (empty when absent).
    rows, row_ids
        Constraint rows ``a`` of a package without physical blocks, and their ids.
    """

    flex_ids: tuple[str, ...]
    flex_of_asset: dict[str, str]
    vtdf: np.ndarray | None = None
    ltdf: np.ndarray | None = None
    bus_ids: tuple[str, ...] = ()
    branch_ids: tuple[str, ...] = ()
    rows: np.ndarray | None = None
    row_ids: tuple[str, ...] = ()
    style: str = "paper"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_flex(self) -> int:
        return len(self.flex_ids)

    @property
    def has_blocks(self) -> bool:
        return self.vtdf is not None and self.ltdf is not None

    def all_row_ids(self) -> tuple[str, ...]:
        """Every row id of the package (voltages, branches, constraint rows)."""
        return tuple(self.bus_ids) + tuple(self.branch_ids) + tuple(self.row_ids)


def _block(point: Any, name: str) -> np.ndarray | None:
    value = getattr(point, name, None)
    return None if value is None else np.asarray(value, dtype=float)


def view_of_package(package: Any, *, point: int = 0) -> PackageView:
    """The attackable content of a package's operating point ``point``.

    Works on any package object with ``flex_ids``, ``flex_of_asset`` and ``points``; the blocks
    ``vtdf_pu_per_mw``/``ltdf_percent_per_mw`` and the rows ``a_per_mw`` are read when present.
    """
    pt = package.points[point]
    style = str(getattr(package, "style", None) or "paper")
    vtdf, ltdf = _block(pt, "vtdf_pu_per_mw"), _block(pt, "ltdf_percent_per_mw")
    rows = _block(pt, "a_per_mw")
    has_blocks = vtdf is not None and ltdf is not None
    extra: dict[str, Any] = {}
    if getattr(package, "row_box_lower_mw", None) is not None:  # the offers' box, as shipped
        extra["row_box"] = (np.asarray(package.row_box_lower_mw, dtype=float),
                            np.asarray(package.row_box_upper_mw, dtype=float))
    if rows is not None and not has_blocks:
        extra["b"] = np.asarray(pt.b, dtype=float)
    # rows carry no ids in the file: the attacker names them by point and position
    row_ids = tuple(f"p{point}r{k}" for k in range(rows.shape[0])) if rows is not None else ()
    return PackageView(
        flex_ids=tuple(package.flex_ids),
        flex_of_asset=dict(package.flex_of_asset),
        vtdf=vtdf if has_blocks else None,
        ltdf=ltdf if has_blocks else None,
        bus_ids=tuple(getattr(package, "bus_ids", ()) or ()) if has_blocks else (),
        branch_ids=tuple(getattr(package, "branch_ids", ()) or ()) if has_blocks else (),
        rows=None if has_blocks else rows,
        row_ids=() if has_blocks else row_ids,
        style=style,
        extra=extra,
    )


# --- shared-path structure -----------------------------------------------------------------------

#: Denoising attacker: coefficients below this multiple of their row's median magnitude are zeroed.
DENOISE_FACTOR = 3.0
#: Ways the attacker cleans rows before clustering: as shipped, small coefficients zeroed, or the
#: row's most common value (a flattened background) zeroed.
DENOISE_MODES = ("none", "median", "background")


def _background_removed(a: np.ndarray) -> np.ndarray:
    """Each row with the value most of its entries share (to 1e-9 of the row's largest) set to 0."""
    out = a.copy()
    for r in range(a.shape[0]):
        top = float(np.abs(a[r]).max())
        if top == 0:
            continue
        keys = np.round(a[r] / (top * 1e-9))
        values, counts = np.unique(keys, return_counts=True)
        if counts.max() > 1:
            out[r, keys == values[np.argmax(counts)]] = 0.0
    return out


def _bus_like_rows(view: PackageView, *, denoise: str = "none") -> np.ndarray:
    """Rows that behave like VTDF rows: the VTDF itself, else ``|a|`` scaled to unit row maximum.

    ``denoise`` (constraint rows only): ``"median"`` zeroes the small coefficients of each row
    (below ``DENOISE_FACTOR`` times its median magnitude, the level of added noise);
    ``"background"`` zeroes the value most entries of a row share (a flattened background). Either
    leaves only the buses a row really depends on.
    """
    if denoise not in DENOISE_MODES:
        raise ValueError(f"unknown denoise mode {denoise!r}")
    if view.vtdf is not None:
        return view.vtdf
    if view.rows is None or view.rows.size == 0:
        return np.zeros((0, view.n_flex))
    a = np.abs(_background_removed(view.rows) if denoise == "background" else view.rows)
    if denoise == "median":
        floor = DENOISE_FACTOR * np.median(a, axis=1, keepdims=True)
        a = np.where(a > floor, a, 0.0)
    scale = a.max(axis=1, keepdims=True)
    return np.divide(a, scale, out=np.zeros_like(a), where=scale > 0)


def column_similarity(view: PackageView, *, denoise: str = "none") -> np.ndarray:
    """Similarity ``S`` (n_flex x n_flex) of the flexible buses.

    With a VTDF: its rows at the flexible buses (the row where each column peaks), symmetrized,
    i.e. the shared-path resistance. Without: the Gram matrix of the columns of the normalized
    ``|a|`` (buses below the same branches share rows).
    """
    if view.vtdf is not None:
        own_row = np.argmax(view.vtdf, axis=0)
        block = view.vtdf[own_row, :]
        return 0.5 * (block + block.T)
    rows = _bus_like_rows(view, denoise=denoise)
    return rows.T @ rows


#: Similarities below this share of the maximum count as "share nothing" (e.g. two MV ring halves).
_FLOOR = 1e-12
#: The distance of two buses that share nothing.
NOTHING_SHARED = -float(np.log(_FLOOR))


def _log_distance(similarity: np.ndarray) -> np.ndarray:
    """``-log(S_ij / max S)``: shared resistances span orders of magnitude (MV cable, transformer,
    LV cable), so their logarithm separates the levels of the tree."""
    top = float(similarity.max()) if similarity.size else 1.0
    floor = top * _FLOOR if top > 0 else 1e-300
    dist = -np.log(np.clip(similarity, floor, None) / max(top, floor))
    dist = np.clip(0.5 * (dist + dist.T), 0.0, None)
    np.fill_diagonal(dist, 0.0)
    return dist


def groups_by_largest_gap(distance: np.ndarray, *, min_groups: int = 1, top_merges: int = 40,
                          cap: float = NOTHING_SHARED) -> np.ndarray:
    """Labels of an average-linkage clustering cut at the largest gap between merge heights.

    Parameters
    ----------
    distance
        Symmetric distance matrix (n x n).
    min_groups
        Fewest groups to return (the cut is searched among the cuts that give at least this many).
    top_merges
        Only the last merges are searched (the coarse structure the attack is after).
    cap
        Merges at this distance join groups that share nothing; they are never a cut's upper side
        (the gap to "nothing shared" is infinite and says nothing about the levels of the tree).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = distance.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=int)
    if n == 2:
        return np.arange(2) if min_groups >= 2 else np.zeros(2, dtype=int)
    z = linkage(squareform(distance, checks=False), method="average")
    heights = z[:, 2]
    first = max(0, len(heights) - top_merges)
    # cutting between merge t and t+1 leaves n - (t + 1) groups
    candidates = [t for t in range(first, len(heights) - 1)
                  if n - (t + 1) >= min_groups and heights[t + 1] < cap * (1 - 1e-9)]
    if not candidates:
        return np.zeros(n, dtype=int)
    gaps = [heights[t + 1] - heights[t] for t in candidates]
    t = candidates[int(np.argmax(gaps))]
    labels = fcluster(z, t=n - (t + 1), criterion="maxclust")
    return labels.astype(int) - 1


def substation_labels(view: PackageView, *, denoise: str = "none") -> np.ndarray:
    """Guessed substation group of every flexible bus (column order)."""
    labels = groups_by_largest_gap(_log_distance(column_similarity(view, denoise=denoise)), min_groups=2)
    logger.info("substation attack: %d groups of %d flexible buses", len(set(labels)), view.n_flex)
    return labels


def feeder_labels(view: PackageView, substations: np.ndarray | None = None, *, denoise: str = "none") -> np.ndarray:
    """Guessed feeder of every flexible bus: each substation group split at its largest gap."""
    substations = substation_labels(view, denoise=denoise) if substations is None else substations
    dist = _log_distance(column_similarity(view, denoise=denoise))
    out = np.zeros(view.n_flex, dtype=int)
    next_label = 0
    for group in np.unique(substations):
        members = np.flatnonzero(substations == group)
        sub = groups_by_largest_gap(dist[np.ix_(members, members)], min_groups=2 if len(members) > 1 else 1)
        out[members] = sub + next_label
        next_label += int(sub.max()) + 1
    logger.info("feeder attack: %d feeders", next_label)
    return out


def tree_clusters(view: PackageView, *, rel_tol: float = 1.5e-4) -> list[frozenset[int]]:
    """Branching clusters of the flexible buses' tree (sets of column indices, size >= 2).

    A set of buses splits at its branching point: buses in different child subtrees share exactly
    the path to that point, so their similarity is (up to AC effects) the set's minimum; buses in
    one child share more. The single-linkage merges of the set, sorted by similarity, start with
    the cross-child merges close together; the first gap wider than their spread (plus
    ``rel_tol`` of the largest similarity) separates them from the merges inside the children,
    and the components above that gap are the children. Recursively, the whole tree.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import squareform

    similarity = column_similarity(view)
    tol = rel_tol * float(np.abs(similarity).max()) if similarity.size else 0.0
    clusters: list[frozenset[int]] = []
    stack = [np.arange(view.n_flex)]
    while stack:
        members = stack.pop()
        if len(members) < 2:
            continue
        clusters.append(frozenset(int(m) for m in members))
        if len(members) == 2:
            continue
        sub = similarity[np.ix_(members, members)]
        top = float(sub.max())
        merges = np.sort(top - linkage(squareform(top - sub, checks=False), method="single")[:, 2])
        spread = merges - merges[0]
        wide = np.flatnonzero(np.diff(merges) > spread[:-1] + tol)
        if len(wide) == 0:
            continue
        cut = int(wide[0])
        n_comp, comp = connected_components(sub > 0.5 * (merges[cut] + merges[cut + 1]), directed=False)
        if n_comp < 2:
            continue
        stack.extend(members[comp == c] for c in range(n_comp))
    logger.info("tree attack: %d branching clusters", len(clusters))
    return clusters


def parent_edges(view: PackageView, *, rel_tol: float = 1e-2, v_base_kv: float = 0.4
                 ) -> list[tuple[str, str, float]]:
    """Guessed parent -> child edges between rows, with the edge resistance in ohm.

    Row ``p`` is an ancestor of row ``i`` exactly when it is dominated column by column: for a
    flexible bus ``j`` outside ``p``'s subtree both share the same path with ``j`` (equal entries),
    for any other ``j`` bus ``i`` shares at least as much. This holds whatever weight each column
    gives the path (``R + tan(phi_j) X`` with reactive power following the unit), so the test
    needs no knowledge of the power factors. The parent is the dominated row with the largest sum
    (the deepest); the edge's resistance is the smallest increase over the columns that increase
    (the unit with the smallest ``tan(phi)``), times ``v_base_kv**2``. ``rel_tol`` absorbs AC effects.

    Returns
    -------
    list of (parent row id, child row id, resistance_ohm)
    """
    rows = _bus_like_rows(view)
    ids = view.bus_ids if view.vtdf is not None else view.row_ids
    n = rows.shape[0]
    if n == 0:
        return []
    tol = rel_tol * np.abs(rows) + 1e-12 * float(np.abs(rows).max())
    total = rows.sum(axis=1)
    # equal rows (buses with no flexible bus of their own below) are ordered by position
    order_key = np.lexsort((np.arange(n), total))
    rank = np.empty(n, dtype=int)
    rank[order_key] = np.arange(n)
    edges: list[tuple[str, str, float]] = []
    for i in range(n):
        dominated = np.all(rows <= rows[i] + tol[i], axis=1) & (rank < rank[i])
        if not dominated.any():
            continue
        candidates = np.flatnonzero(dominated)
        p = int(candidates[np.argmax(rank[candidates])])
        rise = rows[i] - rows[p]
        rising = rise > tol[i] + tol[p]
        r_pu = float(rise[rising].min()) if rising.any() else 0.0
        edges.append((ids[p], ids[i], r_pu * v_base_kv ** 2))
    logger.info("edge attack: %d parent-child edges", len(edges))
    return edges


def ratings_mva(view: PackageView) -> dict[str, float]:
    """Guessed rating (MVA) of every branch-like row: ``100 / max_j |dL_l/dP_j|``."""
    if view.ltdf is not None:
        matrix, ids = view.ltdf, view.branch_ids
    elif view.rows is not None:
        matrix, ids = view.rows, view.row_ids
    else:
        return {}
    peak = np.abs(matrix).max(axis=1) if matrix.size else np.zeros(0)
    out = {ids[k]: float(100.0 / peak[k]) for k in range(len(ids)) if peak[k] > 0}
    logger.info("rating attack: %d branch ratings", len(out))
    return out


_NUMBER = re.compile(r"(\d+)\s*$")


def _id_number(identifier: str) -> int | None:
    match = _NUMBER.search(identifier)
    return int(match.group(1)) if match else None


def replayed_id_ranks(view: PackageView, *, seed: int = PUBLIC_ID_SEED) -> dict[str, tuple[str, int]]:
    """Guessed element of every id: ``(kind, rank in pandapower index order)``.

    Replays the public shuffle: columns, voltages, then branches, one ``permutation`` each from
    ``default_rng(seed)``; the id ``X0007`` is the 7th entry of that kind's permutation. Kinds are
    ``"flex"``, ``"bus"`` and ``"branch"``; constraint rows without a kind are guessed as branches.
    """
    rng = np.random.default_rng(seed)
    kinds = (("flex", view.flex_ids), ("bus", view.bus_ids),
             ("branch", view.branch_ids if view.branch_ids else view.row_ids))
    out: dict[str, tuple[str, int]] = {}
    for kind, ids in kinds:
        order = rng.permutation(len(ids))
        for position, identifier in enumerate(ids):
            number = _id_number(identifier)
            k = number - 1 if number is not None and 0 < number <= len(ids) else position
            out[identifier] = (kind, int(order[k]))
    return out


def _columns_by_asset(view_a: PackageView, view_b: PackageView) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of both packages for the flexible buses they share (linked by asset ids)."""
    col_a = {f: k for k, f in enumerate(view_a.flex_ids)}
    col_b = {f: k for k, f in enumerate(view_b.flex_ids)}
    pairs = sorted({(col_a[fa], col_b[view_b.flex_of_asset[asset]])
                    for asset, fa in view_a.flex_of_asset.items() if asset in view_b.flex_of_asset})
    if not pairs:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    a, b = zip(*pairs)
    return np.asarray(a), np.asarray(b)


def _row_matrix(view: PackageView) -> tuple[np.ndarray, tuple[str, ...]]:
    if view.has_blocks:
        return np.vstack([view.vtdf, view.ltdf]), tuple(view.bus_ids) + tuple(view.branch_ids)
    if view.rows is None:
        return np.zeros((0, view.n_flex)), ()
    return view.rows, tuple(view.row_ids)


def _link_quality(links: dict[str, str], rows_a: dict[str, np.ndarray], rows_b: dict[str, np.ndarray]) -> float:
    """Mean cosine similarity of linked rows on the shared columns (the attacker's own check)."""
    values = []
    for r, s in links.items():
        x, y = rows_a.get(r), rows_b.get(s)
        if x is None or y is None:
            continue
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        values.append(float(x @ y / (nx * ny)) if nx > 0 and ny > 0 else 0.0)
    return float(np.mean(values)) if values else -1.0


def row_links(view_a: PackageView, view_b: PackageView) -> dict[str, str]:
    """Guessed row of package B for every row of package A.

    Three candidate linkings, judged by the attacker's own check (mean cosine similarity of the
    linked rows on the flexible buses both packages share, columns linked by asset ids): equal
    ids, then equal elements named by the id replay (:func:`replayed_id_ranks`), the first whose
    rows agree to at least ``LINK_AGREEMENT``; else a content match, the maximum-weight assignment
    (Hungarian) of the cosine similarities.
    """
    from scipy.optimize import linear_sum_assignment

    matrix_a, ids_a = _row_matrix(view_a)
    matrix_b, ids_b = _row_matrix(view_b)
    cols_a, cols_b = _columns_by_asset(view_a, view_b)
    if not ids_a or not ids_b or not len(cols_a):
        return {}
    xa, xb = matrix_a[:, cols_a], matrix_b[:, cols_b]
    rows_a, rows_b = dict(zip(ids_a, xa)), dict(zip(ids_b, xb))
    candidates: list[dict[str, str]] = [{r: r for r in set(ids_a) & set(ids_b)}]
    replay_a, replay_b = replayed_id_ranks(view_a), replayed_id_ranks(view_b)
    by_element = {replay_b[r]: r for r in ids_b}
    candidates.append({r: by_element[replay_a[r]] for r in ids_a if replay_a[r] in by_element})
    na = np.linalg.norm(xa, axis=1, keepdims=True)
    nb = np.linalg.norm(xb, axis=1, keepdims=True)
    cosine = (xa / np.where(na > 0, na, 1.0)) @ (xb / np.where(nb > 0, nb, 1.0)).T
    ra, rb = linear_sum_assignment(-cosine)
    candidates.append({ids_a[i]: ids_b[j] for i, j in zip(ra, rb)})
    # An id-based linking that agrees this well is structural, not chance: prefer it to the
    # assignment, which maximizes the same measure and so always scores at least as high.
    quality = [_link_quality(c, rows_a, rows_b) * len(c) / len(ids_a) for c in candidates]
    chosen = next((k for k in (0, 1) if quality[k] >= LINK_AGREEMENT), 2)
    links = candidates[chosen]
    logger.info("link attack: %d of %d rows linked (%s)", len(links), len(ids_a), ("ids", "id replay", "content")[chosen])
    return links


# --- operating envelopes -------------------------------------------------------------------------


def _caps(view: PackageView) -> dict[tuple[int, int], float]:
    """``(column, +1 upper | -1 lower) -> cap (MW)`` of the rows with one nonzero (per-bus bounds)."""
    out: dict[tuple[int, int], float] = {}
    if view.rows is None or not len(view.rows):
        return out
    b = view.extra.get("b")
    if b is None:
        return out
    for r, row in enumerate(view.rows):
        nz = np.flatnonzero(row)
        if len(nz) == 1:
            j = int(nz[0])
            out[(j, 1 if row[j] > 0 else -1)] = float(b[r] / row[j])  # the positive scale cancels
    return out


def cap_groups(views: Sequence[PackageView]) -> list[np.ndarray]:
    """Guessed groups of the columns from the per-bus bounds of an envelope package (all its points).

    Buses of one congested feeder are capped in the same request bands and, within a band, often
    by the same share of their offer. Two guesses: columns with the same pattern of (band, side)
    caps, and columns with the same caps as shares of the offered box rounded to 5 %; uncapped
    columns form one group. Returns both labelings (the audit keeps the better one).
    """
    n = views[0].n_flex if views else 0
    box = views[0].extra.get("row_box") if views else None
    pattern = [[] for _ in range(n)]
    shares = [[] for _ in range(n)]
    for k, view in enumerate(views):
        for (j, side), cap in sorted(_caps(view).items()):
            pattern[j].append((k, side))
            if box is not None:
                offered = box[1][j] if side > 0 else -box[0][j]
                share = abs(cap) / offered if offered > 1e-12 else 0.0
                shares[j].append((k, side, round(20 * share) / 20))
    labels = []
    for signature in (pattern, shares):
        ids: dict[tuple, int] = {}
        labels.append(np.array([ids.setdefault(tuple(sig), len(ids)) for sig in signature], dtype=int))
    return labels


def asset_id_numbers(asset_ids: Sequence[str]) -> dict[str, int]:
    """The number inside each asset id (``B0042`` -> 42), for the geography test; others are left out."""
    return {a: n for a in asset_ids if (n := _id_number(str(a))) is not None}
