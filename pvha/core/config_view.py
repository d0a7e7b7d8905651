"""Typed views of the PVE-shaped config dicts the engine reads through its port."""

from __future__ import annotations

from typing import Any

from pvha.core.model import Resource


def to_resource(sid: str, cd: dict[str, Any]) -> Resource:
    """A resources.cfg entry (sim: service_config) as the typed model; numbers may be strings."""
    return Resource(
        sid=sid,
        state=cd.get("state", "started"),
        group=cd.get("group"),
        failback=bool(int(cd.get("failback", 1))),
        max_restart=int(cd.get("max_restart", 1)),
        max_relocate=int(cd.get("max_relocate", 1)),
        node=cd.get("node"),
    )
