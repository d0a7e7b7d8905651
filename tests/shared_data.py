"""Where PVE's reference data lives: ../shared beside the checkout (or $PVHA_SHARED).

A plain module (not conftest) so test modules can import it at collection time:
``from shared_data import shared_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_path() -> Path | None:
    """The shared folder if present, else None."""
    candidate = Path(os.environ.get("PVHA_SHARED", REPO.parent / "shared"))
    return candidate if candidate.is_dir() else None


def scenarios_path() -> Path | None:
    """PVE's scenario folder inside the shared folder, if present."""
    shared = shared_path()
    path = shared / "pve-ha-scenarios" if shared else None
    return path if path and path.is_dir() else None
