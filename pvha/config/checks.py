"""What the HA manager will do with a change, decided before the CLI writes it (issue 8.6).

PVE's API refuses a rule the manager would drop, a move the manager would refuse, and a
resource that is not a guest of the cluster; pvha's CLI does the same, with PVE's words.
Rule feasibility is the engine's own :func:`pvha.core.rules.compile_rules` (the check
``pvha watch`` logs as ``Drop rule '<id>', because <reason>.``), so the CLI and the
manager cannot disagree. Moves follow the engine's crm-command handling
(``pvha.core.commands``): the target node must be online, and the engine's own
:func:`pvha.core.rebalance.resource_motion` decides on negative partners on or moving to
the target and names the positive partners that move along.

Everything here is pure: the caller gathers a :class:`Cluster` (the last
``manager_status`` and, when an API is configured, one live view) and these functions
raise :class:`~pvha.errors.UsageError` or return what to tell the user.

Node lists, and where they come from:

* *cluster nodes* (do the named nodes exist?): the API's member list, else the nodes of
  ``manager_status``'s ``node_status``, else unknown (not checked; the caller says so);
* *the CRM node table* (feasibility: "more resources than nodes"): ``node_status``, as
  PVE and the manager read it, else the API's members (what the manager's first round
  will see), else unknown (that one check is skipped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pvha.config.store import Snapshot
from pvha.core.model import NodeAffinityRule
from pvha.core.rebalance import resource_motion
from pvha.core.rules import R_NEG_TOO_MANY, RulesResult, compile_rules
from pvha.errors import UsageError

NO_NODES = "no API configured and no manager status yet"


@dataclass(frozen=True, slots=True)
class GuestFact:
    """A guest as ``/cluster/resources`` lists it (templates included)."""

    vmid: int
    type: str  # "vm" (qemu) or "ct" (lxc)
    node: str
    template: bool = False

    @property
    def sid(self) -> str:
        return f"{self.type}:{self.vmid}"


@dataclass(frozen=True, slots=True)
class ApiFacts:
    """One live view of the cluster, as the answering node ``local_node`` sees it."""

    local_node: str
    quorate: bool
    members: tuple[str, ...]
    online: frozenset[str]
    guests: Mapping[int, GuestFact]


@dataclass(frozen=True, slots=True)
class Cluster:
    """What the checks know: the last ``manager_status`` (``{}`` if none) and, when an
    API is configured, its live view (``api``)."""

    manager_status: Mapping[str, Any] = field(default_factory=dict)
    api: ApiFacts | None = None

    @property
    def node_states(self) -> dict[str, str]:
        """``node_status`` of the manager status: node -> CRM node state."""
        table = self.manager_status.get("node_status")
        if not isinstance(table, Mapping):
            return {}
        return {str(n): str(s) for n, s in table.items()}

    def service(self, sid: str) -> Mapping[str, Any] | None:
        """The manager's ``service_status`` entry of ``sid``, if any."""
        table = self.manager_status.get("service_status")
        entry = table.get(sid) if isinstance(table, Mapping) else None
        return entry if isinstance(entry, Mapping) else None

    @property
    def disarm_mode(self) -> str | None:
        disarm = self.manager_status.get("disarm")
        return str(disarm.get("mode")) if isinstance(disarm, Mapping) else None

    def cluster_nodes(self) -> tuple[str, ...] | None:
        """Nodes that exist: the API's members, else the node table, else None."""
        if self.api is not None:
            return self.api.members
        return tuple(sorted(self.node_states)) or None

    def table_nodes(self) -> tuple[str, ...] | None:
        """The CRM node table for feasibility: node_status, else the API's members."""
        return tuple(sorted(self.node_states)) or (self.api.members if self.api else None)


# --- rules ----------------------------------------------------------------------------------


def compiled(snap: Snapshot, nodes: Sequence[str] | None) -> RulesResult:
    """The engine's rules result for ``snap`` over ``nodes`` (None: unknown, as ``[]``)."""
    cfg = snap.ha_config()
    return compile_rules(cfg.rules, cfg.groups, cfg.resources, list(nodes or ()))


