"""pvha.core is the functional core: it does no IO, reads no clock and reaches into no
shell (design.md §2). An allow-list: a core module imports only ``pvha.core.*``,
``pvha.errors`` and the standard library, minus the parts of it that do IO."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "pvha" / "core"

ALLOWED_PVHA = ("pvha.core", "pvha.errors")
# standard library modules that do IO, read clocks or reach the process
FORBIDDEN_STDLIB = {
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
    "urllib",
    "http",
    "logging",
}
FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}


def _modules() -> list[Path]:
    return sorted(CORE.glob("*.py"))


def _imports(tree: ast.AST) -> list[str]:
    """Every module an import statement names, relative imports resolved (``from pvha
    import errors`` counts as ``pvha.errors``)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # 1: pvha.core, 2: pvha
                package = ["pvha", "core"][: 3 - node.level]
                base = ".".join([*package, base] if base else package)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def _allowed(name: str) -> bool:
    if name == "pvha" or name.startswith("pvha."):
        return any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_PVHA)
    top = name.split(".", 1)[0]
    return top in sys.stdlib_module_names and top not in FORBIDDEN_STDLIB


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_core_module_imports_only_the_core_errors_and_pure_stdlib(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for name in _imports(tree):
        assert _allowed(name), f"{path.name} imports {name}"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("pvha.core.rules.compile_rules", True),
        ("pvha.errors.IllegalTransition", True),
        ("collections.abc.Mapping", True),
        ("pvha.config.store", False),
        ("pvha.ports.Fencer", False),
        ("pvha.fsutil", False),
        ("pvha.settings", False),
        ("pvha.status", False),
        ("pvha.shell", False),
        ("pvha.fence.fencer", False),
        ("pvha.fakepve.cluster", False),
        ("pvha.sim.env", False),
        ("pvha.coreutils", False),
        ("time.monotonic", False),
        ("proxmoxer", False),
    ],
)
def test_allow_list(name: str, ok: bool) -> None:
    assert _allowed(name) is ok


def test_relative_imports_resolve_inside_pvha() -> None:
    tree = ast.parse("from . import rules\nfrom .. import settings\nfrom ..errors import X\n")
    assert _imports(tree) == ["pvha.core.rules", "pvha.settings", "pvha.errors.X"]


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
    assert {"manager.py", "round_state.py", "crm.py", "daemon.py", "lrm.py"} <= names
