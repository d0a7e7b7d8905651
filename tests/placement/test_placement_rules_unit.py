"""Rules compile pipeline: groups, failback, disabled rules, drops (semantics §4.2-§4.3)."""

from __future__ import annotations

from pvha.core.model import Group, NodeAffinityRule, Resource, ResourceAffinityRule, Rule
from pvha.core.rules import compile_rules, effective_failback, groups_to_rules

NODES = ("node1", "node2", "node3")


def test_groups_become_node_affinity_rules() -> None:
    groups = {
        "g1": Group("g1", (("node1", 2), ("node2", 0)), restricted=True, nofailback=True),
        "g2": Group("g2", (("node3", 0),), comment="mine"),
    }
    resources = {
        "vm:101": Resource("vm:101", group="g1"),
        "vm:102": Resource("vm:102", group="g1", failback=True),
        "vm:103": Resource("vm:103", group="missing", failback=False),
        "vm:104": Resource("vm:104"),
    }
    rules = groups_to_rules(groups, resources)
    assert rules["ha-group-g1"] == NodeAffinityRule(
        "ha-group-g1",
        ("vm:101", "vm:102"),
        (("node1", 2), ("node2", 0)),
        strict=True,
        comment="Generated from HA group 'g1'.",
        order=1,
    )
    assert rules["ha-group-g2"].resources == () and rules["ha-group-g2"].comment == "mine"
    res = compile_rules({}, groups, resources, NODES)
    assert res.compiled.node_affinity == {
        "vm:101": {"node1": 2, "node2": 0},
        "vm:102": {"node1": 2, "node2": 0},
    }
    assert res.failback == {"vm:101": False, "vm:102": False, "vm:103": False, "vm:104": True}
    assert effective_failback(resources, {}) == {
        "vm:101": True,
        "vm:102": True,
        "vm:103": False,
        "vm:104": True,
    }


def test_group_and_rule_on_one_resource_drop_both() -> None:
    groups = {"g": Group("g", (("node1", 0),))}
    resources = {"vm:101": Resource("vm:101", group="g")}
    rules = {"r": NodeAffinityRule("r", ("vm:101",), (("node2", 0),))}
    res = compile_rules(rules, groups, resources, NODES)
    assert res.log == (
        "Drop rule 'ha-group-g', because resource 'vm:101' is already used in another node affinity rule.",
        "Drop rule 'r', because resource 'vm:101' is already used in another node affinity rule.",
    )
    assert res.compiled.node_affinity == {}


def test_disabled_rules_are_kept_but_not_compiled_nor_checked() -> None:
    rules: dict[str, Rule] = {
        "a": NodeAffinityRule("a", ("vm:1",), (("node1", 0),), disable=True),
        "b": NodeAffinityRule("b", ("vm:1",), (("node2", 0),), strict=True),
        "c": ResourceAffinityRule("c", ("vm:1",), "negative", disable=True),
    }
    res = compile_rules(rules, {}, {}, NODES)
    assert res.log == () and set(res.rules) == {"a", "b", "c"}
    assert res.compiled.node_affinity == {"vm:1": {"node2": 0}}
    assert res.compiled.negative == {}


def test_non_strict_rule_fills_other_nodes_with_minus_one() -> None:
    rules = {"r": NodeAffinityRule("r", ("vm:1",), (("node2", 3),))}
    res = compile_rules(rules, {}, {}, NODES)
    assert res.compiled.node_affinity["vm:1"] == {"node1": -1, "node2": 3, "node3": -1}


def test_partner_maps_are_symmetric_and_exclude_self() -> None:
    rules: dict[str, Rule] = {
        "p": ResourceAffinityRule("p", ("vm:1", "vm:2"), "positive"),
        "n": ResourceAffinityRule("n", ("vm:2", "vm:3"), "negative"),
    }
    res = compile_rules(rules, {}, {}, NODES)
    assert res.compiled.positive == {"vm:1": {"vm:2"}, "vm:2": {"vm:1"}}
    # vm:1 inherits vm:2's negative binding (implicit rule)
    assert res.compiled.negative == {"vm:1": {"vm:3"}, "vm:2": {"vm:3"}, "vm:3": {"vm:1", "vm:2"}}
    assert "_implicit-negative-p-vm:1-vm:3" in res.rules
