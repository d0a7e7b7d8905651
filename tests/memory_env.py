"""An in-memory environment for one master CRM: the core driven without the simulator.

Test-side code (the manager tests and ``bench/manager_round.py`` import it): tests as
``from memory_env import MemoryEnv``, the bench as ``tests.memory_env``.

``MemoryEnv`` implements the parts of :class:`pvha.core.ports.HaEnv` that a manage()
round uses, over plain dicts the caller sets up and inspects: node membership
(``online``), resources (``services``), LRM statuses (``lrm``), the crm command queue
(``commands``), obtainable agent locks (``agent_locks``) and what the manager wrote
(``manager_status``, ``lines``, ``lock_attempts``, ``stolen``). Quorum and the manager
lock are always granted: it answers "what does the manager decide", not "who may act".

``isolate`` (default True) copies status and config on every read and write, as a real
port that serialises them does, so a test notices a manager that keeps aliases; a
benchmark turns it off to measure the manager alone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

_EMPTY: Mapping[str, Any] = {}


class MemoryEnv:
    """The port of one master CRM over plain dicts (see the module docstring)."""

    def __init__(
        self,
        nodes: Sequence[str] = ("node1", "node2", "node3"),
        services: dict[str, dict[str, Any]] | None = None,
        *,
        isolate: bool = True,
    ) -> None:
        self.node = nodes[0]
        self.online = {n: True for n in nodes}
        self.services: dict[str, dict[str, Any]] = services if services is not None else {}
        self.isolate = isolate
        self.lines: list[tuple[str, str]] = []
        self.manager_status: dict[str, Any] = {}
        self.lrm: dict[str, dict[str, Any]] = {}
        self.commands = ""
        self.agent_locks: set[str] = set()
        self.lock_attempts: list[str] = []
        self.stolen: list[tuple[str, str, str]] = []
        self.running: set[str] = set()
        self.dc: dict[str, Any] = {}
        self.blocked: frozenset[str] = frozenset()

    def _copy(self, value: Any) -> Any:
        return copy.deepcopy(value) if self.isolate else value

    # log, notifications, cluster
    def log(self, level: str, msg: str) -> None:
        self.lines.append((level, msg))

    def send_notification(self, prefix: str, msg: str, node: str) -> None:
        self.lines.append(("email", f"{prefix}: {msg}"))

    def nodename(self) -> str:
        return self.node

    def blocked_nodes(self) -> frozenset[str]:
        return self.blocked

    def get_node_info(self) -> tuple[dict[str, dict[str, Any]], bool]:
        return {n: {"online": int(up)} for n, up in self.online.items()}, True

    def quorate(self) -> bool:
        return True

    def cluster_state_update(self) -> bool:
        return True

    def is_node_shutdown(self) -> tuple[bool, bool]:
        return False, False

    # locks and watchdog
    def get_ha_manager_lock(self) -> bool:
        return True

    def release_ha_manager_lock(self) -> bool:
        return True

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        node = node or self.node
        self.lock_attempts.append(node)
        return node in self.agent_locks

    def fence_cancellable(self, node: str) -> bool:
        return False  # PVE: a node in fence self-fences behind its watchdog

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
        return self._copy(self.manager_status)  # type: ignore[no-any-return]

    def write_manager_status(self, ms: Mapping[str, Any]) -> None:
        self.manager_status = self._copy(dict(ms))

    def read_lrm_status(self, node: str | None = None) -> dict[str, Any]:
        return self._copy(self.lrm.get(node or self.node) or {})  # type: ignore[no-any-return]

    def write_lrm_status(self, status: Mapping[str, Any]) -> None:
        self.lrm[self.node] = dict(status)

    def read_crm_commands(self) -> str:
        text, self.commands = self.commands, ""
        return text

    def has_crm_commands(self) -> bool:
        return bool(self.commands)

    # configuration
    def read_service_config(self) -> dict[str, dict[str, Any]]:
        if self.isolate:
            return copy.deepcopy(self.services)
        return {sid: dict(cd) for sid, cd in self.services.items()}

    def update_service_config(self, sid: str, changes: Mapping[str, Any]) -> None:
        self.services[sid].update(changes)

    def read_group_config(self) -> Mapping[str, Any]:
        return _EMPTY

    def read_rules_config(self) -> Mapping[str, Any]:
        return _EMPTY

    def write_rules_config(self, rules: Mapping[str, Any]) -> None:
        raise AssertionError("MemoryEnv has no groups to migrate")

    def delete_group_config(self) -> None:
        raise AssertionError("MemoryEnv has no groups to migrate")

    def get_datacenter_settings(self) -> Mapping[str, Any]:
        return self.dc

    def get_usage_stats(self, mode: str, ss: Mapping[str, Any]) -> tuple[Any, Any]:
        return None, None

    def get_node_version(self, node: str) -> str:
        return "9.1.2"

    # guests
    def resource_type_known(self, rtype: str) -> bool:
        return rtype in ("vm", "ct")

    def check_running(self, sid: str) -> bool:
        return sid in self.running

    guest_runs = check_running

    def start(self, sid: str) -> None:
        self.running.add(sid)

    def shutdown(self, sid: str, timeout: Any = None) -> None:
        self.running.discard(sid)

    def migrate(self, sid: str, target: str, online: bool, after: str | None = None) -> bool:
        return True

    def task_running(self, handle: str) -> bool:
        return False  # every action here is done at once: no task is ever handed out

    def guest_health(self, sid: str) -> tuple[str, str]:
        return "off", ""

    def steal_service(self, sid: str, current_node: str, new_node: str) -> str | None:
        self.stolen.append((sid, current_node, new_node))
        self.services[sid]["node"] = new_node
        return None

    def remove_locks(self, sid: str, locks: list[str], service_node: str) -> str | None:
        return None
