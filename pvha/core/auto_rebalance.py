"""The auto-rebalance step of manage() (semantics §4.8), wiring :mod:`pvha.core.rebalance`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pvha.core import rebalance
from pvha.core.commands import queue_resource_motion

if TYPE_CHECKING:
    from pvha.core.manager import Manager


def _settings(crs: dict[str, Any]) -> dict[str, Any]:
    return {
        "threshold": float(crs.get("ha-auto-rebalance-threshold", 0.3)),
        "hold_duration": int(crs.get("ha-auto-rebalance-hold-duration", 3)),
        "method": str(crs.get("ha-auto-rebalance-method", "bruteforce")),
        "margin": float(crs.get("ha-auto-rebalance-margin", 0.1)),
    }


def _loads(m: Manager, mode: str, node_stats: Any) -> dict[str, rebalance.NodeLoad] | None:
    online = m.ns.list_online_nodes()
    if mode == "static":
        node_loads = getattr(m.usage, "node_loads", None)
        if node_loads is None:
            return None
        return {
            n: rebalance.NodeLoad(cpu=c, maxcpu=mc, mem=me, maxmem=mm)
            for n, (c, mc, me, mm) in zip(m.usage.nodes, node_loads(), strict=True)
        }
    return {
        n: rebalance.NodeLoad(
            cpu=node_stats[n].cpu,
            maxcpu=node_stats[n].maxcpu,
            mem=node_stats[n].mem,
            maxmem=node_stats[n].maxmem,
        )
        for n in online
        if n in node_stats
    }


def auto_rebalance_step(m: Manager) -> None:
    """Evaluate once; queue at most one move like a user command."""
    crs = m.crs.get("auto_rebalance") or {}
    mode = m.crs.get("scheduler", "basic")
    if not int(crs.get("ha-auto-rebalance", 0) or 0) or mode not in ("static", "dynamic"):
        return
    if rebalance.motion_pending(m.ss):
        return
    node_stats, service_stats = m.env.get_usage_stats(mode, m.ss)
    loads = _loads(m, mode, node_stats)
    if loads is None:
        return
    plan = rebalance.plan_auto_rebalance(
        counter=m.auto_rebalance_hold,
        loads=loads,
        ss=m.ss,
        compiled=m.compiled,
        stats=service_stats,
        mode=mode,
        **_settings(crs),
    )
    m.auto_rebalance_hold = plan.counter
    for line in plan.log:
        m.env.log("info", line)
    if plan.move is not None:
        move = plan.move
        task = rebalance.task_for(move.sid)
        queue_resource_motion(m, move.command, task, move.sid, move.target)
