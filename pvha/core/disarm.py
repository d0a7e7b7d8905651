"""Disarm handling inside manage() (semantics §6.7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pvha.core.transitions import SERVICE, SvcEvent, next_state

if TYPE_CHECKING:
    from pvha.core.manager import Manager

_DEFER_WARN = ("fence", "recovery")
_DEFER_INFO = ("migrate", "relocate")
_FREEZABLE = ("started", "stopped", "request_stop", "request_start", "request_start_balance")
_KEEP = ("state", "node", "uid", "maintenance_node")


def handle_disarm(m: Manager) -> set[str] | None:
    """Advance the disarm; return the sids the normal FSM must still run for, or None.

    None means: the round ends here (after flushing the status).
    """
    disarm = m.ms["disarm"]
    mode = disarm.get("mode")
    if mode not in ("freeze", "ignore"):
        m.env.log("err", f"unknown disarm mode '{mode}'")
        return None
    deferred: set[str] = set()
    for sid in sorted(m.ss):
        state = m.ss[sid]["state"]
        if state in _DEFER_WARN:
            m.env.log("warn", f"deferring disarm - service '{sid}' is in '{state}' state")
            deferred.add(sid)
        elif state in _DEFER_INFO:
            m.env.log("info", f"deferring disarm - service '{sid}' is in '{state}' state")
            deferred.add(sid)
    if deferred:
        return deferred
    for sid in sorted(m.ss):
        sd = m.ss[sid]
        for key in [k for k in sd if k not in _KEEP]:
            del sd[key]
        if mode == "freeze" and sd["state"] in _FREEZABLE:
            m.env.log("info", f"disarm: freezing service '{sid}' (was '{sd['state']}')")
            sd["state"] = next_state(SERVICE, sd["state"], SvcEvent.DISARM_FREEZE)
            sd["uid"] = m.new_uid()
    if disarm.get("state") != "disarmed":
        online = m.ns.list_online_nodes()
        if all(m.lrm_modes.get(n) == "disarm" for n in online):
            m.env.log("info", "all LRMs disarmed, HA stack is now fully disarmed")
            disarm["state"] = "disarmed"
    return None
