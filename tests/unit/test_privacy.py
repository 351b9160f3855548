"""The privacy boundary of paper A: the TSO side sees only the SensitivityPackage.

- No module of optim/tso imports pandapower, gridgen, optim.dso or optim.validation, neither in
  its source (checked with ast, lazy imports inside functions included) nor at run time (checked
  in a fresh interpreter after importing every module and clearing a request with both solver paths).
- The public clearing functions take only the package, the bids and scalars.
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TSO = REPO / "optim" / "tso"
FORBIDDEN = ("pandapower", "gridgen", "optim.dso", "optim.validation")
# what the TSO side may import from the project besides itself
ALLOWED_PROJECT = ("optim.package", "optim._errors", "optim.tso")


def tso_modules() -> list[str]:
    return sorted(
        "optim.tso" + ("" if p.stem == "__init__" else f".{p.stem}") for p in TSO.glob("*.py")
    )


def imported_names(path: Path) -> set[str]:
    """Every module a file imports, at any depth (relative imports resolved)."""
    package = "optim.tso"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "import_module",
            "__import__",
        ):
            names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def is_forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_the_tso_package_has_the_expected_modules() -> None:
    assert {"optim.tso.bids", "optim.tso.bcm", "optim.tso.clearing", "optim.tso.merit_order"} <= set(tso_modules())


@pytest.mark.parametrize("path", sorted(TSO.glob("*.py")) + [REPO / "optim" / "package.py", REPO / "optim" / "_errors.py"],
                         ids=lambda p: p.name)
def test_source_imports_stay_on_the_tso_side(path: Path) -> None:
    names = imported_names(path)
    assert not [n for n in names if is_forbidden(n)]
    project = [n for n in names if n.split(".")[0] in ("optim", "gridgen", "app")]
    assert all(n.startswith(ALLOWED_PROJECT) for n in project), project


def test_the_ast_check_catches_lazy_and_relative_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    import pandapower.networks\n    from ..dso import scenario\n"
        "    import importlib; importlib.import_module('gridgen.grid')\n"
    )
    found = {n for n in imported_names(bad) if is_forbidden(n)}
    assert {"pandapower.networks", "optim.dso", "gridgen.grid"} <= found


def test_runtime_imports_stay_on_the_tso_side() -> None:
    code = f"""
import importlib, json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
for name in {tso_modules()!r}:
    importlib.import_module(name)
from test_tso_clearing import hand_package, hand_bids
from optim.tso.clearing import clear_milp
from optim.tso.merit_order import clear_merit_order
assert clear_milp(hand_package(), hand_bids(), 2.0).ok
assert clear_milp(hand_package(), hand_bids(), 2.5, solver="pyomo:appsi_highs").max_deliverable_mw > 2
assert clear_merit_order(hand_package(), hand_bids(), 1.0).ok
print(json.dumps(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "optim.tso.clearing" in loaded and "highspy" in loaded
    assert not [m for m in loaded if is_forbidden(m)]


def public_clearing_functions():
    from optim.tso.bcm import pieces_from_bids
    from optim.tso.clearing import clear_milp
    from optim.tso.merit_order import clear_merit_order

    return [clear_milp, clear_merit_order, pieces_from_bids]


@pytest.mark.parametrize("func", public_clearing_functions(), ids=lambda f: f.__name__)
def test_clearing_functions_take_only_package_bids_and_scalars(func) -> None:
    from optim.package import SensitivityPackage
    from optim.tso.bids import BidTable

    hints = typing.get_type_hints(func)
    params = list(inspect.signature(func).parameters.values())
    assert sorted(p.name for p in params[:2]) == ["bids", "package"]
    assert hints["package"] is SensitivityPackage and hints["bids"] is BidTable
    for p in params[2:]:
        assert p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY), p
        assert hints[p.name] in (float, int, str, bool), (p.name, hints[p.name])
