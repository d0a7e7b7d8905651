"""Real-path adapters behind ``pvha.ports``: the PVE HTTP API (``pve_api`` over
``pve_client``, TLS in ``tls``), the cluster filesystem (``cfs``) and the system clock.

``build_real_adapters(settings)`` is what ``pvha watch`` calls to get them."""

from __future__ import annotations

from pvha.adapters.cfs import ClusterFs
from pvha.adapters.clock import SystemClock
from pvha.adapters.pve_api import PveApi
from pvha.ports import Clock
from pvha.settings import Settings


def build_real_adapters(
    settings: Settings, clock: Clock | None = None
) -> tuple[PveApi, ClusterFs, Clock]:
    """The API adapter (ClusterReads + GuestActions), the cluster filesystem and the clock,
    all sharing one clock. Does no network I/O (the first call logs in)."""
    clock = clock or SystemClock()
    api = PveApi.from_settings(
        settings.api, clock=clock.time, monotonic=clock.monotonic, sleep=clock.sleep
    )
    cfs = ClusterFs(
        settings.cfs.root, settings.cfs.resolved_config_dir, clock=clock.time, sleep=clock.sleep
    )
    return api, cfs, clock


__all__ = ["ClusterFs", "PveApi", "SystemClock", "build_real_adapters"]
