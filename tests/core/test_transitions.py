"""The transition tables are total and honest: every state x event pair either yields a
declared successor or raises IllegalTransition without changing anything."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvha.core import transitions as t
from pvha.errors import IllegalTransition

# PVE's state names (semantics §1.9, §1.10, §2, §3.1), written out independently of the
# tables so that a table cannot invent or lose a state unnoticed
SERVICE_STATES = [
    "request_start",
    "request_start_balance",
    "started",
    "request_stop",
    "stopped",
    "migrate",
    "relocate",
    "fence",
    "recovery",
    "freeze",
    "error",
]
NODE_STATES = ["online", "maintenance", "unknown", "fence", "gone"]
CRM_STATES = ["startup", "wait_for_quorum", "master", "lost_manager_lock", "slave"]
LRM_STATES = ["startup", "wait_for_agent_lock", "active", "maintenance", "lost_agent_lock"]

MACHINES = {
    "service": (t.SERVICE, SERVICE_STATES, list(t.SvcEvent)),
    "node": (t.NODE, NODE_STATES, list(t.NodeEvent)),
    "crm": (t.CRM, CRM_STATES, list(t.CrmEvent)),
    "lrm": (t.LRM, LRM_STATES, list(t.LrmEvent)),
}
PAIRS = [
    (name, state, event)
    for name, (_table, states, events) in MACHINES.items()
    for state in states
    for event in events
]


@pytest.mark.parametrize(("machine", "state", "event"), PAIRS)
def test_every_state_event_pair(machine: str, state: str, event: str) -> None:
    table, states, _events = MACHINES[machine]
    row = table.get(state, {})
    if event in row:
        nxt = t.next_state(table, state, event)
        assert nxt == row[event]
        assert nxt in states
    else:
        snapshot = {k: dict(v) for k, v in table.items()}
        with pytest.raises(IllegalTransition):
            t.next_state(table, state, event)
        assert {k: dict(v) for k, v in table.items()} == snapshot


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_targets_and_rows_are_known_states(machine: str) -> None:
    table, states, events = MACHINES[machine]
    for state, row in table.items():
        assert state in states
        for event, nxt in row.items():
            assert event in [e.value for e in events]
            assert nxt in states


def test_service_states_all_have_rows() -> None:
    assert set(t.SERVICE) == set(SERVICE_STATES)


@given(
    machine=st.sampled_from(sorted(MACHINES)),
    data=st.data(),
)
def test_random_walks_stay_inside_the_tables(machine: str, data: st.DataObject) -> None:
    table, states, events = MACHINES[machine]
    state = data.draw(st.sampled_from(states))
    for event in data.draw(st.lists(st.sampled_from(events), max_size=30)):
        try:
            state = t.next_state(table, state, event)
        except IllegalTransition:
            continue  # unchanged
        assert state in states


def test_enum_and_plain_string_events_agree() -> None:
    assert t.next_state(t.SERVICE, "fence", t.SvcEvent.FENCED) == "recovery"
    assert t.next_state(t.SERVICE, "fence", "fenced") == "recovery"


def test_illegal_event_is_named_by_its_value() -> None:
    with pytest.raises(IllegalTransition, match="illegal event 'fenced' in state 'started'"):
        t.next_state(t.SERVICE, "started", t.SvcEvent.FENCED)
