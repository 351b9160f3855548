"""The SensitivityPackage: the privacy boundary of paper A, everything the TSO may see.

For each operating point ``i`` it carries the base values and the sensitivities of the DSO's grid
restricted to the flexible buses (paper A, eq. 11 and the first-order Taylor model of III-B):

- ``p_mw``: net active injection ``P_i = P_fix + P_flex,i`` at the flexible buses (MW, + = injection),
- ``p_flex_mw``: the flexibility activated at the point, ``P_flex,i`` (MW, per flexible bus),
- ``vm_pu``: monitored bus voltage magnitudes ``V_i``,
- ``loading_percent``: monitored branch loadings ``L_i``, signed by flow direction,
- ``vtdf_pu_per_mw``: ``dV/dP`` (rows: monitored buses, columns: flexible buses),
- ``ltdf_percent_per_mw``: ``dL/dP`` (rows: monitored branches, columns: flexible buses),

plus the limits and opaque row/column ids. It holds no topology, impedances, coordinates or names:
``tests/unit/test_privacy.py`` audits that. Imports numpy only, so the TSO side stays grid-free.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optim._errors import InputError

FORMAT_VERSION = 1


def _finite_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != shape:
        raise InputError(f"{name} has shape {array.shape}, expected {shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values; recompute the operating point")
    array = array.copy()
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class OperatingPoint:
    """Base values and sensitivities of the grid at one linearization point.

    Parameters
    ----------
    label
        Human-readable name of the point, e.g. ``"all bids"`` (no grid data).
    p_mw, p_flex_mw
        Net injection and activated flexibility at the flexible buses, shape ``(n_flex,)``.
    vm_pu, loading_percent
        Monitored voltages ``(n_v,)`` and signed branch loadings ``(n_l,)``.
    vtdf_pu_per_mw, ltdf_percent_per_mw
        Sensitivities, shapes ``(n_v, n_flex)`` and ``(n_l, n_flex)``.
    """

    label: str
    p_mw: np.ndarray
    p_flex_mw: np.ndarray
    vm_pu: np.ndarray
    loading_percent: np.ndarray
    vtdf_pu_per_mw: np.ndarray
    ltdf_percent_per_mw: np.ndarray

    @property
    def n_flex(self) -> int:
        return int(self.p_mw.shape[0])


@dataclass(frozen=True)
class SensitivityPackage:
    """All the TSO receives from the DSO (paper A, III-B).

    Parameters
    ----------
    flex_ids
        Opaque ids of the flexible buses (columns), e.g. ``"F0001"``.
    bus_ids, branch_ids
        Opaque ids of the monitored voltages and branch loadings (rows).
    points
        The operating points, each with arrays of matching shapes.
    flex_of_asset
        Which flexible bus each market asset location (building id) is connected to; this is what
        the bid congestion manager needs to split aggregated bids by location.
    vm_min_pu, vm_max_pu, loading_min_percent, loading_max_percent
        Limits (paper A: 0.95/1.05 p.u., -100/100 %).
    meta
        Non-sensitive context: time frame, point definitions, credit.
    """

    flex_ids: tuple[str, ...]
    bus_ids: tuple[str, ...]
    branch_ids: tuple[str, ...]
    points: tuple[OperatingPoint, ...]
    flex_of_asset: dict[str, str] = field(default_factory=dict)
    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05
    loading_min_percent: float = -100.0
    loading_max_percent: float = 100.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flex_ids", tuple(str(x) for x in self.flex_ids))
        object.__setattr__(self, "bus_ids", tuple(str(x) for x in self.bus_ids))
        object.__setattr__(self, "branch_ids", tuple(str(x) for x in self.branch_ids))
        if not self.points:
            raise InputError("a SensitivityPackage needs at least one operating point")
        n_f, n_v, n_l = len(self.flex_ids), len(self.bus_ids), len(self.branch_ids)
        if n_f == 0:
            raise InputError("a SensitivityPackage needs at least one flexible bus")
        for name, ids in (("flex_ids", self.flex_ids), ("bus_ids", self.bus_ids), ("branch_ids", self.branch_ids)):
            if len(set(ids)) != len(ids):
                raise InputError(f"{name} are not unique")
        checked = []
        for k, pt in enumerate(self.points):
            where = f"operating point {k} ({pt.label})"
            checked.append(
                OperatingPoint(
                    label=str(pt.label),
                    p_mw=_finite_array(f"{where}: p_mw", pt.p_mw, (n_f,)),
                    p_flex_mw=_finite_array(f"{where}: p_flex_mw", pt.p_flex_mw, (n_f,)),
                    vm_pu=_finite_array(f"{where}: vm_pu", pt.vm_pu, (n_v,)),
                    loading_percent=_finite_array(f"{where}: loading_percent", pt.loading_percent, (n_l,)),
                    vtdf_pu_per_mw=_finite_array(f"{where}: vtdf_pu_per_mw", pt.vtdf_pu_per_mw, (n_v, n_f)),
                    ltdf_percent_per_mw=_finite_array(
                        f"{where}: ltdf_percent_per_mw", pt.ltdf_percent_per_mw, (n_l, n_f)
                    ),
                )
            )
        object.__setattr__(self, "points", tuple(checked))
        unknown = set(self.flex_of_asset.values()) - set(self.flex_ids)
        if unknown:
            raise InputError(f"flex_of_asset refers to unknown flexible buses: {sorted(unknown)[:5]}")
        for name in ("vm_min_pu", "vm_max_pu", "loading_min_percent", "loading_max_percent"):
            if not np.isfinite(getattr(self, name)):
                raise InputError(f"{name} must be finite")
        if not self.vm_min_pu < self.vm_max_pu or not self.loading_min_percent < self.loading_max_percent:
            raise InputError("lower limits must be below upper limits")

    @property
    def n_points(self) -> int:
        return len(self.points)

    # --- serialization -------------------------------------------------------------------------
    _ARRAYS = ("p_mw", "p_flex_mw", "vm_pu", "loading_percent", "vtdf_pu_per_mw", "ltdf_percent_per_mw")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict (arrays as nested lists)."""
        return {
            "format": "digiplat-sensitivity-package",
            "version": FORMAT_VERSION,
            "flex_ids": list(self.flex_ids),
            "bus_ids": list(self.bus_ids),
            "branch_ids": list(self.branch_ids),
            "flex_of_asset": dict(self.flex_of_asset),
            "limits": {
                "vm_min_pu": self.vm_min_pu,
                "vm_max_pu": self.vm_max_pu,
                "loading_min_percent": self.loading_min_percent,
                "loading_max_percent": self.loading_max_percent,
            },
            "meta": dict(self.meta),
            "points": [
                {"label": p.label, **{a: getattr(p, a).tolist() for a in self._ARRAYS}} for p in self.points
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SensitivityPackage":
        """Build a package from :meth:`to_dict` output, validating every field."""
        if not isinstance(data, dict) or data.get("format") != "digiplat-sensitivity-package":
            raise InputError("not a DigIPlat sensitivity package (missing 'format' marker)")
        if data.get("version") != FORMAT_VERSION:
            raise InputError(f"package version {data.get('version')} is not supported (expected {FORMAT_VERSION})")
        try:
            points = tuple(
                OperatingPoint(label=p["label"], **{a: np.asarray(p[a], dtype=float) for a in cls._ARRAYS})
                for p in data["points"]
            )
            return cls(
                flex_ids=tuple(data["flex_ids"]),
                bus_ids=tuple(data["bus_ids"]),
                branch_ids=tuple(data["branch_ids"]),
                points=points,
                flex_of_asset={str(k): str(v) for k, v in data.get("flex_of_asset", {}).items()},
                meta=dict(data.get("meta", {})),
                **{k: float(v) for k, v in data["limits"].items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"malformed sensitivity package: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write the package to one file: ``.npz``-style zip of JSON header plus float64 arrays.

        Written to a temporary name and renamed, so a failed write never leaves half a file.
        """
        path = Path(path)
        header = self.to_dict()
        arrays: dict[str, np.ndarray] = {}
        for k, point in enumerate(header["points"]):
            for a in self._ARRAYS:
                arrays[f"p{k}_{a}"] = getattr(self.points[k], a)
                point[a] = f"p{k}_{a}"
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("package.json", json.dumps(header, indent=1))
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(arr, dtype="<f8"), allow_pickle=False)
                zf.writestr(f"{name}.npy", buf.getvalue())
        tmp.replace(path)
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
                for point in header.get("points", []):
                    for a in cls._ARRAYS:
                        with zf.open(f"{point[a]}.npy") as fh:
                            point[a] = np.load(io.BytesIO(fh.read()), allow_pickle=False)
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError, OSError) as exc:
            raise InputError(f"cannot read sensitivity package {path}: {exc}") from exc
        return cls.from_dict(header)
