"""Project-wide pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_path() -> Path | None:
    """The ../shared folder beside the checkout (or $PVHA_SHARED), if present."""
    candidate = Path(os.environ.get("PVHA_SHARED", REPO.parent / "shared"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("../shared is missing beside the checkout; CI must provide it")
        pytest.skip("../shared (PVE reference scenarios) is not beside this checkout")
    return path
