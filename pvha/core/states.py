"""State vocabularies of the HA engine (PVE 5.2.0 names, which appear verbatim in logs).

All enums are ``str`` enums so that their value is exactly the wire/log spelling and
they compare equal to the strings stored in ``manager_status``/``lrm_status``.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class NodeState(str, Enum):
    """CRM view of a node (semantics §2)."""

    ONLINE = "online"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"
    FENCE = "fence"
    GONE = "gone"


class ServiceState(str, Enum):
    """CRM service state (semantics §3.1). ``ignored``/``disabled`` are config-only."""

    REQUEST_START = "request_start"
    REQUEST_START_BALANCE = "request_start_balance"
    STARTED = "started"
    REQUEST_STOP = "request_stop"
    STOPPED = "stopped"
    MIGRATE = "migrate"
    RELOCATE = "relocate"
    FENCE = "fence"
    RECOVERY = "recovery"
    FREEZE = "freeze"
    ERROR = "error"


class CrmState(str, Enum):
    """CRM daemon role (semantics §1.9); ``startup`` only exists before the first change."""

    STARTUP = "startup"
    WAIT_FOR_QUORUM = "wait_for_quorum"
    MASTER = "master"
    LOST_MANAGER_LOCK = "lost_manager_lock"
    SLAVE = "slave"


class LrmState(str, Enum):
    """LRM daemon role (semantics §1.10)."""

    STARTUP = "startup"
    WAIT_FOR_AGENT_LOCK = "wait_for_agent_lock"
    ACTIVE = "active"
    MAINTENANCE = "maintenance"
    LOST_AGENT_LOCK = "lost_agent_lock"


class LrmMode(str, Enum):
    """The ``mode`` field of lrm_status."""

    ACTIVE = "active"
    RESTART = "restart"
    SHUTDOWN = "shutdown"
    MAINTENANCE = "maintenance"
    DISARM = "disarm"


class ExitCode(IntEnum):
    """Resource agent exit codes shared by LRM and CRM (PVE::HA::Tools)."""

    SUCCESS = 0
    ERROR = 1
    ETRY_AGAIN = 2
    EWRONG_NODE = 3
    EUNKNOWN_SERVICE_TYPE = 4
    EUNKNOWN_COMMAND = 5
    EINVALID_PARAMETER = 6
    EUNKNOWN_SERVICE = 7
    IGNORED = 8


# Service states that "occupy" their node for placement/usage (semantics §4.5 step 2).
OCCUPYING_STATES = frozenset(
    {"started", "request_stop", "fence", "freeze", "error", "recovery", "migrate", "relocate"}
)
MOVING_STATES = frozenset({"migrate", "relocate", "request_start_balance"})
