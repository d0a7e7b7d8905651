"""crm_commands processing inside manage() (semantics §1.5, §4.9, §6.1)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pvha.core.manager import Manager

_MOVE = re.compile(r"^(migrate|relocate)\s+(\S+)\s+(\S+)$")
_STOP = re.compile(r"^stop\s+(\S+)\s+(\S+)$")
_MAINT_ON = re.compile(r"^enable-node-maintenance\s+(\S+)$")
_MAINT_OFF = re.compile(r"^disable-node-maintenance\s+(\S+)$")
_DISARM = re.compile(r"^disarm-ha\s+(\S+)$")


def queue_resource_motion(m: Manager, cmd: str, task: str, sid: str, target: str) -> None:
    """Store a migrate/relocate on ``sid`` and its positive partners (§4.9)."""
    compiled = m.compiled
    for partner in sorted(compiled.negative.get(sid, ())):
        psd = m.ss.get(partner)
        if psd is None:
            continue
        if psd.get("node") == target or psd.get("target") == target:
            m.env.log(
                "err",
                f"crm command '{cmd}' error - service '{partner}' on node '{target}' in"
                f" negative affinity with service '{sid}'",
            )
            return
    m.env.log("info", f"got crm command: {cmd}")
    m.ss[sid]["cmd"] = [task, target]
    for partner in sorted(compiled.positive.get(sid, ())):
        psd = m.ss.get(partner)
        if psd is None:
            continue
        if psd.get("node") == target or psd.get("target") == target:
            continue
        m.env.log(
            "info",
            f"crm command '{cmd}' - {task} service '{partner}' to node '{target}'"
            f" (service '{partner}' in positive affinity with service '{sid}')",
        )
        psd["cmd"] = [task, target]


def _move(m: Manager, cmd: str, task: str, sid: str, node: str) -> None:
    sd = m.ss.get(sid)
    if sd is None:
        m.env.log("err", f"crm command error - no such service: {cmd}")
    elif not m.ns.node_is_online(node):
        m.env.log("err", f"crm command error - node not online: {cmd}")
    elif node == sd.get("node"):
        m.env.log("info", f"ignore crm command - service already on target node: {cmd}")
    else:
        queue_resource_motion(m, cmd, task, sid, node)


def _maintenance(m: Manager, cmd: str, node: str, enable: bool) -> None:
    state = m.ns.get_node_state(node)
    requests = m.ms.setdefault("node_request", {})
    if enable:
        if m.ms.get("disarm"):
            m.env.log(
                "warn", f"ignoring maintenance command for node {node} - HA stack is disarmed"
            )
        elif state == "online":
            requests.setdefault(node, {})["maintenance"] = 1
        elif state == "maintenance":
            m.env.log("info", f"ignoring crm command - node {node} is already in maintenance state")
        else:
            m.env.log("err", f"crm command error - node not online: {cmd}")
        return
    if state != "maintenance":
        m.env.log(
            "warn", f"clearing maintenance of node {node} requested, but it's in state {state}"
        )
    requests.setdefault(node, {}).pop("maintenance", None)


def _disarm(m: Manager, cmd: str, mode: str) -> None:
    current = m.ms.get("disarm")
    if current:
        m.env.log(
            "notice", f"ignoring disarm-ha command - already in disarm state ({current['state']})"
        )
        return
    m.env.log("info", f"got crm command: {cmd}")
    if mode == "ignore":
        for sid in sorted(m.ss):
            m.env.log("info", f"disarm: suspending HA tracking for service '{sid}'")
    m.ms["disarm"] = {"mode": mode, "state": "disarming"}


def _arm(m: Manager, cmd: str) -> None:
    current = m.ms.get("disarm")
    if not current:
        m.env.log("notice", "ignoring arm-ha command - HA stack is not disarmed")
        return
    m.env.log("info", f"got crm command: {cmd}")
    if current.get("mode") == "ignore":
        for sid in sorted(m.ss):
            sd = m.ss[sid]
            cd = m.sc.get(sid)
            if cd is not None and cd.get("node") != sd.get("node"):
                m.env.log(
                    "info",
                    f"service '{sid}': updating node '{sd.get('node')}' => '{cd['node']}'"
                    " (changed while disarmed)",
                )
                sd["node"] = cd["node"]
    del m.ms["disarm"]


def update_crm_commands(m: Manager) -> None:
    """Consume the queued crm commands (read-and-truncate through the port)."""
    text = m.env.read_crm_commands()
    for cmd in text.split("\n"):
        cmd = cmd.rstrip("\n")
        if cmd == "":
            continue
        if mt := _MOVE.match(cmd):
            _move(m, cmd, mt.group(1), mt.group(2), mt.group(3))
        elif mt := _STOP.match(cmd):
            sid = mt.group(1)
            if sid in m.ss:
                m.env.log("info", f"got crm command: {cmd}")
                m.ss[sid]["cmd"] = ["stop", mt.group(2)]
            else:
                m.env.log("err", f"crm command error - no such service: {cmd}")
        elif mt := _MAINT_ON.match(cmd):
            _maintenance(m, cmd, mt.group(1), True)
        elif mt := _MAINT_OFF.match(cmd):
            _maintenance(m, cmd, mt.group(1), False)
        elif mt := _DISARM.match(cmd):
            _disarm(m, cmd, mt.group(1))
        elif cmd.strip() == "arm-ha":
            _arm(m, cmd)
        else:
            m.env.log("err", f"unable to parse crm command: {cmd}")
