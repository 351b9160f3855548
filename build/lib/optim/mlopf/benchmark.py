"""Benchmark of paper B, V-C: the TSO's surrogate OPF against the standard AC-OPF over random cost sets.

For every cost set both OPFs are solved (each built once, re-solved with new cost parameters); the
proposed dispatch is checked by AC power flow of the full integrated system; its cost is taken
from that power flow (the slack generator covers the surrogate's error). Cost difference in % is
``(cost_proposed - cost_full) / cost_full * 100``; time difference is ``t_proposed - t_full``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from optim._errors import InputError
from optim.mlopf.opf import (CostSet, DsSurrogate, OpfConfig, OpfStatus, cost_sets_from_seed, feasibility_from_dispatch,
                             full_opf_from_system, surrogate_opf_from_system)
from optim.mlopf.systems import IntegratedSystem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkConfig:
    """Options of the benchmark (``tol_pu``: tolerance of the feasibility check)."""

    n_cost_sets: int = 1000
    random_state: int = 0
    tol_pu: float = 1e-4
    opf: OpfConfig = OpfConfig()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"n_cost_sets": self.n_cost_sets, "random_state": self.random_state, "tol_pu": self.tol_pu, "opf": self.opf.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchmarkConfig":
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["n_cost_sets"]), int(data["random_state"]), float(data["tol_pu"]), OpfConfig.from_dict(data["opf"]))


_COLUMNS = ("cost_full_eur_per_h", "cost_proposed_eur_per_h", "cost_proposed_opf_eur_per_h", "time_full_s", "time_proposed_s",
            "max_violation_pu")


@dataclass(frozen=True)
class BenchmarkResult:
    """Per-cost-set records (arrays of length ``n_cost_sets``) and the configuration."""

    config: BenchmarkConfig
    cost_full_eur_per_h: np.ndarray
    cost_proposed_eur_per_h: np.ndarray
    cost_proposed_opf_eur_per_h: np.ndarray
    time_full_s: np.ndarray
    time_proposed_s: np.ndarray
    max_violation_pu: np.ndarray
    feasible: np.ndarray
    full_solved: np.ndarray
    proposed_solved: np.ndarray
    violations: tuple[dict[str, float], ...] = field(default_factory=tuple)

    @property
    def cost_diff_percent(self) -> np.ndarray:
        """Cost difference in % where both OPFs solved (NaN elsewhere)."""
        ok = self.full_solved & self.proposed_solved
        out = np.full(self.cost_full_eur_per_h.shape, np.nan)
        out[ok] = (self.cost_proposed_eur_per_h[ok] - self.cost_full_eur_per_h[ok]) / self.cost_full_eur_per_h[ok] * 100.0
        return out

    @property
    def time_diff_s(self) -> np.ndarray:
        """Solve-time difference (proposed minus full) in s."""
        return self.time_proposed_s - self.time_full_s

    def summary(self) -> dict[str, Any]:
        """Return the benchmark part of the CLI summary."""
        cd = self.cost_diff_percent
        fin = np.isfinite(cd)
        return {
            "cost_sets": int(self.feasible.size),
            "feasible_ratio": float(np.mean(self.feasible)),
            "mean_cost_diff_percent": float(np.mean(cd[fin])) if fin.any() else float("nan"),
            "max_cost_diff_percent": float(np.max(cd[fin])) if fin.any() else float("nan"),
            "mean_time_diff_s": float(np.mean(self.time_diff_s)),
            "mean_time_full_s": float(np.mean(self.time_full_s)),
            "mean_time_proposed_s": float(np.mean(self.time_proposed_s)),
            "full_solved_ratio": float(np.mean(self.full_solved)),
            "proposed_solved_ratio": float(np.mean(self.proposed_solved)),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = {k: getattr(self, k).tolist() for k in (*_COLUMNS, "feasible", "full_solved", "proposed_solved")}
        d["config"] = self.config.to_dict()
        d["violations"] = [dict(v) for v in self.violations]
        d["summary"] = self.summary()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchmarkResult":
        """Inverse of :meth:`to_dict`."""
        arr = {k: np.asarray(data[k], float) for k in _COLUMNS}
        flags = {k: np.asarray(data[k], bool) for k in ("feasible", "full_solved", "proposed_solved")}
        return cls(BenchmarkConfig.from_dict(data["config"]), **arr, **flags, violations=tuple(data.get("violations", ())))

    def save(self, path: Path | str) -> Path:
        """Write the result as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: Path | str) -> "BenchmarkResult":
        """Read a result written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def benchmark_from_surrogates(system: IntegratedSystem, surrogates: Sequence[DsSurrogate], *, config: BenchmarkConfig = BenchmarkConfig(),
                              cost_sets: Sequence[CostSet] | None = None, progress: bool = True) -> BenchmarkResult:
    """Run the benchmark of paper B over ``config.n_cost_sets`` seeded random cost sets."""
    from tqdm import tqdm

    if int(config.n_cost_sets) <= 0:
        raise InputError(f"number of cost sets must be positive, got {config.n_cost_sets}")
    costs = list(cost_sets) if cost_sets is not None else cost_sets_from_seed(system, config.n_cost_sets, random_state=config.random_state)
    proposed = surrogate_opf_from_system(system, surrogates, config=config.opf)
    full = full_opf_from_system(system, config=config.opf)
    rec: dict[str, list[Any]] = {k: [] for k in (*_COLUMNS, "feasible", "full_solved", "proposed_solved", "violations")}
    for c in tqdm(costs, desc="OPF benchmark", unit="cost set", disable=not progress, leave=False):
        rf = full.solve(c)
        rp = proposed.solve(c)
        chk = feasibility_from_dispatch(system, rp, c, merged=full.merged, tol_pu=config.tol_pu)
        solved_p = rp.status is OpfStatus.OPTIMAL
        rec["cost_full_eur_per_h"].append(rf.cost_eur_per_h)
        rec["cost_proposed_eur_per_h"].append(chk.cost_eur_per_h)
        rec["cost_proposed_opf_eur_per_h"].append(rp.cost_eur_per_h)
        rec["time_full_s"].append(rf.solve_time_s)
        rec["time_proposed_s"].append(rp.solve_time_s)
        rec["max_violation_pu"].append(max(chk.violations.values()) if chk.violations else 0.0)
        rec["feasible"].append(bool(chk.feasible and solved_p))
        rec["full_solved"].append(rf.status is OpfStatus.OPTIMAL)
        rec["proposed_solved"].append(solved_p)
        rec["violations"].append(chk.violations)
    res = BenchmarkResult(config, *(np.asarray(rec[k], float) for k in _COLUMNS),
                          np.asarray(rec["feasible"], bool), np.asarray(rec["full_solved"], bool), np.asarray(rec["proposed_solved"], bool),
                          tuple(rec["violations"]))
    s = res.summary()
    logger.info("benchmark over %d cost sets: feasible %.3f, mean cost diff %.3f %%, mean time diff %.4f s",
                s["cost_sets"], s["feasible_ratio"], s["mean_cost_diff_percent"], s["mean_time_diff_s"])
    return res
