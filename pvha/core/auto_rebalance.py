"""The auto-rebalance step of manage() (semantics §4.8), wiring :mod:`pvha.core.rebalance`."""

from __future__ import annotations

from typing import Any

from pvha.core import rebalance
from pvha.core.commands import queue_resource_motion
from pvha.core.round_state import RoundState


def _settings(crs: dict[str, Any]) -> dict[str, Any]:
    return {
        "threshold": float(crs.get("ha-auto-rebalance-threshold", 0.3)),
        "hold_duration": int(crs.get("ha-auto-rebalance-hold-duration", 3)),
        "method": str(crs.get("ha-auto-rebalance-method", "bruteforce")),
        "margin": float(crs.get("ha-auto-rebalance-margin", 0.1)),
    }


def _loads(rs: RoundState, mode: str, node_stats: Any) -> dict[str, rebalance.NodeLoad] | None:
    online = rs.ns.list_online_nodes()
    if mode == "static":
        node_loads = getattr(rs.usage, "node_loads", None)
        if node_loads is None:
            return None
        return {
            n: rebalance.NodeLoad(cpu=c, maxcpu=mc, mem=me, maxmem=mm)
            for n, (c, mc, me, mm) in zip(rs.usage.nodes, node_loads(), strict=True)
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


def auto_rebalance_step(rs: RoundState, hold: int) -> int:
    """Evaluate once with the hold counter of the previous rounds; queue at most one
    move like a user command. Returns the new hold counter."""
    crs = rs.crs.get("auto_rebalance") or {}
    mode = rs.crs.get("scheduler", "basic")
    if not int(crs.get("ha-auto-rebalance", 0) or 0) or mode not in ("static", "dynamic"):
        return hold
    if rebalance.motion_pending(rs.ss):
        return hold
    node_stats, service_stats = rs.env.get_usage_stats(mode, rs.ss)
    loads = _loads(rs, mode, node_stats)
    if loads is None:
        return hold
    plan = rebalance.plan_auto_rebalance(
        counter=hold,
        loads=loads,
        ss=rs.ss,
        compiled=rs.compiled,
        stats=service_stats,
        mode=mode,
        **_settings(crs),
    )
    for line in plan.log:
        rs.log("info", line)
    if plan.move is not None:
        move = plan.move
        task = rebalance.task_for(move.sid)
        queue_resource_motion(rs, move.command, task, move.sid, move.target)
    return plan.counter
