"""Per-state handlers of the service FSM (semantics §3.3), one ``next_state_<state>`` each.

Each handler gets the round state, the service's ``sid``, its config entry ``cd``, its
status entry ``sd`` and this round's LRM result for its uid (or None), and changes the
state only through :meth:`RoundState.change_service_state
<pvha.core.round_state.RoundState.change_service_state>`, which consults
:data:`pvha.core.transitions.SERVICE`. Vocabulary: :mod:`pvha.core.round_state`.
"""

from __future__ import annotations

from pvha.core.daemon import error_text
from pvha.core.ports import CfsError
from pvha.core.round_state import RoundState, Sd
from pvha.core.states import ExitCode
from pvha.core.transitions import SvcEvent

REMOVABLE_LOCKS = [
    "backup",
    "mounted",
    "migrate",
    "clone",
    "rollback",
    "snapshot",
    "snapshot-delete",
    "suspending",
    "suspended",
]


def _moved_event(cd: Sd) -> SvcEvent:
    return SvcEvent.MOVED_START if cd["state"] == "started" else SvcEvent.MOVED_STOP


def next_state_request_start(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None) -> None:
    """request_start: start on the current node; with rebalance-on-start, go to
    request_start_balance first when the best-scored node is another one."""
    current = sd["node"]
    if rs.crs.get("rebalance_on_request_start"):
        selected = rs.select_node(sid, cd, sd, "best-score")
        text = "new" if selected != current else "current"
        rs.log("info", f"service {sid}: re-balance selected {text} node {selected} for startup")
        if selected != current:
            rs.change_service_state(sid, SvcEvent.BALANCE, node=current, target=selected)
            return
    rs.change_service_state(sid, SvcEvent.START, node=current)


def _move_target_ok(rs: RoundState, sid: str, sd: Sd, op: str, target: str) -> bool:
    """PVE's checks before a migrate/relocate command acts; logs why it is ignored."""
    if not rs.ns.node_is_online(target):
        rs.log("err", f"ignore service '{sid}' {op} request - node '{target}' not online")
        return False
    if sd["node"] == target:
        rs.log("info", f"ignore service '{sid}' {op} request - service already on node '{target}'")
        return False
    return True


def _stopped_command(rs: RoundState, sid: str, sd: Sd) -> bool:
    """Handle a pending user command on a stopped service; True if the state changed."""
    cmd = sd["cmd"]
    op = cmd[0]
    if op in ("migrate", "relocate"):
        target = cmd[1]
        if _move_target_ok(rs, sid, sd, op, target):
            rs.change_service_state(sid, SvcEvent(op), node=sd["node"], target=target)
            return True
    elif op == "stop":
        rs.log("info", f"ignore service '{sid}' {op} request - service already stopped")
    else:
        rs.log("err", f"unknown command '{op}' for service '{sid}'")
    sd.pop("cmd", None)
    return False


def next_state_stopped(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None) -> None:
    """stopped: take the configured node, run a queued command, fence when the node
    is dead (not in maintenance), request a start when the config says started."""
    if sd["node"] != cd["node"]:
        rs.log("info", f"fixup service '{sid}' location ({sd['node']} => {cd['node']})")
        sd["node"] = cd["node"]
    if sd.get("cmd") and _stopped_command(rs, sid, sd):
        return
    if cd["state"] == "disabled":
        return
    node = sd["node"]
    if rs.ns.node_is_offline_delayed(node) and rs.ns.get_node_state(node) != "maintenance":
        rs.change_service_state(sid, SvcEvent.NODE_DEAD)
        return
    if cd["state"] == "stopped":
        return
    if cd["state"] == "started":
        rs.change_service_state(sid, SvcEvent.WANT_START, node=node)
        return
    rs.log("err", f"service '{sid}' - unknown state '{cd['state']}' in service configuration")


def next_state_request_stop(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None) -> None:
    """request_stop: stopped on the LRM's success, error on its failure; fence when
    the node is dead."""
    if lrm_res is not None:
        code = lrm_res["exit_code"]
        if code == ExitCode.SUCCESS:
            rs.change_service_state(sid, SvcEvent.STOP_CONFIRMED)
        else:
            rs.log("err", f"service '{sid}' stop failed (exit code {code})")
            rs.change_service_state(sid, SvcEvent.FAIL)
        return
    if rs.ns.node_is_offline_delayed(sd["node"]):
        rs.change_service_state(sid, SvcEvent.NODE_DEAD)


