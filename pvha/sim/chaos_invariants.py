"""Safety invariants checked after every simulator step (``pvha sim chaos``).

Theory of operation. A :class:`Monitor` is registered on
:attr:`pvha.sim.runner.Simulator.step_hooks`: after every step (one CRM or LRM
iteration, the hardware checks after a node, one cmdlist command) it takes a
:class:`World` snapshot of what the step may have changed and hands the snapshots before
and after the step to each invariant. An invariant returns the messages of what it
found; the monitor stops the run at the first one (:class:`Stop`).

The invariants read the simulated hardware (which guest runs where, whose config lives
where, who holds which lock, power) and the manager status the daemons exchange; they
never ask the core. The one exception is which node-affinity rules are in force: PVE
drops infeasible rules and pulls positive partners into node rules (semantics §4.3),
and :class:`StrictAffinity` asks :func:`pvha.core.rules.compile_rules` for the effective
rules instead of re-deriving PVE's rule checks (which the rules tests pin down).

* ``double-run``: no guest runs on two nodes at once, unless one of the two runs is
  an instance no fence protects (:func:`unmanaged`): PVE itself recovers such a guest
  from a node that is cut off, e.g. after ``disarm-ha`` and ``arm-ha``, and pvha keeps
  PVE's behaviour. The monitor records those runs in :attr:`Monitor.accepted`.
* ``fence-proof``: a guest's config moves (a recovery) only when its old node was
  fenced after the guest was last placed there in a live state: the master took the
  node's agent lock when it was free or expired (or still holds it from such a take),
  or pvha power fencing got the node's power read back as off. A take of a lock held by
  another node before its expiry is a violation on its own. Moves by the LRM of the
  node that has the guest (a migration) and by the administrator's cmdlist need none.
  At the move the guest must not run on the old node (unless it is unprotected there).
* ``strict-affinity``: an LRM starts a guest only on a node its strict node-affinity
  rule allows, unless the manager status the LRM acted on shows that the CRM could not
  have placed it elsewhere: no allowed node could take it (none ``online``, or every
  online one occupied by a negative-affinity partner; PVE then leaves the service where
  it is and starts it there, §4.4, §4.5), or the guest's node itself was neither
  ``online`` nor ``maintenance`` (PVE does not place a ``started`` service whose node
  is gone, it only fences it later, §3.3: when that node returns, e.g. powered on after
  the others, its LRM starts the guest there and the next CRM round moves it).
* ``start-authorized``: an LRM starts a guest only if the manager status says
  ``started`` on that very node.
* ``internal-error``: no daemon logs ``got unexpected error`` other than the cluster
  filesystem errors of ``cfs ... fail`` and an expired watchdog (a daemon held by
  ``skip-round`` for more than 60 s; PVE's simulator dies the same way).

``replay`` (the same scenario logs byte-identically twice) is checked by
:mod:`pvha.sim.chaos`, around whole runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pvha.config import parse_groups_text, parse_rules_text
from pvha.core.model import NodeAffinityRule, Resource
from pvha.core.rules import compile_rules
from pvha.sim.hardware import CFS_ERROR, LOCK_TIMEOUT, Hardware

# which nodes a service occupies in each state (semantics §4.5 step 2)
_OCCUPY_NODE = frozenset(
    {"started", "request_stop", "fence", "freeze", "error", "recovery", "migrate", "relocate"}
)
_OCCUPY_TARGET = frozenset({"migrate", "relocate", "request_start_balance"})
_NOT_LIVE = frozenset({"fence", "recovery"})
_NOT_ACTIVE = frozenset({"stopped", "freeze", "error", "request_start"})  # for the LRM
_AGENT_LOCK = re.compile(r"^ha_agent_(.+)_lock$")
_UNEXPECTED = "got unexpected error - "
_ALLOWED_ERRORS = (CFS_ERROR, "wdog expired")


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    time: int
    origin: str
    message: str

    def line(self) -> str:
        return f"{self.invariant}: t={self.time} after {self.origin}: {self.message}"


class Stop(Exception):
    """Raised out of the simulator's step hook at the first violation."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.line())
        self.violation = violation


