"""Every help page of the command tree is readable in 80 columns and whole in 200.

The tree is walked from the click command the Typer app builds, so a command added
later is checked too. For each page: no line wider than the terminal, no type
placeholder (``<bool>``, ``<str>``, ...), and every word of every option's and
argument's help, and of the command's own help, appears whole (not split at a line end,
not cut with an ellipsis).
"""

from __future__ import annotations

import re

import pytest
from typer import _click as click
from typer.main import get_command
from typer.testing import CliRunner

from pvha.cli.app import app

TYPE_PLACEHOLDER = re.compile(
    r"<(bool|str|text|int|float|path|integer|boolean|string)>", re.IGNORECASE
)


def _tree(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            paths += _tree(sub, (*path, name))
    return paths


ROOT = get_command(app)
PATHS = _tree(ROOT)


def _command(path: tuple[str, ...]) -> click.Command:
    command = ROOT
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _help(path: tuple[str, ...], columns: int) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


def _words(text: str) -> list[str]:
    return text.replace("\b", "").split()


def _helps(command: click.Command) -> list[str]:
    """The command's help and the help of each visible parameter, as written."""
    texts = [command.help.partition("\f")[0] if command.help else ""]
    texts += [p.help or "" for p in command.params if not getattr(p, "hidden", False)]
    return texts


def test_the_tree_is_walked() -> None:
    assert {(), ("add",), ("rules",), ("rules", "list"), ("sim", "serve")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "pvha")
@pytest.mark.parametrize("columns", [80, 200])
def test_help_page_fits_and_is_whole(path: tuple[str, ...], columns: int) -> None:
    page = _help(path, columns)
    wide = [line for line in page.splitlines() if len(line) > min(columns, 80)]
    assert not wide, f"lines wider than {columns} columns:\n" + "\n".join(wide)
    assert not TYPE_PLACEHOLDER.search(page), page
    assert "…" not in page, page
    tokens = set(_words(page))
    for text in _helps(_command(path)):
        missing = [w for w in _words(text) if w not in tokens]
        assert not missing, f"words broken or cut in the help page: {missing}\n{page}"


def test_every_option_name_is_shown_whole() -> None:
    for path in PATHS:
        page = _help(path, 80)
        for param in _command(path).params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                for name in (*param.opts, *param.secondary_opts):
                    shown = rf"(^|[ ,]){re.escape(name)}([ ,]|$)"
                    assert re.search(shown, page, re.MULTILINE), f"{' '.join(path)}: {name}"


def test_docstring_lines_are_rewrapped_not_kept() -> None:
    """``add``'s docstring breaks a sentence after "must": the page joins it again."""
    page = _help(("add",), 80)
    assert "must not be a template" in " ".join(page.split()), page
    assert not any(line.rstrip().endswith(" must") for line in page.splitlines()), page


@pytest.mark.parametrize("path", [("add",), ("sim", "ctl")])
def test_narrow_terminal_wraps_at_its_width(path: tuple[str, ...]) -> None:
    """At 60 columns, prose and the lines a docstring keeps as written (``\\b``: sim ctl's
    command list) are wrapped at 58, words whole."""
    page = _help(path, 60)
    assert max(len(line) for line in page.splitlines()) <= 58, page
    assert page != _help(path, 80)
    tokens = set(_words(page))
    assert all(w in tokens for text in _helps(_command(path)) for w in _words(text)), page
