"""Training of the DS surrogates of paper B and the shipped models in ``assets/mlopf``.

``models_from_training`` runs the DSO side: datasets (Latin hypercube + batched AC power flow),
the max-aggregator polytope and the quadratic regressions, metrics on a 20 % test split. DS3 uses
DS2's dataset and models (same grid and DG buses, paper B, V-B); its metrics are computed on DS2's
samples relabelled with DS3's PQ charts, with the charts enforced as linear inequalities.

Files: ``models.json`` (configuration, surrogates, metrics) and ``ds1_samples.npz`` (a subsample of
DS1's dataset for the 3-D figure). Every file is written to a temporary sibling and swapped in with
``os.replace`` only when complete (:func:`atomic_write`), so a failed or interrupted write leaves the
previous file intact and no temporary file behind. Reading checks the structure and the array
shapes and turns a truncated, corrupt or inconsistent ``models.json`` into one
:class:`~optim._errors.InputError` line.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from gridgen.paths import assets_dir

from optim._errors import InputError
from optim.mlopf.opf import DsSurrogate
from optim.mlopf.polytope import ClassifierMetrics, PolytopeConfig, classifier_metrics, polytope_from_dataset
from optim.mlopf.regression import RegressionMetrics, quadratic_model_from_dataset, regression_metrics
from optim.mlopf.sampling import Dataset, dataset_from_system, relabel_for_charts
from optim.mlopf.systems import IntegratedSystem, SystemsConfig, integrated_system_from_cases

logger = logging.getLogger(__name__)

DEFAULT_SEED = 0
#: The directory of the shipped models (repository ``assets/mlopf``).
DEFAULT_MODEL_DIR = assets_dir(strict=False) / "mlopf"
MODELS_FILE = "models.json"
SAMPLES_FILE = "ds1_samples.npz"
BENCHMARK_FILE = "benchmark.json"


@dataclass(frozen=True)
class TrainConfig:
    """What to train.

    Attributes
    ----------
    samples : samples per dataset (DS1, DS2); None: paper sizes (20,000 and 500,000).
    seed : seed of sampling and training.
    test_fraction : share of samples held out for the metrics.
    systems : the test-system configuration.
    polytope_ds1, polytope_ds2 : network options (weights 1/1 for DS1 as in the paper; 4/1 for
        DS2/DS3, where the paper's 2/1 left 0.6 % of the benchmark dispatches slightly infeasible).
    label_margin_vm_pu, label_margin_current_fraction : DSO security margin of DS2's (and so DS3's)
        labels (limits tightened by this much), so that the 12-D polytope's boundary error stays
        inside the true limits. The classifier metrics refer to these labels.
    ds1_label_margin_vm_pu, ds1_label_margin_current_fraction : the same for DS1 (default none,
        as in the paper; the 3-D polytope is accurate enough).
    """

    samples: int | None = None
    seed: int = DEFAULT_SEED
    test_fraction: float = 0.2
    systems: SystemsConfig = SystemsConfig()
    polytope_ds1: PolytopeConfig = PolytopeConfig(n_hidden=64, weight_infeasible=1.0, weight_feasible=1.0,
                                                  taus=(0.03, 0.01, 0.003), max_iter=1000, max_iter_final=1000,
                                                  init="support", init_scale=100.0, n_restarts=3)
    polytope_ds2: PolytopeConfig = PolytopeConfig(n_hidden=32, weight_infeasible=4.0, weight_feasible=1.0,
                                                  taus=(1.0, 0.3, 0.1, 0.03, 0.01), max_iter=300, max_iter_final=100,
                                                  max_samples_smooth=80_000)
    label_margin_vm_pu: float = 0.0075
    label_margin_current_fraction: float = 0.02
    ds1_label_margin_vm_pu: float = 0.0
    ds1_label_margin_current_fraction: float = 0.0

    def n_samples(self, ds_name: str) -> int:
        """Return the dataset size of ``ds_name``."""
        if self.samples is not None:
            return int(self.samples)
        return 20_000 if ds_name == "DS1" else 500_000

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"samples": self.samples, "seed": self.seed, "test_fraction": self.test_fraction,
                "systems": self.systems.to_dict(), "polytope_ds1": self.polytope_ds1.to_dict(),
                "polytope_ds2": self.polytope_ds2.to_dict(), "label_margin_vm_pu": self.label_margin_vm_pu,
                "label_margin_current_fraction": self.label_margin_current_fraction,
                "ds1_label_margin_vm_pu": self.ds1_label_margin_vm_pu,
                "ds1_label_margin_current_fraction": self.ds1_label_margin_current_fraction}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`."""
        return cls(data["samples"], int(data["seed"]), float(data["test_fraction"]), SystemsConfig.from_dict(data["systems"]),
                   PolytopeConfig.from_dict(data["polytope_ds1"]), PolytopeConfig.from_dict(data["polytope_ds2"]),
                   float(data.get("label_margin_vm_pu", 0.0)), float(data.get("label_margin_current_fraction", 0.0)),
                   float(data.get("ds1_label_margin_vm_pu", 0.0)), float(data.get("ds1_label_margin_current_fraction", 0.0)))


