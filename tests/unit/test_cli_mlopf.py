"""``digiplat mlopf train|benchmark`` under bad input: one line, exit 2, nothing half-written (issue 9).

No model is trained and no OPF is solved here: the shipped ``assets/mlopf/models.json`` is the valid
base that the cases damage, and the benchmark's solver is replaced where a run must get that far.
"""

from __future__ import annotations

import errno
import json
import math
import pathlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import app.cli as cli
from optim.mlopf.model_store import DEFAULT_MODEL_DIR, MODELS_FILE

REPO = Path(__file__).resolve().parents[2]
SHIPPED = json.loads((DEFAULT_MODEL_DIR / MODELS_FILE).read_text())


@pytest.fixture(autouse=True)
def only_mlopf(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("mlopf",))


def _error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


def _parser_refuses(capsys, argv: list[str], *words: str) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    lines = _error_lines(capsys)
    error = [line for line in lines if line.startswith(f"digiplat mlopf {argv[1]}: error:")]
    assert len(error) == 1 and all(word in error[0] for word in words), lines


def _models_dir(tmp_path: Path, content: str) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / MODELS_FILE).write_text(content)
    return folder


def _damaged(change) -> str:
    data = json.loads(json.dumps(SHIPPED))
    change(data)
    return json.dumps(data)


def _drop_a_column(d):
    d["surrogates"][0]["polytope"]["a"] = [row[:-1] for row in d["surrogates"][0]["polytope"]["a"]]


def _nan_offset(d):
    d["surrogates"][1]["polytope"]["b"][0] = math.nan


def _flipped_bounds(d):
    p = d["surrogates"][0]["polytope"]
    p["x_lower"], p["x_upper"] = p["x_upper"], p["x_lower"]


def _short_regression(d):
    d["surrogates"][1]["regression"]["coef"] = d["surrogates"][1]["regression"]["coef"][:-1]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (json.dumps(SHIPPED)[:5000], ("is not readable model JSON",)),
        ("", ("is not readable model JSON",)),
        ("\x00\xff binary", ("is not readable model JSON",)),
        ("{}", ("is not a complete model file (missing 'config')",)),
        ("[]", ("is not a complete model file",)),
        ("[" * 100_000 + "]" * 100_000, ("nested too deeply",)),
        (_damaged(lambda d: d.pop("surrogates")), ("missing 'surrogates'",)),
        (_damaged(lambda d: d.update(surrogates=[])), ("inconsistent models (no surrogates)",)),
        (_damaged(lambda d: d["surrogates"][0]["polytope"].update(a="oops")), ("is not a complete model file",)),
        (_damaged(_drop_a_column), ("DS1 polytope a has shape",)),
        (_damaged(_nan_offset), ("DS2 polytope b holds NaN",)),
        (_damaged(_flipped_bounds), ("DS1 has lower bounds not below its upper bounds",)),
        (_damaged(_short_regression), ("DS2 regression coef has shape",)),
    ],
)
def test_corrupt_models_json_gives_one_line(tmp_path, capsys, content, words):
    folder = _models_dir(tmp_path, content)
    code = cli.main(["mlopf", "benchmark", "--cost-sets", "1", "--models", str(folder)])
    lines = _error_lines(capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"digiplat mlopf: error: {folder / MODELS_FILE} ")
    assert "restore it" in lines[0] and f"digiplat mlopf train --out {folder}" in lines[0]
    for word in words:
        assert word in lines[0], lines


def test_models_folder_without_models(tmp_path, capsys):
    code = cli.main(["mlopf", "benchmark", "--cost-sets", "1", "--models", str(tmp_path)])
    lines = _error_lines(capsys)
    assert code == 2 and lines == [f"digiplat mlopf: error: no trained models at {tmp_path / MODELS_FILE}; run "
                                   "`digiplat mlopf train`"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "--samples", "49"], ("--samples must be 50..1,000,000, got 49",)),
        (["train", "--samples", "1000001"], ("--samples must be 50..1,000,000",)),
        (["train", "--samples", "many"], ("--samples must be an integer",)),
        (["train", "--seed", "-1"], ("--seed must be 0..4,294,967,295, got -1",)),
        (["benchmark", "--cost-sets", "0"], ("--cost-sets must be 1..10,000, got 0",)),
        (["benchmark", "--cost-sets", "10001"], ("--cost-sets must be 1..10,000",)),
        (["benchmark", "--cost-sets", "1", "--seed", str(2**32)], ("--seed must be 0..4,294,967,295",)),
        (["benchmark", "--cost-sets", "1", "--models", "{tmp}/absent"], ("does not exist; give the folder",)),
        (["benchmark", "--cost-sets", "1", "--models", "{tmp}/file"], ("is a file, not a folder",)),
        (["benchmark", "--cost-sets", "1", "--save", "{tmp}"], ("is a folder; give a file name",)),
        (["benchmark", "--cost-sets", "1", "--save", "{tmp}/file/b.json"], ("is a file, not a folder",)),
        (["train", "--out", "{tmp}/file"], ("is a file, not a folder",)),
        (["train", "--out", "{tmp}/file/sub"], ("is a file, not a folder",)),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys, monkeypatch, argv, words):
    import optim.mlopf.model_store as store

    def must_not_run(*args, **kwargs):
        raise AssertionError("started work despite a bad argument")

    monkeypatch.setattr(store, "models_from_training", must_not_run)
    (tmp_path / "file").write_text("x")
    _parser_refuses(capsys, ["mlopf", *[a.format(tmp=tmp_path) for a in argv]], *words)


