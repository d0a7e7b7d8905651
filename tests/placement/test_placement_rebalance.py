"""Automatic rebalancing and resource motions (semantics §4.8-§4.9)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pvha.core.model import NodeAffinityRule, ResourceAffinityRule, Rule
from pvha.core.rebalance import (
    Bundle,
    NodeLoad,
    imbalance,
    motion_pending,
    next_hold_counter,
    plan_auto_rebalance,
    resource_motion,
    select_move,
    stationary_bundles,
)
from pvha.core.rules import EMPTY_COMPILED, CompiledRules, compile_rules
from pvha.core.scheduler import ServiceStats

NODES = ("node1", "node2", "node3")
GIB = 1024**3


def _compiled(*rules: Rule) -> CompiledRules:
    return compile_rules({r.id: r for r in rules}, {}, {}, NODES).compiled


def _loads(ss: dict[str, dict[str, Any]], stats: dict[str, ServiceStats]) -> dict[str, NodeLoad]:
    out = {}
    for n in NODES:
        on = [s for s, sd in ss.items() if sd["node"] == n and sd["state"] == "started"]
        out[n] = NodeLoad(
            sum(stats[s].maxcpu for s in on), 24, sum(stats[s].maxmem for s in on), 32 * GIB
        )
    return out


def test_imbalance_raw_coefficient_of_variation() -> None:
    one = NodeLoad(8, 24, 32 * GIB, 32 * GIB)
    empty = NodeLoad(0, 24, 0, 32 * GIB)
    assert imbalance([one, empty, empty]) == pytest.approx(math.sqrt(2))
    assert imbalance([one, one, one]) == 0.0
    assert imbalance([empty, empty]) == 0.0
    assert imbalance([one]) == 0.0


@pytest.mark.parametrize(
    ("counter", "value", "hold", "expected"),
    [
        (2, 0.3, 3, (0, False)),  # at the threshold: reset
        (0, 0.5, 3, (1, False)),
        (2, 0.5, 3, (0, True)),
        (0, 0.5, 0, (0, True)),
        (0, 0.5, 1, (0, True)),
    ],
)
def test_hold_counter(counter: int, value: float, hold: int, expected: tuple[int, bool]) -> None:
    assert next_hold_counter(counter, value, 0.3, hold) == expected


def test_homogeneous_services_move_by_leader_then_target_name() -> None:
    ss = {f"vm:10{i}": {"state": "started", "node": "node1"} for i in range(1, 5)}
    stats = {sid: ServiceStats(maxcpu=2.0, maxmem=8 * GIB) for sid in ss}
    plan = plan_auto_rebalance(
        counter=2, loads=_loads(ss, stats), ss=ss, compiled=EMPTY_COMPILED, stats=stats,
        mode="static", threshold=0.3, hold_duration=3, method="bruteforce", margin=0.1,
    )  # fmt: skip
    assert plan.counter == 0 and plan.move is not None
    line = (
        "auto rebalance - migrate vm:101 to node2 (expected change for imbalance from 1.41 to 0.94)"
    )
    assert plan.log == (line,)
    assert plan.move.command == "migrate vm:101 node2"


def test_topsis_method_picks_same_move_for_homogeneous_services() -> None:
    ss = {f"vm:10{i}": {"state": "started", "node": "node1"} for i in range(1, 5)}
    stats = {sid: ServiceStats(maxcpu=2.0, maxmem=8 * GIB) for sid in ss}
    bundles = stationary_bundles(ss, EMPTY_COMPILED, NODES, stats, "static")
    move = select_move(_loads(ss, stats), bundles, "topsis", 0.1)
    assert move is not None and (move.sid, move.target) == ("vm:101", "node2")


def test_no_move_when_margin_not_reached() -> None:
    ss = {"vm:101": {"state": "started", "node": "node1"}}
    stats = {"vm:101": ServiceStats(maxcpu=2.0, maxmem=8 * GIB)}
    bundles = stationary_bundles(ss, EMPTY_COMPILED, NODES, stats, "static")
    assert [b.targets for b in bundles] == [("node2", "node3")]
    assert select_move(_loads(ss, stats), bundles, "bruteforce", 0.1) is None


def test_bruteforce_ties_by_source_node_then_target() -> None:
    loads = {n: NodeLoad(0.0, 10, 0.0, 10) for n in ("a", "b", "c", "d")}
    loads["a"] = NodeLoad(4.0, 10, 4.0, 10)
    loads["b"] = NodeLoad(4.0, 10, 4.0, 10)
    bundles = [
        Bundle("vm:1", ("vm:1",), "b", ((2.0, 2.0),), ("c", "d")),
        Bundle("vm:1", ("vm:1",), "a", ((2.0, 2.0),), ("d", "c")),
    ]
    move = select_move(loads, bundles, "bruteforce", 0.0)
    assert move is not None and (move.source, move.target) == ("a", "c")


def test_bundles_follow_positive_affinity_and_constraints() -> None:
    compiled = _compiled(
        ResourceAffinityRule("together", ("vm:101", "vm:102"), "positive"),
        ResourceAffinityRule("apart", ("vm:103", "vm:104"), "negative"),
        NodeAffinityRule("pin", ("vm:105",), (("node1", 0),), strict=True),
    )
    ss = {
        "vm:101": {"state": "started", "node": "node1"},
        "vm:102": {"state": "started", "node": "node1"},
        "vm:103": {"state": "started", "node": "node1"},
        "vm:104": {"state": "started", "node": "node2"},
        "vm:105": {"state": "started", "node": "node1"},
        "vm:106": {"state": "stopped", "node": "node1"},
    }
    stats = {sid: ServiceStats(maxcpu=1.0, maxmem=GIB, cpu=0.5, mem=GIB / 2) for sid in ss}
    bundles = stationary_bundles(ss, compiled, NODES, stats, "dynamic")
    assert [(b.leader, b.members, b.targets) for b in bundles] == [
        ("vm:101", ("vm:101", "vm:102"), ("node2", "node3")),
        ("vm:103", ("vm:103",), ("node3",)),
        ("vm:104", ("vm:104",), ("node3",)),
    ]
    assert bundles[0].usage == ((0.5, GIB / 2), (0.5, GIB / 2))
    ss["vm:102"] = {"state": "started", "node": "node2"}  # split bundle: not movable
    assert [b.leader for b in stationary_bundles(ss, compiled, NODES, stats, "dynamic")] == [
        "vm:103",
        "vm:104",
    ]


def test_motion_pending() -> None:
    assert not motion_pending({"vm:1": {"state": "started", "node": "n"}})
    assert motion_pending({"vm:1": {"state": "relocate", "node": "n", "target": "m"}})
    assert motion_pending({"vm:1": {"state": "started", "node": "n", "cmd": ["migrate", "m"]}})


def test_resource_motion_rejects_negative_partner_on_target() -> None:
    compiled = _compiled(ResourceAffinityRule("apart", ("vm:101", "vm:102"), "negative"))
    ss = {
        "vm:101": {"state": "started", "node": "node1"},
        "vm:102": {"state": "migrate", "node": "node3", "target": "node2"},
    }
    plan = resource_motion(
        "migrate vm:101 node2", "migrate", "vm:101", "node2", compiled=compiled, ss=ss
    )
    assert plan.error == (
        "crm command 'migrate vm:101 node2' error - service 'vm:102' on node 'node2'"
        " in negative affinity with service 'vm:101'"
    )
    ok = resource_motion(
        "migrate vm:101 node1", "migrate", "vm:101", "node1", compiled=compiled, ss=ss
    )
    assert ok.error is None and ok.partners == ()


def test_resource_motion_drags_positive_partners() -> None:
    compiled = _compiled(ResourceAffinityRule("t", ("vm:101", "vm:102", "vm:103"), "positive"))
    ss = {
        "vm:101": {"state": "started", "node": "node1"},
        "vm:102": {"state": "started", "node": "node1"},
        "vm:103": {"state": "started", "node": "node2"},
    }
    plan = resource_motion(
        "migrate vm:101 node2", "migrate", "vm:101", "node2", compiled=compiled, ss=ss
    )
    assert plan.partners == ("vm:102",)
    line = (
        "crm command 'migrate vm:101 node2' - migrate service 'vm:102' to node 'node2'"
        " (service 'vm:102' in positive affinity with service 'vm:101')"
    )
    assert plan.partner_log == (line,)
