"""The max-aggregator neural network of paper B (eq. 6) and the polytope ``A x <= b`` it encodes.

The network is ``h = W u + w`` (one hidden layer, ``n_hidden`` nodes), ``z = max_k h_k`` and
``y = sigmoid(z)``, the probability that the input is infeasible (class 1); ``u`` is ``x`` scaled to
``[0, 1]`` by its bounding box. It is trained with the weighted binary cross-entropy of eq. (7),
weight ``weight_infeasible`` on infeasible samples (penalizing "infeasible predicted feasible")
and ``weight_feasible`` on feasible ones, by L-BFGS (scipy) with analytic gradients: first with a
smooth maximum ``tau * logsumexp(h / tau)`` for decreasing ``tau``, then with the exact maximum.
A sample is feasible iff ``z <= 0`` iff ``W u + w <= 0``; in the original units of ``x`` that is
``A x <= b`` with ``A = W / (x_upper - x_lower)`` and ``b = -w + A x_lower``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from optim._errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolytopeConfig:
    """Training options of the max-aggregator network.

    Attributes
    ----------
    n_hidden : number of hidden nodes (an upper bound on the number of facets).
    weight_infeasible, weight_feasible : loss weights of eq. (7) (paper B: 1/1 for DS1, 2/1 for DS2/3).
    max_iter : L-BFGS iterations per stage.
    taus : smooth-maximum temperatures of the first stages (the last stage uses the exact maximum).
    random_state : seed of the initialisation.
    max_samples_smooth : the smooth stages use a random subset of at most this many samples.
    max_iter_final : L-BFGS iterations of the last (exact maximum) stage, on all samples.
    init : "pairs" (each plane between a near-boundary infeasible sample and its nearest feasible
        one) or "support" (random normals, each plane supporting the feasible samples).
    init_scale : norm of the initial weight rows (on the scaled input).
    n_restarts : independent initialisations (seeds ``random_state + i``); the lowest final
        training loss wins.
    """

    n_hidden: int = 16
    weight_infeasible: float = 1.0
    weight_feasible: float = 1.0
    max_iter: int = 400
    taus: tuple[float, ...] = (0.3, 0.1, 0.03)
    random_state: int = 0
    max_samples_smooth: int = 100_000
    max_iter_final: int = 200
    init: str = "pairs"
    init_scale: float = 10.0
    n_restarts: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = dict(self.__dict__)
        d["taus"] = list(self.taus)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PolytopeConfig":
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        d["taus"] = tuple(d.get("taus", ()))
        return cls(**d)


@dataclass(frozen=True)
class Polytope:
    """The feasible region ``A x <= b`` (x in the units of :attr:`DistributionSystem.x_names`).

    ``w_hidden`` and ``b_hidden`` are the trained network weights on the scaled input ``u``.
    """

    a: np.ndarray
    b: np.ndarray
    w_hidden: np.ndarray
    b_hidden: np.ndarray
    x_lower: np.ndarray
    x_upper: np.ndarray

    @property
    def n_facets(self) -> int:
        """Number of rows of ``A`` (hidden nodes)."""
        return int(self.a.shape[0])

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Return ``max_k (A x - b)_k`` (<= 0 inside)."""
        return np.max(np.atleast_2d(x) @ self.a.T - self.b, axis=1)

    def contains(self, x: np.ndarray) -> np.ndarray:
        """Return a boolean mask of the rows of ``x`` inside the polytope."""
        return self.margin(x) <= 0.0

    def network_probability(self, x: np.ndarray) -> np.ndarray:
        """Return the network output ``y = sigmoid(max_k (W u + w)_k)`` (probability of infeasibility)."""
        u = (np.atleast_2d(x) - self.x_lower) / (self.x_upper - self.x_lower)
        z = np.max(u @ self.w_hidden.T + self.b_hidden, axis=1)
        return _expit(z)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {k: v.tolist() for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Polytope":
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: np.asarray(data[k], float) for k in ("a", "b", "w_hidden", "b_hidden", "x_lower", "x_upper")})


def _expit(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _loss_and_grad(theta: np.ndarray, u: np.ndarray, t: np.ndarray, cw: np.ndarray, k: int, tau: float | None) -> tuple[float, np.ndarray]:
    n, d = u.shape
    w = theta[: k * d].reshape(k, d)
    bias = theta[k * d:]
    h = u @ w.T + bias
    if tau is None:
        arg = np.argmax(h, axis=1)
        z = h[np.arange(n), arg]
    else:
        hm = h.max(axis=1, keepdims=True)
        e = np.exp((h - hm) / tau)
        s = e.sum(axis=1, keepdims=True)
        z = hm[:, 0] + tau * np.log(s[:, 0])
        soft = e / s
    # loss = w1 t softplus(-z) + w0 (1-t) softplus(z)
    loss = np.sum(cw * np.where(t, _softplus(-z), _softplus(z))) / n
    sig = _expit(z)
    g = cw * np.where(t, sig - 1.0, sig) / n
    if tau is None:
        gh = np.zeros_like(h)
        gh[np.arange(n), arg] = g
    else:
        gh = soft * g[:, None]
    gw = gh.T @ u
    gb = gh.sum(axis=0)
    return float(loss), np.concatenate([gw.ravel(), gb])


def _initial_weights(u: np.ndarray, feasible: np.ndarray, k: int, rng: np.random.Generator, *, scale: float = 10.0) -> np.ndarray:
    """Place each hyperplane between an infeasible sample near the boundary and its nearest feasible one.

    Each plane is then shifted outwards so that it keeps at least 99 % of the feasible samples inside.
    """
    from scipy.spatial import cKDTree

    uf, ui = u[feasible], u[~feasible]
    if ui.shape[0] > 20_000:
        ui = ui[rng.choice(ui.shape[0], 20_000, replace=False)]
    if uf.shape[0] > 50_000:
        uf = uf[rng.choice(uf.shape[0], 50_000, replace=False)]
    dist, idx = cKDTree(uf).query(ui)
    near = np.flatnonzero(dist <= np.quantile(dist, 0.25))
    pick = rng.choice(near, size=k, replace=near.size < k)
    dirs = ui[pick] - uf[idx[pick]]
    dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-12)
    mid = 0.5 * (ui[pick] + uf[idx[pick]])
    support = np.maximum(np.einsum("kd,kd->k", dirs, mid), np.quantile(uf @ dirs.T, 0.99, axis=0))
    return np.concatenate([(scale * dirs).ravel(), -scale * support])


