"""Automatic rebalancing and resource-affinity-aware motions (pve-ha-semantics §4.8-§4.9).

Theory of operation, one manage round (only modes static/dynamic, not while disarmed):

1. :func:`motion_pending` — while any service moves (or has a queued move) the round is
   skipped: the hold counter neither grows nor resets.
2. :func:`imbalance` of the node loads (load = (cpu/maxcpu + mem/maxmem) / 2; raw
   coefficient of variation, population std-dev, as proxmox-resource-scheduling 2.0).
3. :func:`next_hold_counter` — above the threshold for ``hold_duration`` consecutive
   rounds before acting.
4. :func:`stationary_bundles` — started services with their started positive partners on
   one node, each with its possible target nodes.
5. :func:`select_move` — bruteforce (lowest resulting imbalance) or TOPSIS, then the
   margin check. :func:`plan_auto_rebalance` chains 2-5 for the engine.
6. The engine queues the move like a user command through :func:`resource_motion`,
   which also yields the negative-affinity rejection and the positive co-movers (§4.9).

Pure and deterministic: inputs in, decisions and log texts out.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pvha.core.placement import get_node_affinity, get_resource_affinity
from pvha.core.rules import CompiledRules
from pvha.core.scheduler import ServiceStats, add_cpu, topsis_scores
from pvha.core.states import MOVING_STATES

__all__ = [
    "Bundle",
    "MotionPlan",
    "Move",
    "NodeLoad",
    "RebalancePlan",
    "imbalance",
    "motion_pending",
    "next_hold_counter",
    "plan_auto_rebalance",
    "resource_motion",
    "select_move",
    "stationary_bundles",
]


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """Used and total cpu (cores) and memory (bytes) of one node."""

    cpu: float
    maxcpu: float
    mem: float
    maxmem: float

    @property
    def load(self) -> float:
        """(cpu share + memory share) / 2, the figure the imbalance is computed over."""
        return (self.cpu / self.maxcpu + self.mem / self.maxmem) / 2.0


@dataclass(frozen=True, slots=True)
class Bundle:
    """Services that must move together: ``leader`` (smallest sid) and all ``members``
    on ``node``; ``usage`` per member (cpu, mem) as the move would shift it."""

    leader: str
    members: tuple[str, ...]
    node: str
    usage: tuple[tuple[float, float], ...]
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Move:
    """A chosen rebalancing move of a bundle, led by ``sid``."""

    sid: str
    source: str
    target: str
    members: tuple[str, ...]
    before: float
    after: float

    def log_line(self) -> str:
        """PVE's info line, e.g. ``auto rebalance - migrate vm:101 to node2 (...)``."""
        return (
            f"auto rebalance - {task_for(self.sid)} {self.sid} to {self.target}"
            f" (expected change for imbalance from {self.before:.2f} to {self.after:.2f})"
        )

    @property
    def command(self) -> str:
        """The crm command to queue, e.g. ``migrate vm:101 node2``."""
        return f"{task_for(self.sid)} {self.sid} {self.target}"


def task_for(sid: str) -> str:
    """VMs migrate live, everything else relocates."""
    return "migrate" if sid.split(":", 1)[0] == "vm" else "relocate"


# --------------------------------------------------------------------------- imbalance


def imbalance(loads: Sequence[NodeLoad]) -> float:
    """Coefficient of variation of node loads (std-dev / mean, population std-dev).

    Fewer than 2 nodes or a zero total load -> 0. Not clamped: all load on one of three
    nodes gives sqrt(2) = 1.41 (PVE 5.2.0 expectations).
    """
    if len(loads) < 2:
        return 0.0
    values = [n.load for n in loads]
    total = 0.0
    for v in values:
        total += v
    if total == 0.0:
        return 0.0
    count = float(len(values))
    mean = total / count
    sq = 0.0
    for v in values:
        sq += (v - mean) * (v - mean)
    return math.sqrt(sq / count) / mean


def _truncate(value: float) -> float:
    """Cut float noise so equal moves tie exactly (15 decimal places, toward zero)."""
    return math.trunc(value * 1e15) / 1e15


def next_hold_counter(
    counter: int, current: float, threshold: float, hold_duration: int
) -> tuple[int, bool]:
    """(new counter, act now?) for one evaluated round.

    At or below ``threshold`` the counter resets. Above it the counter grows; when it
    reaches ``hold_duration`` the round acts and the counter restarts from 0. Rounds
    skipped by :func:`motion_pending` must not call this (the counter stays).
    """
    if current <= threshold:
        return 0, False
    counter += 1
    if counter < hold_duration:
        return counter, False
    return 0, True