def next_state_migrate_relocate(
    rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None
) -> None:
    """migrate, relocate, request_start_balance: settle on the LRM's result (the
    target on success, the source otherwise, error on a wrong node); fence when the node
    is dead."""
    if lrm_res is not None:
        code = lrm_res["exit_code"]
        if code == ExitCode.SUCCESS:
            rs.change_service_state(sid, _moved_event(cd), node=sd["target"])
            return
        if code == ExitCode.EWRONG_NODE:
            rs.log("err", f"service '{sid}' - migration failed: service registered on wrong node!")
            rs.change_service_state(sid, SvcEvent.FAIL)
        elif code == ExitCode.IGNORED:
            rs.log(
                "info",
                f"service '{sid}' - rebalance-on-start request ignored - service already running",
            )
            rs.change_service_state(sid, _moved_event(cd), node=sd["node"])
        else:
            rs.log("err", f"service '{sid}' - migration failed (exit code {code})")
            rs.change_service_state(sid, _moved_event(cd), node=sd["node"])
            return
    # PVE falls through to this check after EWRONG_NODE and IGNORED too. Only the
    # error case is left out: an ``error`` service is never fenced (its table row has
    # no NODE_DEAD), and its node just answered, so it is not offline anyway.
    if rs.ns.node_is_offline_delayed(sd["node"]) and sd["state"] != "error":
        rs.change_service_state(sid, SvcEvent.NODE_DEAD)


def _started_command(rs: RoundState, sid: str, sd: Sd) -> None:
    cmd = sd["cmd"]
    op = cmd[0]
    if op in ("migrate", "relocate"):
        target = cmd[1]
        if _move_target_ok(rs, sid, sd, op, target):
            rs.log("info", f"{op} service '{sid}' to node '{target}'")
            rs.change_service_state(sid, SvcEvent(op), node=sd["node"], target=target)
    elif op == "stop":
        timeout = cmd[1]
        if int(timeout) == 0:
            rs.log("info", f"request immediate service hard-stop for service '{sid}'")
        else:
            rs.log("info", f"request graceful stop with timeout '{timeout}' for service '{sid}'")
        rs.change_service_state(sid, SvcEvent.WANT_STOP, timeout=timeout)
        rs.env.update_service_config(sid, {"state": "stopped"})
    else:
        rs.log("err", f"unknown command '{op}' for service '{sid}'")
    sd.pop("cmd", None)


def _started_lrm_result(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd) -> bool | None:
    """Evaluate an LRM result; returns try_next, or None when the service went to error."""
    code = lrm_res["exit_code"]
    if code == ExitCode.SUCCESS:
        if sd.get("failed_nodes") is not None:
            rs.log(
                "info",
                f"relocation policy successful for '{sid}' on node '{sd['node']}',"
                f" failed nodes: {', '.join(sd['failed_nodes'])}",
            )
        sd.pop("failed_nodes", None)
        sd["running"] = 1
        return False
    sd.setdefault("failed_nodes", []).append(sd["node"])
    if code in (ExitCode.ERROR, ExitCode.EWRONG_NODE):
        sd.pop("running", None)
        if len(sd["failed_nodes"]) <= int(cd.get("max_relocate", 1)):
            rs.log(
                "warning",
                f"starting service {sid} on node '{sd['node']}' failed, relocating service.",
            )
            return True
        rs.log(
            "err",
            f"recovery policy for service {sid} failed, entering error state."
            f" Failed nodes: {', '.join(sd['failed_nodes'])}",
        )
    else:
        # the doubled parenthesis is PVE's own
        rs.log("err", f"service '{sid}' got unrecoverable error (exit code {code}))")
    rs.change_service_state(sid, SvcEvent.FAIL)
    return None


def _started_place(
    rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None, try_next: bool
) -> None:
    node = rs.select_node(sid, cd, sd, "try-next" if try_next else "none")
    if node is not None and sd["node"] != node:
        fallback = sd.get("maintenance_node")
        if fallback is not None:
            if node == fallback:
                rs.log(
                    "info",
                    f"moving service '{sid}' back to '{fallback}', node came back from maintenance.",
                )
                del sd["maintenance_node"]
            elif sd["node"] != fallback:
                rs.log("info", f"dropping maintenance fallback node '{fallback}' for '{sid}'")
                del sd["maintenance_node"]
        if sid.split(":", 1)[0] == "vm":
            rs.log("info", f"migrate service '{sid}' to node '{node}' (running)")
            rs.change_service_state(sid, SvcEvent.MIGRATE, node=sd["node"], target=node)
        else:
            rs.log("info", f"relocate service '{sid}' to node '{node}'")
            rs.change_service_state(sid, SvcEvent.RELOCATE, node=sd["node"], target=node)
        return
    if try_next and node is None:
        rs.log(
            "warning",
            f"Start Error Recovery: Tried all available nodes for service '{sid}', retry start on"
            f" current node. Tried nodes: {', '.join(sd.get('failed_nodes') or [])}",
        )
    mnode = sd.get("maintenance_node")
    if mnode and sd["node"] == mnode and rs.ns.get_node_state(sd["node"]) == "online":
        rs.log(
            "info",
            f"service '{sid}': clearing stale maintenance node '{mnode}' setting (is current node)",
        )
        del sd["maintenance_node"]
    if lrm_res is not None:
        sd["uid"] = rs.new_uid()