@dataclass(frozen=True)
class TrainedModels:
    """The surrogates of every model DS and their test metrics (keys "DS1", "DS2", "DS3")."""

    config: TrainConfig
    surrogates: tuple[DsSurrogate, ...]
    classifier: dict[str, ClassifierMetrics]
    regression: dict[str, RegressionMetrics]
    n_samples: dict[str, int] = field(default_factory=dict)
    feasible_share: dict[str, float] = field(default_factory=dict)
    label_time_s_per_sample: dict[str, float] = field(default_factory=dict)

    def surrogate(self, name: str) -> DsSurrogate:
        """Return the surrogate called ``name``."""
        for s in self.surrogates:
            if s.ds_name == name:
                return s
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        """Return the metric part of the CLI summary."""
        return {"classifier": {k: {"accuracy": m.accuracy, "recall": m.recall, "specificity": m.specificity} for k, m in self.classifier.items()},
                "regression": {k: {"rmse": m.rmse, "mae": m.mae} for k, m in self.regression.items()}}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"config": self.config.to_dict(), "surrogates": [s.to_dict() for s in self.surrogates],
                "classifier": {k: v.to_dict() for k, v in self.classifier.items()},
                "regression": {k: v.to_dict() for k, v in self.regression.items()},
                "n_samples": dict(self.n_samples), "feasible_share": dict(self.feasible_share),
                "label_time_s_per_sample": dict(self.label_time_s_per_sample)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainedModels":
        """Inverse of :meth:`to_dict`."""
        return cls(TrainConfig.from_dict(data["config"]), tuple(DsSurrogate.from_dict(s) for s in data["surrogates"]),
                   {k: ClassifierMetrics.from_dict(v) for k, v in data["classifier"].items()},
                   {k: RegressionMetrics.from_dict(v) for k, v in data["regression"].items()},
                   dict(data.get("n_samples", {})), dict(data.get("feasible_share", {})), dict(data.get("label_time_s_per_sample", {})))


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return perm[n_test:], perm[:n_test]


def _flows(data: Dataset) -> np.ndarray:
    return np.hstack([data.p_pcc_pu, data.q_pcc_pu])