def _support_weights(u: np.ndarray, feasible: np.ndarray, k: int, rng: np.random.Generator, *, scale: float) -> np.ndarray:
    """Random unit normals, each plane supporting the feasible samples (an outer approximation of their hull)."""
    dirs = rng.normal(size=(k, u.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    support = (u[feasible] @ dirs.T).max(axis=0)
    return np.concatenate([(scale * dirs).ravel(), -scale * support])


def polytope_from_dataset(x: np.ndarray, feasible: np.ndarray, *, x_lower: np.ndarray, x_upper: np.ndarray,
                          config: PolytopeConfig = PolytopeConfig()) -> Polytope:
    """Train the max-aggregator network on labelled samples and return its polytope.

    Parameters
    ----------
    x : (N, n_x) samples.
    feasible : (N,) labels (True: feasible).
    x_lower, x_upper : the sampling box (used to scale ``x``).
    config : training options.
    """
    from scipy.optimize import minimize

    x = np.asarray(x, float)
    feasible = np.asarray(feasible, bool)
    if x.ndim != 2 or x.shape[0] != feasible.shape[0] or x.shape[0] < 2 or not np.isfinite(x).all():
        raise InputError("polytope training needs finite x of shape (N, n_x) and N labels")
    if feasible.all() or not feasible.any():
        raise InputError("polytope training needs both feasible and infeasible samples")
    lo, hi = np.asarray(x_lower, float), np.asarray(x_upper, float)
    u = (x - lo) / (hi - lo)
    t = ~feasible
    cw = np.where(t, config.weight_infeasible, config.weight_feasible)
    k, d = config.n_hidden, x.shape[1]
    if config.init not in ("pairs", "support"):
        raise InputError(f"unknown polytope initialisation {config.init!r}")
    best = None
    for restart in range(max(1, config.n_restarts)):
        rng = np.random.default_rng(config.random_state + restart)
        if config.init == "pairs":
            theta = _initial_weights(u, feasible, k, rng, scale=config.init_scale)
        else:
            theta = _support_weights(u, feasible, k, rng, scale=config.init_scale)
        sub = np.arange(u.shape[0])
        if sub.size > config.max_samples_smooth:
            sub = np.sort(rng.choice(sub, config.max_samples_smooth, replace=False))
        for tau in config.taus:
            res = minimize(_loss_and_grad, theta, args=(u[sub], t[sub], cw[sub], k, tau), jac=True, method="L-BFGS-B",
                           options={"maxiter": config.max_iter, "maxcor": 20})
            theta = res.x
        res = minimize(_loss_and_grad, theta, args=(u, t, cw, k, None), jac=True, method="L-BFGS-B",
                       options={"maxiter": config.max_iter_final, "maxcor": 20})
        if best is None or res.fun < best.fun:
            best = res
    res = best
    theta = res.x
    w = theta[: k * d].reshape(k, d)
    bias = theta[k * d:]
    a = w / (hi - lo)
    b = -bias + a @ lo
    poly = Polytope(a=a, b=b, w_hidden=w, b_hidden=bias, x_lower=lo, x_upper=hi)
    logger.info("polytope: %d facets trained on %d samples (final loss %.4g)", k, x.shape[0], res.fun)
    return poly


@dataclass(frozen=True)
class ClassifierMetrics:
    """Test metrics with "feasible" as the positive class (paper B, Table I).

    recall = feasible predicted feasible / feasible; specificity = infeasible predicted
    infeasible / infeasible.
    """

    accuracy: float
    recall: float
    specificity: float
    n_test: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClassifierMetrics":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def classifier_metrics(predicted_feasible: np.ndarray, feasible: np.ndarray) -> ClassifierMetrics:
    """Return accuracy, recall and specificity of a feasibility prediction."""
    p = np.asarray(predicted_feasible, bool)
    f = np.asarray(feasible, bool)
    acc = float(np.mean(p == f))
    rec = float(np.mean(p[f])) if f.any() else float("nan")
    spec = float(np.mean(~p[~f])) if (~f).any() else float("nan")
    out = ClassifierMetrics(accuracy=acc, recall=rec, specificity=spec, n_test=int(f.size))
    logger.info("classifier: accuracy %.4f, recall %.4f, specificity %.4f", acc, rec, spec)
    return out