def dropped_rules(snap: Snapshot, nodes: Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    """Rule id -> the reasons the manager drops it for. With ``nodes`` None the node
    count is unknown, so "more resources than available nodes" is not counted."""
    out: dict[str, tuple[str, ...]] = {}
    for rid, reasons in compiled(snap, nodes).dropped.items():
        kept = tuple(r for r in reasons if nodes is not None or r != R_NEG_TOO_MANY)
        if kept:
            out[rid] = kept
    return out


def _rule_name(rid: str, snap: Snapshot) -> str:
    group = rid.removeprefix("ha-group-")
    if rid != group and group in snap.groups.entries and rid not in snap.rules.entries:
        return f"group '{group}'"
    return f"rule '{rid}'"


def check_rule_nodes(nodes: Sequence[str], cluster: Cluster) -> list[str]:
    """PVE's ``cannot use non-existent node(s) <list>.``; returns a note when the
    cluster's nodes are unknown."""
    known = cluster.cluster_nodes()
    if known is None:
        return [f"note: node names not checked ({NO_NODES})"]
    missing = [n for n in nodes if n not in known]
    if missing:
        raise UsageError(f"cannot use non-existent node(s) {', '.join(missing)}.")
    return []


def check_rule(before: Snapshot, after: Snapshot, rule: str, cluster: Cluster) -> list[str]:
    """Refuse ``rule`` in ``after`` when the manager would drop it (PVE: ``Rule '<id>'
    is invalid.``), naming the rules it conflicts with (those it drops along). Returns
    notes for checks that could not be made."""
    nodes = cluster.table_nodes()
    now = dropped_rules(after, nodes)
    reasons = now.get(rule)
    notes = []
    if nodes is None and _is_negative(after, rule):
        notes.append(f"note: node count not checked ({NO_NODES})")
    if not reasons:
        return notes
    was = dropped_rules(before, nodes)
    others = [_rule_name(r, after) for r in sorted(now) if r != rule and r not in was]
    text = "; ".join(reasons)
    if others:
        text += f" (conflicts with {', '.join(others)})"
    raise UsageError(f"Rule '{rule}' is invalid: {text}")


def _is_negative(snap: Snapshot, rule: str) -> bool:
    entry = snap.rules.entries.get(rule)
    return entry is not None and entry.values.get("affinity") == "negative"


def check_no_new_drops(before: Snapshot, after: Snapshot) -> None:
    """Refuse a resource or group change that makes the manager drop a rule it kept
    (a group is a node-affinity rule ``ha-group-<id>`` to the engine, §4.2). The node
    count is not involved: only rules' contents change here."""
    was = dropped_rules(before, None)
    new = {rid: r for rid, r in dropped_rules(after, None).items() if rid not in was}
    if not new:
        return
    parts = [f"{_rule_name(rid, after)} (because {'; '.join(r)})" for rid, r in sorted(new.items())]
    raise UsageError(f"the HA manager would drop {', '.join(parts)}")


# --- resources ------------------------------------------------------------------------------


def check_managed(snap: Snapshot, cluster: Cluster, sid: str) -> None:
    """PVE: a crm command needs an HA-managed resource (configured, not ``ignored``, the
    stack not disarmed in ``ignore`` mode) that is not in ``error``."""
    entry = snap.resources.entries.get(sid)
    if entry is None or entry.values.get("state") == "ignored" or cluster.disarm_mode == "ignore":
        raise UsageError(f"resource '{sid}' is not HA managed")
    check_not_in_error(cluster, sid)


def check_not_in_error(cluster: Cluster, sid: str, requested: str | None = None) -> None:
    """PVE's ``check_service_state``: a service in ``error`` takes only ``state disabled``."""
    sd = cluster.service(sid)
    if sd is not None and sd.get("state") == "error" and requested != "disabled":
        raise UsageError(f"service '{sid}' in error state, must be disabled and fixed first")


def sid_of_vmid(api: ApiFacts, vmid: str) -> str:
    """PVE's lookup of a bare VMID in the cluster's guest list."""
    guest = api.guests.get(int(vmid))
    if guest is None:
        raise UsageError(f"unable to detect SID from VMID - VM/CT {vmid} does not exist")
    return guest.sid


def check_guest(api: ApiFacts, sid: str) -> None:
    """PVE's ``exists`` check of ``add``, plus: a template cannot be HA managed (it never
    runs; PVE accepts it and then fails to start it)."""
    type_, vmid = sid.split(":", 1)
    guest = api.guests.get(int(vmid))
    if guest is None:
        raise UsageError(f"resource '{sid}' does not exist in cluster")
    if guest.type != type_:
        what = "a VM" if type_ == "vm" else "a container"
        raise UsageError(f"resource '{sid}' - guest with ID {vmid} is not {what}")
    if guest.template:
        raise UsageError(
            f"resource '{sid}' - guest with ID {vmid} is a template, which cannot be started"
        )


# --- migrate / relocate ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Motion:
    """An accepted move: ``queue`` is False when there is nothing to do (the resource is
    already on the target; the manager would ignore the command). ``also`` lists the
    positive partners the manager moves along; ``notes`` what could not be checked."""

    queue: bool
    also: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def expected_services(snap: Snapshot, cluster: Cluster) -> dict[str, dict[str, Any]]:
    """The manager's service status as it will be when it reads the next crm command:
    it first drops unconfigured and ``ignored`` resources and adds new ones at their
    guest's node (the live view's; unknown without an API), then handles commands."""
    table = cluster.manager_status.get("service_status")
    table = table if isinstance(table, Mapping) else {}
    guests = {g.sid: g.node for g in cluster.api.guests.values()} if cluster.api else {}
    out: dict[str, dict[str, Any]] = {}
    for sid, entry in snap.resources.entries.items():
        if entry.values.get("state") == "ignored":
            continue
        sd = table.get(sid)
        if isinstance(sd, Mapping):
            out[sid] = dict(sd)
        elif sid in guests:
            out[sid] = {"node": guests[sid]}
    return out


def plan_motion(snap: Snapshot, cluster: Cluster, task: str, sid: str, target: str) -> Motion:
    """Check ``migrate|relocate sid target`` as the API and the manager would.

    Refused (UsageError): not HA managed, in error, no such cluster node, target not
    online, no quorum, target outside a strict node affinity rule of ``sid``, a negative
    partner on or moving to the target (the engine's :func:`resource_motion` decides,
    which also gives the positive partners that move along).
    """
    check_managed(snap, cluster, sid)
    prefix = f"cannot {task} resource '{sid}' to node '{target}'"
    notes = _check_target(cluster, target, prefix)
    ss = expected_services(snap, cluster)
    if (ss.get(sid) or {}).get("node") == target:
        note = f"resource '{sid}' is already on node '{target}', nothing queued"
        return Motion(False, notes=(note,))
    result = compiled(snap, cluster.table_nodes() or cluster.cluster_nodes())
    blockers = _strict_blocker(result, sid, target)
    cmd = f"{task} {sid} {target}"
    plan = resource_motion(cmd, task, sid, target, compiled=result.compiled, ss=ss)
    if plan.error is not None:
        # PVE's API names every blocking partner; the engine stops at the first
        named = [
            f"resource '{p}' on target node '{target}' in negative affinity with resource '{sid}'"
            for p in sorted(result.compiled.negative.get(sid, ()))
            if p in ss and target in (ss[p].get("node"), ss[p].get("target"))
        ]
        blockers += named or [plan.error]
    if blockers:
        raise UsageError(f"{prefix}: {'; '.join(blockers)}")
    return Motion(True, plan.partners, tuple(notes))


def _check_target(cluster: Cluster, target: str, prefix: str) -> list[str]:
    states = cluster.node_states
    state = states.get(target)
    if cluster.api is not None:
        api = cluster.api
        if target not in api.members:
            raise UsageError(f"no such cluster node '{target}'")
        if not api.quorate:
            raise UsageError(f"{prefix}: no quorum (as {api.local_node} sees the cluster)")
        if target not in api.online:
            raise UsageError(f"{prefix}: node '{target}' is not online")
        if state in ("maintenance", "fence"):
            raise UsageError(f"{prefix}: node '{target}' is not online (HA node state '{state}')")
        return []
    if not states:
        return [f"note: cannot check that node '{target}' is online ({NO_NODES})"]
    if state is None:
        raise UsageError(f"no such cluster node '{target}' (not in the HA manager's node status)")
    if state != "online":
        raise UsageError(f"{prefix}: node '{target}' is not online (HA node state '{state}')")
    return []


def _strict_blocker(result: RulesResult, sid: str, target: str) -> list[str]:
    allowed = result.compiled.node_affinity.get(sid)
    if allowed is None or target in allowed:
        return []
    for rid in sorted(result.rules):
        rule = result.rules[rid]
        strict = isinstance(rule, NodeAffinityRule) and rule.strict and not rule.disable
        if strict and sid in rule.resources:
            nodes = ", ".join(sorted(allowed))
            return [f"strict node affinity rule '{rid}' allows only {nodes}"]
    return []