def motion_pending(ss: Mapping[str, Mapping[str, Any]]) -> bool:
    """True while a service migrates/relocates or has a queued migrate/relocate command.

    O(len(ss)); the engine may instead track it while running its FSM pass.
    """
    for sd in ss.values():
        if sd.get("state") in ("migrate", "relocate"):
            return True
        cmd = sd.get("cmd")
        if cmd and cmd[0] in ("migrate", "relocate"):
            return True
    return False


# --------------------------------------------------------------------------- candidates


def stationary_bundles(
    ss: Mapping[str, Mapping[str, Any]],
    compiled: CompiledRules,
    online_nodes: Collection[str],
    stats: Mapping[str, ServiceStats],
    mode: str,
) -> list[Bundle]:
    """Movable bundles, sorted by leader sid (§4.8 step 3).

    Every ``started`` service on an online node forms a bundle with its ``started``
    positive partners; bundles whose members sit on several nodes, or with a partner
    in a moving state, are skipped. Targets: the preferred node-affinity class of every
    member (online), minus nodes of negative partners, minus the bundle's node. A bundle
    without targets is dropped. Usage per member: static mode (maxcpu, maxmem), dynamic
    mode measured (cpu, mem); missing stats count as zero.
    """
    seen: set[str] = set()
    out: list[Bundle] = []
    for sid in sorted(ss):
        sd = ss[sid]
        if sid in seen or sd.get("state") != "started" or sd.get("node") not in online_nodes:
            continue
        partners = [p for p in sorted(compiled.positive.get(sid, ())) if p in ss]
        if any(ss[p].get("state") in MOVING_STATES for p in partners):
            continue
        members = sorted([sid] + [p for p in partners if ss[p].get("state") == "started"])
        seen.update(members)
        node = str(sd["node"])
        if any(ss[m].get("node") != node for m in members):
            continue
        targets = _bundle_targets(members, node, ss, compiled, online_nodes)
        if not targets:
            continue
        usage = tuple(_member_usage(stats.get(m), mode) for m in members)
        out.append(Bundle(members[0], tuple(members), node, usage, targets))
    return out


def _member_usage(st: ServiceStats | None, mode: str) -> tuple[float, float]:
    if st is None:
        return 0.0, 0.0
    return (st.maxcpu, st.maxmem) if mode == "static" else (st.cpu, st.mem)


def _bundle_targets(
    members: Sequence[str],
    node: str,
    ss: Mapping[str, Mapping[str, Any]],
    compiled: CompiledRules,
    online_nodes: Collection[str],
) -> tuple[str, ...]:
    allowed: set[str] | None = None
    forbidden: set[str] = set()
    for m in members:
        _, preferred = get_node_affinity(m, compiled, online_nodes)
        allowed = set(preferred) if allowed is None else allowed & preferred
        _, separate = get_resource_affinity(m, compiled, ss, online_nodes)
        forbidden |= separate
    if not allowed:
        return ()
    return tuple(sorted(allowed - forbidden - {node}))


# --------------------------------------------------------------------------- selection


def _moved(loads: Mapping[str, NodeLoad], bundle: Bundle, target: str) -> dict[str, NodeLoad]:
    """Node loads after moving ``bundle`` to ``target`` (usage leaves source, joins target)."""
    src, dst = loads[bundle.node], loads[target]
    cpu_out = cpu_in = mem = 0.0
    for cpu, m in bundle.usage:
        cpu_out += add_cpu(0.0, src.maxcpu, cpu)
        cpu_in += add_cpu(0.0, dst.maxcpu, cpu)
        mem += m
    out = dict(loads)
    out[bundle.node] = NodeLoad(src.cpu - cpu_out, src.maxcpu, src.mem - mem, src.maxmem)
    out[target] = NodeLoad(dst.cpu + cpu_in, dst.maxcpu, dst.mem + mem, dst.maxmem)
    return out


def _ordered(loads: Mapping[str, NodeLoad]) -> list[NodeLoad]:
    return [loads[n] for n in sorted(loads)]


def _alternative(loads: Sequence[NodeLoad]) -> tuple[float, float, float, float]:
    """TOPSIS criteria of a cluster state, as for start scoring (1 + rms / 1 + max)."""
    n = float(len(loads))
    hi_c = sq_c = hi_m = sq_m = 0.0
    for nl in loads:
        c, m = nl.cpu / nl.maxcpu, nl.mem / nl.maxmem
        hi_c, hi_m = max(hi_c, c), max(hi_m, m)
        sq_c += c * c
        sq_m += m * m
    return 1.0 + math.sqrt(sq_c / n), 1.0 + hi_c, 1.0 + math.sqrt(sq_m / n), 1.0 + hi_m


