"""Fixtures for CLI tests: a config dir and a runner bound to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from pvha.cli.app import app

Run = Callable[..., Result]


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return tmp_path / "cfg"


@pytest.fixture
def run(cfg_dir: Path) -> Run:
    """``run("add", "vm:100")`` invokes ``pvha --config-dir <cfg_dir> add vm:100``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["--config-dir", str(cfg_dir), *args], env={"COLUMNS": "120"})

    return invoke


@pytest.fixture
def snapshot(cfg_dir: Path) -> Callable[[], dict[str, bytes]]:
    """A function returning the config dir's files and their bytes."""
    return lambda: files_of(cfg_dir)


def files_of(directory: Path) -> dict[str, bytes]:
    """Every regular file under ``directory`` (except the lock file) with its bytes."""
    if not directory.exists():
        return {}
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != ".pvha.lock"
    }
