"""The core's ``HaEnv`` on the real ports, one class per role.

:class:`ManagerEnv` is the port of the manager (the core CRM and its Manager, named after
the API node whose view it uses); :class:`ExecutorEnv` the port of the executor (the core
LRM) that the active manager runs on behalf of one online node. Both read the round's
view (:class:`~pvha.shell.authority.Authority`), the configuration
(:class:`~pvha.shell.config.ConfigSource`) and the status files held in memory
(:class:`~pvha.shell.statusfiles.StatusFiles`). The contracts of ``pvha.core.ports``
hold, with these mappings of PVE's mechanisms:

* manager lock = ``pvha_manager_lock`` on the cluster filesystem, taken or renewed
  only while the answering API node is quorate (safety rule 2);
* the fencing step's "get the dead node's agent lock" succeeds only with a proof that
  the node is off (:class:`pvha.shell.fencing.Fencing`: a fence-ack, or a fence
  device's verified power-off; safety rule 1);
* an executor's agent lock is "this process may act, the node is online and not acked
  as fenced": no lock directory, because the executor runs inside the manager; there is
  no watchdog in this mode (``watchdog_*`` do nothing);
* every write (status files, config moves, guest actions) checks
  :meth:`Authority.may_act` first, so nothing is changed by a process that lost the
  lock or whose API node lost quorum.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pvha.core.health import OFF, HealthSpec
from pvha.core.ports import CfsError
from pvha.errors import PvhaError
from pvha.ports import MANAGER_LOCK
from pvha.shell.authority import Authority
from pvha.shell.config import ConfigSource
from pvha.shell.fencing import Fencing
from pvha.shell.guests import GuestOps, Guests, ref_of, split_sid
from pvha.shell.health import HealthMonitor
from pvha.shell.statusfiles import StatusFiles

_LEVELS = {
    "err": logging.ERROR,
    "crit": logging.CRITICAL,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "email": logging.WARNING,
    "notice": logging.INFO,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
DATACENTER_DEFAULTS: Mapping[str, Any] = {
    "ha": {"shutdown_policy": "conditional"},
    "crs": {"ha": "basic"},
}
Recorder = Callable[[str | None, str], None]


class Shared:
    """What the manager's and the executors' ports share within one watcher."""

    def __init__(self, auth: Authority, config: ConfigSource, statuses: StatusFiles,
                 guests: Guests, fencing: Fencing, recorder: Recorder | None = None,
                 shutdown_policy: Callable[[], str] = lambda: "conditional",
                 health: HealthMonitor | None = None) -> None:
        self.auth = auth
        self.health = health  # guest health checks (None: no guest is checked)
        self.shutdown_policy = shutdown_policy  # asked when a node's agent reports a shutdown
        self.config = config
        self.statuses = statuses
        self.guests = guests
        self.fencing = fencing
        self.recorder = recorder
        self._sc: tuple[Any, dict[str, dict[str, Any]]] | None = None

    def service_config(self) -> dict[str, dict[str, Any]]:
        """Cached while the view, our own config moves and the config text stay the same
        (the executors read it once per finished command)."""
        view = self.auth.require_view()
        key = (id(view), self.guests.generation, id(self.config.config()))
        if self._sc is None or self._sc[0] != key:
            self._sc = (key, self.config.service_config(view, self.guests.node_of))
        return self._sc[1]


class _Env:
    """What both roles do alike."""

    role = "pvha.crm"

    def __init__(self, shared: Shared, node: str | None) -> None:
        self.shared = shared
        self.auth = shared.auth
        self._node = node
        self._log = logging.getLogger(self.role if node is None else f"{self.role}.{node}")

    # --- LogPort ---------------------------------------------------------------------

    def log(self, level: str, msg: str) -> None:
        self._log.log(_LEVELS.get(level, logging.INFO), "%s", msg)
        if self.shared.recorder is not None:
            self.shared.recorder(self._node, msg)

    def send_notification(self, prefix: str, msg: str, node: str) -> None:
        self._log.warning("notification %s: %s", prefix, msg)

    # --- ClusterPort -----------------------------------------------------------------

    def get_node_info(self) -> tuple[dict[str, dict[str, Any]], bool]:
        view = self.auth.require_view()
        return view.node_info(), view.quorate

    def cluster_state_update(self) -> bool:
        return self.auth.view is not None

    def blocked_nodes(self) -> frozenset[str]:
        """Nodes whose agent reports a stale copy it could not stop (pvha.shell.lease)."""
        leases = self.shared.fencing.leases
        return leases.blocked() if leases is not None else frozenset()

    def is_node_shutdown(self) -> tuple[bool, bool]:
        return False, False  # the watcher is not the node: stopping it never stops guests

    # --- WatchdogPort: no watchdog in this mode (fencing is by a device or fence-ack) --

    def watchdog_open(self) -> str:
        return "none"

    def watchdog_update(self, wfh: str) -> None:
        return None

    def watchdog_close(self, wfh: str) -> None:
        return None

    # --- StatusPort ------------------------------------------------------------------

    def _guard(self, what: str) -> None:
        if not self.auth.may_act():
            raise CfsError(f"{what} refused: not holding the manager lock on a quorate node")

    def read_manager_status(self) -> dict[str, Any]:
        return self.shared.statuses.read_manager()

    def read_lrm_status(self, node: str | None = None) -> dict[str, Any]:
        target = node or self._node
        return {} if target is None else self.shared.statuses.read_lrm(target)

    # --- ConfigPort ------------------------------------------------------------------

    def read_service_config(self) -> dict[str, dict[str, Any]]:
        return self.shared.service_config()

    def read_group_config(self) -> Mapping[str, Any]:
        return self.shared.config.config().groups

    def read_rules_config(self) -> Mapping[str, Any]:
        return self.shared.config.config().rules

    def write_rules_config(self, rules: Mapping[str, Any]) -> None:
        raise CfsError("HA group migration is not done by pvha watch; use 'pvha rules'")

    def delete_group_config(self) -> None:
        raise CfsError("HA group migration is not done by pvha watch; use 'pvha rules'")

    def get_datacenter_settings(self) -> Mapping[str, Any]:
        return {k: dict(v) for k, v in DATACENTER_DEFAULTS.items()}

    def get_usage_stats(self, mode: str, ss: Mapping[str, Any]) -> tuple[Any, Any]:
        raise CfsError(f"scheduler mode '{mode}' is not available in pvha watch")

    def get_node_version(self, node: str) -> str:
        return "0"  # unknown: the group migration gate stays closed

    def resource_type_known(self, rtype: str) -> bool:
        return rtype in ("vm", "ct")


class ManagerEnv(_Env):
    """The manager's port. ``extras()`` gives what the watcher adds to the manager's
    memory in ``manager_status["pvha"]`` (master_since, round_interval, degraded)."""

    def __init__(self, shared: Shared, extras: Callable[[], dict[str, Any]] = dict) -> None:
        super().__init__(shared, None)
        self.extras = extras

    def nodename(self) -> str:
        return self.auth.require_view().local_node

    def quorate(self) -> bool:
        return self.auth.quorate()

    # --- LockPort --------------------------------------------------------------------

    def get_ha_manager_lock(self) -> bool:
        if not self.auth.quorate():
            return False
        return bool(self.auth.cfs.acquire_lock(MANAGER_LOCK))

    def release_ha_manager_lock(self) -> bool:
        self.auth.cfs.release_lock(MANAGER_LOCK)
        return True

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        """The fencing step: True only with a proof that ``node`` is off."""
        return node is not None and self.shared.fencing.fenced(node)

    def release_ha_agent_lock(self) -> bool:
        return True

    def fence_cancellable(self, node: str) -> bool:
        """No watchdog in this mode: only a fence device would fence a node by itself."""
        power = self.shared.fencing.power
        return power is None or not power.has_device(node)

    # --- StatusPort ------------------------------------------------------------------

    def write_manager_status(self, ms: Mapping[str, Any]) -> None:
        self._guard("writing the manager status")
        out = dict(ms)
        out["pvha"] = {**(out.get("pvha") or {}), **self.extras()}
        self.shared.statuses.write_manager(out)

    def write_lrm_status(self, status: Mapping[str, Any]) -> None:
        raise CfsError("the manager has no executor status")

    def read_crm_commands(self) -> str:
        self._guard("consuming crm commands")
        try:
            return "".join(f"{line}\n" for line in self.auth.cfs.take_commands())
        except PvhaError as err:
            raise CfsError(str(err)) from None

    def has_crm_commands(self) -> bool:
        return bool(self.auth.cfs.has_commands())

    def update_service_config(self, sid: str, changes: Mapping[str, Any]) -> None:
        """The ``stop`` command's ``state: stopped``, in resources.cfg under the domain
        lock (the rest of the file, bad sections included, is kept byte for byte)."""
        from pvha.config.ops import edit_resource_text

        self._guard("changing resources.cfg")
        if any(v is None for v in changes.values()):
            raise CfsError("pvha watch does not delete resource options")
        options = {k: str(int(v) if isinstance(v, bool) else v) for k, v in changes.items()}
        try:
            self.auth.cfs.edit_config("resources.cfg",
                                      lambda text: edit_resource_text(text, sid, options))
        except PvhaError as err:
            raise CfsError(str(err)) from None

    # --- recovery ----------------------------------------------------------------------

    def steal_service(self, sid: str, current_node: str, new_node: str) -> str | None:
        """Safety rule 3: one atomic rename of the config from the fenced node, only by
        the lock holder on a quorate view, only when that node is not online and proven
        off. Repeating it after a crash is a no-op. When the config is on neither node,
        it was moved by an earlier recovery whose status was never written (the watcher
        died between the rename and the flush): that node is returned, and the recovery
        goes on there, if it is online; else CfsError (tried again next round)."""
        if current_node == new_node:
            return None
        if not self.auth.may_act():
            raise CfsError(f"refusing to move {sid}: not the active manager on quorum")
        fencing = self.shared.fencing
        if self.auth.node_online(current_node) or not fencing.proven_off(current_node):
            raise CfsError(f"refusing to move {sid}: node '{current_node}' is not fenced")
        kind, vmid = split_sid(sid)
        cfs = self.auth.cfs
        try:
            cfs.steal_guest_config(kind, vmid, current_node, new_node)
        except PvhaError as err:
            where = cfs.find_guest_config(kind, vmid)
            if len(where) != 1 or where[0] in (current_node, new_node):
                raise CfsError(str(err)) from None
            if not self.auth.node_online(where[0]):
                raise CfsError(f"{sid}: its config is on node '{where[0]}', which is not "
                               "online") from None
            self.shared.guests.moved(sid, where[0])
            return where[0]
        self.shared.guests.moved(sid, new_node)
        return None

    def remove_locks(self, sid: str, locks: list[str], service_node: str) -> str | None:
        """Drop a leftover config lock before a recovery, as PVE's ``remove_locks``."""
        g = self.auth.require_view().guests.get(sid)
        if g is None or not g.lock or g.lock not in locks:
            return None
        self._guard(f"unlocking {sid}")
        kind, vmid = split_sid(sid)
        try:
            removed = self.auth.cfs.remove_guest_lock(kind, vmid, service_node, locks)
        except PvhaError as err:
            raise CfsError(str(err)) from None
        return str(removed) if removed else None

    # --- ResourcePort: the manager runs no guest commands ------------------------------

    def check_running(self, sid: str) -> bool:
        raise CfsError("the manager runs no guest commands")

    start = shutdown = migrate = task_running = check_running  # type: ignore[assignment]
    guest_runs = guest_health = check_running  # type: ignore[assignment]


