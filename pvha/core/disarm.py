"""Disarm handling inside manage() (semantics §6.7)."""

from __future__ import annotations

from pvha.core.round_state import RoundState
from pvha.core.transitions import SERVICE, SvcEvent

_DEFER_WARN = ("fence", "recovery")
_DEFER_INFO = ("migrate", "relocate")
# the states a disarm-ha freeze applies to: those whose table row has DISARM_FREEZE
_FREEZABLE = frozenset(state for state, row in SERVICE.items() if SvcEvent.DISARM_FREEZE in row)
_KEEP = ("state", "node", "uid", "maintenance_node")


def handle_disarm(rs: RoundState) -> set[str] | None:
    """Advance the disarm; return the sids the normal FSM must still run for, or None.

    None means: the round ends here (after flushing the status).
    """
    disarm = rs.disarm
    assert disarm is not None, "handle_disarm runs only while disarmed"
    mode = disarm.get("mode")
    if mode not in ("freeze", "ignore"):
        rs.log("err", f"unknown disarm mode '{mode}'")
        return None
    deferred: set[str] = set()
    for sid in sorted(rs.ss):
        state = rs.ss[sid]["state"]
        if state in _DEFER_WARN:
            rs.log("warn", f"deferring disarm - service '{sid}' is in '{state}' state")
            deferred.add(sid)
        elif state in _DEFER_INFO:
            rs.log("info", f"deferring disarm - service '{sid}' is in '{state}' state")
            deferred.add(sid)
    if deferred:
        return deferred
    for sid in sorted(rs.ss):
        sd = rs.ss[sid]
        for key in [k for k in sd if k not in _KEEP]:
            del sd[key]
        if mode == "freeze" and sd["state"] in _FREEZABLE:
            message = f"disarm: freezing service '{sid}' (was '{sd['state']}')"
            rs.change_service_state(sid, SvcEvent.DISARM_FREEZE, message=message)
    if disarm.get("state") != "disarmed":
        online = rs.ns.list_online_nodes()
        if all(rs.lrm_modes.get(n) == "disarm" for n in online):
            rs.log("info", "all LRMs disarmed, HA stack is now fully disarmed")
            rs.finish_disarm()
    return None
