"""The environment the HA daemons act through (PVE's ``PVE::HA::Env``), as Protocols.

Purity model
------------
The core (manager, node status, CRM and LRM role machines) never does IO, never reads
a clock and never sleeps. Everything it needs from the world goes through one port
object per daemon, grouped below by concern. The port's calls are the *only* effects
of the core, so the same code runs against the simulator (``pvha.sim.env``) and,
later, a real shell. Time is passed into every round as ``now`` (a daemon round
happens at one instant); the port does not expose a clock.

Why a port rather than "return actions" (a decision, taken on purpose against the
snapshot -> decide -> apply shape first drawn in design.md): a manage() round makes
decisions that depend on effects in the middle of the round (the fencing step asks for
the dead node's proof once, and on success recovers its services *in the same round*;
a recovery moves a config and the next service's placement sees it). PVE's logs depend
on that interleaving, so the port call is the faithful and still pure-core way: the core
holds no IO handle, only this interface. What the snapshot model wanted is kept where it
matters: every *read* of a round is answered from one frozen view (``pvha watch``: the
three API answers of the round and the status files held in memory; the simulator: its
hardware state at the round's instant), nothing blocks (guest actions are posted; see
:class:`ResourcePort`), and the only effects during a round are the ones named below.

Contracts (who holds which lock, what is atomic) follow PVE:

* The manager lock: whoever holds it is the one master; it is taken and renewed once per
  round by the CRM (``get_ha_manager_lock``), lasts 120 s from its last renewal, and
  cannot be taken or renewed without quorum. Only its holder writes manager_status,
  consumes crm_commands, moves configs and acts on guests.
* An agent lock is a node's: its LRM holds it while it may run services (and feeds its
  watchdog while it holds it). ``get_ha_agent_lock(node)`` for *another* node, asked by
  the master's fencing step, means "is that node proven fenced?": in PVE the dead
  node's lock can only be taken once it expired behind the node's watchdog; in
  ``pvha watch`` it is true only with a fence device's verified power-off or an
  administrator's fence-ack, never for a node that is online. A True answer allows
  the recovery of that node's services; it must never be given early.
* ``read_crm_commands`` reads *and truncates* the command queue atomically, under the
  ``ha`` domain lock, so a command is consumed exactly once; config writes take the same
  domain lock.
* ``write_manager_status``/``write_lrm_status`` replace their file atomically (a crash
  leaves the old or the new content); ``steal_service`` is one atomic rename.
* ``read_*``/``write_*`` raise :class:`CfsError` when the cluster filesystem is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class CfsError(Exception):
    """The cluster filesystem refused a read or write (message is PVE's text)."""


class LogPort(Protocol):
    """Where the daemon's log lines go."""

    def log(self, level: str, msg: str) -> None:
        """One log line; ``level`` is PVE's: info, notice, warning (warn), err."""
        ...


class ClusterPort(Protocol):
    """Cluster membership as seen from this node."""

    def nodename(self) -> str:
        """This daemon's node name."""
        ...

    def quorate(self) -> bool:
        """Whether this node is part of the quorate partition."""
        ...

    def get_node_info(self) -> tuple[dict[str, dict[str, Any]], bool]:
        """(node -> {"online": 0|1}, quorate)."""
        ...

    def cluster_state_update(self) -> bool:
        """Refresh the cluster state; False while it is inconsistent (a cfs restart):
        the CRM then skips its round."""
        ...

    def blocked_nodes(self) -> frozenset[str]:
        """Online nodes no guest may be placed on now (pvha: a node whose agent reports
        a stale copy of a guest it could not stop); always empty under PVE's rules."""
        ...


class LockPort(Protocol):
    """The cluster locks (120 s lifetime unless renewed; none without quorum)."""

    def get_ha_manager_lock(self) -> bool:
        """Acquire or renew the manager lock; True if this node holds it now."""
        ...

    def release_ha_manager_lock(self) -> bool:
        """Delete the manager lock if this node holds it; True on success."""
        ...

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        """This node's LRM: acquire or renew its own agent lock. The master, for another
        ``node``: one non-blocking attempt at the proof that ``node`` is fenced (see the
        module docstring); True allows recovering its services."""
        ...

    def fence_cancellable(self, node: str) -> bool:
        """Whether a fencing of ``node`` may be called off when the node is online again
        before it was fenced: True only where nothing would ever fence it by itself (no
        watchdog agent that self-fences, no fence device), so waiting would wait forever.
        PVE (and the simulator): False, its node's LRM self-fences."""
        ...

    def release_ha_agent_lock(self) -> bool:
        """Delete this node's agent lock if held; True on success."""
        ...


class WatchdogPort(Protocol):
    """The node's watchdog: a node whose daemon stops updating it is reset."""

    def watchdog_open(self) -> str:
        """Arm the watchdog; returns the handle for update and close."""
        ...

    def watchdog_update(self, wfh: str) -> None:
        """Keep the watchdog from firing (once per round)."""
        ...

    def watchdog_close(self, wfh: str) -> None:
        """Disarm the watchdog gracefully (the daemon stops protecting the node)."""
        ...


class StatusPort(Protocol):
    """The status files of the cluster filesystem (raise CfsError when it is down)."""

    def read_manager_status(self) -> dict[str, Any]:
        """manager_status as last written ({} if none)."""
        ...

    def write_manager_status(self, ms: Mapping[str, Any]) -> None:
        """Replace manager_status atomically (the master only)."""
        ...

    def read_lrm_status(self, node: str | None = None) -> dict[str, Any]:
        """The lrm_status of ``node`` (default: this node; {} if none)."""
        ...

    def write_lrm_status(self, status: Mapping[str, Any]) -> None:
        """Replace this node's lrm_status atomically."""
        ...

    def read_crm_commands(self) -> str:
        """Read and truncate the queue atomically."""
        ...

    def has_crm_commands(self) -> bool:
        """Peek: is any command queued (without consuming it)?"""
        ...


class ConfigPort(Protocol):
    """The HA configuration files and datacenter settings (CfsError when unreadable)."""

    def read_service_config(self) -> dict[str, dict[str, Any]]:
        """sid -> PVE-shaped dict with defaults filled (state, node, max_restart, ...)."""
        ...

    def update_service_config(self, sid: str, changes: Mapping[str, Any]) -> None:
        """Change keys of the resources.cfg entry of ``sid`` (a None value removes the
        key), under the ``ha`` domain lock."""
        ...

    def read_group_config(self) -> Mapping[str, Any]:
        """groups.cfg: group id -> :class:`~pvha.core.model.Group`."""
        ...

    def read_rules_config(self) -> Mapping[str, Any]:
        """rules.cfg: rule id -> :class:`~pvha.core.model.Rule`."""
        ...

    def write_rules_config(self, rules: Mapping[str, Any]) -> None:
        """Persist rules (group migration); under the ``ha`` domain lock."""
        ...

    def delete_group_config(self) -> None:
        """Remove groups.cfg (after a group migration), under the ``ha`` domain lock."""
        ...

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
    """Guest operations (PVE's resource plugins) as seen from one node's LRM, and the
    recovery's two config edits (the CRM's).

    The guest actions never wait for their guest task (:mod:`pvha.core.executor`): an
    action returns a task handle when it left a task running, None (or, for
    ``migrate``, a bool) when it is done; the LRM asks :meth:`task_running` in later
    rounds and then goes on. Any of these may raise
    :class:`pvha.core.executor.RetryLater` (cannot tell or act now; the job stays where
    it is). The simulator's actions are done at once; ``pvha watch``'s post API tasks."""

    def check_running(self, sid: str) -> bool:
        """Whether the guest ``sid``'s process runs (a paused or suspended VM runs)."""
        ...

    def guest_runs(self, sid: str) -> bool:
        """Whether the guest ``sid`` runs on any node, as far as this daemon can tell (the
        start order's question, :mod:`pvha.core.start_order`)."""
        ...

    def start(self, sid: str) -> str | None:
        """Start the guest ``sid`` on this node; the caller reads the outcome back with
        :meth:`check_running` once the returned task (if any) has ended."""
        ...

    def shutdown(self, sid: str, timeout: Any = None) -> str | None:
        """Stop the guest ``sid`` (``timeout`` seconds for a clean shutdown, 0 = hard stop);
        a task handle to wait for, or None."""
        ...

    def migrate(self, sid: str, target: str, online: bool, after: str | None = None) -> str | bool:
        """Move ``sid`` to ``target`` (``online``: live; else a running guest is stopped
        first). A task handle to wait for, then call again with ``after`` = that handle to
        go on; or a bool when done: True = its config is on ``target``."""
        ...

    def task_running(self, handle: str) -> bool:
        """Whether the task behind a handle returned above still runs."""
        ...

    def guest_health(self, sid: str) -> tuple[str, str]:
        """The health verdict of the running guest ``sid`` and why
        (:mod:`pvha.core.health`: ``ok``, ``waiting``, ``unhealthy``), or ``("off", "")``
        when its health is not checked. Asked by a ``started`` command; never waits."""
        ...

    def steal_service(self, sid: str, current_node: str, new_node: str) -> str | None:
        """Move the guest config of ``sid`` from the fenced ``current_node`` to
        ``new_node`` (recovery; one atomic rename). Returns None, or the node where the
        config really is when it was not on ``current_node`` any more (an earlier
        recovery, interrupted before its status was written, moved it there): the
        recovery then goes on there. CfsError when it cannot be moved now."""
        ...

    def remove_locks(self, sid: str, locks: list[str], service_node: str) -> str | None:
        """Remove the first of ``locks`` that the guest config of ``sid`` holds; the
        removed lock's name, or None."""
        ...

    def resource_type_known(self, rtype: str) -> bool:
        """Whether a resource plugin exists for ``rtype`` (``vm``, ``ct``...)."""
        ...


class HaEnv(
    LogPort, ClusterPort, LockPort, WatchdogPort, StatusPort, ConfigPort, ResourcePort, Protocol
):
    """Everything one daemon (CRM or LRM of one node) may do to the world."""

    def is_node_shutdown(self) -> tuple[bool, bool]:
        """(shutdown, reboot) requested for this node."""
        ...

    def send_notification(self, prefix: str, msg: str, node: str) -> None:
        """Notify the administrator (PVE: a mail) about ``node``; ``prefix`` is
        ``FENCE`` or ``SUCCEED``."""
        ...
