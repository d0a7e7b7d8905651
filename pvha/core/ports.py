"""The environment the HA daemons act through (PVE's ``PVE::HA::Env``), as Protocols.

Purity model
------------
The core (manager, node status, CRM and LRM role machines) never does IO, never reads
a clock and never sleeps. Everything it needs from the world goes through one port
object per daemon, grouped below by concern. The port's calls are the *only* effects
of the core, so the same code runs against the simulator (``pvha.sim.env``) and,
later, a real shell. Time is passed into every round as ``now`` (a daemon round
happens at one instant); the port does not expose a clock.

Why a port rather than "return actions": a manage() round makes decisions that depend
on IO results in the middle of the round (the fencing step tries the dead node's agent
lock once, and on success recovers its services *in the same round*). PVE's logs
depend on that interleaving, so the port call is the faithful and still pure-core
way: the core holds no IO handle, only this interface.

Contracts (who holds which lock, what is atomic) follow PVE:

* ``get_ha_manager_lock``/``get_ha_agent_lock`` acquire or renew a cluster lock with a
  120 s lifetime; they fail without quorum. ``release_*`` delete it if owned.
* ``read_crm_commands`` reads *and truncates* the command queue atomically.
* ``read_*``/``write_*`` raise :class:`CfsError` when the cluster filesystem is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class CfsError(Exception):
    """The cluster filesystem refused a read or write (message is PVE's text)."""


class LogPort(Protocol):
    def log(self, level: str, msg: str) -> None: ...


class ClusterPort(Protocol):
    def nodename(self) -> str: ...

    def quorate(self) -> bool: ...

    def get_node_info(self) -> tuple[dict[str, dict[str, Any]], bool]:
        """(node -> {"online": 0|1}, quorate)."""
        ...

    def cluster_state_update(self) -> bool: ...


class LockPort(Protocol):
    def get_ha_manager_lock(self) -> bool: ...

    def release_ha_manager_lock(self) -> bool: ...

    def get_ha_agent_lock(self, node: str | None = None) -> bool: ...

    def release_ha_agent_lock(self) -> bool: ...


class WatchdogPort(Protocol):
    def watchdog_open(self) -> str: ...

    def watchdog_update(self, wfh: str) -> None: ...

    def watchdog_close(self, wfh: str) -> None: ...


class StatusPort(Protocol):
    def read_manager_status(self) -> dict[str, Any]: ...

    def write_manager_status(self, ms: Mapping[str, Any]) -> None: ...

    def read_lrm_status(self, node: str | None = None) -> dict[str, Any]: ...

    def write_lrm_status(self, status: Mapping[str, Any]) -> None: ...

    def read_crm_commands(self) -> str:
        """Read and truncate the queue atomically."""
        ...

    def has_crm_commands(self) -> bool:
        """Peek: is any command queued (without consuming it)?"""
        ...


class ConfigPort(Protocol):
    def read_service_config(self) -> dict[str, dict[str, Any]]:
        """sid -> PVE-shaped dict with defaults filled (state, node, max_restart, ...)."""
        ...

    def update_service_config(self, sid: str, changes: Mapping[str, Any]) -> None: ...

    def read_group_config(self) -> Mapping[str, Any]: ...

    def read_rules_config(self) -> Mapping[str, Any]: ...

    def write_rules_config(self, rules: Mapping[str, Any]) -> None:
        """Persist rules (group migration); under the ``ha`` domain lock."""
        ...

    def delete_group_config(self) -> None: ...

    def get_datacenter_settings(self) -> Mapping[str, Any]:
        """PVE-shaped: ``{"ha": {"shutdown_policy": ...}, "crs": {"ha": ..., ...}}``."""
        ...

    def get_usage_stats(self, mode: str, ss: Mapping[str, Any]) -> tuple[Any, Any]:
        """(node -> scheduler.NodeStats, sid -> scheduler.ServiceStats) for static/dynamic."""
        ...

    def get_node_version(self, node: str) -> str:
        """pve-manager version of ``node`` (group migration gate)."""
        ...


class ResourcePort(Protocol):
    """Guest operations (PVE's resource plugins) as seen from one node."""

    def check_running(self, sid: str) -> bool: ...

    def start(self, sid: str) -> None: ...

    def shutdown(self, sid: str, timeout: Any = None) -> None: ...

    def migrate(self, sid: str, target: str, online: bool) -> bool: ...

    def steal_service(self, sid: str, current_node: str, new_node: str) -> None: ...

    def remove_locks(self, sid: str, locks: list[str], service_node: str) -> str | None: ...

    def resource_type_known(self, rtype: str) -> bool: ...


class HaEnv(
    LogPort, ClusterPort, LockPort, WatchdogPort, StatusPort, ConfigPort, ResourcePort, Protocol
):
    """Everything one daemon (CRM or LRM of one node) may do to the world."""

    def is_node_shutdown(self) -> tuple[bool, bool]:
        """(shutdown, reboot) requested for this node."""
        ...

    def send_notification(self, prefix: str, msg: str, node: str) -> None: ...
