"""Usage models (semantics §4.6): basic counts, static/dynamic TOPSIS, fallbacks."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pvha.core.scheduler import (
    BasicUsage,
    DynamicUsage,
    NodeStats,
    ServiceStats,
    StaticUsage,
    cluster_alternatives,
    make_usage,
    recompute_usage,
    topsis_scores,
    used_service_nodes,
)

NODES = ("node1", "node2", "node3")
GIB = 1024**3


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("started", ("n1", None)),
        ("request_stop", ("n1", None)),
        ("fence", ("n1", None)),
        ("freeze", ("n1", None)),
        ("error", ("n1", None)),
        ("recovery", ("n1", None)),
        ("migrate", ("n1", "n2")),
        ("relocate", ("n1", "n2")),
        ("request_start_balance", (None, "n2")),
        ("stopped", (None, None)),
        ("request_start", (None, None)),
    ],
)
def test_occupancy(state: str, expected: tuple[str | None, str | None]) -> None:
    assert used_service_nodes(state, "n1", "n2") == expected


def test_topsis_matches_hand_computation() -> None:
    # weights 1,2,5,10 / 18; columns / L2 norm; best = min, worst = max
    matrix = [[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0], [3.0, 3.0, 1.0, 1.0]]
    expected = [0.16590563496230298, 0.314193949752038, 0.8462365328791308]
    assert topsis_scores(matrix) == pytest.approx(expected, rel=1e-12)


def test_topsis_degenerate_cases() -> None:
    assert topsis_scores([]) == []
    assert topsis_scores([[1.0, 1.0, 1.0, 1.0]] * 3) == [0.0, 0.0, 0.0]
    dominated = topsis_scores([[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    assert dominated == [0.0, 1.0]


def test_cluster_alternatives_by_hand() -> None:
    # node1: 2/4 cpu, 50/100 mem; node2 empty; the service needs 1 cpu, 10 mem
    alts = cluster_alternatives([(2.0, 4.0, 50.0, 100.0), (0.0, 4.0, 0.0, 100.0)], (1.0, 10.0))
    assert alts[0] == pytest.approx(
        (1 + math.sqrt(0.75**2 / 2), 1.75, 1 + math.sqrt(0.6**2 / 2), 1.6)
    )
    assert alts[1] == pytest.approx(
        (1 + math.sqrt((0.25 + 0.0625) / 2), 1.5, 1 + math.sqrt((0.25 + 0.01) / 2), 1.5)
    )
    # maxcpu 0 means "all cores of the node"
    assert cluster_alternatives([(0.0, 4.0, 0.0, 1.0)], (0.0, 0.0))[0][1] == 2.0


def _static(ss: dict[str, dict[str, Any]]) -> StaticUsage:
    node_stats = {
        "node1": NodeStats(32, 100e9),
        "node2": NodeStats(32, 200e9),
        "node3": NodeStats(32, 300e9),
    }
    stats = {sid: ServiceStats(maxcpu=2, maxmem=4e9) for sid in ss}
    usage, log = make_usage("static", NODES, node_stats, stats)
    assert log == () and isinstance(usage, StaticUsage)
    recompute_usage(usage, ss)
    return usage


def test_static_prefers_node_with_most_free_memory() -> None:
    ss = {"vm:102": {"state": "recovery", "node": "gone"}}
    scores = _static(ss).score_nodes_to_start_service("vm:102")
    assert min(scores, key=lambda n: (scores[n], n)) == "node3"
    assert all(-1.0 <= s <= 0.0 for s in scores.values())  # negated closeness


def test_static_fallback_to_basic_when_node_stats_missing() -> None:
    usage, log = make_usage("static", NODES, {"node1": NodeStats(4, 8)}, {})
    assert isinstance(usage, BasicUsage)
    msg = "fallback to 'basic' scheduler mode, init for 'static' failed - no node stats for node 'node2'"
    assert log == (("warning", msg),)


def test_static_missing_service_stats_falls_back_to_counts() -> None:
    usage = _static({"vm:1": {"state": "started", "node": "node1"}})
    scores = usage.score_nodes_to_start_service("vm:999")
    assert scores == {"node1": 1.0, "node2": 0.0, "node3": 0.0}
    assert usage.messages[-1][0] == "err"
    assert (
        "unable to score nodes according to static usage for service 'vm:999'"
        in usage.messages[-1][1]
    )


def test_incremental_updates_equal_a_recompute() -> None:
    ss = {
        "vm:1": {"state": "started", "node": "node1"},
        "vm:2": {"state": "started", "node": "node1"},
        "vm:3": {"state": "request_start", "node": "node2"},
    }
    usage = _static(ss)
    usage.remove_service_usage("vm:2")
    ss["vm:2"] = {"state": "migrate", "node": "node1", "target": "node3"}
    usage.add_service_usage("vm:2", "migrate", "node1", "node3")
    usage.remove_service_usage("vm:3")
    ss["vm:3"] = {"state": "started", "node": "node2"}
    usage.add_service_usage("vm:3", "started", "node2")
    fresh = _static(ss)
    assert usage.node_loads() == fresh.node_loads()
    assert [usage.count(n) for n in NODES] == [2, 1, 1]
    assert usage.score_nodes_to_start_service("vm:9") == fresh.score_nodes_to_start_service("vm:9")


def test_remove_unknown_and_offline_nodes_are_ignored() -> None:
    usage = BasicUsage(NODES)
    usage.remove_service_usage("vm:1")
    usage.add_service_usage("vm:1", "started", "offline-node")
    assert [usage.count(n) for n in NODES] == [0, 0, 0]


def test_dynamic_counts_running_services_in_node_figures_only_once() -> None:
    node_stats = {n: NodeStats(24, 128 * GIB, cpu=4.0 if n == "node1" else 0.0) for n in NODES}
    stats = {
        "vm:1": ServiceStats(maxcpu=8, maxmem=8 * GIB, cpu=4.0, mem=2 * GIB),
        "vm:2": ServiceStats(maxcpu=6, maxmem=4 * GIB, cpu=1.0, mem=1 * GIB),
    }
    usage, _ = make_usage("dynamic", NODES, node_stats, stats)
    assert isinstance(usage, DynamicUsage)
    usage.add_service_usage("vm:1", "started", "node1", running=True)
    usage.add_service_usage("vm:2", "started", "node2", running=False)  # starting: max values
    loads = usage.node_loads()
    assert loads[0][0] == 4.0 and loads[1][0] == 6.0 and loads[1][2] == 4 * GIB
    usage.remove_service_usage("vm:1")
    usage.add_service_usage("vm:1", "migrate", "node1", "node3", running=True)
    assert usage.node_loads()[2][0] == 4.0  # measured use added at the target


def test_dynamic_running_from_stats_overrides_the_flag() -> None:
    node_stats = {n: NodeStats(24, 128 * GIB) for n in NODES}
    stats = {"vm:1": ServiceStats(maxcpu=8, maxmem=8 * GIB, cpu=4.0, mem=2 * GIB, running=True)}
    usage, _ = make_usage("dynamic", NODES, node_stats, stats)
    usage.add_service_usage("vm:1", "started", "node1", running=False)
    assert isinstance(usage, DynamicUsage) and usage.node_loads()[0][0] == 0.0
