"""select_service_node / get_node_affinity (semantics §4.4-§4.5)."""

from __future__ import annotations

from typing import Any

import pytest

from pvha.core.model import Group, NodeAffinityRule, Resource, ResourceAffinityRule, Rule
from pvha.core.placement import get_node_affinity, get_resource_affinity, select_service_node
from pvha.core.rules import EMPTY_COMPILED, CompiledRules, compile_rules
from pvha.core.scheduler import BasicUsage, recompute_usage

NODES = ("node1", "node2", "node3")
SS = dict[str, dict[str, Any]]


def _compiled(*rules: Rule, nodes: tuple[str, ...] = NODES) -> CompiledRules:
    result = compile_rules({r.id: r for r in rules}, {}, {}, nodes)
    assert result.log == ()
    return result.compiled


def _usage(ss: SS, nodes: tuple[str, ...] = NODES) -> BasicUsage:
    usage = BasicUsage(nodes)
    recompute_usage(usage, ss)
    return usage


def _select(sid: str, pref: str, compiled: CompiledRules, ss: SS, **kw: Any) -> str | None:
    usage = kw.pop("usage", None) or _usage(ss, kw.pop("nodes", NODES))
    sd = ss[sid]
    kw.setdefault("failed_nodes", sd.get("failed_nodes") or ())
    kw.setdefault("maintenance_node", sd.get("maintenance_node"))
    return select_service_node(
        sid, pref, compiled=compiled, usage=usage, ss=ss, current_node=sd["node"], **kw
    )


class TestFailover1:
    """The sequence of PVE's test_failover1.pl: group prefer_node1 (node1), failback on.

    The usage holds no services, so every score ties and node names decide.
    """

    def setup_method(self) -> None:
        groups = {"prefer_node1": Group("prefer_node1", (("node1", 0),))}
        resources = {"vm:111": Resource("vm:111", group="prefer_node1")}
        self.res = compile_rules({}, groups, resources, NODES)
        self.node = "node1"

    def step(self, online: tuple[str, ...], expected: str, try_next: bool = False) -> None:
        node = select_service_node(
            "vm:111",
            "try-next" if try_next else "none",
            compiled=self.res.compiled,
            usage=BasicUsage(online),
            ss={},
            current_node=self.node,
            failback=self.res.failback["vm:111"],
        )
        assert node == expected
        self.node = node

    def test_sequence(self) -> None:
        self.step(NODES, "node1")
        self.step(NODES, "node1", try_next=True)
        without1 = ("node2", "node3")
        self.step(without1, "node2")
        self.step(without1, "node3", try_next=True)
        self.step(without1, "node2", try_next=True)
        self.step(("node3",), "node3")
        self.step(("node3",), "node3", try_next=True)
        self.step(("node2", "node3"), "node3")  # preference none keeps the current node
        self.step(NODES, "node1")  # failback: node1 is back in the top class
        self.step(NODES, "node1", try_next=True)


def test_try_next_rotation_skips_failed_nodes() -> None:
    ss: SS = {"vm:100": {"state": "started", "node": "node1", "failed_nodes": ["node1"]}}
    assert _select("vm:100", "try-next", EMPTY_COMPILED, ss) == "node2"
    ss["vm:100"].update(node="node2", failed_nodes=["node1", "node2"])
    assert _select("vm:100", "try-next", EMPTY_COMPILED, ss) == "node3"
    ss["vm:100"].update(node="node3", failed_nodes=["node1", "node2", "node3"])
    assert _select("vm:100", "try-next", EMPTY_COMPILED, ss) is None


def test_none_keeps_current_node_and_best_score_does_not() -> None:
    ss: SS = {
        "vm:100": {"state": "started", "node": "node1"},
        "vm:101": {"state": "started", "node": "node1"},
    }
    assert _select("vm:100", "none", EMPTY_COMPILED, ss) == "node1"
    assert _select("vm:100", "best-score", EMPTY_COMPILED, ss) == "node2"


def test_basic_scores_count_services_and_break_ties_by_name() -> None:
    ss: SS = {
        "vm:100": {"state": "recovery", "node": "dead"},
        "vm:101": {"state": "started", "node": "node1"},
        "vm:102": {"state": "migrate", "node": "node3", "target": "node2"},
        "vm:103": {"state": "stopped", "node": "node3"},
        "vm:104": {"state": "request_start", "node": "node3"},
    }
    usage = _usage(ss)
    assert usage.score_nodes_to_start_service("vm:100") == {"node1": 1, "node2": 1, "node3": 1}
    usage.add_guest_usage("vm:900", "node1")  # non-HA guest running on node1
    assert _select("vm:100", "best-score", EMPTY_COMPILED, ss, usage=usage) == "node2"


