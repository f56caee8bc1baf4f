"""The layering rules of docs/architecture.md, checked on the source: methods never import each other, nothing
imports upward, the ground floor loads without torch, and no module grows past a readable size."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "labcore"
MODULES = sorted(p for p in PKG.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every labcore module a file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labcore"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("labcore"))
    return out


def _name(path: Path) -> str:
    return ".".join(("labcore", *path.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__")


def test_rrhf_and_raft_never_import_each_other():
    for path in MODULES:
        name, deps = _name(path), _imports(path)
        if name.split(".")[-1].startswith("rrhf"):
            assert not any(d == "labcore.raft" or d.startswith("labcore.raft.") for d in deps), name
        if name == "labcore.raft":
            assert not any(d.startswith("labcore.rrhf") for d in deps), name


FLOOR = {"labcore.experiments": 3, "labcore.cli": 4, "labcore.app": 4}


def _floor(module: str) -> int:
    return next((f for prefix, f in FLOOR.items() if module == prefix or module.startswith(prefix + ".")), 2)


def test_nothing_imports_upward():
    for path in MODULES:
        name = _name(path)
        for dep in _imports(path):
            if _floor(dep) > _floor(name):
                pytest.fail(f"{name} imports {dep} from a higher floor")


def test_ground_floor_imports_without_torch():
    code = ("import sys, labcore, labcore.formats, labcore.hub, labcore.datasets, labcore.config, labcore.presets, "
            "labcore.tinyworld, labcore.app.config; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_module_is_over_600_lines():
    long = {_name(p): n for p in MODULES if (n := len(p.read_text(encoding="utf-8").splitlines())) > 610}
    assert not long, long
