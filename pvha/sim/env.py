"""Per-daemon environment of the simulator (PVE ``Sim::Env`` + ``Sim::TestEnv``).

Implements :class:`pvha.core.ports.HaEnv` for one daemon (``<node>/crm`` or
``<node>/lrm``) with its own clock: every iteration starts at the hardware time and
advances the daemon clock by exactly 1 s afterwards; sleeps are discarded.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pvha.config import parse_groups_text, parse_rules_text
from pvha.core.ports import CfsError
from pvha.sim.fencing import LEASE_FENCE_AFTER
from pvha.sim.hardware import Hardware
from pvha.sim.resources import plugin_for

_parsed: dict[tuple[str, str], Mapping[str, Any]] = {}


def _parse_cached(kind: str, text: str) -> Mapping[str, Any]:
    key = (kind, text)
    if key not in _parsed:
        if not text.strip():
            _parsed[key] = {}
        elif kind == "groups":
            _parsed[key] = parse_groups_text(text, "groups")
        else:
            _parsed[key] = parse_rules_text(text, "rules_config")
    return _parsed[key]


class SimEnv:
    def __init__(self, node: str, hw: Hardware, log_id: str) -> None:
        self.node = node
        self.hw = hw
        self.log_id = log_id
        self.cur_time = 0

    # ------------------------------------------------------------------ clock (shell side)
    def loop_start_hook(self, start: int) -> None:
        if start < self.cur_time:
            raise RuntimeError("strange start time")
        self.cur_time = start

    def loop_end_hook(self) -> None:
        self.cur_time += 1

    # ------------------------------------------------------------------ LogPort
    def log(self, level: str, msg: str) -> None:
        self.hw.log_sink.add(level, self.cur_time, f"{self.node}/{self.log_id}", msg)

    def send_notification(self, prefix: str, msg: str, node: str) -> None:
        self.log("email", f"{prefix}: {msg}")

    # ------------------------------------------------------------------ ClusterPort
    def nodename(self) -> str:
        return self.node

    def blocked_nodes(self) -> frozenset[str]:
        return frozenset()

    def get_node_info(self) -> tuple[dict[str, dict[str, Any]], bool]:
        return self.hw.get_node_info()

    def quorate(self) -> bool:
        info, quorate = self.hw.get_node_info()
        if not info[self.node]["online"]:
            return False
        return quorate

    def cluster_state_update(self) -> bool:
        return self.hw.get_cfs_state(self.node, "update")

    def is_node_shutdown(self) -> tuple[bool, bool]:
        target = self.hw.status[self.node].get("shutdown")
        if target == "shutdown":
            return True, False
        if target == "reboot":
            return True, True
        return False, False

    # ------------------------------------------------------------------ LockPort
    def _lock(self, name: str, unlock: bool = False) -> bool:
        if not self.quorate():
            return False
        return self.hw.sim_get_lock(self.node, self.cur_time, name, unlock, self.log)

    def get_ha_manager_lock(self) -> bool:
        return self._lock("ha_manager_lock")

    def release_ha_manager_lock(self) -> bool:
        return self._lock("ha_manager_lock", True)

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        fencing = self.hw.fencing
        if node and node != self.node and fencing is not None and fencing.has_device(node):
            return self._power_fence(node)
        if node and node != self.node and self.hw.pvha.lease:
            return self._lease_fence(node)
        return self._lock(f"ha_agent_{node or self.node}_lock")

    def _lease_fence(self, node: str) -> bool:
        """pvha extension: the dead node's lease (its agent lock) proves it reset once
        it has not been renewed for LEASE_FENCE_AFTER s (pvha.sim.fencing)."""
        name = f"ha_agent_{node}_lock"
        held = self.hw.locks.get(name)
        if not self.quorate():
            return False
        if node in self.hw.acks:
            self.hw.acks.discard(node)
            self.hw.waiting_ack.discard(node)
            self.log("info", f"fencing: node '{node}' acknowledged by fence-ack (not verified)")
            self.hw.locks[name] = {"time": self.cur_time, "node": self.node}
            return True
        if held is None:  # released by a clean stop, or never held: no armed agent
            if node not in self.hw.waiting_ack:
                self.hw.waiting_ack.add(node)
                self.log("info", f"fencing: node '{node}' has no armed agent lease: waiting "
                                 "for fence-ack")
            return False
        silent = self.cur_time - int(held["time"])
        if held.get("node") != node or silent <= LEASE_FENCE_AFTER:
            return self._lock(name)
        self.log("info", f"fencing: node '{node}' fenced by lease expiry (lock not renewed "
                         f"for {silent} s)")
        self.hw.waiting_ack.discard(node)
        self.hw.locks[name] = {"time": self.cur_time, "node": self.node}
        return True

    def _power_fence(self, node: str) -> bool:
        """pvha extension: the dead node's agent lock is granted only after its BMC
        read back "off" (pvha.sim.fencing); the master then holds the lock."""
        fencing = self.hw.fencing
        if fencing is None or not self.quorate():
            return False
        if not fencing.attempt(node, self.cur_time, self.log):
            return False
        self.hw.locks[f"ha_agent_{node}_lock"] = {"time": self.cur_time, "node": self.node}
        return True

    def fence_cancellable(self, node: str) -> bool:
        return False  # PVE: a node in fence self-fences behind its watchdog

    def release_ha_agent_lock(self) -> bool:
        return self._lock(f"ha_agent_{self.node}_lock", True)

    # ------------------------------------------------------------------ WatchdogPort
    def watchdog_open(self) -> str:
        return self.hw.watchdog_open(self.node, self.cur_time)

    def watchdog_update(self, wfh: str) -> None:
        self.hw.watchdog_update(wfh, self.cur_time)

    def watchdog_close(self, wfh: str) -> None:
        self.hw.watchdog_close(wfh)

    # ------------------------------------------------------------------ StatusPort
    def read_manager_status(self) -> dict[str, Any]:
        self.hw.assert_cfs(self.node)
        return copy.deepcopy(self.hw.manager_status)

    def write_manager_status(self, ms: Mapping[str, Any]) -> None:
        self.hw.assert_cfs(self.node)
        self.hw.manager_status = copy.deepcopy(dict(ms))

    def read_lrm_status(self, node: str | None = None) -> dict[str, Any]:
        self.hw.assert_cfs(self.node)
        return copy.deepcopy(self.hw.lrm_status.get(node or self.node) or {})

    def write_lrm_status(self, status: Mapping[str, Any]) -> None:
        self.hw.assert_cfs(self.node)
        self.hw.lrm_status[self.node] = copy.deepcopy(dict(status))

    def read_crm_commands(self) -> str:
        self.hw.assert_cfs(self.node)
        text, self.hw.crm_commands = self.hw.crm_commands, ""
        return text

    def has_crm_commands(self) -> bool:
        self.hw.assert_cfs(self.node)
        return bool(self.hw.crm_commands.strip())

    # ------------------------------------------------------------------ ConfigPort
    def read_service_config(self) -> dict[str, dict[str, Any]]:
        self.hw.assert_cfs(self.node)
        return self.hw.read_service_config()

    def update_service_config(self, sid: str, changes: Mapping[str, Any]) -> None:
        self.hw.assert_cfs(self.node)
        self.hw.update_service_config(sid, dict(changes))

    def read_group_config(self) -> Mapping[str, Any]:
        self.hw.assert_cfs(self.node)
        return _parse_cached("groups", self.hw.groups_text)

    def read_rules_config(self) -> Mapping[str, Any]:
        self.hw.assert_cfs(self.node)
        if self.hw.rules_written is not None:
            return dict(self.hw.rules_written)
        return _parse_cached("rules", self.hw.rules_text)

    def write_rules_config(self, rules: Mapping[str, Any]) -> None:
        self.hw.assert_cfs(self.node)
        self.hw.rules_written = dict(rules)

    def delete_group_config(self) -> None:
        self.hw.assert_cfs(self.node)
        self.hw.groups_text = ""

    def get_node_version(self, node: str) -> str:
        return str(self.hw.status[node].get("pve-manager-version") or "9.0.0~2")

    def get_datacenter_settings(self) -> Mapping[str, Any]:
        return copy.deepcopy(self.hw.datacenter)

    def get_usage_stats(self, mode: str, ss: Mapping[str, Any]) -> tuple[Any, Any]:
        return self.hw.usage_stats(mode)

    # ------------------------------------------------------------------ ResourcePort
    def resource_type_known(self, rtype: str) -> bool:
        return rtype in ("vm", "ct", "fa")

    def check_running(self, sid: str) -> bool:
        return plugin_for(sid).check_running(self, sid)

    def guest_runs(self, sid: str) -> bool:
        return any(s.get(sid) for s in self.hw.service_status.values())

    def start(self, sid: str) -> None:
        plugin_for(sid).start(self, sid)

    def shutdown(self, sid: str, timeout: Any = None) -> None:
        plugin_for(sid).shutdown(self, sid, timeout)

    def migrate(self, sid: str, target: str, online: bool, after: str | None = None) -> bool:
        return plugin_for(sid).migrate(self, sid, target, online)

    def task_running(self, handle: str) -> bool:
        return False  # every action here is done at once: no task is ever handed out

    def guest_health(self, sid: str) -> tuple[str, str]:
        return "off", ""  # simulated guests have no guest agent

    def steal_service(self, sid: str, current_node: str, new_node: str) -> str | None:
        # a failed move is a CfsError, as on the real port: the service stays in recovery
        # and the round goes on (PVE's simulator dies with the round here, e.g. for a
        # service deleted while the stack was disarmed and recovered at ``arm-ha``)
        try:
            self.hw.change_service_location(sid, current_node, new_node)
        except RuntimeError as err:
            raise CfsError(str(err)) from None
        return None

    def remove_locks(self, sid: str, locks: list[str], service_node: str) -> str | None:
        for lock in locks:
            removed = self.hw.unlock_service(sid, lock)
            if removed:
                return removed
        return None
