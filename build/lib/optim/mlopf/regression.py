"""Quadratic regression of the PCC flows (paper B, eq. 8), trained on feasible samples only.

Each output ``y`` (P or Q of one PCC, per unit, DS -> TS) is ``c0 + g^T u + u^T H u`` of the input
scaled to ``[0, 1]`` by the sampling box, fitted by ridge-free least squares. The same formula
evaluates numpy arrays and casadi symbols (:meth:`QuadraticModel.evaluate`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from optim._errors import InputError

logger = logging.getLogger(__name__)


def _pairs(d: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(d)


def quadratic_features(u: np.ndarray) -> np.ndarray:
    """Return ``[1, u_i, u_i u_j (i <= j)]`` for every row of ``u``."""
    u = np.atleast_2d(u)
    i, j = _pairs(u.shape[1])
    return np.hstack([np.ones((u.shape[0], 1)), u, u[:, i] * u[:, j]])


@dataclass(frozen=True)
class QuadraticModel:
    """Quadratic models of several outputs sharing one input (x units of the DS).

    ``coef`` has shape ``(n_features, n_outputs)``; ``output_names`` e.g. ``["p_pcc1_pu", ...]``.
    """

    coef: np.ndarray
    x_lower: np.ndarray
    x_upper: np.ndarray
    output_names: tuple[str, ...]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return the predicted outputs ``(N, n_outputs)``."""
        u = (np.atleast_2d(x) - self.x_lower) / (self.x_upper - self.x_lower)
        return quadratic_features(u) @ self.coef

    def evaluate(self, x: Any, output: int) -> Any:
        """Evaluate one output for a single input vector; works for casadi symbols too."""
        d = self.x_lower.size
        u = [(x[i] - self.x_lower[i]) / (self.x_upper[i] - self.x_lower[i]) for i in range(d)]
        c = self.coef[:, output]
        expr = c[0]
        for i in range(d):
            expr = expr + c[1 + i] * u[i]
        ii, jj = _pairs(d)
        for m, (i, j) in enumerate(zip(ii, jj)):
            if c[1 + d + m] != 0.0:
                expr = expr + c[1 + d + m] * u[i] * u[j]
        return expr

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"coef": self.coef.tolist(), "x_lower": self.x_lower.tolist(), "x_upper": self.x_upper.tolist(),
                "output_names": list(self.output_names)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QuadraticModel":
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(data["coef"], float), np.asarray(data["x_lower"], float), np.asarray(data["x_upper"], float),
                   tuple(data["output_names"]))


def quadratic_model_from_dataset(x: np.ndarray, y: np.ndarray, *, x_lower: np.ndarray, x_upper: np.ndarray,
                                 output_names: tuple[str, ...]) -> QuadraticModel:
    """Fit the quadratic models of the columns of ``y`` on ``x`` by least squares."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("regression needs finite x (N, n_x) and y (N, n_outputs)")
    n_feat = 1 + x.shape[1] + x.shape[1] * (x.shape[1] + 1) // 2
    if x.shape[0] < n_feat:
        raise InputError(f"regression needs at least {n_feat} feasible samples, got {x.shape[0]}")
    lo, hi = np.asarray(x_lower, float), np.asarray(x_upper, float)
    phi = quadratic_features((x - lo) / (hi - lo))
    coef, *_ = np.linalg.lstsq(phi, y, rcond=None)
    model = QuadraticModel(coef, lo, hi, tuple(output_names))
    logger.info("quadratic regression: %d outputs, %d features, %d samples", y.shape[1], n_feat, x.shape[0])
    return model


@dataclass(frozen=True)
class RegressionMetrics:
    """RMSE and MAE (per unit) of each output on the test split (paper B, Table II)."""

    rmse_pu: dict[str, float]
    mae_pu: dict[str, float]

    @property
    def rmse(self) -> float:
        """Largest RMSE over the outputs."""
        return max(self.rmse_pu.values())

    @property
    def mae(self) -> float:
        """Largest MAE over the outputs."""
        return max(self.mae_pu.values())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"rmse_pu": dict(self.rmse_pu), "mae_pu": dict(self.mae_pu)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RegressionMetrics":
        """Inverse of :meth:`to_dict`."""
        return cls(dict(data["rmse_pu"]), dict(data["mae_pu"]))


def regression_metrics(model: QuadraticModel, x: np.ndarray, y: np.ndarray) -> RegressionMetrics:
    """Return the RMSE and MAE of ``model`` on ``(x, y)``."""
    err = model.predict(x) - np.asarray(y, float)
    rmse = {n: float(np.sqrt(np.mean(err[:, i] ** 2))) for i, n in enumerate(model.output_names)}
    mae = {n: float(np.mean(np.abs(err[:, i]))) for i, n in enumerate(model.output_names)}
    out = RegressionMetrics(rmse, mae)
    logger.info("regression: max RMSE %.3g p.u., max MAE %.3g p.u.", out.rmse, out.mae)
    return out
