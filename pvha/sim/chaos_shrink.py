"""Shrinking a failing chaos scenario to a minimal one (``pvha sim chaos``).

Theory of operation. Greedy passes over a :class:`~pvha.sim.chaos_gen.Spec`, each
proposing smaller candidates in a fixed order (so shrinking is deterministic): runs of
command batches (halves first, then smaller chunks), nodes, services, rules and groups,
single commands, and last the settings (datacenter keys, fence devices, service and
hardware properties, usage stats). A candidate is kept when ``test`` still reports the
violation (of the same invariant); passes repeat until none is kept or ``budget``
candidate runs are spent. Removing a node drops the commands naming it and moves its
services to the first remaining node; removing a service drops the commands and rule
entries naming it; a rule, group or fence device left without members is dropped too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pvha.sim.chaos_gen import Spec
from pvha.sim.chaos_invariants import Violation

Test = Callable[[Spec], Violation | None]


def shrink(spec: Spec, test: Test, budget: int = 400) -> tuple[Spec, Violation]:
    """The smallest failing spec found from ``spec`` (which must fail ``test``) and its
    violation."""
    violation = test(spec)
    if violation is None:
        raise ValueError("shrink needs a failing scenario")
    spent = 0
    progress = True
    while progress and spent < budget:
        progress = False
        for candidate in _candidates(spec):
            if spent >= budget:
                break
            if candidate.size() >= spec.size() or not candidate.legal():
                continue
            spent += 1
            found = test(candidate)
            if found is not None:
                spec, violation, progress = candidate, found, True
                break
    return spec, violation


def _candidates(spec: Spec) -> Iterator[Spec]:
    yield from _batch_chunks(spec)
    for node in reversed(spec.nodes):
        if len(spec.nodes) > 1:
            yield without_node(spec, node)
    for sid in sorted(spec.services, reverse=True):
        yield without_service(spec, sid)
    for i in reversed(range(len(spec.rules))):
        yield spec.copy(rules=spec.rules[:i] + spec.rules[i + 1:])
    for i in reversed(range(len(spec.groups))):
        yield without_group(spec, i)
    for b in reversed(range(len(spec.cmdlist))):
        for c in reversed(range(len(spec.cmdlist[b]))):
            batches = [list(x) for x in spec.cmdlist]
            del batches[b][c]
            yield spec.copy(cmdlist=batches)
    yield from _settings(spec)


def _batch_chunks(spec: Spec) -> Iterator[Spec]:
    n = len(spec.cmdlist)
    size = max(1, n // 2)
    while True:
        for start in range(n - size, -1, -size):
            yield spec.copy(cmdlist=spec.cmdlist[:start] + spec.cmdlist[start + size:])
        for start in range(n - size, -1, -size):
            # keep the timing of what follows: empty the batches instead
            cmdlist = [[] if start <= i < start + size else b
                       for i, b in enumerate(spec.cmdlist)]
            yield spec.copy(cmdlist=cmdlist)
        if size == 1:
            return
        size //= 2


def _names(cmd: str) -> set[str]:
    return set(cmd.split())


def _drop_commands(cmdlist: list[list[str]], name: str) -> list[list[str]]:
    return [[c for c in batch if name not in _names(c)] for batch in cmdlist]


def without_service(spec: Spec, sid: str) -> Spec:
    out = spec.copy()
    del out.services[sid]
    out.running = {n: [s for s in sids if s != sid] for n, sids in out.running.items()}
    out.running = {n: sids for n, sids in out.running.items() if sids}
    out.cmdlist = _drop_commands(out.cmdlist, sid)
    rules = []
    for rule in out.rules:
        rule["resources"] = [s for s in rule["resources"] if s != sid]
        if rule["resources"]:
            rules.append(rule)
    out.rules = rules
    for stats in (out.static_stats, out.dynamic_stats):
        if stats is not None:
            stats.pop(sid, None)
    return out


def without_node(spec: Spec, node: str) -> Spec:
    out = spec.copy()
    out.nodes = [n for n in out.nodes if n != node]
    out.hardware.pop(node, None)
    first = out.nodes[0]
    moved = out.running.pop(node, [])
    if moved:
        out.running.setdefault(first, []).extend(moved)
    for cd in out.services.values():
        if cd["node"] == node:
            cd["node"] = first
    out.cmdlist = _drop_commands(out.cmdlist, node)
    out.rules = [r for r in out.rules if _drop_node_key(r, node)]
    kept = [g for g in out.groups if _drop_node_key(g, node)]
    _forget_groups(out, {g["id"] for g in out.groups} - {g["id"] for g in kept})
    out.groups = kept
    fence = []
    for dev in out.fence:
        dev["nodes"] = [n for n in dev["nodes"] if n != node]
        if dev["nodes"]:
            fence.append(dev)
    out.fence = fence
    if not fence:
        _no_power_fencing(out)
    return out


def _drop_node_key(entry: dict[str, Any], node: str) -> bool:
    """Remove ``node`` from a rule's/group's nodes; False if none is left."""
    if "nodes" not in entry:
        return True
    entry["nodes"].pop(node, None)
    return bool(entry["nodes"])


def _forget_groups(spec: Spec, ids: set[str]) -> None:
    for cd in spec.services.values():
        if cd.get("group") in ids:
            del cd["group"]


def without_group(spec: Spec, index: int) -> Spec:
    out = spec.copy()
    gone = out.groups.pop(index)
    _forget_groups(out, {gone["id"]})
    return out


def _no_power_fencing(spec: Spec) -> None:
    pvha = spec.datacenter.get("pvha")
    if isinstance(pvha, dict) and pvha.get("fencing") == "power":
        del pvha["fencing"]
        spec.cmdlist = [[c for c in b if not c.startswith("bmc ")] for b in spec.cmdlist]


def _settings(spec: Spec) -> Iterator[Spec]:
    for section in sorted(spec.datacenter):
        if section == "pvha" and spec.datacenter[section].get("fencing") == "power":
            out = spec.copy(fence=[])
            _no_power_fencing(out)
            yield out
        out = spec.copy()
        del out.datacenter[section]
        if section == "pvha":
            out.fence = []
            out.cmdlist = [[c for c in b if not c.startswith("bmc ")] for b in out.cmdlist]
        yield out
        for key in sorted(spec.datacenter[section]):
            if section == "pvha" and key == "fencing":
                continue
            out = spec.copy()
            del out.datacenter[section][key]
            yield out
    if len(spec.fence) > 1:
        yield spec.copy(fence=spec.fence[:1])
    if spec.fence and (spec.datacenter.get("pvha") or {}).get("fencing") != "power":
        yield spec.copy(fence=[])
    for sid in sorted(spec.services):
        for key in sorted(spec.services[sid]):
            if key != "node":
                out = spec.copy()
                del out.services[sid][key]
                yield out
    for node in sorted(spec.hardware):
        yield spec.copy(hardware={n: h for n, h in spec.hardware.items() if n != node})
    for node in sorted(spec.running):
        yield spec.copy(running={n: s for n, s in spec.running.items() if n != node})
    if spec.static_stats is not None:
        yield spec.copy(static_stats=None)
    if spec.dynamic_stats is not None:
        yield spec.copy(dynamic_stats=None)
