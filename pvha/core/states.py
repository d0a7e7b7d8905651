"""Vocabularies shared by the engine's modules: resource agent exit codes, service state sets.

The states themselves, and every legal transition, are the tables of
:mod:`pvha.core.transitions`; states are plain strings there, spelled as PVE logs them
and stores them in ``manager_status``/``lrm_status``.
"""

from __future__ import annotations

from enum import IntEnum


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


# Service states that "occupy" their node for placement and usage (semantics §4.5 step
# 2); migrate/relocate keep using the source until done, request_start_balance has not
# started anywhere yet.
OCCUPYING_STATES = frozenset(
    {"started", "request_stop", "fence", "freeze", "error", "recovery", "migrate", "relocate"}
)
# Service states that move to, and so also occupy, their ``target`` node.
MOVING_STATES = frozenset({"migrate", "relocate", "request_start_balance"})
