"""The CRM master's view of node states (semantics §2, PVE ``NodeStatus.pm``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pvha.core.ports import HaEnv
from pvha.core.transitions import NODE, NodeEvent, next_state

FENCE_DELAY = 60
GONE_PURGE_DELAY = 3600


class NodeStatus:
    """Node table + last-online bookkeeping; ``status`` is the persisted node -> state map.

    ``now`` must be set by the owner (the manager) before each round; the object never
    reads a clock itself. ``fence_delay`` is how long a node must be offline before its
    services are fenced (PVE: 60 s; real-time tests and the demo shorten it).
    """

    def __init__(
        self, env: HaEnv, status: Mapping[str, str], now: int, fence_delay: int = FENCE_DELAY
    ) -> None:
        self.env = env
        self.status: dict[str, str] = dict(status)
        self.last_online: dict[str, int] = {}
        self.now = now
        self.fence_delay = fence_delay

    # --- queries
    def get_node_state(self, node: str) -> str:
        """The state of ``node``; ``unknown`` for a node not in the table."""
        return self.status.get(node) or "unknown"

    def node_is_online(self, node: str | None) -> bool:
        """True if ``node`` is ``online`` (an FSM hot path: one lookup, no call)."""
        return node is not None and self.status.get(node) == "online"

    def node_is_operational(self, node: str) -> bool:
        """True if ``node`` is online or in maintenance (it answers)."""
        return self.node_is_online(node) or self.get_node_state(node) == "maintenance"

    def node_is_offline_delayed(self, node: str, delay: int | None = None) -> bool:
        """True if ``node`` has not been online for ``delay`` seconds (default: the fence
        delay). A node never seen online starts its delay now; a node seen online in this
        round (a member in ``maintenance``) is never offline, whatever the delay: with a
        delay of 0, PVE's ``now - last >= delay`` would fence it."""
        if delay is None:
            delay = self.fence_delay
        if self.get_node_state(node) == "online":
            return False
        last = self.last_online.get(node)
        if last is None:
            # unknown (e.g. new master): start the delay now
            self.last_online[node] = self.now
            return False
        return self.now > last and (self.now - last) >= delay

    def list_nodes(self) -> list[str]:
        """Every node of the table, sorted."""
        return sorted(self.status)

    def list_online_nodes(self) -> list[str]:
        """The ``online`` nodes, sorted."""
        return [n for n in sorted(self.status) if self.status[n] == "online"]

    # --- changes
    def _fire(self, node: str, event: NodeEvent) -> None:
        old = self.get_node_state(node)
        new = next_state(NODE, old, event)
        if new == old:
            return
        self.status[node] = new
        self.env.log("info", f"node '{node}': state changed from '{old}' => '{new}'")

    def update(
        self, node_info: Mapping[str, Mapping[str, Any]], lrm_modes: Mapping[str, str]
    ) -> None:
        """One round of node-state updates from membership and LRM modes."""
        for node in sorted(node_info):
            if not node_info[node].get("online"):
                continue
            mode = lrm_modes.get(node, "unknown")
            self.last_online[node] = self.now
            state = self.get_node_state(node)
            if state == "online":
                if mode == "maintenance":
                    self._fire(node, NodeEvent.LRM_MAINTENANCE)
            elif state == "maintenance":
                if mode != "maintenance":
                    self._fire(node, NodeEvent.LRM_ACTIVE)
            elif state in ("unknown", "gone"):
                self._fire(node, NodeEvent.SEEN_ONLINE)
            elif state == "fence" and self.env.fence_cancellable(node):
                self.env.log(
                    "notice",
                    f"node '{node}' is online again before it was fenced, and nothing can "
                    "fence it (no fence device, no watchdog): fencing cancelled",
                )
                self._fire(node, NodeEvent.RETURNED)
        for node in sorted(self.status):
            d = node_info.get(node)
            if d and d.get("online"):
                continue
            state = self.get_node_state(node)
            if state == "online":
                self._fire(node, NodeEvent.LOST)
            elif state == "maintenance" and lrm_modes.get(node, "unknown") != "maintenance":
                # a powered-off node whose last lrm_status says maintenance stays so
                self._fire(node, NodeEvent.LOST)
            elif state == "unknown" and d is None:
                self._fire(node, NodeEvent.NOT_MEMBER)
            elif state == "gone" and self.node_is_offline_delayed(node, GONE_PURGE_DELAY):
                self.last_online.pop(node, None)
                del self.status[node]
                self.env.log(
                    "notice", f"deleting gone node '{node}', not a cluster member anymore."
                )

    def fence_node(self, node: str) -> bool:
        """Start/continue fencing ``node``: one agent-lock attempt through the port."""
        if self.get_node_state(node) != "fence":
            self._fire(node, NodeEvent.FENCE)
            self.env.send_notification("FENCE", f"Try to fence node '{node}'", node)
        success = self.env.get_ha_agent_lock(node)
        if success:
            msg = f"fencing: acknowledged - got agent lock for node '{node}'"
            self.env.log("info", msg)
            self._fire(node, NodeEvent.FENCED)
            self.env.send_notification("SUCCEED", msg, node)
        return success