@pytest.mark.parametrize(("failback", "expected"), [(True, "node1"), (False, "node2")])
def test_failback(failback: bool, expected: str) -> None:
    rule = NodeAffinityRule("r", ("vm:100",), (("node1", 2), ("node2", 1)))
    ss: SS = {"vm:100": {"state": "started", "node": "node2"}}
    assert _select("vm:100", "none", _compiled(rule), ss, failback=failback) == expected


def test_failback_off_still_leaves_a_disallowed_node() -> None:
    rule = NodeAffinityRule("r", ("vm:100",), (("node1", 0),), strict=True)
    ss: SS = {"vm:100": {"state": "started", "node": "node3"}}
    assert _select("vm:100", "none", _compiled(rule), ss, failback=False) == "node1"


def test_strict_rule_without_online_member_selects_nothing() -> None:
    rule = NodeAffinityRule("r", ("vm:100",), (("node1", 0),), strict=True)
    ss: SS = {"vm:100": {"state": "recovery", "node": "node1"}}
    compiled = _compiled(rule)
    assert _select("vm:100", "best-score", compiled, ss, nodes=("node2", "node3")) is None
    assert get_node_affinity("vm:100", compiled, {"node2"}) == (frozenset(), frozenset())


def test_non_strict_rule_without_online_member_uses_other_nodes() -> None:
    rule = NodeAffinityRule("r", ("vm:100",), (("node1", 0),))
    compiled = _compiled(rule)
    allowed, preferred = get_node_affinity("vm:100", compiled, {"node2", "node3"})
    assert allowed == preferred == {"node2", "node3"}
    ss: SS = {"vm:100": {"state": "recovery", "node": "node1"}}
    assert _select("vm:100", "best-score", compiled, ss, nodes=("node2", "node3")) == "node2"


def test_maintenance_fallback_node_wins_when_preferred() -> None:
    ss: SS = {
        "vm:100": {"state": "started", "node": "node2", "maintenance_node": "node3"},
        "vm:101": {"state": "started", "node": "node3"},
    }
    assert _select("vm:100", "none", EMPTY_COMPILED, ss) == "node3"
    rule = NodeAffinityRule("r", ("vm:100",), (("node2", 1), ("node3", 0)))
    # not in the top class any more: the fallback is not taken
    assert _select("vm:100", "none", _compiled(rule), ss) == "node2"


def test_negative_affinity_separates_including_move_targets() -> None:
    rule = ResourceAffinityRule("apart", ("vm:100", "vm:101", "vm:102"), "negative")
    ss: SS = {
        "vm:100": {"state": "recovery", "node": "dead"},
        "vm:101": {"state": "migrate", "node": "node1", "target": "node2"},
        "vm:102": {"state": "stopped", "node": "node3"},  # stopped occupies nothing
    }
    compiled = _compiled(rule)
    together, separate = get_resource_affinity("vm:100", compiled, ss, set(NODES))
    assert together == {} and separate == {"node1", "node2"}
    assert _select("vm:100", "best-score", compiled, ss) == "node3"


def test_positive_affinity_majority_node_and_moving_partner_counts_at_target() -> None:
    rule = ResourceAffinityRule("together", ("vm:100", "vm:101", "vm:102", "vm:103"), "positive")
    ss: SS = {
        "vm:100": {"state": "recovery", "node": "dead"},
        "vm:101": {"state": "started", "node": "node3"},
        "vm:102": {"state": "migrate", "node": "node3", "target": "node2"},
        "vm:103": {"state": "started", "node": "node2"},
    }
    compiled = _compiled(rule)
    together, _ = get_resource_affinity("vm:100", compiled, ss, set(NODES))
    assert together == {"node2": 2, "node3": 1}
    assert _select("vm:100", "best-score", compiled, ss) == "node2"
    ss["vm:102"] = {"state": "started", "node": "node1"}
    assert _select("vm:100", "best-score", compiled, ss) == "node1"  # 1:1:1 -> name


def test_stay_shortcut_respects_negative_partner_on_current_node() -> None:
    rule = ResourceAffinityRule("apart", ("vm:100", "vm:101"), "negative")
    ss: SS = {
        "vm:100": {"state": "started", "node": "node1"},
        "vm:101": {"state": "started", "node": "node1"},
    }
    compiled = _compiled(rule)
    assert _select("vm:100", "none", compiled, ss, failback=False) == "node2"
    assert _select("vm:101", "none", compiled, ss, failback=False) == "node2"


def test_unknown_preference_raises() -> None:
    with pytest.raises(ValueError, match="unknown node preference"):
        _select("vm:1", "best", EMPTY_COMPILED, {"vm:1": {"state": "started", "node": "node1"}})
