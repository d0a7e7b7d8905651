"""Taking guests over from PVE's own HA (``pvha import-pve``): PVE's HA config, as its
API lists it, mapped onto pvha's files, and the order that keeps every guest managed by
exactly one HA stack.

The mapping is 1:1, because pvha's files are PVE's syntax (semantics §1.6): a resource
keeps its type, VMID and options (``state``, ``group``, ``max_restart``,
``max_relocate``, ``failback``, ``comment``); a group its ``nodes`` (with priorities),
``restricted``, ``nofailback`` and ``comment``; a rule its type and options, a
``disable`` key meaning disabled whatever its value (PVE's quirk). Every value goes
through the checkers pvha's own files use, so an option pvha does not know, or a value
it would refuse, is one :class:`~pvha.errors.ConfigError` naming PVE's entry. What is
taken along:

* each chosen resource (:func:`plan`'s ``sids``; all of PVE's when empty);
* the groups they name; with no ``sids``, every group (an unused one too);
* the rules naming them. A node-affinity rule is a constraint per resource, so it is
  taken with the chosen resources only, and PVE keeps it for the others (its ``DELETE``
  of a resource takes the resource out of its rules: PVE 9's ``purge``, the default). A
  resource-affinity rule ties resources to each other, which two HA stacks cannot keep:
  all its resources move together, or the import is refused.

A resource, group or rule pvha already has is left as it is when it is the same, and
refused when its settings differ (nothing is written then). A rule of the same id and
settings whose resources are a part of the imported one's, or the other way round, is
merged: that is the state a half-done import leaves behind (PVE's purge took the
resources that moved out of its copy of the rule).

The order (the caller's, :mod:`pvha.cli.import_pve`): first write pvha's config, then
remove the resources from PVE's HA, then the groups no PVE resource uses any more.
While PVE's ``/cluster/ha/resources`` lists a guest, pvha's manager leaves it alone
(``pvha.shell.config``: not in the round's service config, so never acted on), so a
guest never has two managers; the round after PVE dropped it, pvha adds it where it
runs, so it is unmanaged for at most one round. An import that stops half-way (a failed
``DELETE``) leaves guests PVE still manages, which pvha goes on skipping; running the
import again finds them already in pvha's config and finishes the removal. Until then a
resource-affinity rule between a guest that moved and one that did not is kept by neither
stack for that pair (neither acts on the other's guest).

The skip is the manager's own (it holds for any way a guest got into pvha's config, a
hand edit too); ``pvha add`` refusing such a guest only saves the administrator a
surprise, and this import is the command meant to get past it. One window is PVE's:
its CRM notices a removed resource at its next round (about 10 s), so a start or
migration its LRM was already running finishes under PVE; pvha's next view shows the
guest where that left it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from pvha.config import checks, schema
from pvha.config.checks import Cluster
from pvha.config.groups import GROUP_TYPE, GROUPS
from pvha.config.resources import RESOURCES
from pvha.config.rules import NODE_AFFINITY, RESOURCE_AFFINITY, RULES
from pvha.config.schema import Entry, Kind
from pvha.config.store import Loaded, Snapshot, Store, Transaction
from pvha.core.model import NodePriorities
from pvha.errors import ConfigError, UsageError
from pvha.ports import PveHaResource, PveHaSection

ADD, UPDATE, PRESENT = "add", "update", "present"
REMOVE, KEEP = "remove", "keep"


@dataclass(frozen=True, slots=True)
class Item:
    """One entry to carry over: ``pvha`` is ADD, UPDATE (a rule merged) or PRESENT;
    ``pve`` what happens to PVE's copy (REMOVE, KEEP, or a note)."""

    kind: str  # resource | group | rule
    id: str
    type: str
    values: Mapping[str, object]
    pvha: str
    pve: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What an import does: the items, then the PVE resources and groups to remove."""

    items: tuple[Item, ...] = ()
    remove_resources: tuple[str, ...] = ()
    remove_groups: tuple[str, ...] = ()

    @property
    def writes(self) -> bool:
        return any(i.pvha != PRESENT for i in self.items)


def _values(kind: Kind, type_: str, options: Iterable[tuple[str, str]], what: str
            ) -> dict[str, object]:
    values: dict[str, object] = {}
    for key, raw in options:
        if kind is RULES and key == "disable":
            values[key] = True  # PVE: the key's presence disables the rule
            continue
        try:
            values[key] = kind.check_value(type_, key, raw)
        except ValueError as err:
            raise ConfigError(f"{what}: cannot import '{key}': {err}") from None
    for key, spec in kind.types[type_].items():
        if spec.required and key not in values:
            raise ConfigError(f"{what}: '{key}' is missing")
    return values


def resource_options(r: PveHaResource) -> list[tuple[str, str]]:
    """The options of a PVE HA resource as resources.cfg writes them."""
    raw = {"state": r.state, "group": r.group, "comment": r.comment,
           "max_restart": None if r.max_restart is None else str(r.max_restart),
           "max_relocate": None if r.max_relocate is None else str(r.max_relocate),
           "failback": None if r.failback is None else schema.format_bool(r.failback)}
    return [(k, v) for k, v in raw.items() if v is not None]


def plan(snap: Snapshot, resources: Iterable[PveHaResource], groups: Iterable[PveHaSection],
         rules: Iterable[PveHaSection], sids: Collection[str] = ()) -> Plan:
    """What importing ``sids`` (all of PVE's resources when empty) does to pvha's config
    ``snap``; ConfigError when PVE's config cannot be carried over or conflicts with
    pvha's (see the module docstring), UsageError for a sid PVE's HA does not manage."""
    pve = {r.sid: r for r in resources}
    chosen = list(sids) or list(pve)
    for sid in chosen:
        if sid not in pve:
            raise UsageError(f"{sid} is not managed by PVE's own HA")
    pve_groups = {g.id: g for g in groups}
    items = [_resource(snap, pve[sid]) for sid in chosen]
    named = {str(i.values["group"]) for i in items if "group" in i.values}
    for sid, group in ((i.id, i.values.get("group")) for i in items):
        if group is not None and group not in pve_groups:
            raise ConfigError(f"PVE's HA resource {sid} names group '{group}', which PVE's "
                              "HA config does not have")
    left = [r for sid, r in pve.items() if sid not in chosen]
    drop_groups = []
    for gid, group in pve_groups.items():
        if gid not in named and sids:
            continue
        users = sorted(r.sid for r in left if r.group == gid)
        items.append(_group(snap, group, users))
        if not users:
            drop_groups.append(gid)
    for rule in rules:
        item = _rule(snap, rule, set(chosen), set(pve))
        if item is not None:
            items.append(item)
    return Plan(tuple(items), tuple(chosen), tuple(drop_groups))


def _canon(values: Mapping[str, object]) -> dict[str, object]:
    """``values`` with their lists (a group's or rule's nodes, a rule's resources) in
    sorted order: PVE's API hands them out in hash order, and their order means nothing
    (node priorities are explicit)."""
    return {k: tuple(sorted(v, key=str)) if isinstance(v, tuple) else v
            for k, v in values.items()}


def _same(kind: str, ident: str, entry: Entry | None, type_: str,
          values: Mapping[str, object]) -> str:
    if entry is None:
        return ADD
    if entry.type == type_ and _canon(entry.values) == _canon(values):
        return PRESENT
    raise ConfigError(f"{kind} {ident} is already in pvha's config with other settings; "
                      f"remove it there or make it the same as PVE's, then import again")


def _resource(snap: Snapshot, r: PveHaResource) -> Item:
    values = _values(RESOURCES, r.type, resource_options(r), f"PVE's HA resource {r.sid}")
    state = _same("resource", r.sid, snap.resources.entries.get(r.sid), r.type, values)
    return Item("resource", r.sid, r.type, values, state, REMOVE)


def _group(snap: Snapshot, group: PveHaSection, users: list[str]) -> Item:
    values = _values(GROUPS, GROUP_TYPE, group.options, f"PVE's HA group '{group.id}'")
    state = _same("group", f"'{group.id}'", snap.groups.entries.get(group.id), GROUP_TYPE,
                  values)
    pve = REMOVE if not users else f"{KEEP} (used by {', '.join(users)})"
    return Item("group", group.id, GROUP_TYPE, values, state, pve)


def _rule(snap: Snapshot, rule: PveHaSection, chosen: set[str], pve: set[str]) -> Item | None:
    what = f"PVE's HA rule '{rule.id}'"
    if rule.type not in (NODE_AFFINITY, RESOURCE_AFFINITY):
        raise ConfigError(f"{what} is of type '{rule.type}', which pvha does not know")
    values = _values(RULES, rule.type, rule.options, what)
    listed: tuple[str, ...] = values["resources"]  # type: ignore[assignment]
    taken = [s for s in listed if s in chosen]
    if not taken:
        return None
    others = [s for s in listed if s not in chosen]
    if rule.type == RESOURCE_AFFINITY and others:
        stay = ", ".join(others)
        why = "stay with PVE's HA" if all(s in pve for s in others) else "are not HA managed"
        raise ConfigError(f"{what} ties {', '.join(taken)} to {stay}, which {why}: import "
                          "them together (an affinity across two HA stacks holds in neither)")
    entry = snap.rules.entries.get(rule.id)
    ours: tuple[str, ...] = entry.values["resources"] if entry else ()  # type: ignore[assignment]
    merged = {**values, "resources": tuple(dict.fromkeys([*ours, *taken]))}
    if entry is not None and entry.type == rule.type and (
            {**entry.values, "resources": merged["resources"]} == merged):
        state = PRESENT if set(ours) >= set(taken) else UPDATE
    else:
        state = _same("rule", f"'{rule.id}'", entry, rule.type, merged)
    pve_side = REMOVE if not others else f"{KEEP} (for {', '.join(others)})"
    return Item("rule", rule.id, rule.type, merged, state, pve_side)


def check(store: Store, p: Plan, cluster: Cluster) -> list[str]:
    """:func:`write`'s checks on the current config, writing nothing (the dry run)."""
    return _edit(Transaction(store.load()), p, cluster)


def write(store: Store, p: Plan, cluster: Cluster) -> list[str]:
    """Write the plan's entries into pvha's config in one transaction (files written
    resources.cfg, groups.cfg, rules.cfg), after the checks ``pvha add``, ``groupadd`` and
    ``rules add`` make: existing nodes, and no rule the manager would drop. A refusal is
    a ConfigError and nothing is written. Returns notes on what could not be checked."""
    with store.transaction() as txn:
        return _edit(txn, p, cluster)


def _edit(txn: Transaction, p: Plan, cluster: Cluster) -> list[str]:
    notes: list[str] = []
    for item in p.items:
        if item.pvha == PRESENT:
            continue
        name = f"{item.kind}s"
        loaded: Loaded = getattr(txn.after, name)
        ident = item.id.split(":", 1)[1] if item.kind == "resource" else item.id
        text = loaded.kind.render(item.type, ident, item.values)
        new = (loaded.file.append(text) if item.pvha == ADD
               else loaded.file.replace(item.id, text))
        txn.update(name, new)
    changed = [i for i in p.items if i.pvha != PRESENT]
    try:
        for item in changed:
            if "nodes" in item.values:
                nodes: NodePriorities = item.values["nodes"]  # type: ignore[assignment]
                notes += checks.check_rule_nodes([n for n, _ in nodes], cluster)
        checks.check_no_new_drops(txn.before, txn.after)
        for item in changed:
            if item.kind == "rule":
                notes += checks.check_rule(txn.before, txn.after, item.id, cluster)
    except UsageError as err:
        raise ConfigError(f"cannot import from PVE's HA: {err}") from None
    return list(dict.fromkeys(notes))
