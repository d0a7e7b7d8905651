"""Properties of select_service_node over random clusters (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pvha.core.model import NodeAffinityRule, ResourceAffinityRule, Rule
from pvha.core.placement import get_node_affinity, select_service_node
from pvha.core.rebalance import NodeLoad, imbalance, select_move, stationary_bundles
from pvha.core.rules import EMPTY_COMPILED, compile_rules
from pvha.core.scheduler import BasicUsage, ServiceStats, recompute_usage

ALL_NODES = ("node1", "node2", "node3", "node4", "node5")
SIDS = tuple(f"vm:10{i}" for i in range(6))
STATES = ("started", "stopped", "migrate", "relocate", "request_start", "recovery", "fence")

node_st = st.sampled_from(ALL_NODES)


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, Any]:
    online = draw(st.sets(node_st, min_size=1))
    ss: dict[str, dict[str, Any]] = {}
    for sid in SIDS:
        state = draw(st.sampled_from(STATES))
        sd: dict[str, Any] = {"state": state, "node": draw(node_st)}
        if state in ("migrate", "relocate"):
            sd["target"] = draw(node_st)
        ss[sid] = sd
    rules: dict[str, Rule] = {}
    if draw(st.booleans()):
        nodes = draw(st.lists(st.tuples(node_st, st.integers(-1, 3)), min_size=1, max_size=4))
        rules["na"] = NodeAffinityRule(
            "na", (SIDS[0], SIDS[1]), tuple(dict(nodes).items()), strict=draw(st.booleans())
        )
    if draw(st.booleans()):
        members = draw(st.sets(st.sampled_from(SIDS[1:]), min_size=2, max_size=3))
        rules["ra"] = ResourceAffinityRule(
            "ra", tuple(sorted(members)), draw(st.sampled_from(("positive", "negative")))
        )
    failed = draw(st.lists(node_st, max_size=3))
    return {"online": online, "ss": ss, "rules": rules, "failed": failed}


@settings(max_examples=300, deadline=None)
@given(
    clusters(),
    st.sampled_from(("none", "best-score", "try-next")),
    st.booleans(),
    st.one_of(st.none(), node_st),
)
def test_selected_node_is_online_allowed_and_not_failed(
    cluster: dict[str, Any], pref: str, failback: bool, maintenance: str | None
) -> None:
    online = sorted(cluster["online"])
    compiled = compile_rules(cluster["rules"], {}, {}, ALL_NODES).compiled
    usage = recompute_usage(BasicUsage(online), cluster["ss"])
    sid = SIDS[1]
    current = cluster["ss"][sid]["node"]
    node = select_service_node(
        sid,
        pref,
        compiled=compiled,
        usage=usage,
        ss=cluster["ss"],
        current_node=current,
        failed_nodes=cluster["failed"],
        maintenance_node=maintenance,
        failback=failback,
    )
    allowed, preferred = get_node_affinity(sid, compiled, set(online))
    if node is None:
        return
    assert node in online and node in allowed
    if node != current or pref != "none":
        assert node in preferred
    if pref == "try-next":
        assert node not in cluster["failed"]


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_incremental_usage_matches_recompute(cluster: dict[str, Any]) -> None:
    online = sorted(cluster["online"])
    ss = cluster["ss"]
    usage = recompute_usage(BasicUsage(online), ss)
    for sid in SIDS[:3]:  # move a few services through a state change
        usage.remove_service_usage(sid)
        ss[sid] = {"state": "started", "node": online[0]}
        usage.add_service_usage(sid, "started", online[0])
    fresh = recompute_usage(BasicUsage(online), ss)
    assert usage.score_nodes_to_start_service("x") == fresh.score_nodes_to_start_service("x")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(ALL_NODES[:4]), min_size=1, max_size=8),
    st.lists(st.floats(0.5, 8.0), min_size=8, max_size=8),
    st.sampled_from(("bruteforce", "topsis")),
    st.floats(0.0, 0.5),
)
def test_rebalance_move_is_legal_and_improves_by_margin(
    placement: list[str], sizes: list[float], method: str, margin: float
) -> None:
    ss = {f"vm:{100 + i}": {"state": "started", "node": n} for i, n in enumerate(placement)}
    stats = {sid: ServiceStats(maxcpu=sizes[i], maxmem=sizes[i]) for i, sid in enumerate(ss)}
    nodes = ALL_NODES[:4]
    loads = {}
    for n in nodes:
        used = sum(stats[s].maxcpu for s, sd in ss.items() if sd["node"] == n)
        loads[n] = NodeLoad(used, 64.0, used, 64.0)
    bundles = stationary_bundles(ss, EMPTY_COMPILED, nodes, stats, "static")
    move = select_move(loads, bundles, method, margin)
    if move is None:
        return
    assert move.source == ss[move.sid]["node"] and move.target != move.source
    assert move.target in nodes
    assert move.before == imbalance([loads[n] for n in sorted(loads)])
    assert (move.before - move.after) / move.before >= margin
