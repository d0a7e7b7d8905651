"""pvha.core is the functional core: it imports nothing that does IO, reads clocks or
reaches into the shells (design.md §2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "pvha" / "core"

FORBIDDEN_MODULES = {
    "os",
    "io",
    "time",
    "socket",
    "subprocess",
    "pathlib",
    "shutil",
    "tempfile",
    "random",
    "datetime",
    "threading",
    "asyncio",
    "multiprocessing",
    "signal",
    "select",
    "sys",
    "requests",
    "proxmoxer",
    "urllib",
    "http",
    "logging",
}
FORBIDDEN_PACKAGES = ("pvha.sim", "pvha.adapters", "pvha.cli", "pvha.config", "pvha.ports")
FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}


def _modules() -> list[Path]:
    return sorted(CORE.glob("*.py"))


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_core_module_imports_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for name in _imports(tree):
        top = name.split(".", 1)[0]
        assert top not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
        assert not name.startswith(FORBIDDEN_PACKAGES), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_core_module_calls_no_io_builtins(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, (
                f"{path.name}:{node.lineno} calls {node.func.id}()"
            )


def test_core_has_modules() -> None:
    names = {p.name for p in _modules()}
    assert {"manager.py", "crm.py", "lrm.py", "node_status.py", "transitions.py"} <= names
