"""Generated completions, man page and root help text: fresh, well-formed, and completing
from local config."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATED = [
    "completions/pvha.bash",
    "completions/_pvha",
    "completions/pvha.fish",
    "man/pvha.1",
    "pvha/cli/help_text.py",  # the fast path's root help, as the Typer app renders it
    "README.md",  # its settings reference block
]


def test_the_settings_reference_names_every_setting_and_variable() -> None:
    from pvha import settings

    assert [k for k, _d, _t in settings.REFERENCE] == list(settings._KEYS)
    readme = (REPO / "README.md").read_text()
    man = (REPO / "man" / "pvha.1").read_text()
    for _section, var in settings._KEYS.values():
        assert f"`{var}`" in readme and f"\\fB{var}\\fR" in man
    for var, _text in settings.VARIABLES:
        assert f"`{var}`" in readme and var in man
    assert all(p in readme and p in man for p in settings.PRIVILEGES)


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


def test_help_text_lists_every_top_level_command() -> None:
    """The fast path's root help (fresh: see above; printed as the Typer app prints it:
    test_cli_fast) is the whole help, commands included."""
    from pvha.cli import help_text

    for name in _gen_docs().build_tree().children:
        assert f"\n  {name} " in help_text.HELP, name
    assert help_text.NO_ARGS.startswith(help_text.HELP[:200])


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not installed")
def test_man_page_has_no_groff_warnings() -> None:
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(REPO / "man/pvha.1")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize(
    ("shell", "script"), [("zsh", "_pvha"), ("fish", "pvha.fish"), ("bash", "pvha.bash")]
)
def test_completion_script_syntax(shell: str, script: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    result = subprocess.run(
        [shell, "-n", str(REPO / "completions" / script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# Each driver prints the candidates for every line of LINES (one output line per case).
LINES = [
    "pvha --config-dir $CFG set ",
    "pvha --config-dir $CFG groupremove ",
    "pvha --config-dir $CFG rules set node-affinity ",
    "pvha set vm:100 --state d",
    "pvha crm-command node-maintenance ",
    "pvha rules add node-affinity r1 --st",
]
EXPECTED = ["ct:101 vm:100", "g1", "pin", "disabled", "enable disable", "--strict"]
DRIVERS = {
    "bash": """
source "$SCRIPT"
t() { COMP_LINE="$1"; COMP_POINT=${#1}; COMP_WORDBREAKS=$' \\t\\n"\\'><=;|&(:'; _pvha; echo "${COMPREPLY[*]}"; }
""",
    "zsh": """
compadd() { [[ $1 == -- ]] && shift; print -r -- ${(M)@:#${cur}*}; }  # stub: prefix filter only
source "$SCRIPT" >/dev/null
t() { words=(${=1}); [[ $1 == *" " ]] && words+=(""); CURRENT=${#words}; _pvha; }
""",
    "fish": """
source $SCRIPT
function t; complete -C "$argv[1]" | string join ' '; end
""",
}
SCRIPTS = {"bash": "pvha.bash", "zsh": "_pvha", "fish": "pvha.fish"}


def _populate(run) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ["add", "vm:100"],
        ["add", "ct:101"],
        ["groupadd", "g1", "--nodes", "n1"],
        ["rules", "add", "node-affinity", "pin", "--resources", "vm:100", "--nodes", "n1"],
    ):
        assert run(*args).exit_code == 0


@pytest.mark.parametrize("by_path", [False, True], ids=["in-path", "by-path"])
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_uses_tree_and_local_config(
    shell: str, by_path: bool, tmp_path: Path, run, cfg_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    """``by_path``: pvha is typed by its path and is not in PATH; the ids still come from
    that pvha."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    _populate(run)
    fake = tmp_path / "bin" / "pvha"  # the completion scripts call `pvha _complete KIND`
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pvha "$@"\n')
    fake.chmod(0o755)
    lines = [line.replace("$CFG", str(cfg_dir)) for line in LINES]
    if by_path:
        lines = [str(fake) + line.removeprefix("pvha") for line in lines]
    if shell == "fish":
        calls = "".join(f"t '{line}'\n" for line in lines)
    else:
        calls = "".join(f't "{line}"\n' for line in lines)
    env = {
        "SCRIPT": str(REPO / "completions" / SCRIPTS[shell]),
        "PATH": "/usr/bin:/bin" if by_path else f"{fake.parent}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [shell, "-c", DRIVERS[shell] + calls + "true\n"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    outputs = [" ".join(sorted(line.split())) for line in result.stdout.splitlines()]
    assert outputs == [" ".join(sorted(e.split())) for e in EXPECTED], result.stdout
