"""crm_commands processing inside manage() (semantics §1.5, §4.9, §6.1)."""

from __future__ import annotations

import re

from pvha.core.rebalance import resource_motion
from pvha.core.round_state import RoundState

_MOVE = re.compile(r"^(migrate|relocate)\s+(\S+)\s+(\S+)$")
_STOP = re.compile(r"^stop\s+(\S+)\s+(\S+)$")
_MAINT_ON = re.compile(r"^enable-node-maintenance\s+(\S+)$")
_MAINT_OFF = re.compile(r"^disable-node-maintenance\s+(\S+)$")
_DISARM = re.compile(r"^disarm-ha\s+(\S+)$")


def queue_resource_motion(rs: RoundState, cmd: str, task: str, sid: str, target: str) -> None:
    """Queue a migrate/relocate on ``sid`` and its positive partners, or log why a
    negative partner forbids it (§4.9, :func:`pvha.core.rebalance.resource_motion`)."""
    plan = resource_motion(cmd, task, sid, target, compiled=rs.compiled, ss=rs.ss)
    if plan.error is not None:
        rs.log("err", plan.error)
        return
    rs.log("info", f"got crm command: {cmd}")
    rs.queue_command(sid, [task, target])
    for partner, line in zip(plan.partners, plan.partner_log, strict=True):
        rs.log("info", line)
        rs.queue_command(partner, [task, target])


def _move(rs: RoundState, cmd: str, task: str, sid: str, node: str) -> None:
    sd = rs.ss.get(sid)
    if sd is None:
        rs.log("err", f"crm command error - no such service: {cmd}")
    elif not rs.ns.node_is_online(node):
        rs.log("err", f"crm command error - node not online: {cmd}")
    elif node == sd.get("node"):
        rs.log("info", f"ignore crm command - service already on target node: {cmd}")
    else:
        queue_resource_motion(rs, cmd, task, sid, node)


def _maintenance(rs: RoundState, cmd: str, node: str, enable: bool) -> None:
    state = rs.ns.get_node_state(node)
    if enable:
        if rs.disarm:
            rs.log("warn", f"ignoring maintenance command for node {node} - HA stack is disarmed")
        elif state == "online":
            rs.request_maintenance(node, True)
        elif state == "maintenance":
            rs.log("info", f"ignoring crm command - node {node} is already in maintenance state")
        else:
            rs.log("err", f"crm command error - node not online: {cmd}")
        return
    if state != "maintenance":
        rs.log("warn", f"clearing maintenance of node {node} requested, but it's in state {state}")
    rs.request_maintenance(node, False)


def _disarm(rs: RoundState, cmd: str, mode: str) -> None:
    current = rs.disarm
    if current:
        rs.log(
            "notice", f"ignoring disarm-ha command - already in disarm state ({current['state']})"
        )
        return
    rs.log("info", f"got crm command: {cmd}")
    if mode == "ignore":
        for sid in sorted(rs.ss):
            rs.log("info", f"disarm: suspending HA tracking for service '{sid}'")
    rs.start_disarm(mode)


def _arm(rs: RoundState, cmd: str) -> None:
    current = rs.disarm
    if not current:
        rs.log("notice", "ignoring arm-ha command - HA stack is not disarmed")
        return
    rs.log("info", f"got crm command: {cmd}")
    if current.get("mode") == "ignore":
        for sid in sorted(rs.ss):
            sd = rs.ss[sid]
            cd = rs.sc.get(sid)
            if cd is not None and cd.get("node") != sd.get("node"):
                rs.log(
                    "info",
                    f"service '{sid}': updating node '{sd.get('node')}' => '{cd['node']}'"
                    " (changed while disarmed)",
                )
                sd["node"] = cd["node"]
    rs.arm()


def update_crm_commands(rs: RoundState) -> None:
    """Consume the queued crm commands (read-and-truncate through the port)."""
    text = rs.env.read_crm_commands()
    for cmd in text.split("\n"):
        cmd = cmd.rstrip("\n")
        if cmd == "":
            continue
        if mt := _MOVE.match(cmd):
            _move(rs, cmd, mt.group(1), mt.group(2), mt.group(3))
        elif mt := _STOP.match(cmd):
            sid = mt.group(1)
            if sid in rs.ss:
                rs.log("info", f"got crm command: {cmd}")
                rs.queue_command(sid, ["stop", mt.group(2)])
            else:
                rs.log("err", f"crm command error - no such service: {cmd}")
        elif mt := _MAINT_ON.match(cmd):
            _maintenance(rs, cmd, mt.group(1), True)
        elif mt := _MAINT_OFF.match(cmd):
            _maintenance(rs, cmd, mt.group(1), False)
        elif mt := _DISARM.match(cmd):
            _disarm(rs, cmd, mt.group(1))
        elif cmd.strip() == "arm-ha":
            _arm(rs, cmd)
        else:
            rs.log("err", f"unable to parse crm command: {cmd}")
