"""Paper B ML models: the max-aggregator network as a polytope, quadratic regression, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from optim._errors import InputError
from optim.mlopf.polytope import Polytope, PolytopeConfig, classifier_metrics, polytope_from_dataset
from optim.mlopf.regression import QuadraticModel, quadratic_model_from_dataset, regression_metrics

LO = np.array([0.0, 0.0, 0.0])
HI = np.array([1.0, 2.0, 2.0])


def _box_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Feasible iff inside a tilted convex region: x0 + 0.2 x1 <= 0.8 and x2 - 0.5 x1 <= 1.2 and x0 >= 0.1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(LO, HI, size=(n, 3))
    feas = (x[:, 0] + 0.2 * x[:, 1] <= 0.8) & (x[:, 2] - 0.5 * x[:, 1] <= 1.2) & (x[:, 0] >= 0.1)
    return x, feas


@pytest.fixture(scope="module")
def polytope() -> Polytope:
    x, feas = _box_data(3000)
    return polytope_from_dataset(x, feas, x_lower=LO, x_upper=HI, config=PolytopeConfig(n_hidden=6, max_iter=300, max_iter_final=300))


def test_polytope_learns_a_convex_region(polytope):
    x, feas = _box_data(4000, seed=1)
    m = classifier_metrics(polytope.contains(x), feas)
    assert m.accuracy > 0.98 and m.recall > 0.97 and m.specificity > 0.97
    assert polytope.a.shape == (6, 3) and polytope.b.shape == (6,)


def test_polytope_agrees_with_network_classification(polytope):
    # the network says feasible iff sigmoid(max_k(W u + w)) <= 0.5; the polytope says A x <= b
    x = np.random.default_rng(5).uniform(LO, HI, size=(5000, 3))
    net_feasible = polytope.network_probability(x) <= 0.5
    assert np.array_equal(net_feasible, polytope.contains(x))
    # the weights map exactly: A = W / (hi - lo), b = -w + A lo
    assert np.allclose(polytope.a * (HI - LO), polytope.w_hidden)
    assert np.allclose(polytope.b, -polytope.b_hidden + polytope.a @ LO)


def test_weighted_loss_is_more_conservative():
    x, feas = _box_data(2000, seed=2)
    rng = np.random.default_rng(0)
    noisy = feas ^ (rng.random(feas.size) < 0.05)  # label noise makes the weight matter
    kw = dict(x_lower=LO, x_upper=HI)
    even = polytope_from_dataset(x, noisy, **kw, config=PolytopeConfig(n_hidden=6, max_iter=200, max_iter_final=200))
    cautious = polytope_from_dataset(x, noisy, **kw, config=PolytopeConfig(n_hidden=6, max_iter=200, max_iter_final=200, weight_infeasible=4.0))
    xt, ft = _box_data(4000, seed=3)
    assert classifier_metrics(cautious.contains(xt), ft).specificity >= classifier_metrics(even.contains(xt), ft).specificity
    assert cautious.contains(xt).sum() < even.contains(xt).sum()


def test_polytope_roundtrip(polytope):
    back = Polytope.from_dict(polytope.to_dict())
    x = np.random.default_rng(1).uniform(LO, HI, size=(100, 3))
    assert np.array_equal(back.contains(x), polytope.contains(x))


def test_quadratic_regression_recovers_a_quadratic():
    rng = np.random.default_rng(0)
    x = rng.uniform(LO, HI, size=(500, 3))
    y = np.column_stack([0.1 - 0.02 * x[:, 1] + 0.003 * x[:, 1] ** 2 + 0.01 * x[:, 0] * x[:, 2], 0.05 * x[:, 2] - 0.001 * x[:, 0] ** 2])
    model = quadratic_model_from_dataset(x, y, x_lower=LO, x_upper=HI, output_names=("p", "q"))
    metrics = regression_metrics(model, x, y)
    assert metrics.rmse < 1e-10 and metrics.mae < 1e-10
    # the scalar (casadi-compatible) evaluation matches the vectorised one
    assert np.isclose(model.evaluate(list(x[7]), 0), model.predict(x[7:8])[0, 0])
    back = QuadraticModel.from_dict(model.to_dict())
    assert np.allclose(back.predict(x[:5]), model.predict(x[:5]))


def test_metrics_definitions():
    m = classifier_metrics(np.array([True, True, False, False]), np.array([True, False, False, True]))
    assert (m.accuracy, m.recall, m.specificity) == (0.5, 0.5, 0.5)


def test_bad_training_input():
    x, feas = _box_data(100)
    with pytest.raises(InputError):
        polytope_from_dataset(x, np.ones(100, bool), x_lower=LO, x_upper=HI)
    with pytest.raises(InputError):
        polytope_from_dataset(x[:, :2], feas[:50], x_lower=LO, x_upper=HI)
    with pytest.raises(InputError):
        quadratic_model_from_dataset(x[:5], np.ones((5, 1)), x_lower=LO, x_upper=HI, output_names=("p",))
