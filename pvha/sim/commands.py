"""The node and service commands of the scenario vocabulary (semantics §8.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pvha.core.crm import Crm
from pvha.core.lrm import Lrm
from pvha.sim.hardware import SimulationError

if TYPE_CHECKING:
    from pvha.sim.runner import Simulator


def _err(msg: str) -> Exception:
    return SimulationError(msg)


def _power(sim: Simulator, node: str, action: str | None) -> None:
    hw = sim.hw
    nd = sim.d[node]
    st = hw.status[node]
    if action not in ("on", "off"):
        raise _err(f"sim_hardware_cmd: unknown action '{action}'")
    if st.get("power") != action:
        if action == "on":
            if nd.crm is None:
                nd.crm = Crm(nd.crm_env, nd.crm_env.cur_time, hw.pvha.fence_delay)
            if nd.lrm is None:
                nd.lrm = Lrm(nd.lrm_env, nd.lrm_env.cur_time)
            nd.lrm_restart = False
            st["cfs"] = {}
        else:
            if nd.crm is not None:
                nd.crm_env.log("info", "killed by poweroff")
                nd.crm = None
            if nd.lrm is not None:
                nd.lrm_env.log("info", "killed by poweroff")
                nd.lrm = None
            hw.watchdog_reset(node)
            hw.write_service_status(node, {})
    st["power"] = action
    st["network"] = action
    st["shutdown"] = None


def _crm(sim: Simulator, node: str, action: str | None, params: list[str]) -> None:
    nd = sim.d[node]
    hw = sim.hw
    if action == "stop":
        if nd.crm is not None:
            nd.crm_stop = True
            nd.crm.shutdown_request()
    elif action == "start":
        if nd.crm is None:
            nd.crm = Crm(nd.crm_env, nd.crm_env.cur_time, hw.pvha.fence_delay)
    elif action in ("enable-node-maintenance", "disable-node-maintenance"):
        hw.queue_crm_command(f"{action} {node}")
    elif action == "disarm-ha":
        hw.queue_crm_command(f"disarm-ha {params[0] if params else ''}".rstrip())
    elif action == "arm-ha":
        hw.queue_crm_command("arm-ha")
    else:
        raise _err(f"sim_hardware_cmd: unknown action '{action}'")


def node_cmd(sim: Simulator, cmd: str, node: str, action: str | None, params: list[str]) -> None:
    hw = sim.hw
    nd = sim.d[node]
    st = hw.status[node]
    was_up = st.get("power") == "on" and st.get("network") == "on"
    if cmd == "power":
        _power(sim, node, action)
        hw.note_link(node, was_up)
    elif cmd == "network":
        if action not in ("on", "off"):
            raise _err(f"sim_hardware_cmd: unknown network action '{action}'")
        st["network"] = action
        hw.note_link(node, was_up)
    elif cmd == "bmc":
        # pvha extension: a node's simulated BMC stops / starts answering
        if action not in ("work", "fail") or hw.fencing is None:
            raise _err("sim_hardware_cmd: bmc needs work|fail and pvha power fencing")
        hw.fencing.set_bmc(node, action == "work")
    elif cmd == "fence-ack":
        # pvha extension: an administrator's ``pvha fence-ack NODE`` (lease mode)
        if not hw.pvha.lease:
            raise _err("sim_hardware_cmd: fence-ack needs pvha lease fencing")
        hw.acks.add(node)
    elif cmd == "cfs":
        if action not in ("rw", "update") or not params or params[0] not in ("work", "fail"):
            raise _err(f"sim_hardware_cmd: bad cfs command for node '{node}'")
        st.setdefault("cfs", {})
        if st["cfs"] is None:
            st["cfs"] = {}
        st["cfs"][action] = params[0] == "work"
    elif cmd in ("reboot", "shutdown"):
        st["shutdown"] = cmd
        if nd.lrm is not None:
            nd.lrm.shutdown_request(nd.lrm_env.cur_time)
    elif cmd == "restart-lrm":
        if nd.lrm is not None:
            nd.lrm_restart = True
            nd.lrm.shutdown_request(nd.lrm_env.cur_time)
    elif cmd == "crm":
        _crm(sim, node, action, params)
    elif cmd == "pve-manager-version":
        if action != "set" or not params:
            raise _err("sim_hardware_cmd: bad pve-manager-version command")
        st["pve-manager-version"] = params[0]
    else:
        raise _err(f"sim_hardware_cmd: unknown command '{cmd}'")


def _stats(sim: Simulator, sid: str, kind: str, params: list[str]) -> None:
    stats = sim.hw.static_stats if kind == "static" else sim.hw.dynamic_stats
    assert stats is not None
    entry = stats.setdefault(sid, {})
    it = iter(params)
    for key in it:
        value = next(it)
        if key in ("maxmem", "mem"):
            entry[key] = float(value) * 1024 * 1024
        else:
            entry[key] = float(value)


def service_cmd(sim: Simulator, sid: str, action: str | None, params: list[str]) -> None:
    hw = sim.hw
    conf = hw.service_config
    if action in ("started", "disabled", "stopped", "ignored"):
        if sid not in conf:
            raise _err(f"no such service '{sid}'")
        conf[sid]["state"] = action
    elif action in ("migrate", "relocate"):
        if not params:
            raise _err(f"sim_hardware_cmd: missing target node for '{action}' command")
        hw.queue_crm_command(f"{action} {sid} {params[0]}")
    elif action == "stop":
        if not params:
            raise _err("sim_hardware_cmd: missing timeout for 'stop' command")
        hw.queue_crm_command(f"stop {sid} {params[0]}")
    elif action == "add":
        if sid in conf:
            raise _err(f"service '{sid}' already exists")
        node = params[0]
        conf[sid] = {"state": params[1] if len(params) > 1 else "started", "node": node}
        if len(params) > 2 and int(params[2]):
            ss = hw.read_service_status(node)
            ss[sid] = 1
            hw.write_service_status(node, ss)
    elif action == "delete":
        conf.pop(sid, None)
        if hw.static_stats is not None:
            hw.static_stats.pop(sid, None)
    elif action == "lock":
        hw.lock_service(sid, params[0] if params else None)
    elif action == "unlock":
        hw.unlock_service(sid, params[0] if params else None)
    elif action == "set-static-stats":
        _stats(sim, sid, "static", params)
    elif action == "set-dynamic-stats":
        _stats(sim, sid, "dynamic", params)
    elif action == "manual-migrate":
        if sid not in conf or not params:
            raise _err(f"no such service '{sid}' or missing node")
        conf[sid]["node"] = params[0]
    else:
        raise _err(f"sim_hardware_cmd: unknown service action '{action}'")
