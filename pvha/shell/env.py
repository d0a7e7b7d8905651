"""The core's ``HaEnv`` on the real ports: snapshot + cluster filesystem + PVE API.

Theory of operation. One :class:`World` per watcher process holds the adapters, the
round's :class:`~pvha.shell.snapshot.RoundView` and two short-lived overlays that
carry what this process itself just did (a config moved by a steal or a migration, a
guest started or stopped) until the next snapshots agree, because
``/cluster/resources`` lags behind actions by up to a pvestatd cycle.

:class:`ShellEnv` is the port one daemon role acts through, as ``pvha.sim.env.SimEnv``
is for the simulator: ``node=None`` is the manager (CRM, named after the API node
whose view it uses), ``node="node2"`` is the executor (LRM) that the active manager
runs on behalf of ``node2``. The contracts of ``pvha.core.ports`` hold, with these
mappings of PVE's mechanisms:

* manager lock = ``pvha_manager_lock`` on the cluster filesystem, taken or renewed
  only while the answering API node is quorate (safety rule 2);
* the fencing step's "get the dead node's agent lock" succeeds only with a fence-ack
  record for a node that is not online in a quorate view (safety rule 1,
  :mod:`pvha.shell.fencing`), or, for a node that ``fence.cfg`` connects to a fence
  device, once that device verified the node off (:mod:`pvha.shell.power`);
* an executor's agent lock is "this process holds the manager lock, the view is
  quorate, the node is online and not acked as fenced": no lock directory, because
  the executor runs inside the manager;
* every write (status files, config steal, guest actions) re-checks
  :meth:`World.may_act` first, so nothing is changed by a process that lost the lock
  or whose API node lost quorum during the round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pvha.config.store import Store
from pvha.core.model import HAConfig
from pvha.core.ports import CfsError
from pvha.errors import PvhaError
from pvha.ports import MANAGER_LOCK, Clock
from pvha.shell.fencing import FenceAcks
from pvha.shell.snapshot import RoundView

OVERLAY_TTL = 60.0
"""Seconds an overlay (our own action's outcome) may override the snapshot."""

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


class World:
    """Per-process shared state of a watcher (see module docstring).

    ``api`` implements ClusterReads and GuestActions, ``cfs`` the ClusterFilesystem
    port (plus ``holds_lock``/``config_dir``), ``acks`` the fence-ack records.
    """

    def __init__(self, api: Any, cfs: Any, acks: FenceAcks, clock: Clock) -> None:
        self.api = api
        self.cfs = cfs
        self.acks = acks
        self.clock = clock
        self.view: RoundView | None = None
        self.quorum_lost = False  # set inside a round by pvha.shell.keepalive
        # when this process last saw each node online in a quorate view
        self.seen_online: dict[str, float] = {}
        self.node_overlay: dict[str, tuple[str, float]] = {}
        self.run_overlay: dict[str, tuple[bool, float]] = {}
        self.verify: set[str] = set()
        self.skipped: dict[str, str] = {}  # sid -> why it is not managed (logged once)
        # caches, valid for one generation: a new view, a config move or a config edit
        # starts a new one (the executors read the service config once per command)
        self.generation = 0
        self._cfg_key: tuple[str | None, ...] | None = None
        self._cfg: HAConfig = HAConfig()
        self._cfg_gen = -1
        self._sc: dict[str, dict[str, Any]] = {}
        self._sc_gen = -1
        self.log = logging.getLogger("pvha.watch")
        # power fencing (pvha.shell.power) when fence.cfg exists; the journal hook
        self.power: Any = None
        self.history: Any = None
        self.recorder: Callable[[str | None, str], None] | None = None

    # --- the round's view ------------------------------------------------------------

    def set_view(self, view: RoundView) -> None:
        """Install the round's view; drop overlays the snapshot now confirms or that aged."""
        self.view = view
        if view.quorate:
            for node in view.online:
                self.seen_online[node] = view.taken_at
        self.quorum_lost = False
        self.generation += 1
        now = self.clock.time()
        for sid, (node, since) in list(self.node_overlay.items()):
            g = view.guests.get(sid)
            if (g is not None and g.node == node) or now - since > OVERLAY_TTL:
                del self.node_overlay[sid]
        for sid, (running, since) in list(self.run_overlay.items()):
            g = view.guests.get(sid)
            agrees = g is not None and not g.status_stale and (g.status == "running") == running
            if agrees or now - since > OVERLAY_TTL:
                del self.run_overlay[sid]

    def require_view(self) -> RoundView:
        if self.view is None:
            raise CfsError("no cluster view this round")
        return self.view

    def quorate(self) -> bool:
        return self.view is not None and self.view.quorate and not self.quorum_lost

    def holds_manager_lock(self) -> bool:
        return bool(self.cfs.holds_lock(MANAGER_LOCK))

    def may_act(self) -> bool:
        """Safety rule 2: manager lock held and the answering API node quorate."""
        return self.quorate() and self.holds_manager_lock()

    def node_online(self, node: str) -> bool:
        return self.view is not None and node in self.view.online

    def node_fenced(self, node: str) -> bool:
        """Safety rule 1: ``node`` is proven off (fence-ack) and not online now."""
        if not self.may_act() or self.node_online(node):
            return False
        ack = self.acks.get(node)
        if ack is None:
            return False
        seen = self.seen_online.get(node)
        if seen is not None and ack.acked_at < seen:
            # an ack from before the node's last return: proves nothing about now
            self.log.warning("fence-ack of %s is older than its last time online; ignored "
                             "(run pvha fence-ack %s again once it is off)", node, node)
            return False
        return True

    def proven_off(self, node: str) -> bool:
        """A fence-ack record, or a verified power-off by its fence device that the node
        has not come back from (the config steal's own check of safety rule 1)."""
        if self.acks.get(node) is not None:
            return True
        return self.power is not None and node in self.power.fenced

    # --- guests ----------------------------------------------------------------------

    def guest_node(self, sid: str) -> str | None:
        """Where the guest's config is: our own recent move, else the snapshot."""
        if sid in self.node_overlay:
            return self.node_overlay[sid][0]
        g = self.view.guests.get(sid) if self.view is not None else None
        return g.node if g is not None else None

    def moved(self, sid: str, node: str) -> None:
        self.node_overlay[sid] = (node, self.clock.time())
        self.generation += 1

    def ran(self, sid: str, running: bool) -> None:
        self.run_overlay[sid] = (running, self.clock.time())
        self.verify.discard(sid)

    # --- configuration ---------------------------------------------------------------

    def config(self) -> HAConfig:
        """resources/groups/rules from the config dir: read once per generation, parsed
        again only when the text changed."""
        if self._cfg_gen == self.generation:
            return self._cfg
        try:
            key = tuple(self.cfs.read_config(n) for n in ("resources.cfg", "groups.cfg",
                                                            "rules.cfg"))
            if key != self._cfg_key:
                self._cfg = Store(self.cfs.config_dir).load().ha_config()
                self._cfg_key = key
        except PvhaError as err:
            raise CfsError(f"cannot read HA configuration: {err}") from None
        self._cfg_gen = self.generation
        return self._cfg

    def service_config(self) -> dict[str, dict[str, Any]]:
        """The core's ``read_service_config``: PVE-shaped dicts with the guest's node.
        Guests PVE's own HA manages, and resources without a guest, are left out.
        Cached for the generation: callers may only change a ``node`` to where the
        config really is (the manager's recovery does, right after the move)."""
        if self._sc_gen == self.generation:
            return self._sc
        view = self.require_view()
        out: dict[str, dict[str, Any]] = {}
        for sid, res in self.config().resources.items():
            why = None
            if sid in view.pve_ha:
                why = "managed by PVE's own HA (ha-manager); pvha leaves it alone"
            node = self.guest_node(sid)
            if why is None and node is None:
                why = "no such guest in the cluster"
            if why is not None:
                if self.skipped.get(sid) != why:
                    self.log.warning("service '%s' skipped: %s", sid, why)
                    self.skipped[sid] = why
                continue
            self.skipped.pop(sid, None)
            out[sid] = {
                "type": res.type, "name": res.name, "state": res.state, "node": node,
                "group": res.group, "failback": int(res.failback),
                "max_restart": res.max_restart, "max_relocate": res.max_relocate,
            }
            if res.group is None:
                del out[sid]["group"]
        self._sc, self._sc_gen = out, self.generation
        return out


class ShellEnv:
    """``HaEnv`` for the manager (``node=None``) or the executor of ``node``."""

    def __init__(self, world: World, node: str | None = None, ops: Any = None) -> None:
        self.world = world
        self.node = node
        self.ops = ops
        name = "pvha.crm" if node is None else f"pvha.lrm.{node}"
        self._log = logging.getLogger(name)

    # --- LogPort ---------------------------------------------------------------------

    def log(self, level: str, msg: str) -> None:
        self._log.log(_LEVELS.get(level, logging.INFO), "%s", msg)
        recorder = self.world.recorder
        if recorder is not None:
            recorder(self.node, msg)

    def send_notification(self, prefix: str, msg: str, node: str) -> None:
        self._log.warning("notification %s: %s", prefix, msg)

    # --- ClusterPort -----------------------------------------------------------------

    def nodename(self) -> str:
        return self.node if self.node is not None else self.world.require_view().local_node

    def quorate(self) -> bool:
        if self.node is None:
            return self.world.quorate()
        return self.world.quorate() and self.world.node_online(self.node)

    def get_node_info(self) -> tuple[dict[str, dict[str, Any]], bool]:
        view = self.world.require_view()
        return view.node_info(), view.quorate

    def cluster_state_update(self) -> bool:
        return self.world.view is not None

    def is_node_shutdown(self) -> tuple[bool, bool]:
        return False, False  # the watcher is not the node: stopping it never stops guests

    # --- LockPort --------------------------------------------------------------------

    def get_ha_manager_lock(self) -> bool:
        if self.node is not None or not self.world.quorate():
            return False
        return bool(self.world.cfs.acquire_lock(MANAGER_LOCK))

    def release_ha_manager_lock(self) -> bool:
        self.world.cfs.release_lock(MANAGER_LOCK)
        return True

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        if self.node is None:
            if node is None:
                return False
            return self._fenced(node)
        target = node or self.node
        w = self.world
        return target == self.node and w.may_act() and w.node_online(target) \
            and w.acks.get(target) is None

    def _fenced(self, node: str) -> bool:
        """The manager's proof that ``node`` is off: a fence-ack, else a verified
        power-off through its fence device (never while the node is online)."""
        w = self.world
        if w.node_fenced(node):
            ack = w.acks.get(node)
            by = f" by {ack.by}" if ack is not None and ack.by else ""
            self.log("info", f"fencing: node '{node}' acknowledged off{by} (fence-ack)")
            if w.history is not None:
                w.history.append("fence", node, time=w.clock.time(), outcome="acknowledged",
                                 by=ack.by if ack is not None else None)
            if w.power is not None:
                w.power.drop(node)
            return True
        if w.power is None or not w.power.has_device(node):
            return False
        if not w.may_act():
            return False
        # a node in fence state that is online again is still powered off (PVE's node
        # would self-fence); the step itself never reports an online node fenced
        return bool(w.power.step(node))

    def release_ha_agent_lock(self) -> bool:
        return True

    # --- WatchdogPort: no watchdog in this mode (fencing is by fence-ack) ------------

    def watchdog_open(self) -> str:
        return "none"

    def watchdog_update(self, wfh: str) -> None:
        return None

    def watchdog_close(self, wfh: str) -> None:
        return None

    # --- StatusPort ------------------------------------------------------------------

    def _guard(self, what: str) -> None:
        if not self.world.may_act():
            raise CfsError(f"{what} refused: not holding the manager lock on a quorate node")

    def read_manager_status(self) -> dict[str, Any]:
        try:
            return self.world.cfs.read_manager_status() or {}
        except PvhaError as err:
            raise CfsError(str(err)) from None

    def write_manager_status(self, ms: Mapping[str, Any]) -> None:
        self._guard("writing the manager status")
        try:
            self.world.cfs.write_manager_status(dict(ms))
        except PvhaError as err:
            raise CfsError(str(err)) from None

    def read_lrm_status(self, node: str | None = None) -> dict[str, Any]:
        target = node or self.node
        if target is None:
            return {}
        try:
            return self.world.cfs.read_executor_status(target) or {}
        except PvhaError:
            return {}  # unreadable counts as missing, as in PVE

    def write_lrm_status(self, status: Mapping[str, Any]) -> None:
        if self.node is None:
            raise CfsError("the manager has no executor status")
        self._guard("writing an executor status")
        try:
            self.world.cfs.write_executor_status(self.node, dict(status))
        except PvhaError as err:
            raise CfsError(str(err)) from None

    def read_crm_commands(self) -> str:
        self._guard("consuming crm commands")
        try:
            return "".join(f"{line}\n" for line in self.world.cfs.take_commands())
        except PvhaError as err:
            raise CfsError(str(err)) from None

    def has_crm_commands(self) -> bool:
        try:
            text = (self.world.cfs.config_dir / "crm_commands").read_text(encoding="utf-8")
        except OSError:
            return False
        return bool(text.strip())

    # --- ConfigPort ------------------------------------------------------------------

    def read_service_config(self) -> dict[str, dict[str, Any]]:
        return self.world.service_config()

    def update_service_config(self, sid: str, changes: Mapping[str, Any]) -> None:
        from pvha.config import ops  # the CLI's validated edit, under the store's lock

        self._guard("changing resources.cfg")
        options = {k: str(int(v) if isinstance(v, bool) else v)
                   for k, v in changes.items() if v is not None}
        delete = ",".join(k for k, v in changes.items() if v is None) or None
        try:
            ops.set_resource(Store(self.world.cfs.config_dir), sid, options, delete)
        except PvhaError as err:
            raise CfsError(str(err)) from None
        finally:
            self.world.generation += 1

    def read_group_config(self) -> Mapping[str, Any]:
        return self.world.config().groups

    def read_rules_config(self) -> Mapping[str, Any]:
        return self.world.config().rules

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

    # --- ResourcePort (guest operations: pvha.shell.executor.GuestOps) ---------------

    def resource_type_known(self, rtype: str) -> bool:
        return rtype in ("vm", "ct")

    def check_running(self, sid: str) -> bool:
        return bool(self.ops.check_running(sid))

    def start(self, sid: str) -> None:
        self.ops.start(self.nodename(), sid)

    def shutdown(self, sid: str, timeout: Any = None) -> None:
        self.ops.shutdown(self.nodename(), sid, timeout)

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        return bool(self.ops.migrate(self.nodename(), sid, target, online))

    def steal_service(self, sid: str, current_node: str, new_node: str) -> None:
        self.ops.steal(sid, current_node, new_node)

    def remove_locks(self, sid: str, locks: list[str], service_node: str) -> str | None:
        result = self.ops.remove_locks(sid, locks, service_node)
        return str(result) if result else None
