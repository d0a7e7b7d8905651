"""Simulated cluster hardware (PVE ``Sim::Hardware``): power, network, cfs, locks, watchdog.

All state lives in memory; reads hand out deep copies, as PVE's JSON files would.
"""

from __future__ import annotations

import copy
from typing import Any

from pvha.core.ports import CfsError
from pvha.errors import PvhaError
from pvha.sim.fencing import SimFencing, parse_options
from pvha.sim.log import SimLog
from pvha.sim.scenario import Scenario


class SimulationError(PvhaError):
    """The scenario asked for something the simulator cannot do."""


LOCK_TIMEOUT = 120
WATCHDOG_TIMEOUT = 60
CFS_ERROR = "cfs connection refused - not mounted?"
GIB = 1024**3


class Hardware:
    def __init__(self, scenario: Scenario, log: SimLog) -> None:
        self.scenario = scenario
        self.log_sink = log
        self.cur_time = 0
        self.status: dict[str, dict[str, Any]] = copy.deepcopy(scenario.hardware_status)
        self.nodes: list[str] = sorted(self.status)
        self.service_config: dict[str, dict[str, Any]] = copy.deepcopy(scenario.service_config)
        self.manager_status: dict[str, Any] = copy.deepcopy(scenario.manager_status)
        self.lrm_status: dict[str, dict[str, Any]] = {}
        self.crm_commands = ""
        self.locks: dict[str, dict[str, Any]] = {}
        self.watchdogs: dict[str, dict[str, Any]] = {}
        self.wdcount: dict[str, int] = {n: 0 for n in self.nodes}
        self.service_status: dict[str, dict[str, int]] = {
            n: dict(scenario.service_status.get(n) or {}) for n in self.nodes
        }
        self.groups_text = scenario.groups_text
        self.rules_text = scenario.rules_text
        self.rules_written: dict[str, Any] | None = None
        self.datacenter = copy.deepcopy(scenario.datacenter)
        self.static_stats = copy.deepcopy(scenario.static_service_stats)
        self.dynamic_stats = copy.deepcopy(scenario.dynamic_service_stats)
        if self.static_stats is None:
            self.static_stats = {
                sid: {"maxcpu": 4.0, "maxmem": 4 * GIB} for sid in self.service_config
            }
        if self.dynamic_stats is None:
            self.dynamic_stats = {sid: {"cpu": 2.0, "mem": 2 * GIB} for sid in self.service_config}
        self.failure_tries: dict[str, dict[str, int]] = {"start": {}, "migrate": {}}
        # pvha extension (pvha.sim.fencing): absent "pvha" key = PVE's simulator exactly
        self.pvha = parse_options(self.datacenter, scenario.fence_cfg,
                                  str(scenario.path / "datacenter.cfg"))
        self.datacenter.pop("pvha", None)
        self.fencing: SimFencing | None = None
        if self.pvha.power:
            self.fencing = SimFencing.from_text(
                scenario.fence_cfg or "", self.pvha.device_latency,
                lambda n: str(self.status[n].get("power") or "off"),
                str(scenario.path / "fence.cfg"))
        # node -> time it lost power or network (for pvha's detection_delay)
        self.down_since: dict[str, int] = {}
        self.acks: set[str] = set()  # lease mode: nodes acknowledged by ``fence-ack NODE``
        self.waiting_ack: set[str] = set()  # lease mode: told to wait for an ack (once)

    # ------------------------------------------------------------------ logging/time
    def log(self, level: str, msg: str, origin: str = "hardware") -> None:
        self.log_sink.add(level, self.cur_time, origin, msg)

    # ------------------------------------------------------------------ cluster view
    def get_node_info(self) -> tuple[dict[str, dict[str, Any]], bool]:
        res: dict[str, dict[str, Any]] = {}
        online_count = 0
        for node, d in self.status.items():
            online = 1 if d.get("power") == "on" and d.get("network") == "on" else 0
            if not online and self._still_member(node):
                online = 1
            online_count += online
            res[node] = {"online": online}
        quorate = online_count > len(self.status) // 2
        if not quorate:
            for d in res.values():
                d["online"] = 0
        return res, quorate

    def _still_member(self, node: str) -> bool:
        """pvha's detection_delay: a node that went down counts as a member until the
        delay (corosync's token timeout) has passed; PVE's simulator: never."""
        since = self.down_since.get(node)
        return since is not None and self.cur_time - since < self.pvha.detection_delay

    def note_link(self, node: str, was_up: bool) -> None:
        """Record when ``node`` stopped being up (power and network on)."""
        d = self.status[node]
        up = d.get("power") == "on" and d.get("network") == "on"
        if up:
            self.down_since.pop(node, None)
        elif was_up:
            self.down_since[node] = self.cur_time

    def get_cfs_state(self, node: str, what: str) -> bool:
        return bool((self.status[node].get("cfs") or {}).get(what, True))

    def assert_cfs(self, node: str) -> None:
        if not self.get_cfs_state(node, "rw"):
            raise CfsError(CFS_ERROR)

    # ------------------------------------------------------------------ locks
    def sim_get_lock(self, node: str, now: int, name: str, unlock: bool, log: Any) -> bool:
        d = self.locks.get(name)
        if unlock:
            if d is None:
                return False
            tdiff = now - d["time"]
            if tdiff > LOCK_TIMEOUT:
                return True
            if d["node"] == node:
                del self.locks[name]
                return True
            return False
        if d is not None:
            if now - d["time"] <= LOCK_TIMEOUT:
                if d["node"] == node:
                    d["time"] = now
                    return True
                return False
            log("info", f"got lock '{name}'")
            d["node"] = node
            d["time"] = now
            return True
        self.locks[name] = {"time": now, "node": node}
        log("info", f"got lock '{name}'")
        return True

    # ------------------------------------------------------------------ watchdog
    def watchdog_open(self, node: str, now: int) -> str:
        self.wdcount[node] += 1
        wid = f"WD:{node}:{self.wdcount[node]}"
        self.watchdogs[wid] = {"node": node, "update_time": now}
        return wid

    def watchdog_update(self, wid: str, now: int) -> None:
        wd = self.watchdogs.get(wid)
        if wd is None:
            raise RuntimeError(f"no such watchdog handle '{wid}'")
        if now - wd["update_time"] > WATCHDOG_TIMEOUT:
            raise RuntimeError("wdog expired - unable to update watchdog")
        wd["update_time"] = now

    def watchdog_close(self, wid: str) -> None:
        self.watchdogs.pop(wid, None)

    def watchdog_check(self, node: str) -> bool:
        for wd in self.watchdogs.values():
            if wd["node"] == node and self.cur_time - wd["update_time"] > WATCHDOG_TIMEOUT:
                return False
        return True

    def watchdog_reset(self, node: str) -> None:
        for wid in [w for w, wd in self.watchdogs.items() if wd["node"] == node]:
            del self.watchdogs[wid]

    # ------------------------------------------------------------------ service config
    def read_service_config(self) -> dict[str, dict[str, Any]]:
        conf: dict[str, dict[str, Any]] = {}
        for sid, raw in self.service_config.items():
            d = copy.deepcopy(raw)
            rtype, _, name = sid.partition(":")
            d["type"] = rtype
            d["name"] = name
            state = d.get("state") or "disabled"
            d["state"] = "started" if state == "enabled" else state
            d.setdefault("max_restart", 1)
            d.setdefault("max_relocate", 1)
            conf[sid] = d
        return conf

    def update_service_config(self, sid: str, changes: dict[str, Any]) -> None:
        if sid not in self.service_config:
            raise RuntimeError(f"no such service '{sid}'")
        cd = self.service_config[sid]
        for key, value in changes.items():
            if value is None:
                cd.pop(key, None)
            else:
                cd[key] = value

    def change_service_location(self, sid: str, current: str, new: str) -> None:
        cd = self.service_config.get(sid)
        if cd is None:
            raise RuntimeError(f"no such service '{sid}'")
        if cd.get("node") != current:
            raise RuntimeError(
                f"current_node for '{sid}' does not match ({current} != {cd.get('node')})"
            )
        cd["node"] = new

    def lock_service(self, sid: str, lock: str | None) -> None:
        if sid not in self.service_config:
            raise SimulationError(f"no such service '{sid}'")
        self.service_config[sid]["lock"] = lock or "backup"

    def unlock_service(self, sid: str, lock: str | None = None) -> str | None:
        cd = self.service_config.get(sid)
        if cd is None:
            return None
        current = cd.get("lock")
        if current is None:
            return None
        if lock is not None and current != lock:
            return None
        del cd["lock"]
        return str(current)

    # ------------------------------------------------------------------ guests
    def read_service_status(self, node: str) -> dict[str, int]:
        return dict(self.service_status.get(node) or {})

    def write_service_status(self, node: str, data: dict[str, int]) -> None:
        self.service_status[node] = dict(data)

    def queue_crm_command(self, cmd: str) -> None:
        self.crm_commands += cmd + "\n"

    # ------------------------------------------------------------------ scheduler stats
    def static_node_stats(self) -> dict[str, dict[str, float]]:
        return {
            n: {
                "maxcpu": float(d.get("maxcpu", 24)),
                "maxmem": float(d.get("maxmem", 128 * GIB)),
            }
            for n, d in self.status.items()
        }

    def usage_stats(self, mode: str) -> tuple[Any, Any]:
        from pvha.core.scheduler import NodeStats, ServiceStats

        nodes = self.static_node_stats()
        services: dict[str, ServiceStats] = {}
        static = self.static_stats or {}
        dynamic = self.dynamic_stats or {}
        for sid in set(static) | set(dynamic) | set(self.service_config):
            s = static.get(sid) or {}
            dyn = dynamic.get(sid) or {}
            services[sid] = ServiceStats(
                maxcpu=float(s.get("maxcpu", 4.0)),
                maxmem=float(s.get("maxmem", 4 * GIB)),
                cpu=float(dyn.get("cpu", 2.0)),
                mem=float(dyn.get("mem", 2 * GIB)),
            )
        node_stats: dict[str, NodeStats] = {}
        for n, d in nodes.items():
            cpu = mem = 0.0
            if mode == "dynamic":
                for sid, running in self.service_status.get(n, {}).items():
                    if running and sid in services:
                        cpu += services[sid].cpu
                        mem += services[sid].mem
            node_stats[n] = NodeStats(maxcpu=d["maxcpu"], maxmem=d["maxmem"], cpu=cpu, mem=mem)
        return node_stats, services
