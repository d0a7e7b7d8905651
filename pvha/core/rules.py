"""HA rules: legacy groups, feasibility checks, transforms and the compiled form.

Theory of operation (pve-ha-semantics §4.2-§4.3, PVE ``PVE::HA::Rules``):

1. Legacy groups become node-affinity rules ``ha-group-<group>`` in memory, and the
   effective ``failback`` of a grouped resource is ``not group.nofailback``.
2. Feasibility: every check runs over the same set of *enabled* rules; each failing
   rule collects one reason per finding. All failing rules are dropped together and
   one ``Drop rule '<id>', because <reason>.`` line is logged per reason, sorted by
   rule id (reasons of one rule in check order).
3. Transforms on what is left: connected positive resource-affinity rules are merged
   into ``_merged-<id>-<id>...``; implicit negative rules are inferred for positive
   partners of negatively bound resources; a positive set touching one node-affinity
   rule pulls all its members into that rule.
4. Compilation: ``sid -> {node: priority}`` (non-strict rules fill every other
   cluster node in at -1) and ``positive``/``negative`` partner sets per sid.

Everything here is pure: no IO, deterministic (sorted) iteration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pvha.core.model import Group, NodeAffinityRule, Resource, ResourceAffinityRule, Rule

__all__ = [
    "EMPTY_COMPILED",
    "CompiledRules",
    "RulesResult",
    "compile_rules",
    "effective_failback",
    "groups_to_rules",
    "next_rule_order",
]

# Reason texts, exactly as PVE logs them (after "because ").
R_NA_DUPLICATE = "resource '{sid}' is already used in another node affinity rule"
R_RA_INEFFECTIVE = "rule is ineffective as there are less than two resources"
R_NEG_TOO_MANY = "rule defines more resources than available nodes"
R_POS_SHARES_NEG = "rule shares two or more resources with a negative resource affinity rule"
R_NEG_SHARES_POS = "rule shares two or more resources with a positive resource affinity rule"
R_RA_MULTI_PRIO = "resources are in node affinity rules with multiple priorities"
R_NA_MULTI_PRIO = (
    "resources are in a resource affinity rule and cannot be in a node affinity rule"
    " with multiple priorities"
)
R_POS_MULTI_NA = "resources are in multiple node affinity rules"
R_NA_POS_SPLIT = (
    "at least one resource is in a positive resource affinity rule and there are other"
    " resources in at least one other node affinity rule already"
)
R_NEG_TOO_FEW_NODES = (
    "two or more resources are restricted to less nodes than available to the resources"
)
R_NA_NEG_TOO_FEW = (
    "at least one resource is in a negative resource affinity rule and this rule would"
    " restrict these to less nodes than available to the resources"
)


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """What placement reads. Built once per config/node-set change, then shared.

    ``node_affinity[sid]`` maps node -> priority (higher is preferred); a sid without
    an entry may run on every online node. ``positive[sid]``/``negative[sid]`` are the
    partner sids (never containing ``sid`` itself); missing key = no partners.
    """

    node_affinity: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    positive: Mapping[str, frozenset[str]] = field(default_factory=dict)
    negative: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """PVE's compiled-rules JSON shape (as printed by its rules test harness)."""
        return {
            "node-affinity": {
                sid: {"nodes": {n: {"priority": p} for n, p in sorted(nodes.items())}}
                for sid, nodes in sorted(self.node_affinity.items())
            },
            "resource-affinity": {
                "negative": _partners_json(self.negative),
                "positive": _partners_json(self.positive),
            },
        }


EMPTY_COMPILED = CompiledRules()


def _partners_json(partners: Mapping[str, frozenset[str]]) -> dict[str, dict[str, int]]:
    return {sid: {p: 1 for p in sorted(ps)} for sid, ps in sorted(partners.items()) if ps}


@dataclass(frozen=True, slots=True)
class RulesResult:
    """Result of :func:`compile_rules`.

    * ``compiled`` — for placement.
    * ``log`` — the ``Drop rule ...`` lines (without trailing newline), in PVE order.
    * ``failback`` — effective failback per configured sid (groups override).
    * ``rules`` — the effective rule set after drops and transforms, disabled rules
      included, each with its ``order`` (for ``rules`` listings / check reports).
    * ``dropped`` — rule id -> reasons, for the check report.
    """

    compiled: CompiledRules
    log: tuple[str, ...]
    failback: Mapping[str, bool]
    rules: Mapping[str, Rule]
    dropped: Mapping[str, tuple[str, ...]]


# --------------------------------------------------------------------------- groups