def next_state_started(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None) -> None:
    """started: fence or stop as node and config require, run a queued command,
    evaluate the LRM's result (relocate on a failed start, error past max_relocate) and
    move to the node placement selects."""
    # Manager._one_pass skips the calls that would change nothing here (no LRM result,
    # no command, online node, no rule/partner/fallback node): keep the two in step.
    ns = rs.ns
    if not ns.node_is_online(sd["node"]):
        if ns.node_is_offline_delayed(sd["node"]):
            rs.change_service_state(sid, SvcEvent.NODE_DEAD)
        if ns.get_node_state(sd["node"]) != "maintenance":
            return
        sd["maintenance_node"] = sd["node"]
    if cd["state"] in ("disabled", "stopped"):
        rs.change_service_state(sid, SvcEvent.WANT_STOP)
        return
    if cd["state"] != "started":
        rs.log("err", f"service '{sid}' - unknown state '{cd['state']}' in service configuration")
        return
    if sd.get("cmd"):
        _started_command(rs, sid, sd)
        return
    try_next = False
    if lrm_res is not None:
        res = _started_lrm_result(rs, sid, cd, sd, lrm_res)
        if res is None:
            return
        try_next = res
    _started_place(rs, sid, cd, sd, lrm_res, try_next)


def next_state_recovery(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None) -> None:
    """recovery: move to the best-scored node (leftover locks removed, config
    stolen) and start or stop there; without a node stay, or clear when disabled."""
    fenced = sd["node"]
    rs.refresh_usage_for_recovery()
    node = rs.select_node(sid, cd, sd, "best-score")
    if node is not None:
        if node == fenced:
            msg = f"recover service '{sid}' to previous failed and fenced node '{fenced}' again"
        else:
            msg = f"recover service '{sid}' from fenced node '{fenced}' to node '{node}'"
        rs.log("info", msg)
        try:
            removed = rs.env.remove_locks(sid, REMOVABLE_LOCKS, fenced)
            if removed:
                rs.log(
                    "warning",
                    f"removed leftover lock '{removed}' from recovered service '{sid}' to allow"
                    " its start.",
                )
            found = rs.env.steal_service(sid, sd["node"], node)
        except CfsError as err:
            # this service stays in recovery and is tried again next round; the round
            # goes on for every other service and flushes (a pvha extension: PVE aborts
            # the whole round here, every round)
            rs.log("err", f"recovering service '{sid}' failed: {error_text(err)}")
            return
        if found is not None and found != node:
            rs.log("warning", f"service '{sid}': its config is on node '{found}' already (an "
                              "earlier recovery moved it there), recovering it there")
            node = found
        cd["node"] = sd["node"] = node
        ev = SvcEvent.RECOVERED_START if cd["state"] == "started" else SvcEvent.RECOVERED_STOP
        rs.change_service_state(sid, ev, node=node)
        return
    rs.log(
        "err",
        f"recovering service '{sid}' from fenced node '{fenced}' failed, no recovery node found",
    )
    if cd["state"] == "disabled":
        sd.pop("failed_nodes", None)
        rs.change_service_state(sid, SvcEvent.CLEAR)


def next_state_freeze(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None) -> None:
    """freeze: unfreeze (to started or request_stop) once the node's LRM is active."""
    mode = rs.lrm_modes.get(sd["node"]) if sd.get("node") else None
    if mode == "active":
        ev = SvcEvent.UNFREEZE_START if cd["state"] == "started" else SvcEvent.UNFREEZE_STOP
        rs.change_service_state(sid, ev)


def next_state_error(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None) -> None:
    """error: only a disabled config leaves it (to stopped, failed nodes forgotten)."""
    if cd["state"] == "disabled":
        sd.pop("failed_nodes", None)
        rs.change_service_state(sid, SvcEvent.CLEAR)


def next_state_fence(rs: RoundState, sid: str, cd: Sd, sd: Sd, lrm_res: Sd | None) -> None:
    """fence: the fencing step moves it on once the node is fenced; if its node came
    back online instead and nothing can fence it (the port says so; never in PVE, whose
    node self-fences), the fencing is cancelled: nothing was recovered, so nothing runs
    twice, and the service is managed on its node again."""
    node = sd["node"]
    if rs.ns.node_is_online(node) and rs.env.fence_cancellable(node):
        ev = SvcEvent.UNFENCE_START if cd["state"] == "started" else SvcEvent.UNFENCE_STOP
        rs.change_service_state(sid, ev, node=node)


HANDLERS = {
    "stopped": next_state_stopped,
    "started": next_state_started,
    "request_start": next_state_request_start,
    "migrate": next_state_migrate_relocate,
    "relocate": next_state_migrate_relocate,
    "request_start_balance": next_state_migrate_relocate,
    "fence": next_state_fence,
    "recovery": next_state_recovery,
    "request_stop": next_state_request_stop,
    "freeze": next_state_freeze,
    "error": next_state_error,
}