class ExecutorEnv(_Env):
    """The port of the executor of ``node``: its guest operations are :class:`GuestOps`."""

    role = "pvha.lrm"

    def __init__(self, shared: Shared, node: str) -> None:
        super().__init__(shared, node)
        self.node = node
        self.node_shutdown = (False, False)  # (shutdown, reboot), as the node's agent said
        ops = GuestOps(shared.guests, node)
        self._start = ops.start
        self.check_running = ops.check_running
        self.shutdown = ops.shutdown
        self.migrate = ops.migrate
        self.task_running = ops.task_running
        self.guest_runs = shared.guests.runs_now  # any node's guest: the start order's question

    def nodename(self) -> str:
        return self.node

    def start(self, sid: str) -> str | None:
        """Post a start; its guest's health grace counts from now."""
        handle = self._start(sid)
        if self.shared.health is not None:
            self.shared.health.started(sid, self.auth.clock.time())
        return handle

    def guest_health(self, sid: str) -> tuple[str, str]:
        """The verdict of :class:`~pvha.shell.health.HealthMonitor` on ``sid`` when its
        resource has ``health agent`` (vm: only), else ``("off", "")``."""
        monitor = self.shared.health
        spec = HealthSpec.of(self.read_service_config().get(sid))
        if monitor is None or spec is None or not sid.startswith("vm:"):
            return OFF, ""
        g = self.auth.require_view().guests.get(sid)
        d = monitor.verdict(sid, ref_of(sid, self.node), spec, g, self.auth.clock.time())
        return d.verdict, d.reason

    def is_node_shutdown(self) -> tuple[bool, bool]:
        return self.node_shutdown

    def get_datacenter_settings(self) -> Mapping[str, Any]:
        out = {k: dict(v) for k, v in DATACENTER_DEFAULTS.items()}
        out["ha"]["shutdown_policy"] = self.shared.shutdown_policy()
        return out

    def quorate(self) -> bool:
        return self.auth.quorate() and self.auth.node_online(self.node)

    def get_ha_manager_lock(self) -> bool:
        return False

    def release_ha_manager_lock(self) -> bool:
        return True

    def fence_cancellable(self, node: str) -> bool:
        return False  # an executor fences nothing

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        target = node or self.node
        return (target == self.node and self.auth.may_act()
                and self.auth.node_online(target)
                and self.shared.fencing.acks.get(target) is None)

    def release_ha_agent_lock(self) -> bool:
        return True

    def write_manager_status(self, ms: Mapping[str, Any]) -> None:
        raise CfsError("an executor does not write the manager status")

    def write_lrm_status(self, status: Mapping[str, Any]) -> None:
        self._guard("writing an executor status")
        self.shared.statuses.write_lrm(self.node, dict(status))

    def read_crm_commands(self) -> str:
        raise CfsError("an executor does not consume crm commands")

    def has_crm_commands(self) -> bool:
        return False

    def update_service_config(self, sid: str, changes: Mapping[str, Any]) -> None:
        raise CfsError("an executor does not change resources.cfg")

    def steal_service(self, sid: str, current_node: str, new_node: str) -> str | None:
        raise CfsError("an executor does not move configs")

    def remove_locks(self, sid: str, locks: list[str], service_node: str) -> str | None:
        raise CfsError("an executor does not unlock configs")