def models_from_training(config: TrainConfig = TrainConfig(), *, system: IntegratedSystem | None = None,
                         progress: bool = True) -> tuple[TrainedModels, dict[str, Dataset]]:
    """Train the surrogates of DS1 and DS2 (DS3 reuses DS2's) and compute the test metrics.

    Returns the models and the datasets ("DS1", "DS2", "DS3").
    """
    import time

    if config.samples is not None and int(config.samples) < 50:
        raise InputError(f"need at least 50 samples per dataset, got {config.samples}")
    if not 0.0 < config.test_fraction < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {config.test_fraction}")
    system = system or integrated_system_from_cases(config.systems)
    surrogates, cls_m, reg_m, n_s, share, t_lab = [], {}, {}, {}, {}, {}
    datasets: dict[str, Dataset] = {}
    from tqdm import tqdm

    for name, pconf in tqdm((("DS1", config.polytope_ds1), ("DS2", config.polytope_ds2)), desc="training DS models", unit="DS",
                            disable=not progress, leave=False):
        ds = system.ds_by_name(name)
        t0 = time.perf_counter()
        if name == "DS1":
            margins = (config.ds1_label_margin_vm_pu, config.ds1_label_margin_current_fraction)
        else:
            margins = (config.label_margin_vm_pu, config.label_margin_current_fraction)
        data = dataset_from_system(ds, config.n_samples(name), random_state=config.seed, progress=progress,
                                   margin_vm_pu=margins[0], margin_current_fraction=margins[1])
        t_lab[name] = (time.perf_counter() - t0) / data.n_samples
        datasets[name] = data
        train, test = _split(data.n_samples, config.test_fraction, config.seed)
        poly = polytope_from_dataset(data.x[train], data.feasible[train], x_lower=ds.x_lower, x_upper=ds.x_upper,
                                     config=PolytopeConfig.from_dict({**pconf.to_dict(), "random_state": config.seed}))
        ftrain = train[data.feasible[train]]
        names = tuple([f"p_pcc{k + 1}_pu" for k in range(ds.n_pcc)] + [f"q_pcc{k + 1}_pu" for k in range(ds.n_pcc)])
        reg = quadratic_model_from_dataset(data.x[ftrain], _flows(data)[ftrain], x_lower=ds.x_lower, x_upper=ds.x_upper, output_names=names)
        surrogates.append(DsSurrogate(name, poly, reg))
        cls_m[name] = classifier_metrics(poly.contains(data.x[test]), data.feasible[test])
        ftest = test[data.feasible[test]]
        reg_m[name] = regression_metrics(reg, data.x[ftest], _flows(data)[ftest])
        n_s[name] = data.n_samples
        share[name] = float(data.feasible.mean())
        if name == "DS2":
            ds3 = system.ds_by_name("DS3")
            d3 = relabel_for_charts(ds3, data)
            datasets["DS3"] = d3
            cls_m["DS3"] = classifier_metrics(poly.contains(d3.x[test]) & ds3.charts_contain(d3.x[test]), d3.feasible[test])
            f3 = test[d3.feasible[test]]
            reg_m["DS3"] = regression_metrics(reg, d3.x[f3], _flows(d3)[f3])
            n_s["DS3"] = d3.n_samples
            share["DS3"] = float(d3.feasible.mean())
    models = TrainedModels(config, tuple(surrogates), cls_m, reg_m, n_s, share, t_lab)
    logger.info("trained surrogates for %s", ", ".join(s.ds_name for s in surrogates))
    return models, datasets