def groups_to_rules(
    groups: Mapping[str, Group],
    resources: Mapping[str, Resource],
    first_order: int = 1,
) -> dict[str, NodeAffinityRule]:
    """Convert legacy groups into node-affinity rules ``ha-group-<id>`` (§4.2).

    ``resources`` = every configured resource naming the group (sorted sids); groups
    without members still produce a rule (it compiles to nothing). References to
    non-existent groups are ignored. Orders continue from ``first_order``.
    """
    members: dict[str, list[str]] = {}
    for sid in sorted(resources):
        group = resources[sid].group
        if group is not None and group in groups:
            members.setdefault(group, []).append(sid)
    out: dict[str, NodeAffinityRule] = {}
    for order, gid in enumerate(sorted(groups), start=first_order):
        g = groups[gid]
        rid = f"ha-group-{gid}"
        out[rid] = NodeAffinityRule(
            id=rid,
            resources=tuple(members.get(gid, ())),
            nodes=g.nodes,
            strict=g.restricted,
            comment=g.comment if g.comment is not None else f"Generated from HA group '{gid}'.",
            order=order,
        )
    return out


def effective_failback(
    resources: Mapping[str, Resource], groups: Mapping[str, Group]
) -> dict[str, bool]:
    """failback per sid: ``not nofailback`` of an existing group, else the resource's own."""
    out: dict[str, bool] = {}
    for sid, res in resources.items():
        group = groups.get(res.group) if res.group is not None else None
        out[sid] = (not group.nofailback) if group is not None else res.failback
    return out


# --------------------------------------------------------------------------- helpers


def _res(rule: Rule) -> frozenset[str]:
    return frozenset(rule.resources)


def _split(
    rules: Mapping[str, Rule],
) -> tuple[
    dict[str, NodeAffinityRule], dict[str, ResourceAffinityRule], dict[str, ResourceAffinityRule]
]:
    """Enabled rules by kind, each dict in sorted id order: (node, positive, negative)."""
    na: dict[str, NodeAffinityRule] = {}
    pos: dict[str, ResourceAffinityRule] = {}
    neg: dict[str, ResourceAffinityRule] = {}
    for rid in sorted(rules):
        r = rules[rid]
        if r.disable:
            continue
        if isinstance(r, NodeAffinityRule):
            na[rid] = r
        elif r.affinity == "positive":
            pos[rid] = r
        elif r.affinity == "negative":
            neg[rid] = r
    return na, pos, neg


@dataclass(frozen=True, slots=True)
class _Component:
    """A connected set of positive rules (sharing resources), ids in BFS order."""

    ruleids: tuple[str, ...]
    resources: frozenset[str]


def _positive_components(pos: Mapping[str, ResourceAffinityRule]) -> list[_Component]:
    """Connected components of positive rules, BFS from the smallest id, neighbours sorted.

    PVE's merged ids (``_merged-a-c-d-b-e``) follow this traversal order.
    """
    ids = sorted(pos)
    by_sid: dict[str, list[str]] = {}
    for rid in ids:
        for sid in _res(pos[rid]):
            by_sid.setdefault(sid, []).append(rid)
    seen: set[str] = set()
    comps: list[_Component] = []
    for start in ids:
        if start in seen:
            continue
        seen.add(start)
        order, queue, members = [start], [start], set(_res(pos[start]))
        while queue:
            rid = queue.pop(0)
            neighbours = sorted({n for sid in _res(pos[rid]) for n in by_sid[sid]} - seen)
            for n in neighbours:
                seen.add(n)
                order.append(n)
                queue.append(n)
                members |= _res(pos[n])
        comps.append(_Component(tuple(order), frozenset(members)))
    return comps


def _priorities(rule: NodeAffinityRule) -> set[int]:
    return {p for _, p in rule.nodes}


def _by_sid(rules: Mapping[str, Rule]) -> dict[str, list[str]]:
    """sid -> ids of the given rules naming it (in the rules' iteration order)."""
    index: dict[str, list[str]] = {}
    for rid, rule in rules.items():
        for sid in _res(rule):
            index.setdefault(sid, []).append(rid)
    return index


def _touching(index: Mapping[str, list[str]], sids: Iterable[str]) -> list[str]:
    """Sorted ids of the indexed rules naming any of ``sids``."""
    return sorted({rid for sid in sids for rid in index.get(sid, ())})


# --------------------------------------------------------------------------- feasibility


class _Errors:
    """rule id -> reasons, in push order (= check order), like PVE's error collector."""

    def __init__(self) -> None:
        self.by_rule: dict[str, list[str]] = {}

    def push(self, rid: str, reason: str) -> None:
        self.by_rule.setdefault(rid, []).append(reason)


def _check_node_affinity(na: Mapping[str, NodeAffinityRule], errors: _Errors) -> None:
    """Check 1: a resource may be referenced by one node-affinity rule only."""
    users: dict[str, list[str]] = {}
    for rid, rule in na.items():
        for sid in _res(rule):
            users.setdefault(sid, []).append(rid)
    conflicts = sorted((rid, sid) for sid, rids in users.items() if len(rids) > 1 for rid in rids)
    for rid, sid in conflicts:
        errors.push(rid, R_NA_DUPLICATE.format(sid=sid))


