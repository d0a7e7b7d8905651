"""Project-wide pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from shared_data import shared_path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout; CI always has it, elsewhere tests skip without it."""
    path = shared_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("../shared is missing beside the checkout; CI must provide it")
        pytest.skip("../shared (PVE reference scenarios) is not beside this checkout")
    return path
