"""Legal state transitions of every HA state machine, as data.

Theory of operation
-------------------
Four machines make up the HA stack (semantics §1.9, §1.10, §2, §3):

* the **service FSM** run by the CRM master for each resource (``SERVICE``),
* the **node FSM**, the master's view of each cluster node (``NODE``),
* the **CRM role** of each node's cluster resource manager daemon (``CRM``),
* the **LRM role** of each node's local resource manager daemon (``LRM``).

Each table maps ``state -> {event -> next_state}``; states are plain strings, spelled
as PVE logs them. Deciding *which* event happens is the job of the handlers
(``service_fsm.py``, ``node_status.py``, ``crm.py``, ``lrm.py``); those never assign a
state directly but go through the one setter of their machine
(``RoundState.change_service_state``, ``NodeStatus._fire``, ``Crm.fire``, ``Lrm.fire``),
which calls :func:`next_state`: it either returns the successor or raises
:class:`pvha.errors.IllegalTransition` and changes nothing.
Tests walk every state x event pair so the tables stay total and honest.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from pvha.errors import IllegalTransition


class SvcEvent(str, Enum):
    """Why a service changes state."""

    WANT_START = "want_start"  # stopped + requested started -> request_start
    START = "start"  # request_start -> started
    BALANCE = "balance"  # request_start -> request_start_balance (rebalance-on-start)
    WANT_STOP = "want_stop"  # -> request_stop (requested stopped/disabled, stop cmd)
    STOP_CONFIRMED = "stop_confirmed"  # request_stop + LRM success -> stopped
    MIGRATE = "migrate"
    RELOCATE = "relocate"
    MOVED_START = "moved_start"  # migrate/relocate done, requested started
    MOVED_STOP = "moved_stop"  # migrate/relocate done, requested stopped
    NODE_DEAD = "node_dead"  # node offline for the fence delay -> fence
    FENCED = "fenced"  # node fence acknowledged -> recovery
    RECOVERED_START = "recovered_start"
    RECOVERED_STOP = "recovered_stop"
    FAIL = "fail"  # -> error
    CLEAR = "clear"  # error/recovery + disabled -> stopped
    FREEZE = "freeze"  # node LRM restarting -> freeze
    UNFREEZE_START = "unfreeze_start"
    UNFREEZE_STOP = "unfreeze_stop"
    # pvha extension: the node came back before anything could fence it (no fence device,
    # no watchdog agent): the fencing is cancelled (PVE's node would self-fence instead)
    UNFENCE_START = "unfence_start"
    UNFENCE_STOP = "unfence_stop"
    DISARM_FREEZE = "disarm_freeze"  # disarm-ha freeze: silent -> freeze (own log line)


class NodeEvent(str, Enum):
    """Why the master's view of a node changes (semantics §2)."""

    SEEN_ONLINE = "seen_online"
    LRM_MAINTENANCE = "lrm_maintenance"
    LRM_ACTIVE = "lrm_active"
    LOST = "lost"
    NOT_MEMBER = "not_member"
    FENCE = "fence"
    FENCED = "fenced"
    RETURNED = "returned"  # pvha extension: back before anything could fence it


class CrmEvent(str, Enum):
    """Why a node's CRM role changes (semantics §1.9)."""

    BOOT = "boot"
    LOCK_ACQUIRED = "lock_acquired"
    LOCK_BUSY = "lock_busy"
    INACTIVE = "inactive"
    LOCK_LOST = "lock_lost"
    IDLE = "idle"
    RETRY = "retry"


class LrmEvent(str, Enum):
    """Why a node's LRM role changes (semantics §1.10)."""

    BOOT = "boot"
    LOCK_ACQUIRED = "lock_acquired"
    LOCK_LOST = "lock_lost"
    FENCE_REQUEST = "fence_request"
    MAINTENANCE = "maintenance"
    IDLE = "idle"
    DISARM = "disarm"


_MOVING: dict[str, str] = {
    SvcEvent.MOVED_START: "started",
    SvcEvent.MOVED_STOP: "request_stop",
    SvcEvent.FAIL: "error",
    SvcEvent.NODE_DEAD: "fence",
}