def _check_resource_affinity(
    pos: Mapping[str, ResourceAffinityRule],
    neg: Mapping[str, ResourceAffinityRule],
    comps: Sequence[_Component],
    node_count: int,
    errors: _Errors,
) -> None:
    """Checks 2-4: ineffective rules, too many negatives, positive/negative overlap."""
    for rid in sorted({**pos, **neg}):
        if len(_res(pos.get(rid) or neg[rid])) < 2:
            errors.push(rid, R_RA_INEFFECTIVE)
    for rid, rule in neg.items():
        if len(_res(rule)) > node_count:
            errors.push(rid, R_NEG_TOO_MANY)
    # One finding per (negative rule, positive component): the negative rule gets one
    # reason, every positive rule of the component one each.
    neg_index = _by_sid(neg)
    for comp in comps:
        for nid in _touching(neg_index, comp.resources):
            if len(comp.resources & _res(neg[nid])) < 2:
                continue
            errors.push(nid, R_NEG_SHARES_POS)
            for pid in comp.ruleids:
                errors.push(pid, R_POS_SHARES_NEG)


def _check_multi_priority(
    na: Mapping[str, NodeAffinityRule],
    ra: Mapping[str, ResourceAffinityRule],
    errors: _Errors,
) -> None:
    """Check 5: resource-affinity members must not be in multi-priority node rules."""
    multi = {nid: r for nid, r in na.items() if len(_priorities(r)) > 1}
    index = _by_sid(multi)
    conflicts = [(nid, rid) for rid, rrule in ra.items() for nid in _touching(index, _res(rrule))]
    for nid, rid in sorted(conflicts):
        errors.push(nid, R_NA_MULTI_PRIO)
        errors.push(rid, R_RA_MULTI_PRIO)


def _check_positive_vs_node(
    na: Mapping[str, NodeAffinityRule], comps: Sequence[_Component], errors: _Errors
) -> None:
    """Check 6: one positive set may touch at most one node-affinity rule."""
    index = _by_sid(na)
    for comp in comps:
        touching = _touching(index, comp.resources)
        if len(touching) < 2:
            continue
        for pid in comp.ruleids:
            errors.push(pid, R_POS_MULTI_NA)
        for nid in touching:
            errors.push(nid, R_NA_POS_SPLIT)


def _check_negative_vs_node(
    na: Mapping[str, NodeAffinityRule], neg: Mapping[str, ResourceAffinityRule], errors: _Errors
) -> None:
    """Check 7: strictly node-bound members of a negative rule need enough nodes.

    Only strict rules restrict (a non-strict rule lets a resource run anywhere).
    """
    index = _by_sid({nid: r for nid, r in na.items() if r.strict})
    for rid, rule in neg.items():
        bound: set[str] = set()
        allowed: set[str] = set()
        involved: list[str] = []
        for nid in _touching(index, _res(rule)):
            nrule = na[nid]
            common = _res(nrule) & _res(rule)
            bound |= common
            allowed |= {n for n, _ in nrule.nodes}
            involved.append(nid)
        if len(allowed) < len(bound):
            for nid in involved:
                errors.push(nid, R_NA_NEG_TOO_FEW)
            errors.push(rid, R_NEG_TOO_FEW_NODES)


