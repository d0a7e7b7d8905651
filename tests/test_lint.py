"""The code stays lint-clean (ruff) and the pure core type-checks under ``mypy --strict``
(style.md, "House habits"). Both tools come from the test extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "--no-cache", "pvha", "tests", "bench", "tools")
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_is_mypy_strict_clean() -> None:
    result = _run("mypy", "--strict", "--no-incremental", "pvha/core")
    assert result.returncode == 0, result.stdout + result.stderr
