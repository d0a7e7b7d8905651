"""An in-memory HaEnv for driving the core without the simulator."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class FakeEnv:
    def __init__(
        self, node: str = "node1", nodes: tuple[str, ...] = ("node1", "node2", "node3")
    ) -> None:
        self.node = node
        self.online = {n: True for n in nodes}
        self.lines: list[tuple[str, str]] = []
        self.manager_status: dict[str, Any] = {}
        self.lrm: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.commands = ""
        self.agent_locks: dict[str, bool] = {}
        self.lock_attempts: list[str] = []
        self.stolen: list[tuple[str, str, str]] = []
        self.dc: dict[str, Any] = {}

    # log / cluster
    def log(self, level: str, msg: str) -> None:
        self.lines.append((level, msg))

    def send_notification(self, prefix: str, msg: str, node: str) -> None:
        self.lines.append(("email", f"{prefix}: {msg}"))

    def nodename(self) -> str:
        return self.node

    def get_node_info(self) -> tuple[dict[str, dict[str, Any]], bool]:
        return {n: {"online": int(v)} for n, v in self.online.items()}, True

    def quorate(self) -> bool:
        return True

    def cluster_state_update(self) -> bool:
        return True

    def is_node_shutdown(self) -> tuple[bool, bool]:
        return False, False

    # locks / watchdog
    def get_ha_manager_lock(self) -> bool:
        return True

    def release_ha_manager_lock(self) -> bool:
        return True

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        node = node or self.node
        self.lock_attempts.append(node)
        return self.agent_locks.get(node, False)

    def release_ha_agent_lock(self) -> bool:
        return True

    def watchdog_open(self) -> str:
        return "wd"

    def watchdog_update(self, wfh: str) -> None:
        pass

    def watchdog_close(self, wfh: str) -> None:
        pass

    # status files
    def read_manager_status(self) -> dict[str, Any]:
        return copy.deepcopy(self.manager_status)

    def write_manager_status(self, ms: Mapping[str, Any]) -> None:
        self.manager_status = copy.deepcopy(dict(ms))

    def read_lrm_status(self, node: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.lrm.get(node or self.node, {}))

    def write_lrm_status(self, status: Mapping[str, Any]) -> None:
        self.lrm[self.node] = dict(status)

    def read_crm_commands(self) -> str:
        text, self.commands = self.commands, ""
        return text

    def has_crm_commands(self) -> bool:
        return bool(self.commands)

    # config
    def read_service_config(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self.services)

    def update_service_config(self, sid: str, changes: Mapping[str, Any]) -> None:
        self.services[sid].update(changes)

    def read_group_config(self) -> Mapping[str, Any]:
        return {}

    def read_rules_config(self) -> Mapping[str, Any]:
        return {}

    def write_rules_config(self, rules: Mapping[str, Any]) -> None:
        raise AssertionError("not expected")

    def delete_group_config(self) -> None:
        raise AssertionError("not expected")

    def get_datacenter_settings(self) -> Mapping[str, Any]:
        return self.dc

    def get_usage_stats(self, mode: str, ss: Mapping[str, Any]) -> tuple[Any, Any]:
        return None, None

    def get_node_version(self, node: str) -> str:
        return "9.1.0"

    # resources
    def resource_type_known(self, rtype: str) -> bool:
        return rtype in ("vm", "ct")

    def check_running(self, sid: str) -> bool:
        return False

    def start(self, sid: str) -> None:
        pass

    def shutdown(self, sid: str, timeout: Any = None) -> None:
        pass

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        return True

    def steal_service(self, sid: str, current_node: str, new_node: str) -> None:
        self.stolen.append((sid, current_node, new_node))
        self.services[sid]["node"] = new_node

    def remove_locks(self, sid: str, locks: list[str], service_node: str) -> str | None:
        return None