def check_feasibility(
    rules: Mapping[str, Rule], nodes: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Run all checks over the enabled ``rules``; return rule id -> reasons (check order).

    Order of checks follows PVE: node-affinity plugin, resource-affinity plugin, then the
    inter-plugin checks. ``nodes`` = the nodes of the CRM node table.
    """
    na, pos, neg = _split(rules)
    comps = _positive_components(pos)
    errors = _Errors()
    _check_node_affinity(na, errors)
    _check_resource_affinity(pos, neg, comps, len(nodes), errors)
    _check_multi_priority(na, {**pos, **neg}, errors)
    _check_positive_vs_node(na, comps, errors)
    _check_negative_vs_node(na, neg, errors)
    return {rid: tuple(reasons) for rid, reasons in errors.by_rule.items()}


def drop_lines(dropped: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The log lines for :func:`check_feasibility`'s result, sorted by rule id."""
    return tuple(
        f"Drop rule '{rid}', because {reason}."
        for rid in sorted(dropped)
        for reason in dropped[rid]
    )


# --------------------------------------------------------------------------- transforms


def _next_ordinal(rules: Mapping[str, Rule]) -> int:
    """PVE's ``get_next_ordinal``: it sorts ascending and takes the *first* (minimum)
    order + 1 — a PVE bug the rules test expectations depend on (implicit rules get 2)."""
    return min((r.order for r in rules.values()), default=0) + 1


def _merge_positive(rules: dict[str, Rule]) -> None:
    """Replace each connected group of >= 2 enabled positive rules by one merged rule."""
    _, pos, _ = _split(rules)
    for comp in _positive_components(pos):
        if len(comp.ruleids) < 2:
            continue
        first = pos[comp.ruleids[0]]
        new_id = "_merged-" + "-".join(comp.ruleids)
        for rid in comp.ruleids:
            del rules[rid]
        rules[new_id] = ResourceAffinityRule(
            id=new_id,
            resources=tuple(sorted(comp.resources)),
            affinity="positive",
            order=first.order,
        )


def _implicit_negatives(rules: dict[str, Rule]) -> None:
    """Positive partners of a negatively bound resource inherit the negative binding."""
    _, pos, neg = _split(rules)
    pos_index = _by_sid(pos)
    new: list[tuple[str, str, str]] = []
    for nrule in neg.values():
        nres = _res(nrule)
        for pid in _touching(pos_index, nres):
            pres = _res(pos[pid])
            new.extend(
                (f"_implicit-negative-{pid}-{a}-{b}", a, b)
                for a in sorted(pres - nres)
                for b in sorted(nres - pres)
            )
    for rid, a, b in new:
        rules[rid] = ResourceAffinityRule(
            id=rid, resources=(a, b), affinity="negative", order=_next_ordinal(rules)
        )


def _infer_node_affinity(rules: dict[str, Rule]) -> None:
    """A positive set touching exactly one node-affinity rule: all members join it."""
    na, pos, _ = _split(rules)
    index = _by_sid(na)
    for prule in pos.values():
        pres = _res(prule)
        touching = _touching(index, pres)
        if len(touching) != 1:
            continue
        nid = touching[0]
        nrule = na[nid]
        merged = replace(nrule, resources=tuple(sorted(_res(nrule) | pres)))
        rules[nid] = merged
        na[nid] = merged


def transform(rules: Mapping[str, Rule]) -> dict[str, Rule]:
    """Apply merge, implicit negatives and node-affinity inference; returns a new dict."""
    out = dict(rules)
    _merge_positive(out)
    _implicit_negatives(out)
    _infer_node_affinity(out)
    return out


# --------------------------------------------------------------------------- compile


def compile_effective(rules: Mapping[str, Rule], nodes: Sequence[str]) -> CompiledRules:
    """Compile already checked and transformed rules (enabled ones only)."""
    na, pos, neg = _split(rules)
    node_affinity: dict[str, dict[str, int]] = {}
    for rule in na.values():
        prios = dict(rule.nodes)
        if not rule.strict:
            for n in nodes:
                prios.setdefault(n, -1)
        for sid in sorted(_res(rule)):
            node_affinity[sid] = prios
    return CompiledRules(
        node_affinity=node_affinity,
        positive=_partners(pos.values()),
        negative=_partners(neg.values()),
    )


def _partners(rules: Iterable[ResourceAffinityRule]) -> dict[str, frozenset[str]]:
    acc: dict[str, set[str]] = {}
    for rule in rules:
        members = _res(rule)
        if len(members) < 2:
            continue
        for sid in members:
            acc.setdefault(sid, set()).update(members - {sid})
    return {sid: frozenset(ps) for sid, ps in sorted(acc.items())}


def compile_rules(
    rules: Mapping[str, Rule],
    groups: Mapping[str, Group],
    resources: Mapping[str, Resource],
    nodes: Sequence[str],
) -> RulesResult:
    """Groups -> rules, feasibility checks, transforms, compile (one call per change).

    ``rules`` = rules.cfg (rule id -> rule, ``order`` set by the parser); ``groups`` =
    groups.cfg; ``resources`` = resources.cfg (for group membership and failback);
    ``nodes`` = every node of the CRM node table (online or not; used for the -1
    fillers of non-strict rules and for the "more resources than nodes" check).

    Cost: O(rules × rules + resources); call it when config or node set changed, not
    per service.
    """
    all_rules: dict[str, Rule] = dict(rules)
    if groups:
        all_rules.update(groups_to_rules(groups, resources, next_rule_order(rules)))
    dropped = check_feasibility(all_rules, nodes)
    kept = {rid: r for rid, r in all_rules.items() if rid not in dropped}
    effective = transform(kept)
    return RulesResult(
        compiled=compile_effective(effective, nodes),
        log=drop_lines(dropped),
        failback=effective_failback(resources, groups),
        rules=effective,
        dropped=dropped,
    )


def next_rule_order(rules: Mapping[str, Rule]) -> int:
    """The ``order`` after the highest one of ``rules`` (1 for none): where rules made
    from groups go."""
    return max((r.order for r in rules.values()), default=0) + 1
