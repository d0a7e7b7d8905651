"""Generated completions and man page: fresh, well-formed, and completing from local config."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATED = ["completions/pvha.bash", "completions/_pvha", "completions/pvha.fish", "man/pvha.1"]


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "tools" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_checked_in_docs_are_fresh(tmp_path: Path) -> None:
    written = _gen_docs().generate(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == sorted(GENERATED)
    stale = [rel for rel in GENERATED if (tmp_path / rel).read_text() != (REPO / rel).read_text()]
    assert not stale, f"stale generated files {stale}: run `.venv/bin/python tools/gen_docs.py`"


def test_docs_cover_every_visible_command(tmp_path: Path) -> None:
    gen = _gen_docs()
    paths = [n.path for n in gen.walk(gen.build_tree())]
    for expected in (
        "add",
        "set",
        "remove",
        "delete",
        "crm-command node-maintenance enable",
        "rules add",
        "status",
    ):
        assert expected in paths
    assert "_complete" not in paths
    man = (REPO / "man/pvha.1").read_text()
    assert '.SS "rules add"' in man and "\\fB\\-\\-max_restart\\fR" in man


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not installed")
def test_man_page_has_no_groff_warnings() -> None:
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(REPO / "man/pvha.1")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize(("shell", "script"), [("zsh", "_pvha"), ("fish", "pvha.fish")])
def test_other_shells_syntax(shell: str, script: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    result = subprocess.run(
        [shell, "-n", str(REPO / "completions" / script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


BASH_DRIVER = """
pvha() { "$PYTHON" -m pvha "$@"; }
source "$SCRIPT"
t() { COMP_LINE="$1"; COMP_POINT=${#1}; COMP_WORDBREAKS=$' \\t\\n"\\'><=;|&(:'; _pvha; echo "${COMPREPLY[*]}"; }
t "pvha --config-dir $CFG set "
t "pvha --config-dir $CFG set vm:"
t "pvha --config-dir $CFG groupremove "
t "pvha --config-dir $CFG rules set node-affinity "
t "pvha set vm:100 --state d"
t "pvha crm-command node-maintenance "
t "pvha rules add node-affinity r1 --st"
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completion_uses_tree_and_local_config(tmp_path: Path, run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ["add", "vm:100"],
        ["add", "ct:101"],
        ["groupadd", "g1", "--nodes", "n1"],
        ["rules", "add", "node-affinity", "pin", "--resources", "vm:100", "--nodes", "n1"],
    ):
        assert run(*args).exit_code == 0
    env = {
        "PYTHON": sys.executable,
        "SCRIPT": str(REPO / "completions/pvha.bash"),
        "CFG": str(cfg_dir),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        ["bash", "-c", BASH_DRIVER],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ct:101 vm:100",
        "100",  # bash replaces only the text after the ':'
        "g1",
        "pin",
        "disabled",
        "enable disable",
        "--strict",
    ]