@dataclass(slots=True)
class World:
    """What one step may change, as plain data (one snapshot per step)."""

    time: int
    running: dict[str, tuple[str, ...]]  # sid -> nodes where its running flag is set
    config_node: dict[str, str]  # sid -> node of its config
    locks: dict[str, tuple[str, int]]  # lock -> (holder, last renewal)
    power: dict[str, str]
    ms: Mapping[str, Any]  # the manager status as written (never mutated in place)
    new_log: Sequence[str] = ()  # log lines the step wrote
    # nodes with an open watchdog other than their CRM's: left unfed, it resets the node
    armed: frozenset[str] | None = None  # None: not observed (every node counts as armed)

    def is_armed(self, node: str) -> bool:
        return self.armed is None or node in self.armed


def snapshot(hw: Hardware, new_log: Sequence[str] = (),
             crm_watchdogs: Iterable[str | None] | None = None) -> World:
    """The world after a step; ``crm_watchdogs``: the handles the CRMs hold (a master's
    watchdog protects no guest), None to leave :attr:`World.armed` unobserved."""
    running: dict[str, list[str]] = {}
    for node in hw.nodes:
        for sid, flag in (hw.service_status.get(node) or {}).items():
            if flag:
                running.setdefault(sid, []).append(node)
    return World(
        time=hw.cur_time,
        running={sid: tuple(nodes) for sid, nodes in running.items()},
        config_node={sid: str(cd.get("node")) for sid, cd in hw.service_config.items()},
        locks={name: (str(d["node"]), int(d["time"])) for name, d in hw.locks.items()},
        power={n: str(hw.status[n].get("power") or "off") for n in hw.nodes},
        ms=hw.manager_status,
        new_log=new_log,
        armed=None if crm_watchdogs is None else frozenset(
            str(wd["node"]) for wid, wd in hw.watchdogs.items()
            if wid not in set(crm_watchdogs)),
    )


@dataclass(frozen=True, slots=True)
class Step:
    """One step: its origin, the worlds before and after it, and the guest instances
    (sid, node) running outside HA's protection after it (see :func:`unmanaged`)."""

    hw: Hardware
    origin: str
    before: World
    after: World
    unmanaged: frozenset[tuple[str, str]] = frozenset()

    @property
    def daemon_node(self) -> str | None:
        """The node whose CRM or LRM ran in this step, else None."""
        node, _, daemon = self.origin.partition("/")
        return node if daemon in ("crm", "lrm") else None

    def starts(self) -> list[tuple[str, str]]:
        """(sid, node) whose running flag this step set."""
        out: list[tuple[str, str]] = []
        for sid, nodes in sorted(self.after.running.items()):
            was = self.before.running.get(sid, ())
            out.extend((sid, n) for n in nodes if n not in was)
        return out


class Invariant(Protocol):
    name: str

    def check(self, step: Step) -> Iterable[str]: ...