SERVICE: Mapping[str, Mapping[str, str]] = {
    "request_start": {
        SvcEvent.START: "started",
        SvcEvent.BALANCE: "request_start_balance",
        SvcEvent.DISARM_FREEZE: "freeze",
    },
    "request_start_balance": {**_MOVING, SvcEvent.DISARM_FREEZE: "freeze"},
    "started": {
        SvcEvent.DISARM_FREEZE: "freeze",
        SvcEvent.NODE_DEAD: "fence",
        SvcEvent.WANT_STOP: "request_stop",
        SvcEvent.MIGRATE: "migrate",
        SvcEvent.RELOCATE: "relocate",
        SvcEvent.FAIL: "error",
        SvcEvent.FREEZE: "freeze",
    },
    "request_stop": {
        SvcEvent.DISARM_FREEZE: "freeze",
        SvcEvent.STOP_CONFIRMED: "stopped",
        SvcEvent.FAIL: "error",
        SvcEvent.NODE_DEAD: "fence",
        SvcEvent.FREEZE: "freeze",
    },
    "stopped": {
        SvcEvent.DISARM_FREEZE: "freeze",
        SvcEvent.WANT_START: "request_start",
        SvcEvent.MIGRATE: "migrate",
        SvcEvent.RELOCATE: "relocate",
        SvcEvent.NODE_DEAD: "fence",
        SvcEvent.FREEZE: "freeze",
    },
    "migrate": dict(_MOVING),
    "relocate": dict(_MOVING),
    # Quirk (semantics §11.3): ``started`` on an unreachable maintenance node switches
    # to ``fence`` and then carries on evaluating in the same handler call.
    "fence": {
        SvcEvent.FENCED: "recovery",
        SvcEvent.UNFENCE_START: "started",
        SvcEvent.UNFENCE_STOP: "request_stop",
        SvcEvent.WANT_STOP: "request_stop",
        SvcEvent.MIGRATE: "migrate",
        SvcEvent.RELOCATE: "relocate",
        SvcEvent.FAIL: "error",
    },
    "recovery": {
        SvcEvent.RECOVERED_START: "started",
        SvcEvent.RECOVERED_STOP: "request_stop",
        SvcEvent.CLEAR: "stopped",
    },
    "freeze": {SvcEvent.UNFREEZE_START: "started", SvcEvent.UNFREEZE_STOP: "request_stop"},
    "error": {SvcEvent.CLEAR: "stopped"},
}

NODE: Mapping[str, Mapping[str, str]] = {
    "online": {
        NodeEvent.LRM_MAINTENANCE: "maintenance",
        NodeEvent.LOST: "unknown",
        NodeEvent.FENCE: "fence",
    },
    "maintenance": {
        NodeEvent.LRM_ACTIVE: "online",
        NodeEvent.LOST: "unknown",
        NodeEvent.FENCE: "fence",
    },
    "unknown": {
        NodeEvent.SEEN_ONLINE: "online",
        NodeEvent.NOT_MEMBER: "gone",
        NodeEvent.FENCE: "fence",
    },
    "gone": {NodeEvent.SEEN_ONLINE: "online", NodeEvent.FENCE: "fence"},
    "fence": {NodeEvent.FENCED: "unknown", NodeEvent.RETURNED: "online"},
}

CRM: Mapping[str, Mapping[str, str]] = {
    "startup": {CrmEvent.BOOT: "wait_for_quorum"},
    "wait_for_quorum": {CrmEvent.LOCK_ACQUIRED: "master", CrmEvent.LOCK_BUSY: "slave"},
    "slave": {CrmEvent.LOCK_ACQUIRED: "master", CrmEvent.INACTIVE: "wait_for_quorum"},
    "lost_manager_lock": {CrmEvent.LOCK_ACQUIRED: "master", CrmEvent.RETRY: "wait_for_quorum"},
    "master": {CrmEvent.LOCK_LOST: "lost_manager_lock", CrmEvent.IDLE: "wait_for_quorum"},
}

LRM: Mapping[str, Mapping[str, str]] = {
    "startup": {LrmEvent.BOOT: "wait_for_agent_lock"},
    "wait_for_agent_lock": {LrmEvent.LOCK_ACQUIRED: "active"},
    "lost_agent_lock": {LrmEvent.LOCK_ACQUIRED: "active"},
    "active": {
        LrmEvent.FENCE_REQUEST: "lost_agent_lock",
        LrmEvent.LOCK_LOST: "lost_agent_lock",
        LrmEvent.MAINTENANCE: "maintenance",
        LrmEvent.IDLE: "wait_for_agent_lock",
        LrmEvent.DISARM: "wait_for_agent_lock",
    },
    "maintenance": {
        LrmEvent.FENCE_REQUEST: "lost_agent_lock",
        LrmEvent.LOCK_LOST: "lost_agent_lock",
        LrmEvent.LOCK_ACQUIRED: "active",
        LrmEvent.DISARM: "wait_for_agent_lock",
    },
}


def next_state(table: Mapping[str, Mapping[str, str]], state: str, event: str) -> str:
    """Return the successor of ``state`` on ``event`` (an event enum or its value);
    raise IllegalTransition otherwise."""
    row = table.get(state)
    if row is None or event not in row:
        key = event.value if isinstance(event, Enum) else event
        raise IllegalTransition(f"illegal event '{key}' in state '{state}'")
    return row[event]
