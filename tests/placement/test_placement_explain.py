"""explain_service_node against select_service_node: the explanation's choice is the
placement's, every node is either a candidate or excluded with a reason that holds, and
an excluded node is irrelevant (taking it offline changes no choice)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pvha.core.model import NodeAffinityRule, ResourceAffinityRule
from pvha.core.placement import NodeChoice, explain_service_node, select_service_node
from pvha.core.rules import compile_rules
from pvha.core.scheduler import BasicUsage, recompute_usage, used_service_nodes
from tests.placement.test_placement_properties import ALL_NODES, SIDS, clusters, node_st


def _choose(cluster: dict[str, Any], online: set[str], pref: str, failback: bool,
            maintenance: str | None) -> tuple[NodeChoice, str | None, Any]:
    compiled = compile_rules(cluster["rules"], {}, {}, ALL_NODES).compiled
    usage = recompute_usage(BasicUsage(sorted(online)), cluster["ss"])
    args: dict[str, Any] = {"compiled": compiled, "usage": usage, "ss": cluster["ss"],
                            "current_node": cluster["ss"][SIDS[1]]["node"],
                            "failed_nodes": cluster["failed"],
                            "maintenance_node": maintenance, "failback": failback}
    choice = explain_service_node(SIDS[1], pref, nodes=ALL_NODES, **args)
    return choice, select_service_node(SIDS[1], pref, **args), compiled


@settings(max_examples=300, deadline=None)
@given(clusters(), st.sampled_from(("none", "best-score", "try-next")), st.booleans(),
       st.one_of(st.none(), node_st))
def test_the_explanation_agrees_with_the_placement(
    cluster: dict[str, Any], pref: str, failback: bool, maintenance: str | None
) -> None:
    online = set(cluster["online"])
    choice, node, compiled = _choose(cluster, online, pref, failback, maintenance)
    assert choice.chosen == node
    assert set(choice.candidates) | set(choice.excluded) == set(ALL_NODES)
    assert not set(choice.candidates) & set(choice.excluded)
    sid, ss = SIDS[1], cluster["ss"]
    prios = compiled.node_affinity.get(sid)
    for n, (reason, detail) in choice.excluded.items():
        if reason == "offline":
            assert n not in online
            continue
        assert n in online
        if reason == "not-in-rule":
            assert prios is not None and n not in prios
        elif reason == "lower-priority":
            assert prios is not None and prios[n] < max(prios[m] for m in prios if m in online)
        elif reason == "tried":
            assert pref == "try-next" and n in cluster["failed"]
        elif reason == "negative":
            partners = detail.split(", ")
            assert partners and all(p in compiled.negative[sid] and n in used_service_nodes(
                ss[p]["state"], ss[p]["node"], ss[p].get("target")) for p in partners)
        else:
            assert reason == "positive" and detail in choice.candidates
    if node is None:
        assert choice.why == "none" and choice.candidates == ()
        return
    if choice.why == "nofailback":
        assert pref == "none" and not failback and node == ss[sid]["node"]
    else:
        assert node in choice.candidates
    if choice.why == "score":
        assert node == choice.candidates[0]
        assert choice.scores[node] == min(choice.scores.values())
    # an excluded node is irrelevant: without it the choice is the same
    for n, (reason, _detail) in choice.excluded.items():
        if n in online and n != node:
            again, _, _ = _choose(cluster, online - {n}, pref, failback, maintenance)
            assert again.chosen == node, (n, reason)


def test_a_negative_partner_on_the_only_other_node_blocks_it() -> None:
    rules = {"apart": ResourceAffinityRule("apart", ("vm:100", "vm:101"), "negative")}
    compiled = compile_rules(rules, {}, {}, ("node1", "node2", "node3")).compiled
    ss = {"vm:100": {"state": "recovery", "node": "node1"},
          "vm:101": {"state": "started", "node": "node2"}}
    usage = recompute_usage(BasicUsage(["node2", "node3"]), ss)
    choice = explain_service_node("vm:100", "best-score", compiled=compiled, usage=usage,
                                  ss=ss, current_node="node1",
                                  nodes=("node1", "node2", "node3"))
    assert choice.chosen == "node3" and choice.why == "score"
    assert choice.excluded == {"node1": ("offline", ""), "node2": ("negative", "vm:101")}
    assert choice.candidates == ("node3",) and choice.scores == {"node3": 0.0}


def test_a_strict_rule_to_a_failed_node_leaves_no_node() -> None:
    rules = {"pin": NodeAffinityRule("pin", ("vm:100",), (("node1", 2), ("node2", 1)),
                                     strict=True)}
    compiled = compile_rules(rules, {}, {}, ("node1", "node2", "node3")).compiled
    ss = {"vm:100": {"state": "recovery", "node": "node1"}}
    usage = recompute_usage(BasicUsage(["node3"]), ss)
    choice = explain_service_node("vm:100", "best-score", compiled=compiled, usage=usage,
                                  ss=ss, current_node="node1",
                                  nodes=("node1", "node2", "node3"))
    assert choice.chosen is None and choice.why == "none" and choice.candidates == ()
    assert choice.excluded == {"node1": ("offline", ""), "node2": ("offline", ""),
                               "node3": ("not-in-rule", "")}