def select_move(
    loads: Mapping[str, NodeLoad],
    bundles: Sequence[Bundle],
    method: str = "bruteforce",
    margin: float = 0.1,
) -> Move | None:
    """Best single move, or None when none improves by at least ``margin`` (fraction).

    bruteforce: lowest resulting imbalance (truncated to 15 decimals), ties by leader
    sid, source node, target node. topsis: best TOPSIS closeness of the resulting
    cluster states, ties by leader sid then target node (first in that order wins).
    ``loads`` = every online node.
    """
    before = imbalance(_ordered(loads))
    candidates = [
        (b, t, _moved(loads, b, t))
        for b in sorted(bundles, key=lambda b: b.leader)
        for t in b.targets
    ]
    if not candidates or before == 0.0:
        return None
    if method == "topsis":
        scores = topsis_scores([_alternative(_ordered(after)) for _, _, after in candidates])
        best_i = max(range(len(candidates)), key=lambda i: (scores[i], -i))
        bundle, target, after = candidates[best_i]
        new = imbalance(_ordered(after))
    else:
        ranked = sorted(
            (
                (_truncate(imbalance(_ordered(after))), b.leader, b.node, t, b)
                for b, t, after in candidates
            ),
            key=lambda x: (x[0], x[1], x[2], x[3]),
        )
        new, _, _, target, bundle = ranked[0]
    if (before - new) / before < margin:
        return None
    return Move(bundle.leader, bundle.node, target, bundle.members, before, new)


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    """Outcome of one evaluated round: new hold counter, the move (if any), log lines."""

    counter: int
    imbalance: float
    move: Move | None
    log: tuple[str, ...]


def plan_auto_rebalance(
    *,
    counter: int,
    loads: Mapping[str, NodeLoad],
    ss: Mapping[str, Mapping[str, Any]],
    compiled: CompiledRules,
    stats: Mapping[str, ServiceStats],
    mode: str,
    threshold: float,
    hold_duration: int,
    method: str,
    margin: float,
) -> RebalancePlan:
    """One auto-rebalance evaluation (call only when not :func:`motion_pending`).

    ``loads``: static mode — the static usage model's node figures
    (``StaticUsage.node_loads()``); dynamic — the measured node stats. The engine
    logs ``plan.log`` at info level and queues ``plan.move.command`` through
    :func:`resource_motion` (which yields the co-moving partners).
    """
    current = imbalance(_ordered(loads))
    counter, act = next_hold_counter(counter, current, threshold, hold_duration)
    if not act:
        return RebalancePlan(counter, current, None, ())
    bundles = stationary_bundles(ss, compiled, loads.keys(), stats, mode)
    move = select_move(loads, bundles, method, margin)
    return RebalancePlan(counter, current, move, (move.log_line(),) if move else ())


# --------------------------------------------------------------------------- motions


@dataclass(frozen=True, slots=True)
class MotionPlan:
    """What ``migrate|relocate <sid> <target>`` does under resource affinity (§4.9).

    ``error`` set -> reject (log it at err level, queue nothing). Else log
    ``got crm command: <cmd>``, queue it on ``sid`` and on each of ``partners`` with
    the matching line of ``partner_log`` (info).
    """

    error: str | None
    partners: tuple[str, ...]
    partner_log: tuple[str, ...]


def resource_motion(
    cmd: str,
    task: str,
    sid: str,
    target: str,
    *,
    compiled: CompiledRules,
    ss: Mapping[str, Mapping[str, Any]],
) -> MotionPlan:
    """Check negative partners on/moving to ``target``; list positive co-movers.

    ``cmd`` is the full command text (``migrate vm:101 node2``), ``task`` its verb.
    """
    for partner in sorted(compiled.negative.get(sid, ())):
        sd = ss.get(partner)
        if sd is not None and target in (sd.get("node"), sd.get("target")):
            return MotionPlan(
                f"crm command '{cmd}' error - service '{partner}' on node '{target}'"
                f" in negative affinity with service '{sid}'",
                (),
                (),
            )
    partners = tuple(
        p
        for p in sorted(compiled.positive.get(sid, ()))
        if p in ss and target not in (ss[p].get("node"), ss[p].get("target"))
    )
    log = tuple(
        f"crm command '{cmd}' - {task} service '{p}' to node '{target}'"
        f" (service '{p}' in positive affinity with service '{sid}')"
        for p in partners
    )
    return MotionPlan(None, partners, log)