def output_dir(directory: Path | str) -> Path:
    """Return ``directory`` created if needed; raise InputError if it cannot be a folder of outputs."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file, not a folder; give a folder for the models")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"cannot create the folder {directory}: a part of the path is a file; choose another "
                         "folder") from None
    return directory


def _temporary_sibling(path: Path) -> Path:
    """Create and return an empty, unique, hidden sibling of ``path`` (usual permissions, unlike mkstemp's 0600)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.open("xb").close()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {path}")


@contextmanager
def _staged(paths: list[Path]) -> Iterator[list[Path]]:
    """Yield one temporary sibling per path; swap them all in if the block succeeds, else remove them."""
    temps: list[Path] = []
    try:
        for path in paths:
            temps.append(_temporary_sibling(path))
        yield temps
        for tmp in temps:  # durable before it becomes visible under the real name
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Write a file by ``write(temporary_path)`` and swap it in only when complete.

    The temporary file is a sibling of ``path`` (same file system, so ``os.replace`` is atomic);
    on any failure it is removed and the previous ``path`` stays as it was.
    """
    path = Path(path)
    with _staged([path]) as (tmp,):
        write(tmp)
    return path


def save_models(models: TrainedModels, directory: Path | str = DEFAULT_MODEL_DIR, *, ds1_data: Dataset | None = None,
                n_plot_samples: int = 4000) -> Path:
    """Write ``models.json`` (and a DS1 sample subset for the 3-D figure) to ``directory``.

    Both files are written to temporary siblings first and swapped in only when both are complete:
    a failure leaves the previous files intact and no temporary file behind.
    """
    directory = output_dir(directory)
    path = directory / MODELS_FILE
    text = json.dumps(models.to_dict())
    targets = [path] + ([directory / SAMPLES_FILE] if ds1_data is not None else [])
    with _staged(targets) as temps:
        temps[0].write_text(text)
        if ds1_data is not None:
            rng = np.random.default_rng(models.config.seed)
            idx = rng.choice(ds1_data.n_samples, size=min(n_plot_samples, ds1_data.n_samples), replace=False)
            with open(temps[1], "wb") as fh:  # a file object: savez would append .npz to a name
                np.savez_compressed(fh, x=ds1_data.x[idx].astype(np.float32), feasible=ds1_data.feasible[idx])
    logger.info("saved models to %s", path)
    return path


def _array_problem(name: str, value: np.ndarray, shape: tuple[int | None, ...]) -> str | None:
    if value.ndim != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
        return f"{name} has shape {value.shape}, expected {tuple('n' if w is None else w for w in shape)}"
    if not np.isfinite(value).all():
        return f"{name} holds NaN or infinite values"
    return None


def model_problems(models: TrainedModels) -> list[str]:
    """Return what is inconsistent in loaded models (array shapes, bounds, names); empty if none."""
    problems: list[str] = []
    if not models.surrogates:
        problems.append("no surrogates")
    for s in models.surrogates:
        poly, reg = s.polytope, s.regression
        n = poly.x_lower.size if poly.x_lower.ndim == 1 else -1
        k = poly.a.shape[0] if poly.a.ndim == 2 else -1
        n_out = len(reg.output_names)
        n_features = 1 + n + n * (n + 1) // 2
        checks = [(f"{s.ds_name} polytope x_lower", poly.x_lower, (n,)), (f"{s.ds_name} polytope x_upper", poly.x_upper, (n,)),
                  (f"{s.ds_name} polytope a", poly.a, (k, n)), (f"{s.ds_name} polytope b", poly.b, (k,)),
                  (f"{s.ds_name} polytope w_hidden", poly.w_hidden, (k, n)),
                  (f"{s.ds_name} polytope b_hidden", poly.b_hidden, (k,)),
                  (f"{s.ds_name} regression coef", reg.coef, (n_features, n_out)),
                  (f"{s.ds_name} regression x_lower", reg.x_lower, (n,)), (f"{s.ds_name} regression x_upper", reg.x_upper, (n,))]
        problems.extend(p for p in (_array_problem(*c) for c in checks) if p)
        if not problems and not (np.all(poly.x_lower < poly.x_upper) and np.all(reg.x_lower < reg.x_upper)):
            problems.append(f"{s.ds_name} has lower bounds not below its upper bounds")
    return problems


def load_models(directory: Path | str = DEFAULT_MODEL_DIR) -> TrainedModels:
    """Read and check ``models.json`` from ``directory``.

    Raises
    ------
    FileNotFoundError
        There is no ``models.json`` (the app shows "no trained models" for this).
    InputError
        The file is truncated, not JSON, or its content is not a consistent set of models.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file, not a folder of models; give the folder holding {MODELS_FILE}")
    path = directory / MODELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trained models at {path}; run `digiplat mlopf train`")
    advice = (f"restore it (the shipped one: git checkout -- assets/mlopf) or train new ones with "
              f"`digiplat mlopf train --out {directory}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not readable model JSON ({exc}); {advice}") from exc
    except RecursionError:
        raise InputError(f"{path} is nested too deeply to be a model file; {advice}") from None
    try:
        models = TrainedModels.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise InputError(f"{path} is not a complete model file ({what[:160]}); {advice}") from exc
    problems = model_problems(models)
    if problems:
        raise InputError(f"{path} holds inconsistent models ({problems[0]}); {advice}")
    logger.info("loaded models from %s", path)
    return models


def models_fit_system(models: TrainedModels, system: IntegratedSystem) -> None:
    """Raise InputError unless every DS of ``system`` has a surrogate of its input dimension."""
    by_name = {s.ds_name: s for s in models.surrogates}
    for ds in system.ds:
        s = by_name.get(ds.model_name or ds.name)
        if s is None:
            raise InputError(f"the models have no surrogate for {ds.name} (needs {ds.model_name or ds.name}); "
                             "train them with `digiplat mlopf train`")
        if s.polytope.x_lower.size != ds.n_x:
            raise InputError(f"the {s.ds_name} surrogate has {s.polytope.x_lower.size} inputs, {ds.name} needs {ds.n_x}; "
                             "the models belong to other systems: train them with `digiplat mlopf train`")


def models_from_store(directory: Path | str = DEFAULT_MODEL_DIR, *, train_if_missing: bool = True, progress: bool = True) -> TrainedModels:
    """Return the stored models; train and store them first (default seed) if they are absent."""
    path = Path(directory) / MODELS_FILE
    if path.is_file() or not train_if_missing:
        return load_models(directory)
    output_dir(directory)  # before hours of training: the models must have somewhere to go
    logger.info("no models at %s: training them (default seed)", path)
    models, data = models_from_training(TrainConfig(), progress=progress)
    save_models(models, directory, ds1_data=data["DS1"])
    return models


def ds1_plot_samples(directory: Path | str = DEFAULT_MODEL_DIR) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the stored DS1 samples ``(x, feasible)`` for the 3-D figure, or None."""
    path = Path(directory) / SAMPLES_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return z["x"].astype(float), z["feasible"].astype(bool)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # only a figure: show the rest
        logger.warning("cannot read the DS1 samples %s (%s); the 3-D figure is left out", path, exc)
        return None