def _services(ms: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    return ms.get("service_status") or {}


def unmanaged(before: World, world: World, was: frozenset[tuple[str, str]]
              ) -> frozenset[tuple[str, str]]:
    """The running guest instances (sid, node) that no fence protects after ``world``
    (``was``: those of ``before``).

    PVE's fence proof, the dead node's agent lock, proves the node's guests dead only
    while that node's LRM holds the lock: it feeds its watchdog with every renewal, and a
    node cut off stops renewing and is reset before the lock expires (semantics §5.3).
    An instance is *protected* once the node's own LRM holds the lock, with a watchdog
    open on the node, while the manager status, armed, places the guest there. It
    becomes unprotected when that LRM releases the lock (the lock disappears) or closes
    its watchdog (the last one not the CRM's) with the guest still running and HA not
    counting it as active there: the stack is disarmed (a disarmed LRM releases lock and watchdog,
    §6.7), the service is ``freeze`` (an LRM restart), ``stopped``, ``error`` or
    ``request_start`` there, or not managed at all (``ignored``, deleted). A guest that
    HA has placed on another node while it still runs here is no reason: that is the
    unsafe recovery the invariants look for.
    A guest running before HA manages it (initial running flags, ``service add ... 1``)
    starts unprotected. A release while HA counts the guest as active there keeps it
    protected, so a lock given up too early still shows as a violation.

    PVE takes a free lock as the proof for any node, so an unprotected guest on a node
    that is cut off is recovered while it still runs, e.g. after ``arm-ha``, or when the
    CRM unfreezes a service because the node's last LRM status says ``active`` though
    the node is gone. That is PVE's behaviour (pvha keeps it): :class:`DoubleRun` and
    :class:`FenceProof` accept it for unprotected instances."""
    ms = world.ms
    ss = _services(ms)
    disarm = ms.get("disarm")
    out: set[tuple[str, str]] = set()
    for sid, nodes in world.running.items():
        sd = ss.get(sid)
        for node in nodes:
            key = (sid, node)
            name = f"ha_agent_{node}_lock"
            lock = world.locks.get(name)
            holds = (lock is not None and lock[0] == node
                     and world.time - lock[1] <= LOCK_TIMEOUT and world.is_armed(node))
            if holds and disarm is None and sd is not None and sd.get("node") == node:
                continue  # protected
            if key in was or node not in before.running.get(sid, ()):
                if key in was or sd is None or not holds:
                    out.add(key)  # still unprotected, or running outside HA from the start
                continue
            prev = before.locks.get(name)
            released = prev is not None and prev[0] == node and lock is None
            released |= before.is_armed(node) and not world.is_armed(node)
            if released and (disarm is not None or sd is None
                             or (sd.get("node") == node and sd.get("state") in _NOT_ACTIVE)):
                out.add(key)
    return frozenset(out)


# ---------------------------------------------------------------------- the invariants
class DoubleRun:
    """No guest runs on two nodes, unless one of them is an unmanaged instance (PVE
    recovers a guest whose node it cannot have fenced, see :func:`unmanaged`)."""

    name = "double-run"

    def check(self, step: Step) -> Iterable[str]:
        for sid, nodes in sorted(step.after.running.items()):
            if len(nodes) > 1 and not any((sid, n) in step.unmanaged for n in nodes):
                yield f"{sid} runs on {', '.join(sorted(nodes))}"


@dataclass
class FenceProof:
    """See the module docstring. ``proofs[node]`` = last time a master (still) held the
    node's agent lock through a valid take, or power fencing verified it off;
    ``live[sid]`` = (time, node) of the last manager status showing the service on a
    node in a state other than ``fence``/``recovery`` (the time it stopped showing it)."""

    name = "fence-proof"
    proofs: dict[str, int] = field(default_factory=dict)
    live: dict[str, tuple[int, str]] = field(default_factory=dict)

    def check(self, step: Step) -> Iterable[str]:
        yield from self._locks(step)
        yield from self._moves(step)
        if step.after.ms is not step.before.ms:
            # the old status was in force until now, the new one from now on
            for ms in (step.before.ms, step.after.ms):
                for sid, sd in _services(ms).items():
                    if sd.get("state") not in _NOT_LIVE and sd.get("node"):
                        self.live[sid] = (step.after.time, str(sd["node"]))

    def _power_proof(self, hw: Hardware, node: str, power: Mapping[str, str]) -> bool:
        fencing = hw.fencing
        return fencing is not None and fencing.has_device(node) and power[node] == "off"

    def _locks(self, step: Step) -> Iterable[str]:
        before, after = step.before, step.after
        for name, (holder, renewed) in sorted(after.locks.items()):
            m = _AGENT_LOCK.match(name)
            if not m or holder == m.group(1):
                continue
            node = m.group(1)
            prev = before.locks.get(name)
            if prev == (holder, renewed):
                continue  # untouched in this step
            if prev is not None and prev[0] != holder:
                age = after.time - prev[1]
                if age <= LOCK_TIMEOUT and not self._power_proof(step.hw, node, after.power):
                    yield (f"{holder} took the agent lock of {node} from {prev[0]} "
                           f"{age} s after its last renewal (lifetime {LOCK_TIMEOUT} s), "
                           "without a verified power-off")
                    continue
            self.proofs[node] = after.time

    def _moves(self, step: Step) -> Iterable[str]:
        before, after = step.before, step.after
        for sid, new in sorted(after.config_node.items()):
            old = before.config_node.get(sid)
            if old is None or old == new:
                continue
            if step.origin == f"{old}/lrm" or step.origin == "cmdlist":
                continue  # a migration by the guest's own node, or the administrator
            if step.daemon_node is None or not step.origin.endswith("/crm"):
                yield f"config of {sid} moved {old} -> {new} outside any daemon ({step.origin})"
                continue
            live_at, live_node = self.live.get(sid, (None, None))
            proof = self.proofs.get(old)
            if live_node == old and (proof is None or live_at is None or proof < live_at):
                yield (f"{sid} recovered {old} -> {new} without a fence proof for {old} "
                       f"since it was last placed there (t={live_at}; last proof: "
                       f"{'none' if proof is None else f't={proof}'})")
            if old in after.running.get(sid, ()) and (sid, old) not in step.unmanaged:
                yield f"{sid} recovered {old} -> {new} while it still runs on {old}"


@dataclass
class StrictAffinity:
    """See the module docstring; ``allowed`` caches the effective strict node sets per
    (rules, groups, group memberships, node table)."""

    name = "strict-affinity"
    _cache: dict[Any, tuple[dict[str, frozenset[str]], Mapping[str, frozenset[str]]]] = (
        field(default_factory=dict))

    def rules(self, hw: Hardware, nodes: Sequence[str]
              ) -> tuple[dict[str, frozenset[str]], Mapping[str, frozenset[str]]]:
        """(sid -> allowed nodes of its strict rule, sid -> negative partners)."""
        members = tuple(sorted((sid, cd.get("group")) for sid, cd in hw.service_config.items()
                               if cd.get("group") is not None))
        written = hw.rules_written
        key = (id(written) if written is not None else hw.rules_text, hw.groups_text,
               members, tuple(nodes))
        if key not in self._cache:
            rules = dict(written) if written is not None else (
                parse_rules_text(hw.rules_text, "rules_config") if hw.rules_text.strip()
                else {})
            groups = parse_groups_text(hw.groups_text, "groups") if hw.groups_text.strip() \
                else {}
            resources = {sid: Resource.from_config(sid, cd)
                         for sid, cd in hw.read_service_config().items()}
            res = compile_rules(rules, groups, resources, list(nodes))
            allowed: dict[str, frozenset[str]] = {}
            for rule in res.rules.values():
                if isinstance(rule, NodeAffinityRule) and rule.strict and not rule.disable:
                    for sid in rule.resources:
                        allowed[sid] = frozenset(dict(rule.nodes))
            self._cache[key] = (allowed, res.compiled.negative)
        return self._cache[key]

    def check(self, step: Step) -> Iterable[str]:
        if step.daemon_node is None or not step.origin.endswith("/lrm"):
            return
        starts = step.starts()
        if not starts:
            return
        ms = step.after.ms
        ns: Mapping[str, str] = ms.get("node_status") or {}
        ss = _services(ms)
        allowed, negative = self.rules(step.hw, sorted(ns))
        for sid, node in starts:
            ok = allowed.get(sid)
            if ok is None or node in ok or ns.get(node) not in ("online", "maintenance"):
                continue
            usable = [n for n in sorted(ok) if ns.get(n) == "online"
                      and n not in occupied(ss, negative.get(sid, frozenset()))]
            if usable:
                yield (f"{sid} started on {node}, which its strict rule forbids (allowed: "
                       f"{', '.join(sorted(ok))}), while {', '.join(usable)} could take it")


def occupied(ss: Mapping[str, Mapping[str, Any]], sids: Iterable[str]) -> set[str]:
    """Nodes the services ``sids`` occupy in ``ss`` (semantics §4.5 step 2)."""
    out: set[str] = set()
    for sid in sids:
        sd = ss.get(sid)
        if sd is None:
            continue
        state = sd.get("state")
        if state in _OCCUPY_NODE and sd.get("node"):
            out.add(str(sd["node"]))
        if state in _OCCUPY_TARGET and sd.get("target"):
            out.add(str(sd["target"]))
    return out


class StartAuthorized:
    name = "start-authorized"

    def check(self, step: Step) -> Iterable[str]:
        if step.daemon_node is None or not step.origin.endswith("/lrm"):
            return
        ss = _services(step.after.ms)
        for sid, node in step.starts():
            sd = ss.get(sid) or {}
            if sd.get("state") != "started" or sd.get("node") != node:
                yield (f"{sid} started on {node} while the manager status says "
                       f"{sd.get('state')!r} on {sd.get('node')!r}")


class InternalError:
    name = "internal-error"

    def check(self, step: Step) -> Iterable[str]:
        for line in step.after.new_log:
            at = line.find(_UNEXPECTED)
            if at >= 0 and not any(e in line for e in _ALLOWED_ERRORS):
                yield line[at:]


InvariantFactory = Callable[[], Invariant]
DEFAULT_INVARIANTS: tuple[InvariantFactory, ...] = (
    DoubleRun, FenceProof, StrictAffinity, StartAuthorized, InternalError,
)


class Monitor:
    """The step hook: snapshots, runs every invariant, raises :class:`Stop` at the
    first violation (recorded in :attr:`violation`)."""

    def __init__(self, hw: Hardware, invariants: Sequence[Invariant],
                 crm_watchdogs: Callable[[], Iterable[str | None]] | None = None) -> None:
        """``crm_watchdogs`` returns the watchdog handles the CRMs hold (see
        :func:`snapshot`); without it every node counts as having its watchdog open."""
        self.crm_watchdogs = crm_watchdogs
        self.invariants = list(invariants)
        self.steps = 0
        # guests run twice the way PVE does (an unprotected instance, see unmanaged())
        self.accepted: set[str] = set()
        self.violation: Violation | None = None
        self._seen = len(hw.log_sink.lines)
        self._world = self._snapshot(hw, ())
        # guests already running at the start run outside HA until an LRM takes them
        self.unmanaged = unmanaged(replace(self._world, running={}), self._world, frozenset())

    def _snapshot(self, hw: Hardware, new_log: Sequence[str]) -> World:
        crm = None if self.crm_watchdogs is None else self.crm_watchdogs()
        return snapshot(hw, new_log, crm)

    def __call__(self, hw: Hardware, origin: str) -> None:
        self.steps += 1
        lines = hw.log_sink.lines
        after = self._snapshot(hw, lines[self._seen:])
        self._seen = len(lines)
        self.unmanaged = unmanaged(self._world, after, self.unmanaged)
        if self.unmanaged:
            for sid, nodes in after.running.items():
                if len(nodes) > 1 and any((sid, n) in self.unmanaged for n in nodes):
                    self.accepted.add(sid)
        step = Step(hw, origin, self._world, after, self.unmanaged)
        self._world = after
        for inv in self.invariants:
            for message in inv.check(step):
                self.violation = Violation(inv.name, after.time, origin, message)
                raise Stop(self.violation)
