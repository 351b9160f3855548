"""The SensitivityPackage (format 2): the privacy boundary of paper A, everything the TSO may see.

Every operating point ``i`` carries

- ``p_flex_mw``: the flexibility activated at the point, ``P_flex,i`` (MW per flexible bus); it is
  all the clearing needs of the point's injections, because ``P_fix`` cancels in the Voronoi rows
  (14h): ``P_i - P_j = P_flex,i - P_flex,j``;
- the **constraint rows** ``a_per_mw @ dP <= b``, with ``dP`` the deviation from ``p_flex_mw`` (the
  paper's ``dP_i``). The clearing uses only these rows (plus the bid bounds, Voronoi and balance).

A ``"paper"``-style package also carries the physical blocks it derives the rows from (a
``"hardened"`` one, made DSO-side by :mod:`optim.privacy`, carries the rows only):

- ``p_mw``: net injection ``P_fix + P_flex,i`` at the flexible buses (display only);
- ``vm_pu`` and ``vtdf_pu_per_mw``: monitored voltages and ``dV/dP`` (with reactive power following
  the unit: ``dV/dP + tan(phi) dV/dQ``);
- ``loading_percent`` and ``ltdf_percent_per_mw``: branch loadings signed by the direction of the
  active power at the end that sets the loading (display, Table I) and their derivative;
- ``i_re_percent``, ``i_im_percent`` and ``itdf_re_percent_per_mw``, ``itdf_im_percent_per_mw``:
  the branch current in % of its rating, real and imaginary part in the frame of its end bus'
  voltage (so the real part has the sign of the active power flow), and their derivatives.

**Rows of a paper-style point** (:func:`constraint_rows`, the one place they are derived): voltage
upper and lower rows ``+-VTDF dP <= V_UB - V / V - V_LB``; for each branch, with currents, an
inscribed regular ``N``-gon of the circle ``|I| = I_max`` (``N = polygon_sides``): faces
``cos(t_s) I_re + sin(t_s) I_im <= I_max cos(pi/N)``, ``t_s = 2 pi s / N``. Inside the polygon
``|I| <= I_max`` holds exactly (of the linearized current), and at most ``1 - cos(pi/N)`` of the
rating is given away (1.9 % for ``N = 16``). Without currents the paper's signed-loading rows
``L_LB <= L + LTDF dP <= L_UB`` are used (``branch_rows = "signed-loading"``).

**Screening at the DSO** (``row_box_lower_mw``/``row_box_upper_mw``): a row that cannot bind for
any dispatch in the per-bus box of the offers the package was made for is not stored (it would
be screened by the TSO anyway). The clearing refuses bids that leave the box.

The package imports numpy only, so the TSO side stays grid-free; it holds no topology, impedances,
coordinates or names (``tests/unit/test_privacy.py`` audits that).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optim._errors import InputError

if TYPE_CHECKING:
    import scipy.sparse as sp

FORMAT_VERSION = 2
STYLES = ("paper", "hardened")
#: Default number of sides of the current polygon (at most 1.9 % of a rating given away).
DEFAULT_POLYGON_SIDES = 16
#: Relative margin below which a row is kept by a screening (it might bind).
SCREEN_MARGIN = 1e-9

#: Optional physical blocks of a paper-style point: name -> row space ("v", "l") and 1-D/2-D.
PHYSICAL = {
    "p_mw": ("f", 1),
    "vm_pu": ("v", 1),
    "vtdf_pu_per_mw": ("v", 2),
    "loading_percent": ("l", 1),
    "ltdf_percent_per_mw": ("l", 2),
    "i_re_percent": ("l", 1),
    "i_im_percent": ("l", 1),
    "itdf_re_percent_per_mw": ("l", 2),
    "itdf_im_percent_per_mw": ("l", 2),
}
_CURRENTS = ("i_re_percent", "i_im_percent", "itdf_re_percent_per_mw", "itdf_im_percent_per_mw")


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of a float array is finite, without a boolean array of its size.

    NaN and infinities propagate through a sum, so a finite sum proves every value finite; only
    a sum that overflows (or a real non-finite value) takes the elementwise check. On the whole
    grid's blocks (6 M values each) the sum is 4x faster than ``np.all(np.isfinite(a))``.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(np.sum(array))):
            return True
    return bool(np.all(np.isfinite(array)))


def _finite_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != shape:
        raise InputError(f"{name} has shape {array.shape}, expected {shape}")
    if not all_finite(array):
        raise InputError(f"{name} contains NaN or infinite values; recompute the operating point")
    if array.flags.writeable or array.base is not None:  # a read-only array that owns its data is kept as it is
        array = array.copy()
        array.setflags(write=False)
    return array


@dataclass(frozen=True)
class OperatingPoint:
    """One linearization point: constraint rows, and (paper style) the physical blocks.

    Parameters
    ----------
    label
        Human-readable name of the point, e.g. ``"all bids"`` (no grid data).
    p_flex_mw
        Activated flexibility at the flexible buses, shape ``(n_flex,)``.
    a_per_mw, b
        Constraint rows ``a_per_mw @ dP <= b``, shapes ``(n_rows, n_flex)`` and ``(n_rows,)``; for a
        paper-style package they may be left None and are derived by :func:`constraint_rows`.
    p_mw, vm_pu, vtdf_pu_per_mw, loading_percent, ltdf_percent_per_mw, i_re_percent, i_im_percent,
    itdf_re_percent_per_mw, itdf_im_percent_per_mw
        Physical blocks (see the module docstring); None in a hardened package.
    """

    label: str
    p_flex_mw: np.ndarray
    a_per_mw: np.ndarray | None = None
    b: np.ndarray | None = None
    p_mw: np.ndarray | None = None
    vm_pu: np.ndarray | None = None
    vtdf_pu_per_mw: np.ndarray | None = None
    loading_percent: np.ndarray | None = None
    ltdf_percent_per_mw: np.ndarray | None = None
    i_re_percent: np.ndarray | None = None
    i_im_percent: np.ndarray | None = None
    itdf_re_percent_per_mw: np.ndarray | None = None
    itdf_im_percent_per_mw: np.ndarray | None = None

    @property
    def n_flex(self) -> int:
        return int(self.p_flex_mw.shape[0])

    @property
    def n_rows(self) -> int:
        return 0 if self.b is None else int(self.b.shape[0])

    @property
    def has_currents(self) -> bool:
        return all(getattr(self, name) is not None for name in _CURRENTS)

    @property
    def a_csr(self) -> sp.csr_matrix:
        """The rows ``a_per_mw`` as CSR (int32 indices), built once per point; callers do not modify it.

        The rows of a district's grid are sparse (a bus's injection moves the voltages and
        currents of its own feeder and transformer only: 8 % nonzeros in the whole shared file's
        package), and the clearing builds an LP from them for every request; the dense scan for
        the nonzeros is paid once. The point is frozen and the arrays it makes are read-only, so
        the cache holds unless a caller writes into an array it handed in and owns (none does);
        a pickled or copied point builds its own. (Not ``functools.cached_property``: on Python
        3.11 its lock is shared by every instance, so the clearing's threads would build the
        points' matrices one at a time; two threads building the same one waste time but store
        equal matrices.)
        """
        cached = self.__dict__.get("_a_csr")
        if cached is None:
            cached = self.__dict__["_a_csr"] = sparse_rows(np.zeros((0, self.n_flex)) if self.a_per_mw is None
                                                       else self.a_per_mw)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_a_csr"}  # a cache, not data

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array the point holds, by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "label" and getattr(self, f.name) is not None}


def sparse_rows(a: np.ndarray) -> sp.csr_matrix:
    """A dense 2-D array as CSR with int32 indices (HiGHS' index type), sorted within each row."""
    import scipy.sparse as sp  # only the clearing needs it; readers of a package do not

    # straight from the nonzero mask: scipy's dense -> COO -> CSR path cost 3x as much
    mask = a != 0.0
    indptr = np.concatenate(([0], np.cumsum(mask.sum(axis=1))))
    if indptr[-1] > np.iinfo(np.int32).max:
        raise InputError(f"{int(indptr[-1])} nonzero coefficients in one point's rows: more than HiGHS' 32-bit indices hold")
    indptr = indptr.astype(np.int32)
    csr = sp.csr_matrix((a[mask], np.nonzero(mask)[1].astype(np.int32), indptr), shape=a.shape)
    csr.has_sorted_indices = True  # np.nonzero walks each row left to right
    return csr


def _box_range(a: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``a @ y`` over ``lower <= y <= upper`` (row-wise)."""
    # a @ mid -/+ |a| @ half: the same extremes as splitting a into its signs, one pass fewer
    mid, half = 0.5 * (lower + upper), 0.5 * (upper - lower)
    centre, spread = a @ mid, np.abs(a) @ half
    return centre - spread, centre + spread


def rows_that_can_bind(a: np.ndarray, b: np.ndarray, lower_mw: np.ndarray, upper_mw: np.ndarray) -> np.ndarray:
    """Mask of rows ``a @ dP <= b`` that some ``dP`` in ``[lower, upper]`` can violate or make tight.

    A row whose largest left-hand side over the box stays below ``b`` by more than
    :data:`SCREEN_MARGIN` (relative) is implied by the box and cannot bind.
    """
    if a.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    high = _box_range(a, lower_mw, upper_mw)[1]
    return high > b - SCREEN_MARGIN * np.maximum(1.0, np.abs(b))


def signed_magnitude(i_re: np.ndarray, i_im: np.ndarray) -> np.ndarray:
    """``|I|`` signed by the real (active) part: the paper's signed loading from a current in %."""
    return np.where(i_re < 0.0, -1.0, 1.0) * np.hypot(i_re, i_im)


def constraint_rows(point: OperatingPoint, limits: dict[str, float], polygon_sides: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``a @ dP <= b`` of a paper-style point, before any screening.

    Parameters
    ----------
    point
        Point with ``vm_pu``/``vtdf_pu_per_mw`` and either the four current blocks or
        ``loading_percent``/``ltdf_percent_per_mw``.
    limits
        ``vm_min_pu``, ``vm_max_pu``, ``loading_min_percent``, ``loading_max_percent``.
    polygon_sides
        ``N`` of the inscribed current polygon (>= 4); used when the point has currents.

    Returns
    -------
    a, b
        Voltage upper rows, voltage lower rows, then per side ``s`` the polygon rows of every branch
        (or the signed-loading upper and lower rows).
    """
    vtdf = point.vtdf_pu_per_mw
    a_parts = [vtdf, -vtdf]
    b_parts = [limits["vm_max_pu"] - point.vm_pu, point.vm_pu - limits["vm_min_pu"]]
    if point.has_currents:
        radius = float(limits["loading_max_percent"]) * math.cos(math.pi / polygon_sides)
        for s in range(polygon_sides):
            c, d = math.cos(2 * math.pi * s / polygon_sides), math.sin(2 * math.pi * s / polygon_sides)
            a_parts.append(c * point.itdf_re_percent_per_mw + d * point.itdf_im_percent_per_mw)
            b_parts.append(radius - (c * point.i_re_percent + d * point.i_im_percent))
    else:
        ltdf = point.ltdf_percent_per_mw
        a_parts += [ltdf, -ltdf]
        b_parts += [limits["loading_max_percent"] - point.loading_percent,
                    point.loading_percent - limits["loading_min_percent"]]
    return np.vstack(a_parts), np.concatenate(b_parts)


def constraint_rows_at(point: OperatingPoint, limits: dict[str, float], polygon_sides: int,
                       index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of :func:`constraint_rows` at the positions ``index`` only (the same values).

    The envelope's design aligns a few hundred rows over all points; forming the 8,000 of a
    Bergwald point to pick them was most of its rows' time.

    Raises
    ------
    InputError
        A position outside the point's rows.
    """
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    n_bus = len(point.vm_pu)
    n_branch = len(point.i_re_percent) if point.has_currents else len(point.loading_percent)
    sides = polygon_sides if point.has_currents else 2
    if len(index) and (index.min() < 0 or index.max() >= 2 * n_bus + sides * n_branch):
        raise InputError(f"a row position outside the point's {2 * n_bus + sides * n_branch} constraint rows")
    if not point.has_currents:
        a, b = constraint_rows(point, limits, polygon_sides)
        return a[index], b[index]
    vtdf = point.vtdf_pu_per_mw
    a = np.empty((len(index), vtdf.shape[1]))
    b = np.empty(len(index))
    at = np.flatnonzero(index < n_bus)  # voltage upper rows
    bus = index[at]
    a[at], b[at] = vtdf[bus], limits["vm_max_pu"] - point.vm_pu[bus]
    at = np.flatnonzero((index >= n_bus) & (index < 2 * n_bus))  # voltage lower rows
    bus = index[at] - n_bus
    a[at], b[at] = -vtdf[bus], point.vm_pu[bus] - limits["vm_min_pu"]
    at = np.flatnonzero(index >= 2 * n_bus)  # per polygon side, every branch
    side, branch = np.divmod(index[at] - 2 * n_bus, n_branch)
    c, d = np.cos(2 * np.pi * side / polygon_sides), np.sin(2 * np.pi * side / polygon_sides)
    radius = float(limits["loading_max_percent"]) * math.cos(math.pi / polygon_sides)
    # the same products as constraint_rows (c re + d im per row), so the same floating-point values
    a[at] = c[:, None] * point.itdf_re_percent_per_mw[branch] + d[:, None] * point.itdf_im_percent_per_mw[branch]
    b[at] = radius - (c * point.i_re_percent[branch] + d * point.i_im_percent[branch])
    return a, b


def screened_constraint_rows(point: OperatingPoint, limits: dict[str, float], polygon_sides: int,
                             lower_mw: np.ndarray, upper_mw: np.ndarray, *, return_index: bool = False
                             ) -> tuple[np.ndarray, ...]:
    """``constraint_rows`` then ``rows_that_can_bind`` over ``[lower, upper]``, without building every row.

    The same rows in the same order; with ``return_index`` also their positions among
    :func:`constraint_rows`' rows (the hardening names each row's element by it). A polygon row ``c re + d im`` has the box extreme
    ``(c re + d im) @ mid + |c re + d im| @ half <= c re @ mid + d im @ mid + |c| |re| @ half +
    |d| |im| @ half``; a row whose bound is below its threshold cannot bind, so only the others
    are formed and screened exactly (on the whole grid the rows are 16 x 4,000 x 1,495 values).
    """
    if not point.has_currents:
        a, b = constraint_rows(point, limits, polygon_sides)
        keep = rows_that_can_bind(a, b, lower_mw, upper_mw)
        return (a[keep], b[keep], np.flatnonzero(keep)) if return_index else (a[keep], b[keep])
    mid, half = 0.5 * (lower_mw + upper_mw), 0.5 * (upper_mw - lower_mw)

    def threshold(b: np.ndarray) -> np.ndarray:
        return b - SCREEN_MARGIN * np.maximum(1.0, np.abs(b))

    vtdf = point.vtdf_pu_per_mw
    v_centre, v_spread = vtdf @ mid, np.abs(vtdf) @ half
    a_parts, b_parts, index_parts = [], [], []
    n_bus, n_branch = len(point.vm_pu), len(point.i_re_percent)
    for offset, (sign, b) in enumerate(((1.0, limits["vm_max_pu"] - point.vm_pu),
                                        (-1.0, point.vm_pu - limits["vm_min_pu"]))):
        keep = sign * v_centre + v_spread > threshold(b)
        a_parts.append(sign * vtdf[keep])
        b_parts.append(b[keep])
        index_parts.append(offset * n_bus + np.flatnonzero(keep))
    re, im = point.itdf_re_percent_per_mw, point.itdf_im_percent_per_mw
    re_mid, im_mid, re_half, im_half = re @ mid, im @ mid, np.abs(re) @ half, np.abs(im) @ half
    radius = float(limits["loading_max_percent"]) * math.cos(math.pi / polygon_sides)
    for side in range(polygon_sides):
        c, d = math.cos(2 * math.pi * side / polygon_sides), math.sin(2 * math.pi * side / polygon_sides)
        b = radius - (c * point.i_re_percent + d * point.i_im_percent)
        centre = c * re_mid + d * im_mid
        candidate = np.flatnonzero(centre + abs(c) * re_half + abs(d) * im_half > threshold(b))
        a = c * re[candidate] + d * im[candidate]
        keep = centre[candidate] + np.abs(a) @ half > threshold(b[candidate])
        a_parts.append(a[keep])
        b_parts.append(b[candidate[keep]])
        index_parts.append(2 * n_bus + side * n_branch + candidate[keep])
    if return_index:
        return np.vstack(a_parts), np.concatenate(b_parts), np.concatenate(index_parts)
    return np.vstack(a_parts), np.concatenate(b_parts)


def predicted_state(point: OperatingPoint, p_flex_mw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``G_V`` and the signed ``G_L`` of a paper-style point at a dispatch (paper A, eq. 7-8).

    With currents the loading is the magnitude of the linearized complex current, signed by its
    real part; without, the linearized signed loading.
    """
    if point.vm_pu is None:
        raise InputError("a hardened package has no voltages or loadings to predict")
    d_p = np.asarray(p_flex_mw, dtype=float) - point.p_flex_mw
    vm = point.vm_pu + point.vtdf_pu_per_mw @ d_p
    if point.has_currents:
        loading = signed_magnitude(point.i_re_percent + point.itdf_re_percent_per_mw @ d_p,
                                   point.i_im_percent + point.itdf_im_percent_per_mw @ d_p)
    else:
        loading = point.loading_percent + point.ltdf_percent_per_mw @ d_p
    return vm, loading


@dataclass(frozen=True)
class SensitivityPackage:
    """All the TSO receives from the DSO (paper A, III-B), format 2.

    Parameters
    ----------
    flex_ids
        Opaque ids of the flexible buses (columns), e.g. ``"F0001"``.
    bus_ids, branch_ids
        Opaque ids of the monitored voltages and branches (paper style; empty when hardened).
    points
        The operating points.
    flex_of_asset
        Which flexible bus each market asset location (building id) is connected to; the bid
        congestion manager needs it to split aggregated bids by location.
    vm_min_pu, vm_max_pu, loading_min_percent, loading_max_percent
        Limits (paper A: 0.95/1.05 p.u., -100/100 %; the current polygon uses ``loading_max_percent``).
    polygon_sides
        ``N`` of the inscribed current polygon.
    style
        ``"paper"`` (physical blocks and rows) or ``"hardened"`` (rows only).
    row_box_lower_mw, row_box_upper_mw
        Per flexible bus, the dispatch box the stored rows were screened for (None: not screened).
    meta
        Non-sensitive context: time frame, point definitions, credit.
    """

    flex_ids: tuple[str, ...]
    bus_ids: tuple[str, ...] = ()
    branch_ids: tuple[str, ...] = ()
    points: tuple[OperatingPoint, ...] = ()
    flex_of_asset: dict[str, str] = field(default_factory=dict)
    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05
    loading_min_percent: float = -100.0
    loading_max_percent: float = 100.0
    polygon_sides: int = DEFAULT_POLYGON_SIDES
    style: str = "paper"
    row_box_lower_mw: np.ndarray | None = None
    row_box_upper_mw: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flex_ids", tuple(str(x) for x in self.flex_ids))
        object.__setattr__(self, "bus_ids", tuple(str(x) for x in self.bus_ids))
        object.__setattr__(self, "branch_ids", tuple(str(x) for x in self.branch_ids))
        if self.style not in STYLES:
            raise InputError(f"package style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if not self.points:
            raise InputError("a SensitivityPackage needs at least one operating point")
        n_f = len(self.flex_ids)
        if n_f == 0:
            raise InputError("a SensitivityPackage needs at least one flexible bus")
        for name, ids in (("flex_ids", self.flex_ids), ("bus_ids", self.bus_ids), ("branch_ids", self.branch_ids)):
            if len(set(ids)) != len(ids):
                raise InputError(f"{name} are not unique")
        for name in ("vm_min_pu", "vm_max_pu", "loading_min_percent", "loading_max_percent"):
            if not np.isfinite(getattr(self, name)):
                raise InputError(f"{name} must be finite")
        if not self.vm_min_pu < self.vm_max_pu or not self.loading_min_percent < self.loading_max_percent:
            raise InputError("lower limits must be below upper limits")
        if not isinstance(self.polygon_sides, (int, np.integer)) or not 4 <= int(self.polygon_sides) <= 720:
            raise InputError(f"polygon_sides must be an integer from 4 to 720, got {self.polygon_sides!r}")
        object.__setattr__(self, "polygon_sides", int(self.polygon_sides))
        box = None
        if (self.row_box_lower_mw is None) != (self.row_box_upper_mw is None):
            raise InputError("row_box_lower_mw and row_box_upper_mw go together")
        if self.row_box_lower_mw is not None:
            lower = _finite_array("row_box_lower_mw", self.row_box_lower_mw, (n_f,))
            upper = _finite_array("row_box_upper_mw", self.row_box_upper_mw, (n_f,))
            if np.any(lower > upper):
                raise InputError("row_box_lower_mw must not exceed row_box_upper_mw")
            object.__setattr__(self, "row_box_lower_mw", lower)
            object.__setattr__(self, "row_box_upper_mw", upper)
            box = (lower, upper)
        object.__setattr__(self, "points", tuple(self._checked(k, pt, box) for k, pt in enumerate(self.points)))
        unknown = set(self.flex_of_asset.values()) - set(self.flex_ids)
        if unknown:
            raise InputError(f"flex_of_asset refers to unknown flexible buses: {sorted(unknown)[:5]}")

    @property
    def limits(self) -> dict[str, float]:
        return {"vm_min_pu": float(self.vm_min_pu), "vm_max_pu": float(self.vm_max_pu),
                "loading_min_percent": float(self.loading_min_percent),
                "loading_max_percent": float(self.loading_max_percent)}

    def _checked(self, k: int, pt: OperatingPoint, box: tuple[np.ndarray, np.ndarray] | None) -> OperatingPoint:
        n_f, where = len(self.flex_ids), f"operating point {k} ({pt.label})"
        sizes = {"f": n_f, "v": len(self.bus_ids), "l": len(self.branch_ids)}
        values: dict[str, Any] = {"label": str(pt.label),
                                  "p_flex_mw": _finite_array(f"{where}: p_flex_mw", pt.p_flex_mw, (n_f,))}
        for name, (space, ndim) in PHYSICAL.items():
            value = getattr(pt, name)
            if self.style == "hardened":
                if value is not None:
                    raise InputError(f"{where}: a hardened package carries no {name}")
                continue
            if value is None:
                if name in ("vm_pu", "vtdf_pu_per_mw"):
                    raise InputError(f"{where}: a paper-style point needs {name}")
                continue
            shape = (sizes[space],) if ndim == 1 else (sizes[space], n_f)
            values[name] = _finite_array(f"{where}: {name}", value, shape)
        if self.style == "paper":
            present = [name for name in _CURRENTS if name in values]
            if present and len(present) != len(_CURRENTS):
                raise InputError(f"{where}: the current blocks go together, only {present} given")
            if not present and not ("loading_percent" in values and "ltdf_percent_per_mw" in values):
                raise InputError(f"{where}: a paper-style point needs the current blocks or the signed loadings")
        if pt.a_per_mw is None or pt.b is None:
            if self.style == "hardened":
                raise InputError(f"{where}: a hardened point needs its rows a_per_mw and b")
            if box is None:
                a, b = constraint_rows(OperatingPoint(**values), self.limits, self.polygon_sides)
            else:
                a, b = screened_constraint_rows(OperatingPoint(**values), self.limits, self.polygon_sides,
                                                box[0] - values["p_flex_mw"], box[1] - values["p_flex_mw"])
            for derived in (a, b):  # made here, owned by no one else: frozen instead of copied
                if derived.base is None:
                    derived.setflags(write=False)
        else:
            a, b = pt.a_per_mw, pt.b
        a = np.asarray(a, dtype=float)
        values["a_per_mw"] = _finite_array(f"{where}: a_per_mw", a, (a.shape[0] if a.ndim == 2 else -1, n_f))
        values["b"] = _finite_array(f"{where}: b", b, (values["a_per_mw"].shape[0],))
        unchanged = (type(pt) is OperatingPoint and values["label"] == pt.label
                     and all(value is getattr(pt, name) for name, value in values.items() if name != "label")
                     and all(getattr(pt, name) is None for name in PHYSICAL if name not in values))
        if unchanged:  # checked before: kept, with its cached CSR rows (a package of some of its points)
            return pt
        return OperatingPoint(**values)

    @property
    def n_points(self) -> int:
        return len(self.points)

    # --- serialization -------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        """Everything but the arrays (JSON-serializable)."""
        return {
            "format": "digiplat-sensitivity-package",
            "version": FORMAT_VERSION,
            "style": self.style,
            "flex_ids": list(self.flex_ids),
            "bus_ids": list(self.bus_ids),
            "branch_ids": list(self.branch_ids),
            "flex_of_asset": dict(self.flex_of_asset),
            "limits": {**self.limits, "polygon_sides": self.polygon_sides},
            "meta": dict(self.meta),
        }

    def _named_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.row_box_lower_mw is not None:
            out["row_box_lower_mw"] = self.row_box_lower_mw
            out["row_box_upper_mw"] = self.row_box_upper_mw
        for k, p in enumerate(self.points):
            for name, value in p.arrays().items():
                out[f"p{k}_{name}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict (arrays as nested lists)."""
        out = self._header()
        if self.row_box_lower_mw is not None:
            out["row_box"] = {"lower_mw": self.row_box_lower_mw.tolist(), "upper_mw": self.row_box_upper_mw.tolist()}
        out["points"] = [{"label": p.label, **{n: v.tolist() for n, v in p.arrays().items()}} for p in self.points]
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the canonical content: header JSON (sorted keys), then every array's name,
        shape and little-endian float64 bytes in name order. Independent of the file's compression."""
        digest = hashlib.sha256()
        header = self._header()
        header["point_labels"] = [p.label for p in self.points]
        digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        for name, value in sorted(self._named_arrays().items()):
            digest.update(f"{name}{value.shape}".encode())
            if value.size:  # an empty block adds no bytes (memoryview cannot cast a zero-length view)
                digest.update(memoryview(np.ascontiguousarray(value, dtype="<f8")).cast("B"))  # no bytes copy
        return digest.hexdigest()

    @classmethod
    def _check_format(cls, data: Any) -> None:
        if not isinstance(data, dict) or data.get("format") != "digiplat-sensitivity-package":
            raise InputError("not a DigIPlat sensitivity package (missing 'format' marker)")
        version = data.get("version")
        if version == 1:
            raise InputError("package format 1 is no longer supported: re-run 'digiplat linearize'")
        if version != FORMAT_VERSION:
            raise InputError(f"package format {version} is not supported (expected {FORMAT_VERSION}); "
                             "re-run 'digiplat linearize'")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SensitivityPackage":
        """Build a package from :meth:`to_dict` output, validating every field."""
        cls._check_format(data)
        names = {f.name for f in fields(OperatingPoint)} - {"label"}
        try:
            points = []
            for p in data["points"]:
                unknown = set(p) - names - {"label"}
                if unknown:
                    raise InputError(f"unknown operating-point field(s): {sorted(unknown)}")
                points.append(OperatingPoint(label=p["label"], **{n: np.asarray(v, dtype=float)
                                                                   for n, v in p.items() if n in names}))
            limits = dict(data["limits"])
            box = data.get("row_box")
            return cls(
                flex_ids=tuple(data["flex_ids"]),
                bus_ids=tuple(data.get("bus_ids", ())),
                branch_ids=tuple(data.get("branch_ids", ())),
                points=tuple(points),
                flex_of_asset={str(k): str(v) for k, v in data.get("flex_of_asset", {}).items()},
                style=str(data.get("style", "")),
                polygon_sides=int(limits.pop("polygon_sides", DEFAULT_POLYGON_SIDES)),
                row_box_lower_mw=None if box is None else np.asarray(box["lower_mw"], dtype=float),
                row_box_upper_mw=None if box is None else np.asarray(box["upper_mw"], dtype=float),
                meta=dict(data.get("meta", {})),
                **{k: float(v) for k, v in limits.items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"malformed sensitivity package: {exc}") from exc

    def write(self, path: str | Path, *, compress: bool = True) -> Path:
        """Write the package to exactly ``path`` (a zip of a JSON header and float64 ``.npy`` arrays).

        Not atomic by itself: :meth:`save` and the DSO's pair writer use a temporary sibling.
        ``compress=False`` stores the arrays as they are (the DSO's private copy, which never
        travels: 20 % more bytes, no deflate time).
        """
        path = Path(path)
        header = self._header()
        arrays = self._named_arrays()
        header["points"] = [{"label": p.label, **{n: f"p{k}_{n}" for n in p.arrays()}}
                            for k, p in enumerate(self.points)]
        if self.row_box_lower_mw is not None:
            header["row_box"] = {"lower_mw": "row_box_lower_mw", "upper_mw": "row_box_upper_mw"}
        # deflate level 1: half the time of the default level 6 for 2 % more bytes (dense float64
        # sensitivities compress little either way; 15.5 vs 15.2 MB, 0.7 vs 1.4 s on Bergwald m = 9)
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(path, "w", compression=method, compresslevel=1 if compress else None) as zf:
            zf.writestr("package.json", json.dumps(header, indent=1))
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(arr, dtype="<f8"), allow_pickle=False)
                zf.writestr(f"{name}.npy", buf.getvalue())
        return path

    def save(self, path: str | Path) -> Path:
        """Write the package alone, atomically (temporary sibling, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.write(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SensitivityPackage":
        """Read a package written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"sensitivity package {path} does not exist; run 'digiplat linearize' first")
        try:
            with zipfile.ZipFile(path) as zf:
                header = json.loads(zf.read("package.json"))
                cls._check_format(header)

                def read(name: str) -> np.ndarray:
                    with zf.open(f"{name}.npy") as fh:
                        return np.load(io.BytesIO(fh.read()), allow_pickle=False)

                for point in header.get("points", []):
                    for n in [n for n in point if n != "label"]:
                        point[n] = read(point[n])
                if "row_box" in header:
                    header["row_box"] = {k: read(v) for k, v in header["row_box"].items()}
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError, OSError, TypeError) as exc:
            raise InputError(f"cannot read sensitivity package {path}: {exc}") from exc
        return cls.from_dict(header)

    def with_points(self, points: tuple[OperatingPoint, ...], **changes: Any) -> "SensitivityPackage":
        """A copy with other points (rows of paper-style points without rows are derived)."""
        return replace(self, points=tuple(points), **changes)
