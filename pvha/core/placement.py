"""Choosing a node for a service (pve-ha-semantics §4.4-§4.5, PVE ``select_service_node``).

Theory of operation: the node-affinity rule of a service gives the *allowed* online
nodes and, among them, the *preferred* class (highest priority). Resource affinity
narrows that class: nodes of negative partners are removed, and if positive partners
already sit on some remaining node the class shrinks to their majority node. Then, in
order: the maintenance fallback node, the current node (preference ``none``), and
finally the best scheduler score (ties by node name); ``try-next`` walks on from the
current node through the sorted list, skipping nodes that already failed.

:func:`explain_service_node` says why: it calls :func:`select_service_node` for the
choice and attributes every node the same steps left out to the step that did.

Cost per call: O(#partners + #nodes · log #nodes) plus one usage scoring when the
current node cannot be kept. No scan over all services.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pvha.core.rules import CompiledRules
from pvha.core.scheduler import Usage, used_service_nodes

__all__ = [
    "PREFERENCES",
    "NodeChoice",
    "explain_service_node",
    "get_node_affinity",
    "get_resource_affinity",
    "select_service_node",
]

PREFERENCES = ("none", "best-score", "try-next")


def _as_set(nodes: Collection[str]) -> frozenset[str] | set[str]:
    return nodes if isinstance(nodes, (frozenset, set)) else frozenset(nodes)


def _preferred(
    prios: Mapping[str, int] | None, online: frozenset[str] | set[str]
) -> frozenset[str] | set[str]:
    """Highest-priority class of the online rule nodes (all online nodes without rule)."""
    if prios is None:
        return online
    top: int | None = None
    best: list[str] = []
    for node, prio in prios.items():
        if node not in online:
            continue
        if top is None or prio > top:
            top, best = prio, [node]
        elif prio == top:
            best.append(node)
    return frozenset(best)


def get_node_affinity(
    sid: str, compiled: CompiledRules, online_nodes: Collection[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """(allowed, preferred) online nodes for ``sid`` (§4.4).

    Without a rule both are all online nodes. With one: allowed = rule nodes that are
    online (non-strict rules include every cluster node at priority -1), preferred =
    those with the highest priority among them. Empty when a strict rule has no member
    online.
    """
    online = _as_set(online_nodes)
    prios = compiled.node_affinity.get(sid)
    allowed = online if prios is None else {n for n in prios if n in online}
    return frozenset(allowed), frozenset(_preferred(prios, online))


def get_resource_affinity(
    sid: str,
    compiled: CompiledRules,
    ss: Mapping[str, Mapping[str, Any]],
    online_nodes: Collection[str],
) -> tuple[dict[str, int], set[str]]:
    """(together, separate) for ``sid`` from its partners' current status (§4.5 step 2).

    ``together[node]`` = positive partners on ``node`` (a moving partner counts at its
    target only, PVE fix #6801); ``separate`` = nodes a negative partner occupies (source
    and target of a move). Only online nodes count.
    """
    together: dict[str, int] = {}
    separate: set[str] = set()
    for partner in compiled.positive.get(sid, ()):
        sd = ss.get(partner)
        if sd is None:
            continue
        current, target = used_service_nodes(sd.get("state", ""), sd.get("node"), sd.get("target"))
        where = target if target is not None else current
        if where is not None and where in online_nodes:
            together[where] = together.get(where, 0) + 1
    for partner in compiled.negative.get(sid, ()):
        sd = ss.get(partner)
        if sd is None:
            continue
        for where in used_service_nodes(sd.get("state", ""), sd.get("node"), sd.get("target")):
            if where is not None and where in online_nodes:
                separate.add(where)
    return together, separate


def _majority(together: Mapping[str, int], candidates: Collection[str]) -> str | None:
    """Node with most positive partners among ``candidates``; ties by node name."""
    best: tuple[int, str] | None = None
    for node in sorted(together):
        if node in candidates and (best is None or together[node] > best[0]):
            best = (together[node], node)
    return None if best is None else best[1]


def select_service_node(
    sid: str,
    preference: str,
    *,
    compiled: CompiledRules,
    usage: Usage,
    ss: Mapping[str, Mapping[str, Any]],
    current_node: str | None,
    online_nodes: Collection[str] | None = None,
    failed_nodes: Iterable[str] = (),
    maintenance_node: str | None = None,
    failback: bool = True,
) -> str | None:
    """The node ``sid`` should run on, or None when no node qualifies (§4.5).

    * ``preference``: ``none`` (keep the current node when it is fine), ``best-score``
      (best scored node, ignore the current node; recovery, rebalance-on-start) or
      ``try-next`` (start-failure relocation: skip ``failed_nodes``, then take the node
      after the current one in score order, wrapping to the first).
    * ``online_nodes`` defaults to ``usage.node_set`` (nodes whose CRM state is
      ``online``); pass a set if anything (a list is converted on every call).
    * ``ss`` = service status (only the partners of ``sid`` are looked at);
      ``current_node``, ``failed_nodes``, ``maintenance_node`` come from ``ss[sid]``;
      ``failback`` is the *effective* failback (``RulesResult.failback``).

    The result is always an online, allowed node, or None; under ``try-next`` never a
    failed node. Raises ValueError for an unknown preference.
    """
    if preference not in PREFERENCES:
        raise ValueError(f"unknown node preference '{preference}'")
    online = usage.node_set if online_nodes is None else _as_set(online_nodes)
    prios = compiled.node_affinity.get(sid)
    pri = _preferred(prios, online)
    if not pri:
        return None
    if sid in compiled.positive or sid in compiled.negative:
        together, separate = get_resource_affinity(sid, compiled, ss, online)
    else:
        together, separate = {}, set()
    if (
        preference == "none"
        and not failback
        and current_node in online
        and (prios is None or current_node in prios)
        and (current_node in together or current_node not in separate)
    ):
        return current_node
    pri = _narrow(pri, preference, failed_nodes, together, separate)
    if maintenance_node is not None and maintenance_node in pri:
        return maintenance_node
    if preference == "none" and current_node in pri:
        return current_node
    if not pri:
        return None
    scores = usage.score_nodes_to_start_service(sid)
    ranked = sorted(pri, key=lambda n: (scores.get(n, 0.0), n))
    if preference == "try-next" and current_node is not None and current_node in pri:
        idx = ranked.index(current_node)
        if idx < len(ranked) - 1:
            return ranked[idx + 1]
    return ranked[0]


def _narrow(
    pri: frozenset[str] | set[str],
    preference: str,
    failed_nodes: Iterable[str],
    together: Mapping[str, int],
    separate: set[str],
) -> frozenset[str] | set[str]:
    """§4.5 steps 4-5: drop failed (try-next) and separated nodes, then keep only the
    positive partners' majority node if one remains. Copies only when removing, so the
    common path stays allocation-free."""
    if preference == "try-next" and failed_nodes:
        pri = pri - set(failed_nodes)
    if separate:
        pri = pri - separate
    majority = _majority(together, pri)
    return pri if majority is None else {majority}


@dataclass(frozen=True, slots=True)
class NodeChoice:
    """:func:`explain_service_node`'s answer.

    * ``chosen`` — what :func:`select_service_node` returns; ``why`` — which of its
      branches picked it: ``maintenance`` (the fallback node), ``nofailback`` (the
      current node kept although not preferred), ``current`` (the current node is a
      candidate), ``score`` (best score), ``next`` (try-next: after the current node in
      score order), or ``none`` (no node qualifies).
    * ``excluded`` — node -> (reason, detail) for every node of ``nodes`` that is not a
      candidate; reasons: ``offline`` (not online for placement), ``not-in-rule``,
      ``lower-priority`` (detail: its priority, and the top one), ``tried`` (try-next,
      a failed node), ``negative`` (detail: the negative partners on it),
      ``positive`` (detail: the node the positive partners hold, which wins).
    * ``candidates`` — the nodes left, best score first (ties by name); ``scores`` their
      scheduler scores (lower is better).
    """

    chosen: str | None
    why: str
    excluded: Mapping[str, tuple[str, str]]
    candidates: tuple[str, ...]
    scores: Mapping[str, float]


def explain_service_node(
    sid: str,
    preference: str,
    *,
    compiled: CompiledRules,
    usage: Usage,
    ss: Mapping[str, Mapping[str, Any]],
    current_node: str | None,
    nodes: Collection[str],
    online_nodes: Collection[str] | None = None,
    failed_nodes: Iterable[str] = (),
    maintenance_node: str | None = None,
    failback: bool = True,
) -> NodeChoice:
    """Why :func:`select_service_node` (same arguments; ``nodes`` = every node to
    account for, online or not) picks what it picks: the choice is its own, and each
    node it did not consider is attributed to the step of §4.5 that removed it, computed
    by the same helpers (:func:`get_resource_affinity`, ``_preferred``, ``_narrow``).
    Pure; one scoring of the usage model."""
    failed = tuple(failed_nodes)
    chosen = select_service_node(
        sid, preference, compiled=compiled, usage=usage, ss=ss, current_node=current_node,
        online_nodes=online_nodes, failed_nodes=failed, maintenance_node=maintenance_node,
        failback=failback,
    )
    online = usage.node_set if online_nodes is None else _as_set(online_nodes)
    prios = compiled.node_affinity.get(sid)
    pri = _preferred(prios, online)
    together, separate = get_resource_affinity(sid, compiled, ss, online)
    narrowed = _narrow(pri, preference, failed, together, separate) if pri else frozenset()
    top = max((prios[n] for n in pri), default=0) if prios is not None else 0
    excluded: dict[str, tuple[str, str]] = {}
    for node in sorted(set(nodes) | set(online)):
        if node in narrowed:
            continue
        if node not in online:
            excluded[node] = ("offline", "")
        elif prios is not None and node not in prios:
            excluded[node] = ("not-in-rule", "")
        elif node not in pri:
            excluded[node] = ("lower-priority", f"priority {prios[node]} < {top}"
                              if prios is not None else "")
        elif preference == "try-next" and node in failed:
            excluded[node] = ("tried", "")
        elif node in separate:
            excluded[node] = ("negative", ", ".join(_partners_on(sid, node, compiled, ss)))
        else:
            # _narrow kept only the positive partners' majority node
            excluded[node] = ("positive", ", ".join(sorted(narrowed)))
    scores = usage.score_nodes_to_start_service(sid) if narrowed else {}
    ranked = tuple(sorted(narrowed, key=lambda n: (scores.get(n, 0.0), n)))
    if chosen is None:
        why = "none"
    elif chosen == maintenance_node and chosen in narrowed:
        why = "maintenance"
    elif chosen == current_node and preference == "none":
        why = "current" if chosen in narrowed else "nofailback"
    elif ranked and chosen == ranked[0]:
        why = "score"
    else:
        why = "next"
    return NodeChoice(chosen, why, excluded, ranked, {n: scores.get(n, 0.0) for n in ranked})


def _partners_on(
    sid: str, node: str, compiled: CompiledRules, ss: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The negative partners of ``sid`` that occupy ``node`` (as a source or target)."""
    out = []
    for partner in sorted(compiled.negative.get(sid, ())):
        sd = ss.get(partner)
        if sd is not None and node in used_service_nodes(
            sd.get("state", ""), sd.get("node"), sd.get("target")
        ):
            out.append(partner)
    return out