def test_models_of_other_systems_are_refused():
    from optim._errors import InputError
    from optim.mlopf.model_store import TrainedModels, models_fit_system

    models = TrainedModels.from_dict(SHIPPED)
    fits = SimpleNamespace(ds=[SimpleNamespace(name="DS1", model_name="DS1", n_x=3),
                               SimpleNamespace(name="DS3", model_name="DS2", n_x=12)])
    models_fit_system(models, fits)  # the shipped models fit the paper's systems
    with pytest.raises(InputError, match="the DS1 surrogate has 3 inputs, DS1 needs 5"):
        models_fit_system(models, SimpleNamespace(ds=[SimpleNamespace(name="DS1", model_name="DS1", n_x=5)]))
    with pytest.raises(InputError, match="no surrogate for DS4"):
        models_fit_system(models, SimpleNamespace(ds=[SimpleNamespace(name="DS4", model_name="", n_x=3)]))


def _fake_benchmark(monkeypatch):
    """Replace the OPFs (minutes) by a fixed result: the CLI's handling of --save is what is tested."""
    import optim.mlopf.benchmark as bench
    import optim.mlopf.model_store as store
    import optim.mlopf.systems as systems

    n = 3
    full = np.array([600.0, 610.0, 620.0])
    result = bench.BenchmarkResult(bench.BenchmarkConfig(n_cost_sets=n), full, full * 1.001, full, np.full(n, 0.1),
                                   np.full(n, 0.05), np.zeros(n), np.ones(n, bool), np.ones(n, bool), np.ones(n, bool))
    monkeypatch.setattr(systems, "integrated_system_from_cases", lambda config: "system")
    monkeypatch.setattr(store, "models_fit_system", lambda models, system: None)
    monkeypatch.setattr(bench, "benchmark_from_surrogates", lambda *a, **k: result)
    return result


def test_benchmark_save_is_atomic(tmp_path, capsys, monkeypatch):
    import optim.mlopf.benchmark as bench

    result = _fake_benchmark(monkeypatch)
    out = tmp_path / "results" / "bench.json"
    assert cli.main(["mlopf", "benchmark", "--cost-sets", "3", "--save", str(out), "--json"]) == 0
    saved = bench.BenchmarkResult.load(out)
    assert np.allclose(saved.cost_diff_percent, result.cost_diff_percent, rtol=0, atol=1e-12)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cost_sets"] == 3
    before = out.read_text()

    real_write_text = pathlib.Path.write_text

    def disk_full(self, text, *args, **kwargs):  # half the file, then the disk is full
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(pathlib.Path, "write_text", disk_full)
    code = cli.main(["mlopf", "benchmark", "--cost-sets", "3", "--save", str(out)])
    lines = _error_lines(capsys)
    assert code == 2 and len(lines) == 1 and "No space left on device" in lines[0]
    monkeypatch.undo()
    assert out.read_text() == before  # the previous result is intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["bench.json"]  # no temporary file left


def test_subprocess_corrupt_shipped_style_models(tmp_path):
    folder = _models_dir(tmp_path, json.dumps(SHIPPED)[:777])
    proc = subprocess.run([sys.executable, "-m", "app.cli", "mlopf", "benchmark", "--cost-sets", "1", "--models",
                           str(folder), "--json"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digiplat mlopf: error: ") and "models.json" in lines[0], proc.stderr


def test_corrupt_default_models_without_models_flag(tmp_path, capsys, monkeypatch):
    """The shipped location (no --models): a truncated models.json is refused, not retrained over."""
    import optim.mlopf.model_store as store

    folder = _models_dir(tmp_path, json.dumps(SHIPPED)[:1234])
    monkeypatch.setattr(store, "DEFAULT_MODEL_DIR", folder)

    def must_not_run(*args, **kwargs):
        raise AssertionError("retrained over a damaged models.json")

    monkeypatch.setattr(store, "models_from_training", must_not_run)
    code = cli.main(["mlopf", "benchmark", "--cost-sets", "1"])
    lines = _error_lines(capsys)
    assert code == 2 and len(lines) == 1 and "is not readable model JSON" in lines[0]
    assert (folder / MODELS_FILE).read_text() == json.dumps(SHIPPED)[:1234]
