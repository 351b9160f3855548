"""Paper B page: figure functions, tables and layout (no browser)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.pages import mlopf as page
from optim.mlopf.benchmark import BenchmarkConfig, BenchmarkResult
from optim.mlopf.model_store import BENCHMARK_FILE, TrainConfig, TrainedModels, save_models
from optim.mlopf.opf import DsSurrogate
from optim.mlopf.polytope import ClassifierMetrics, Polytope
from optim.mlopf.regression import QuadraticModel, RegressionMetrics
from optim.mlopf.sampling import Dataset

LO = np.array([0.95, 0.0, 0.0])
HI = np.array([1.05, 2.0, 2.0])


def _cube_polytope() -> Polytope:
    """The box 0.97 <= V <= 1.03, P <= 1.5, Q <= 1.0 as A x <= b."""
    a = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    b = np.array([1.03, -0.97, 1.5, 1.0])
    w = a * (HI - LO)
    return Polytope(a=a, b=b, w_hidden=w, b_hidden=-b + a @ LO, x_lower=LO, x_upper=HI)


def _models() -> TrainedModels:
    poly = _cube_polytope()
    reg = QuadraticModel(np.zeros((10, 2)), LO, HI, ("p_pcc1_pu", "q_pcc1_pu"))
    cm = ClassifierMetrics(0.999, 0.998, 1.0, 100)
    rm = RegressionMetrics({"p_pcc1_pu": 3e-6, "q_pcc1_pu": 2e-6}, {"p_pcc1_pu": 2e-6, "q_pcc1_pu": 1e-6})
    return TrainedModels(TrainConfig(samples=100), (DsSurrogate("DS1", poly, reg),), {"DS1": cm, "DS2": cm}, {"DS1": rm})


def _benchmark() -> BenchmarkResult:
    n = 20
    rng = np.random.default_rng(0)
    full = rng.uniform(500, 700, n)
    return BenchmarkResult(BenchmarkConfig(n_cost_sets=n), full, full * (1 + rng.uniform(0, 0.01, n)), full, rng.uniform(0.1, 0.2, n),
                           rng.uniform(0.05, 0.1, n), np.zeros(n), np.ones(n, bool), np.ones(n, bool), np.ones(n, bool))


def _samples() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(1).uniform(LO, HI, size=(500, 3))
    return x, _cube_polytope().contains(x)


def test_region_figure_has_points_and_polytope():
    x, feas = _samples()
    fig = page.region_figure(x, feas, _cube_polytope())
    kinds = [t.type for t in fig.data]
    assert kinds == ["scatter3d", "scatter3d", "mesh3d"]
    assert len(fig.data[0].x) == feas.sum() and len(fig.data[1].x) == (~feas).sum()
    # the mesh is the box: 8 vertices with V between 0.97 and 1.03
    mesh = fig.data[2]
    assert len(mesh.x) == 8
    assert np.isclose(min(mesh.z), 0.97) and np.isclose(max(mesh.z), 1.03)
    assert np.isclose(max(mesh.x), 1.5) and np.isclose(max(mesh.y), 1.0)


def test_empty_polytope_draws_points_only():
    x, feas = _samples()
    empty = Polytope(a=np.array([[1.0, 0, 0], [-1.0, 0, 0]]), b=np.array([0.9, -1.0]), w_hidden=np.zeros((2, 3)), b_hidden=np.zeros(2),
                     x_lower=LO, x_upper=HI)
    assert [t.type for t in page.region_figure(x, feas, empty).data] == ["scatter3d", "scatter3d"]


def test_histograms():
    result = _benchmark()
    cost = page.cost_histogram_figure(result.cost_diff_percent)
    assert cost.data[0].type == "histogram" and len(cost.data[0].x) == 20
    assert np.isclose(np.mean(cost.data[0].x), np.nanmean(result.cost_diff_percent))
    timing = page.time_histogram_figure(result.time_diff_s)
    assert np.all(np.asarray(timing.data[0].x) < 0)  # proposed faster in this synthetic result


def test_tables():
    models = _models()
    rows = page.classifier_rows(models.classifier)
    assert rows[0] == {"Model": "DS1", "Accuracy": "99.90 %", "Recall": "99.80 %", "Specificity": "100.00 %"}
    reg = page.regression_rows(models.regression)
    assert [r["Model"] for r in reg] == ["DS1 p_pcc1_pu", "DS1 q_pcc1_pu"] and reg[0]["RMSE (p.u.)"] == "3.00e-06"
    bench = page.benchmark_rows(_benchmark().summary())
    assert bench[1]["Value"] == "100.0 %"


def _ids(component) -> set[str]:
    out = set()
    stack = [component]
    while stack:
        c = stack.pop()
        if getattr(c, "id", None):
            out.add(c.id)
        children = getattr(c, "children", None)
        if isinstance(children, (list, tuple)):
            stack.extend(children)
        elif children is not None and hasattr(children, "to_plotly_json"):
            stack.append(children)
    return out


def test_layout_reads_assets(tmp_path):
    models = _models()
    x, feas = _samples()
    save_models(models, tmp_path, ds1_data=Dataset("DS1", x, feas, np.zeros((500, 1)), np.zeros((500, 1))))
    _benchmark().save(tmp_path / BENCHMARK_FILE)
    ids = _ids(page.layout(tmp_path))
    assert {"mlopf-region-graph", "mlopf-cost-hist", "mlopf-time-hist", "mlopf-classifier-table", "mlopf-regression-table",
            "mlopf-benchmark-table"} <= ids
    assert all(i.startswith("mlopf-") for i in ids)
    assert json.loads((tmp_path / "models.json").read_text())["classifier"]["DS1"]["accuracy"] == 0.999
    assert page.register_callbacks(object()) is None


def test_layout_without_models_shows_an_alert(tmp_path):
    ids = _ids(page.layout(tmp_path))
    assert "mlopf-alert" in ids and "mlopf-region-graph" not in ids


@pytest.mark.parametrize("module", ["optim.mlopf.systems", "optim.mlopf.opf", "optim.mlopf.model_store"])
def test_optim_does_not_import_dash(module):
    import importlib
    import sys

    importlib.import_module(module)
    src = open(sys.modules[module].__file__).read()
    assert "import dash" not in src and "from dash" not in src
