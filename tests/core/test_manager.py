"""The manage() round driven through an in-memory port (no simulator)."""

from __future__ import annotations

import pytest
from memory_env import MemoryEnv as FakeEnv

from pvha.core.manager import Manager
from pvha.core.node_status import NodeStatus
from pvha.core.transitions import SvcEvent
from pvha.errors import IllegalTransition


def _env() -> FakeEnv:
    env = FakeEnv()
    env.services = {
        "vm:101": {"node": "node1", "state": "started", "max_restart": 1, "max_relocate": 1},
        "vm:103": {"node": "node3", "state": "started", "max_restart": 1, "max_relocate": 1},
    }
    return env


def test_nothing_is_recovered_onto_a_blocked_node() -> None:
    """A node whose agent could not stop a stale copy takes no guest; the ones on it
    stay (pvha extension; PVE's envs block nothing)."""
    env = _env()
    m = Manager(env, 20)
    m.manage(20)
    env.online["node3"] = False
    env.blocked = frozenset({"node2"})
    m.manage(40)
    m.manage(100)
    env.agent_locks.add("node3")
    m.manage(120)
    assert env.stolen == [("vm:103", "node3", "node1")]  # node2 would have scored best
    assert env.manager_status["service_status"]["vm:103"]["node"] == "node1"
    env.blocked = frozenset({"node1"})
    m.manage(140)  # guests already on a blocked node stay there
    assert {sid: sd["node"] for sid, sd in env.manager_status["service_status"].items()} \
        == {"vm:101": "node1", "vm:103": "node1"}


def test_first_round_adds_and_starts_services() -> None:
    env = _env()
    m = Manager(env, 20)
    m.manage(20)
    msgs = [msg for _lvl, msg in env.lines]
    assert msgs[:3] == [
        f"node 'node{i}': state changed from 'unknown' => 'online'" for i in (1, 2, 3)
    ]
    assert "adding new service 'vm:101' on node 'node1'" in msgs
    assert (
        "service 'vm:103': state changed from 'request_start' to 'started'  (node = node3)" in msgs
    )
    ss = env.manager_status["service_status"]
    assert ss["vm:101"]["state"] == "started" and ss["vm:101"]["uid"]
    assert env.manager_status["timestamp"] == 20


def test_fencing_waits_for_the_agent_lock_then_recovers_in_the_same_round() -> None:
    env = _env()
    m = Manager(env, 20)
    m.manage(20)
    env.online["node3"] = False
    m.manage(40)
    m.manage(100)  # 60 s after last seen online (40 was not online; last online 20)
    assert env.manager_status["service_status"]["vm:103"]["state"] == "fence"
    assert env.manager_status["node_status"]["node3"] == "fence"
    # one attempt after each FSM pass (two passes: the change to fence, then a quiet one)
    assert env.lock_attempts == ["node3", "node3"]
    env.agent_locks.add("node3")
    env.lines.clear()
    m.manage(120)
    msgs = [msg for _lvl, msg in env.lines]
    assert msgs[0] == "fencing: acknowledged - got agent lock for node 'node3'"
    assert "service 'vm:103': state changed from 'fence' to 'recovery'" in msgs
    assert env.stolen == [("vm:103", "node3", "node2")]
    sd = env.manager_status["service_status"]["vm:103"]
    assert (sd["state"], sd["node"]) == ("started", "node2")


def test_illegal_service_event_raises_and_changes_nothing() -> None:
    env = _env()
    m = Manager(env, 20)
    m.manage(20)
    before = dict(m.ss["vm:101"])
    with pytest.raises(IllegalTransition):
        m.rs.change_service_state("vm:101", SvcEvent.FENCED)
    assert m.ss["vm:101"] == before


def test_offline_delay_restarts_without_last_online() -> None:
    env = FakeEnv()
    ns = NodeStatus(env, {"node3": "unknown"}, now=100)
    assert ns.node_is_offline_delayed("node3") is False  # records now
    ns.now = 159
    assert ns.node_is_offline_delayed("node3") is False
    ns.now = 160
    assert ns.node_is_offline_delayed("node3") is True


def test_crm_commands_are_consumed_once() -> None:
    env = _env()
    m = Manager(env, 20)
    m.manage(20)
    env.commands = "migrate vm:101 node2\nbogus\n"
    env.lines.clear()
    m.manage(40)
    msgs = [msg for _lvl, msg in env.lines]
    assert "got crm command: migrate vm:101 node2" in msgs
    assert "unable to parse crm command: bogus" in msgs
    assert env.manager_status["service_status"]["vm:101"]["state"] == "migrate"
    assert env.commands == ""


def test_setter_message_replaces_the_generic_line_and_stays_table_checked() -> None:
    env = _env()
    m = Manager(env, 20)
    m.manage(20)
    env.lines.clear()
    uid = m.ss["vm:101"]["uid"]
    m.rs.change_service_state("vm:101", SvcEvent.DISARM_FREEZE, message="disarm: freezing it")
    assert env.lines == [("info", "disarm: freezing it")]
    assert m.ss["vm:101"]["state"] == "freeze" and m.ss["vm:101"]["uid"] != uid
    with pytest.raises(IllegalTransition):
        m.rs.change_service_state("vm:101", SvcEvent.DISARM_FREEZE, message="not logged")
    assert env.lines == [("info", "disarm: freezing it")]


def test_a_node_in_maintenance_is_never_fenced_even_with_fence_delay_0() -> None:
    """Regression (fault injection found node3 powered off 2 s after ``node-maintenance
    enable`` with ``--fence-delay 0``): a member seen online this round is never offline."""
    env = _env()
    env.lrm["node3"] = {"mode": "maintenance"}
    m = Manager(env, 20, fence_delay=0)
    for now in (20, 21, 30, 40, 100):
        m.manage(now)
    assert env.manager_status["node_status"]["node3"] == "maintenance"
    assert env.lock_attempts == []
    assert env.manager_status["service_status"]["vm:103"]["state"] != "fence"
    ns = NodeStatus(env, {"node3": "maintenance"}, now=50, fence_delay=0)
    ns.update({"node3": {"online": 1}}, {"node3": "maintenance"})
    assert ns.node_is_offline_delayed("node3") is False
    ns.now = 51
    ns.update({}, {"node3": "maintenance"})  # gone from the membership: offline now
    assert ns.node_is_offline_delayed("node3") is True
