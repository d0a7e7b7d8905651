"""Reads for the administrator's commands against a live cluster (``pvha status``,
``pvha add``, ``pvha fence-ack``): at most the 3 snapshot calls, never a write.

``api_from_env(settings)`` builds the API adapter only when an API was configured
(``hosts`` from a flag, ``PVHA_HOSTS`` or the settings file); without one the commands
keep working on the local files alone, and say so where it matters.
"""

from __future__ import annotations

from typing import Any

from pvha.adapters.pve_api import PveApi
from pvha.errors import ApiError, UsageError
from pvha.settings import Settings
from pvha.shell.snapshot import RoundView, take_view


def api_for(settings: Settings) -> PveApi | None:
    """The API adapter, or None when no API is configured. ConfigError if it is
    configured but incomplete (e.g. no secret)."""
    if not settings.api_configured:
        return None
    return PveApi.from_settings(settings.api)


def live_view(settings: Settings) -> RoundView | None:
    """One view of the cluster, or None without a configured API. Raises ApiError."""
    api = api_for(settings)
    return None if api is None else take_view(api)


def check_not_pve_ha(settings: Settings, sid: str) -> str | None:
    """Refuse (UsageError) a guest that PVE's own HA manages. Returns a note when the
    check could not be made (no API configured, or the API did not answer): then pvha
    accepts the resource, and ``pvha watch`` still skips it while PVE's HA manages it."""
    try:
        view = live_view(settings)
    except ApiError as err:
        return f"could not ask PVE whether its own HA manages {sid} ({err})"
    if view is None:
        return None
    if sid in view.pve_ha:
        raise UsageError(
            f"{sid} is managed by PVE's own HA (ha-manager); remove it there first "
            "(two HA managers on one guest is a split brain)"
        )
    return None


def check_fence_ack(settings: Settings, node: str) -> tuple[list[str], Any]:
    """Checks before recording a fence-ack. Refuses (UsageError) when a quorate API view
    shows ``node`` online, or ``node`` is not a cluster member. Returns warnings."""
    try:
        view = live_view(settings)
    except ApiError as err:
        return [f"could not check {node} through the API ({err}); recording the ack anyway"], None
    if view is None:
        return [(f"no API configured: cannot check that {node} is offline; make sure it "
                 "is powered off")], None
    if node not in view.members:
        raise UsageError(f"no such cluster node '{node}' (members: {', '.join(view.members)})")
    if view.quorate and node in view.online:
        raise UsageError(
            f"node '{node}' is online in the cluster; fence-ack is only for a node that "
            "is powered off"
        )
    warnings = [] if view.quorate else [f"{view.local_node} has no quorum; cannot confirm"]
    return warnings, view
