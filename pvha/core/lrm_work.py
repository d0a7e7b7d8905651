"""The per-round body of the LRM: role transitions first, then the work of the role."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pvha.core.transitions import LrmEvent

if TYPE_CHECKING:
    from pvha.core.lrm import Lrm

MAX_ACTIVE_IDLE_ROUNDS = 60


def state_changes(lrm: Lrm) -> None:
    env = lrm.env
    fence_request = lrm.fenced_service_count() or lrm.node_status == "fence"
    state = lrm.state
    if state == "wait_for_agent_lock":
        if lrm.mode == "disarm":
            return
        if (
            not fence_request
            and lrm.active_service_count()
            and env.quorate()
            and lrm.get_protected_ha_agent_lock()
        ):
            lrm.fire(LrmEvent.LOCK_ACQUIRED)
    elif state == "lost_agent_lock":
        if not fence_request and env.quorate() and lrm.get_protected_ha_agent_lock():
            lrm.fire(LrmEvent.LOCK_ACQUIRED)
    elif state == "active":
        _active_changes(lrm, fence_request)
    elif state == "maintenance":
        _maintenance_changes(lrm, fence_request)


def _active_changes(lrm: Lrm, fence_request: int) -> None:
    env = lrm.env
    if fence_request:
        env.log("err", "node need to be fenced - releasing agent_lock")
        lrm.fire(LrmEvent.FENCE_REQUEST)
    elif not lrm.get_protected_ha_agent_lock():
        lrm.fire(LrmEvent.LOCK_LOST)
    elif lrm.mode == "maintenance":
        lrm.fire(LrmEvent.MAINTENANCE)
    elif lrm.mode == "disarm" and not lrm.run_workers():
        env.log("info", "HA disarm requested, releasing agent lock and watchdog")
        env.release_ha_agent_lock()
        lrm.give_up_watchdog_protection()
        lrm.fire(LrmEvent.DISARM)
    elif not lrm.has_configured_service_on_local_node() and not lrm.run_workers():
        lrm.active_idle_rounds += 1
        if lrm.active_idle_rounds > MAX_ACTIVE_IDLE_ROUNDS:
            env.log(
                "info",
                f"node had no service configured for {MAX_ACTIVE_IDLE_ROUNDS} rounds, going idle.",
            )
            env.release_ha_agent_lock()
            lrm.give_up_watchdog_protection()
            lrm.fire(LrmEvent.IDLE)
            lrm.active_idle_rounds = 0
    elif lrm.active_idle_rounds:
        lrm.active_idle_rounds = 0


def _maintenance_changes(lrm: Lrm, fence_request: int) -> None:
    env = lrm.env
    if fence_request:
        env.log("err", "node need to be fenced during maintenance mode - releasing agent_lock")
        lrm.fire(LrmEvent.FENCE_REQUEST)
    elif lrm.mode == "disarm" and not lrm.active_service_count() and not lrm.run_workers():
        env.log("info", "HA disarm requested during maintenance, releasing agent lock and watchdog")
        env.release_ha_agent_lock()
        lrm.give_up_watchdog_protection()
        lrm.fire(LrmEvent.DISARM)
    elif lrm.active_service_count() or lrm.run_workers():
        if not lrm.get_protected_ha_agent_lock():
            lrm.fire(LrmEvent.LOCK_LOST)
    elif lrm.mode != "maintenance":
        if lrm.get_protected_ha_agent_lock():
            lrm.fire(LrmEvent.LOCK_ACQUIRED)
        else:
            lrm.fire(LrmEvent.LOCK_LOST)


def do_work(lrm: Lrm) -> bool:
    state = lrm.state
    if state == "wait_for_agent_lock":
        if lrm.shutdown_request_time is not None:
            return False
        lrm.update_lrm_status()
        return True
    if state == "active":
        return _work_active(lrm)
    if state == "lost_agent_lock":
        return _work_lost(lrm)
    if state == "maintenance":
        return _work_maintenance(lrm)
    raise AssertionError(f"got unexpected status '{state}'")


def _active_shutdown(lrm: Lrm) -> bool:
    """Returns True when the LRM may exit now."""
    env = lrm.env
    if lrm.mode == "restart":
        workers = lrm.run_workers()
        if lrm.active_service_count() == 0 and workers == 0:
            lrm.give_up_watchdog_protection()
            env.release_ha_agent_lock()
            return True
        return False
    if lrm.run_workers() == 0:
        if lrm.shutdown_errors == 0:
            lrm.give_up_watchdog_protection()
            env.release_ha_agent_lock()
        return True
    return False


def _work_active(lrm: Lrm) -> bool:
    env = lrm.env
    shutdown = False
    try:
        if lrm.update_service_status():
            if lrm.shutdown_request_time is not None:
                shutdown = _active_shutdown(lrm)
            elif not lrm.cluster_state_update:
                env.log("notice", "temporary inconsistent cluster state (cfs restart?), skip round")
            else:
                lrm.manage_resources()
    except Exception as err:  # noqa: BLE001 - the HA loop logs and carries on, as PVE
        env.log("err", f"got unexpected error - {str(err).rstrip()}")
    lrm.update_lrm_status()
    return not shutdown


def _work_lost(lrm: Lrm) -> bool:
    env = lrm.env
    if lrm.shutdown_request_time is not None:
        count = lrm.active_service_count()
        if count > 0:
            env.log(
                "err",
                f"get shutdown request in state 'lost_agent_lock' - detected {count} running services",
            )
            if lrm.mode == "restart" and (lrm.now - lrm.state_change_time) > 90:
                env.log(
                    "err", "lost agent lock and restart request for over 90 seconds - giving up!"
                )
                return False
        else:
            lrm.give_up_watchdog_protection()
            return False
    return True


def _work_maintenance(lrm: Lrm) -> bool:
    env = lrm.env
    if not lrm.update_service_status():
        return False
    exit_lrm = False
    if lrm.active_service_count() == 0 and lrm.run_workers() == 0:
        lrm.give_up_watchdog_protection()
        if lrm.shutdown_request_time is not None:
            exit_lrm = True
        env.release_ha_agent_lock()
    if not exit_lrm:
        lrm.manage_resources()
    lrm.update_lrm_status()
    return not exit_lrm
