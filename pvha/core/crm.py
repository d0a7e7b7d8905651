"""The CRM daemon role state machine (semantics §1.9, PVE ``CRM.pm``).

One :class:`Crm` per node. The shell calls :meth:`Crm.do_one_iteration` once per daemon
round with the round's instant ``now``; it returns False when the daemon wants to exit.
"""

from __future__ import annotations

from typing import Any

from pvha.core.daemon import count_fenced_services, error_text, guarded_work
from pvha.core.manager import Manager
from pvha.core.node_status import FENCE_DELAY
from pvha.core.ports import CfsError, HaEnv
from pvha.core.transitions import CRM, CrmEvent, next_state

# the daemon helpers stay importable from here for lrm.py/lrm_work.py until they import
# pvha.core.daemon
__all__ = ["MAX_ACTIVE_IDLE_ROUNDS", "Crm"]

MAX_ACTIVE_IDLE_ROUNDS = 90


class Crm:
    """The CRM role of one node (startup, wait_for_quorum, slave, master,
    lost_manager_lock); a master runs a :class:`~pvha.core.manager.Manager` each round."""

    def __init__(
        self, env: HaEnv, now: int, fence_delay: int = FENCE_DELAY, resume: bool = False
    ) -> None:
        """``resume``: a new master starts from the memory of the previous one
        (:class:`~pvha.core.manager.Manager`); False is PVE's behaviour."""
        self.env = env
        self.now = now
        self.fence_delay = fence_delay
        self.resume = resume
        self.state = "startup"
        self.state_change_time = now
        self.manager: Manager | None = None
        self.shutdown_request_flag = False
        self.cluster_state_update = False
        self.active_idle_rounds = 0
        self.wd: str | None = None
        # watchdog deliberately released because the HA stack is disarmed (§6.7)
        self.wd_disarmed = False
        self.fire(CrmEvent.BOOT)

    # ------------------------------------------------------------------ state
    def fire(self, event: CrmEvent) -> None:
        """The one setter of the CRM role: table-checked, logged; a new master gets a Manager."""
        new = next_state(CRM, self.state, event)
        if new == self.state:
            return
        self.env.log("info", f"status change {self.state} => {new}")
        self.state = new
        self.state_change_time = self.now
        if new == "master":
            self.manager = Manager(self.env, self.now, self.fence_delay, self.resume)
        else:
            self.manager = None

    def shutdown_request(self) -> None:
        """The daemon is asked to stop: a master releases its lock at the next round."""
        if not self.shutdown_request_flag:
            self.env.log("info", "server received shutdown request")
        self.shutdown_request_flag = True

    # ------------------------------------------------------------------ predicates
    def _read_ms(self) -> dict[str, Any] | None:
        try:
            return self.env.read_manager_status()
        except CfsError as err:
            self.env.log("err", f"could not read manager status: {error_text(err)}")
            return None

    def is_cluster_and_ha_healthy(self) -> dict[str, Any] | None:
        """The manager status if this node may take part (quorate, consistent cluster
        state, none of its services waiting in fence), else None."""
        if not self.env.quorate() or not self.cluster_state_update:
            return None
        ms = self._read_ms()
        if ms is None:
            return None
        if count_fenced_services(ms.get("service_status"), self.env.nodename()):
            return None
        return ms

    def can_get_active(self, allow_no_service: bool = False) -> bool:
        """Whether this node should try for the manager lock: healthy, and services
        configured (or leftover work, or ``allow_no_service``)."""
        ms = self.is_cluster_and_ha_healthy()
        if ms is None:
            return False
        if allow_no_service:
            return True
        try:
            conf = self.env.read_service_config()
        except CfsError as err:
            self.env.log("err", f"could not read service config: {error_text(err)}")
            return False
        if conf:
            return True
        return self._active_reason(ms)

    def _active_reason(self, ms: dict[str, Any]) -> bool:
        """No services configured: stay/become active only for leftover work (§1.9)."""
        me = self.env.nodename()
        master = ms.get("master_node")
        node_status = ms.get("node_status") or {}
        if master and master != me and node_status.get(master) == "online":
            return False
        requests = ms.get("node_request") or {}
        for node, state in node_status.items():
            if state == "maintenance" and not (requests.get(node) or {}).get("maintenance"):
                return True
        try:
            if self.env.has_crm_commands():
                return True
        except CfsError:
            pass
        if ms.get("service_status"):
            return True
        return bool(ms.get("disarm"))

    def allowed_to_get_idle(self) -> bool:
        """Whether a master may count an idle round: healthy, not disarmed, no service
        configured and none in the service status."""
        ms = self.is_cluster_and_ha_healthy()
        if ms is None:
            return False
        if ms.get("disarm"):
            return False
        try:
            conf = self.env.read_service_config()
        except CfsError as err:
            self.env.log("err", f"could not read service config: {error_text(err)}")
            return False
        return not conf and not ms.get("service_status")

    # ------------------------------------------------------------------ locks
    def get_protected_ha_manager_lock(self) -> bool:
        """Acquire or renew the manager lock (a few tries), and keep the watchdog armed
        while holding it unless the stack is disarmed; True if held."""
        for _attempt in range(6):
            if self.env.get_ha_manager_lock():
                if self.wd is not None:
                    self.env.watchdog_update(self.wd)
                elif self.wd_disarmed:
                    pass
                elif self.state != "master" and self._stack_disarmed():
                    self.env.log("info", "taking over as disarmed master, skipping watchdog")
                    self.wd_disarmed = True
                else:
                    self.wd = self.env.watchdog_open()
                return True
        return False

    def _stack_disarmed(self) -> bool:
        try:
            ms = self.env.read_manager_status()
        except CfsError:
            return False
        return (ms.get("disarm") or {}).get("state") == "disarmed"

    def _disarm_watchdog(self, manager: Manager) -> None:
        disarm = manager.ms.get("disarm")
        if disarm and disarm.get("state") == "disarmed":
            if self.wd is not None:
                self.env.log("info", "HA stack fully disarmed, releasing CRM watchdog")
                self._close_watchdog()
                self.wd_disarmed = True
        elif not disarm and self.wd_disarmed:
            self.env.log("info", "re-arming HA stack")
            self.wd_disarmed = False

    def _close_watchdog(self) -> None:
        if self.wd is not None:
            self.env.watchdog_close(self.wd)
            self.wd = None

    # ------------------------------------------------------------------ round
    def do_one_iteration(self, now: int) -> bool:
        """One daemon round at ``now``; False when the daemon should exit."""
        self.now = now
        self.cluster_state_update = self.env.cluster_state_update()
        return guarded_work(self.env, self.work)

    def _state_changes(self) -> None:
        state = self.state
        if state == "wait_for_quorum":
            if self.can_get_active():
                if self.get_protected_ha_manager_lock():
                    self.fire(CrmEvent.LOCK_ACQUIRED)
                else:
                    self.fire(CrmEvent.LOCK_BUSY)
        elif state == "slave":
            if self.can_get_active():
                if self.get_protected_ha_manager_lock():
                    self.fire(CrmEvent.LOCK_ACQUIRED)
            else:
                self.fire(CrmEvent.INACTIVE)
        elif state == "lost_manager_lock":
            if self.can_get_active(True) and self.get_protected_ha_manager_lock():
                self.fire(CrmEvent.LOCK_ACQUIRED)
        elif state == "master":
            if not self.get_protected_ha_manager_lock():
                self.fire(CrmEvent.LOCK_LOST)
            elif not self.allowed_to_get_idle():
                self.active_idle_rounds = 0
            else:
                self.active_idle_rounds += 1
                if self.active_idle_rounds > MAX_ACTIVE_IDLE_ROUNDS:
                    self.env.log(
                        "info",
                        f"cluster had no service configured for {MAX_ACTIVE_IDLE_ROUNDS} rounds, going idle.",
                    )
                    self._close_watchdog()
                    self.env.release_ha_manager_lock()
                    self.fire(CrmEvent.IDLE)
                    self.active_idle_rounds = 0

    def work(self) -> bool:
        """Role transitions, then the role's work; False when the daemon should exit."""
        self._state_changes()
        state = self.state
        if state == "wait_for_quorum":
            return not self.shutdown_request_flag
        if state == "master":
            return self._work_master()
        if state == "lost_manager_lock":
            self._close_watchdog()
            if self.shutdown_request_flag:
                return False
            self.fire(CrmEvent.RETRY)
            return True
        if state == "slave":
            return not self.shutdown_request_flag
        raise AssertionError(f"got unexpected status '{state}'")

    def _work_master(self) -> bool:
        manager = self.manager
        assert manager is not None
        if self.shutdown_request_flag:
            self._close_watchdog()
            self.env.log("info", "voluntary release CRM lock")
            if not self.env.release_ha_manager_lock():
                self.env.log("notice", "CRM lock release failed, let the lock timeout")
            return False
        try:
            if not self.cluster_state_update:
                self.env.log(
                    "notice", "temporary inconsistent cluster state (cfs restart?), skip round"
                )
            else:
                manager.manage(self.now)
                self._disarm_watchdog(manager)
        except Exception as err:  # noqa: BLE001 - the HA loop logs and carries on, as PVE
            self.env.log("err", f"got unexpected error - {error_text(err)}")
        return True
