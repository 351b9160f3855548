"""``pip install .`` (not editable) gives a working tool: the shipped grid and models are package data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the project installed from its wheel; dependencies come from this venv."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    had_build = (REPO / "build").exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(wheels), str(REPO)], check=True, capture_output=True, timeout=300)
    finally:
        if not had_build:  # setuptools builds in the source tree: leave it as it was
            shutil.rmtree(REPO / "build", ignore_errors=True)
    (wheel,) = wheels.glob("*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    # the new venv's own pip, so this environment's editable install is never touched
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300, env=env)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # then this environment's dependencies, without its editable finder of the checkout (.pth files of
    # an added directory are not processed, so the checkout stays off the path)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, env


def test_installed_tool_finds_its_assets_outside_the_checkout(installed, tmp_path):
    venv, env = installed
    python = venv / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import gridgen.paths, gridgen.grid, optim.mlopf.model_store as m; "
         "print(gridgen.paths.assets_dir()); print(gridgen.grid.__file__); print(m.DEFAULT_MODEL_DIR)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assets, module, models = probe.stdout.split()
    assert str(REPO) not in module and str(REPO) not in assets  # the installed copy, not the checkout
    assert (Path(assets) / "bergwald" / "grid.json").is_file() and (Path(models) / "models.json").is_file()
    assert (venv / "bin" / "digiplat").is_file()  # the console script is installed too
    out = tmp_path / "pkg.zip"
    run = subprocess.run(
        [str(python), "-m", "app.cli", "linearize", "--points", "3", "--point-method", "all-half-none",
         "--out", str(out), "--json"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["points"] == 3 and summary["flex_buses"] > 100 and out.is_file()
