"""The sentence each round of ``pvha watch`` ends with, and the words for a fencing.

Patroni's habit: one sentence per round saying what the round did or waits for
("no quorum on node3, waiting", "fencing node2: waiting for fence-ack"); tests assert on
it, the journal and ``systemctl status`` show it.
"""

from __future__ import annotations

import time
from typing import Any

from pvha.shell.snapshot import RoundView


def describe_fence(node: str, state: dict[str, Any], has_device: bool, now: float) -> str:
    """``waiting for fence-ack``, ``fencing via ipmi (attempt 2)``, ``fence via ipmi
    failed (attempt 1), retry in 5 s or pvha fence-ack``, ``fenced (verified off at
    …)``: from a :meth:`PowerFencing.state` entry (shared with ``pvha status``)."""
    info = state.get(node)
    if not has_device and info is None:
        return "waiting for fence-ack"
    if info is None:
        return "fencing: starting"
    device = info.get("device", "?")
    if info.get("state") == "fenced":
        at = time.strftime("%H:%M:%S", time.localtime(float(info.get("at", 0))))
        return f"fenced (verified off at {at} by {device})"
    if info.get("state") == "failed":
        left = max(0, int(float(info.get("next_try", 0)) - now + 0.999))
        return (f"fence via {device} failed (attempt {info.get('attempt')}), retry in "
                f"{left} s or pvha fence-ack")
    return f"fencing via {device} (attempt {info.get('attempt')})"


def round_sentence(view: RoundView, crm: Any, fence_delay: int, fence_wait: Any,
                   degraded: list[str]) -> str:
    """The round's sentence, from the view and the manager's state; ``fence_wait(node)``
    says what the fencing of a node waits for."""
    if not view.quorate:
        return f"no quorum on {view.local_node}, waiting"
    if crm is None or crm.state != "master" or crm.manager is None:
        if crm is not None and crm.state == "slave":
            return "standby: another watcher holds the manager lock"
        return "waiting for the manager lock"
    m = crm.manager
    online = sum(1 for n in view.members if n in view.online)
    started = sum(1 for sd in m.ss.values() if sd.get("state") == "started")
    parts = [f"manager: {online} nodes online, {len(m.ss)} services, {started} started"]
    errors = sorted(sid for sid, sd in m.ss.items() if sd.get("state") == "error")
    if errors:
        parts.append(f"{len(errors)} in error ({', '.join(errors[:5])}"
                     f"{', ...' if len(errors) > 5 else ''})")
    for node in sorted(m.ns.status):
        state = m.ns.get_node_state(node)
        if state == "fence":
            parts.append(f"fencing {node}: {fence_wait(node)}")
        elif state == "unknown" and node not in view.online:
            last = m.ns.last_online.get(node)
            left = fence_delay - (m.now - last) if last is not None else fence_delay
            parts.append(f"{node} offline" + (f", fencing in {left} s" if left > 0 else ""))
    if degraded:
        parts.append(f"HA degraded: {'; '.join(degraded)}")
    return "; ".join(parts)
