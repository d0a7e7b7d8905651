"""The one setting pvha reads from PVE's own ``datacenter.cfg`` (at the cluster filesystem
root): ``ha: shutdown_policy=<policy>``, which administrators set under Datacenter ->
Options -> HA Settings. The file's format is ``key: value`` lines; ``ha``'s value is a
property string (``shutdown_policy=migrate``, comma-separated ``k=v``). pvha's own
setting (``[watch] shutdown_policy``, ``PVHA_SHUTDOWN_POLICY``) wins over it; without
either, PVE's default ``conditional``. A policy the file names that PVE does not know is
passed on as it is: the executor logs it and falls back to ``conditional``, as PVE's LRM.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_POLICY = "conditional"


def parse_shutdown_policy(text: str) -> str | None:
    """``ha: shutdown_policy=...`` of a datacenter.cfg text, or None."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or key.strip() != "ha":
            continue
        for prop in value.split(","):
            name, eq, val = prop.strip().partition("=")
            if eq and name.strip() == "shutdown_policy" and val.strip():
                return val.strip()
    return None


def shutdown_policy(cfs_root: Path, override: str | None = None) -> str:
    """The shutdown policy in force (see the module docstring)."""
    if override:
        return override
    try:
        text = (cfs_root / "datacenter.cfg").read_text("utf-8", errors="replace")
    except OSError:
        return DEFAULT_POLICY
    return parse_shutdown_policy(text) or DEFAULT_POLICY
