"""Skip rules for the real-part fence tests (a plain module, importable by tests).

Missing parts skip with a reason, except under CI, where a missing part is a failure:
CI installs them through scripts/setup-env, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def require(ok: bool, reason: str) -> None:
    """Skip (fail under CI) unless ``ok``."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it through scripts/setup-env)")
    pytest.skip(reason)


def require_agent(name: str) -> None:
    require(
        shutil.which(name, path=_SBIN) is not None,
        f"{name} is missing (Debian package fence-agents)",
    )


def require_module(name: str, package: str) -> None:
    require(
        importlib.util.find_spec(name) is not None,
        f"python module {name} is missing (pip package {package}, the test extra)",
    )
