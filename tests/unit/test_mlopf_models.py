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


# --- the model files: atomic writes and checked reads (issue 9) ------------------------------------


def _stored_models():
    from optim.mlopf.model_store import DEFAULT_MODEL_DIR, load_models

    return load_models(DEFAULT_MODEL_DIR)


def _ds1_data(n: int = 300, seed: int = 0):
    from optim.mlopf.sampling import Dataset

    x, feas = _box_data(n, seed)
    return Dataset("DS1", x, feas, np.zeros((n, 1)), np.zeros((n, 1)))


def test_save_and_load_round_trip_without_temporary_files(tmp_path):
    import os

    from optim.mlopf.model_store import MODELS_FILE, SAMPLES_FILE, ds1_plot_samples, load_models, save_models

    models = _stored_models()
    save_models(models, tmp_path / "m", ds1_data=_ds1_data())
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [SAMPLES_FILE, MODELS_FILE]
    back = load_models(tmp_path / "m")
    assert back.summary() == models.summary()
    x, feas = ds1_plot_samples(tmp_path / "m")
    assert x.shape == (300, 3) and feas.dtype == bool
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m" / MODELS_FILE).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("fail_in", ["samples", "models_json", "fsync"])
def test_a_failing_model_write_leaves_the_old_models_intact(tmp_path, monkeypatch, fail_in):
    import errno
    import json
    import os
    import pathlib

    import optim.mlopf.model_store as store

    folder = tmp_path / "m"
    old = _stored_models()
    store.save_models(old, folder, ds1_data=_ds1_data(seed=1))
    old_json = (folder / store.MODELS_FILE).read_text()
    old_x, _ = store.ds1_plot_samples(folder)

    changed = json.loads(old_json)
    changed["config"]["seed"] = 7  # new models that differ from the old ones
    new = store.TrainedModels.from_dict(changed)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_in == "samples":
        real = np.savez_compressed

        def half_then_full(fh, **arrays):  # some bytes reach the temporary file, then the disk is full
            fh.write(b"PK\x03\x04 half an archive")
            disk_full()

        monkeypatch.setattr(np, "savez_compressed", half_then_full)
    elif fail_in == "models_json":
        real_write_text = pathlib.Path.write_text

        def half_text(self, text, *args, **kwargs):
            real_write_text(self, text[: len(text) // 3], *args, **kwargs)
            disk_full()

        monkeypatch.setattr(pathlib.Path, "write_text", half_text)
    else:
        monkeypatch.setattr(os, "fsync", disk_full)

    with pytest.raises(OSError, match="No space left"):
        store.save_models(new, folder, ds1_data=_ds1_data(seed=2))
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == [store.SAMPLES_FILE, store.MODELS_FILE]  # no temp files
    assert (folder / store.MODELS_FILE).read_text() == old_json  # the old models, untouched
    assert store.load_models(folder).config.seed == old.config.seed
    assert np.array_equal(store.ds1_plot_samples(folder)[0], old_x)


def test_save_models_refuses_a_file_as_folder(tmp_path):
    from optim.mlopf.model_store import save_models

    blocker = tmp_path / "m"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="is a file, not a folder"):
        save_models(_stored_models(), blocker)
    with pytest.raises(InputError, match="a part of the path is a file"):
        save_models(_stored_models(), blocker / "sub")
    assert blocker.read_text() == "not a folder"


def test_unreadable_plot_samples_leave_out_the_figure(tmp_path):
    from optim.mlopf.model_store import SAMPLES_FILE, ds1_plot_samples

    (tmp_path / SAMPLES_FILE).write_bytes(b"PK\x03\x04 truncated")
    assert ds1_plot_samples(tmp_path) is None
