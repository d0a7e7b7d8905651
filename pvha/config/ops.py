"""What the ``ha-manager``-style commands do to the store: plain values in, plain rows out.

Every edit runs in one :meth:`Store.transaction`: it checks its input and every
cross-reference (unknown resource, group or rule; duplicate ids; unmanaged resources
in rules) *before* anything is written, and raises :class:`~pvha.errors.UsageError`
(exit 2) otherwise, so a refused command leaves every file byte-identical. It also
refuses what the HA manager would refuse or drop (:mod:`pvha.config.checks`): a rule
the engine's feasibility check drops, a resource or group change that makes it drop a
rule, a change to a resource in ``error`` other than ``state disabled``, and a crm
command the manager would reject. Functions taking a ``cluster`` use what it knows of
the cluster (the caller reads the API); without one, only the local manager status.

Options arrive as raw strings keyed by PVE's property names (``max_restart``); ``None``
means "not given". Values are checked with the same checkers the file parser uses.

Groups and rules coexist here: PVE refuses rules while groups exist (and groups after
their migration), but pvha's store has no migration step, so both are accepted and the
engine converts groups in memory as PVE does.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pvha.config import checks, schema
from pvha.config.checks import Cluster
from pvha.config.groups import GROUP_TYPE, GROUPS
from pvha.config.resources import RESOURCES
from pvha.config.rules import NODE_AFFINITY, RULES
from pvha.config.schema import Entry, Kind
from pvha.config.sectioncfg import parse_lenient
from pvha.config.store import MANAGER_STATUS, Snapshot, Store, Transaction
from pvha.errors import UsageError
from pvha.fsutil import parse_json_object

Options = Mapping[str, str | None]
_VMID_ONLY = re.compile(r"^[0-9]+$")


# --- input checks -------------------------------------------------------------------------


def resolve_sid(sid: str, type_: str | None = None, configured: Collection[str] = ()) -> str:
    """``vm:100`` as given, ``100`` with ``--type vm``, or a bare ``100`` when exactly one
    of ``vm:100``/``ct:100`` is among the ``configured`` sids (VMIDs are unique in a
    cluster, so that is the guest PVE would find); UsageError otherwise."""
    if _VMID_ONLY.match(sid):
        if type_ is None:
            found = [s for s in (f"vm:{sid}", f"ct:{sid}") if s in configured]
            if len(found) != 1:
                raise UsageError(
                    f"unable to detect SID from VMID '{sid}' - no HA resource vm:{sid} or"
                    f" ct:{sid} is configured; give the type (vm:{sid} or ct:{sid})"
                )
            return found[0]
        sid = f"{type_}:{sid}"
    elif type_ is not None and not sid.startswith(f"{type_}:"):
        raise UsageError(f"types does not match: '{sid}' is not of type '{type_}'")
    try:
        return schema.check_sid(sid)
    except ValueError as err:
        raise UsageError(str(err)) from None


def check_id(value: str) -> str:
    try:
        return schema.check_configid(value)
    except ValueError as err:
        raise UsageError(str(err)) from None


def check_node(value: str) -> str:
    try:
        return schema.check_node_name(value)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _values(kind: Kind, type_: str, options: Options) -> dict[str, object]:
    values: dict[str, object] = {}
    for key, raw in options.items():
        if raw is None:
            continue
        try:
            values[key] = kind.check_value(type_, key, raw)
        except ValueError as err:
            raise UsageError(f"invalid value for '{key}': {err}") from None
    return values


def _merge(
    kind: Kind, type_: str, old: Mapping[str, object], options: Options, delete: str | None
) -> dict[str, object]:
    """``old`` updated with ``options`` and minus the ``--delete`` keys, as PVE's update does."""
    values = dict(old)
    new = _values(kind, type_, options)
    for key in schema.split_list(delete or ""):
        spec = kind.types[type_].get(key)
        if spec is None:
            raise UsageError(f"no such option '{key}'")
        if spec.required:
            raise UsageError(f"unable to delete required option '{key}'")
        if key in new:
            raise UsageError(f"cannot set and delete property '{key}' at the same time")
        values.pop(key, None)
    values.update(new)
    return values


def _require(kind: Kind, type_: str, values: Mapping[str, object]) -> None:
    for key, spec in kind.types[type_].items():
        if spec.required and key not in values:
            raise UsageError(f"missing value for required option '{key}'")


# --- resources ----------------------------------------------------------------------------


def manager_status(store: Store) -> dict[str, Any]:
    """The last ``manager_status`` in the store's directory (``{}`` if none)."""
    return parse_json_object(store.read_text(MANAGER_STATUS), store.path(MANAGER_STATUS)) or {}


def local_cluster(store: Store) -> Cluster:
    """What the store's directory alone tells of the cluster (no API)."""
    return Cluster(manager_status(store))


def _check_group_ref(snap: Snapshot, values: Mapping[str, object]) -> None:
    group = values.get("group")
    if group is not None and group not in snap.groups.entries:
        raise UsageError(f"HA group '{group}' does not exist")


def _check_after(snap: Snapshot, sid: str, values: Mapping[str, object]) -> None:
    """``after`` names another configured resource, and following it never returns."""
    after = values.get("after")
    if after is None:
        return
    if after == sid:
        raise UsageError(f"invalid value for 'after': {sid} cannot run after itself")
    entries = snap.resources.entries
    if after not in entries:
        raise UsageError(f"invalid value for 'after': no such resource '{after}'")
    chain = [sid, str(after)]
    while True:
        nxt = entries[chain[-1]].values.get("after") if chain[-1] in entries else None
        if nxt is None:
            return
        chain.append(str(nxt))
        if nxt == sid or chain.count(str(nxt)) > 1:
            raise UsageError(f"invalid value for 'after': {' -> '.join(chain)} is a cycle")


def _resource(snap: Snapshot, sid: str) -> Entry:
    entry = snap.resources.entries.get(sid)
    if entry is None:
        raise UsageError(f"no such resource '{sid}'")
    return entry


def add_resource(store: Store, sid: str, options: Options) -> None:
    type_, name = sid.split(":", 1)
    with store.transaction() as txn:
        snap = txn.after
        if sid in snap.resources.entries:
            raise UsageError(f"resource ID '{sid}' already defined")
        values = _values(RESOURCES, type_, options)
        _check_group_ref(snap, values)
        _check_after(snap, sid, values)
        txn.update("resources", snap.resources.file.append(RESOURCES.render(type_, name, values)))
        checks.check_no_new_drops(txn.before, txn.after)


def set_resource(
    store: Store,
    sid: str,
    options: Options,
    delete: str | None = None,
    cluster: Cluster | None = None,
) -> None:
    """Change ``sid``; refused for a service in ``error`` unless ``state`` is set to
    ``disabled`` (PVE), the state taken from ``cluster`` or the local manager status."""
    type_, name = sid.split(":", 1)
    with store.transaction() as txn:
        snap = txn.after
        entry = _resource(snap, sid)
        checks.check_not_in_error(cluster or local_cluster(store), sid, options.get("state"))
        values = _merge(RESOURCES, type_, entry.values, options, delete)
        _check_group_ref(snap, values)
        _check_after(snap, sid, values)
        txn.update(
            "resources", snap.resources.file.replace(sid, RESOURCES.render(type_, name, values))
        )
        checks.check_no_new_drops(txn.before, txn.after)


def edit_resource_text(text: str, sid: str, options: Options) -> str:
    """``resources.cfg`` text with ``options`` set on ``sid``, every other byte as it
    was (bad sections elsewhere included): the manager's own edit, the ``stop``
    command's ``state stopped``, which needs none of :func:`set_resource`'s checks.
    UsageError if ``sid`` has no valid section."""
    type_, name = sid.split(":", 1)
    parsed, _faults = parse_lenient(text, RESOURCES.file, RESOURCES.section_key,
                                    RESOURCES.file)
    parsed, entries, _invalid = schema.validate_lenient(RESOURCES, parsed)
    entry = entries.get(sid)
    if entry is None:
        raise UsageError(f"no such resource '{sid}'")
    values = _merge(RESOURCES, type_, entry.values, options, None)
    return parsed.replace(sid, RESOURCES.render(type_, name, values)).render()


def remove_resource(store: Store, sid: str, purge: bool = True) -> list[str]:
    """Remove ``sid``; with ``purge`` also from rules (rules left empty are deleted) and
    from the ``after`` of other resources.

    Returns the ids of the rules that were changed or deleted.
    """
    with store.transaction() as txn:
        if sid not in txn.after.resources.entries:
            raise UsageError(f"cannot delete service '{sid}', not HA managed!")
        txn.update("resources", txn.after.resources.file.remove(sid))
        if not purge:
            return []
        for other, entry in txn.after.resources.entries.items():
            if entry.values.get("after") == sid:
                values = {k: v for k, v in entry.values.items() if k != "after"}
                text = RESOURCES.render(entry.type, entry.name, values)
                txn.update("resources", txn.after.resources.file.replace(other, text))
        return _purge_from_rules(txn, sid)


def _purge_from_rules(txn: Transaction, sid: str) -> list[str]:
    touched = []
    for rule_id, entry in txn.after.rules.entries.items():
        resources: tuple[str, ...] = entry.values["resources"]  # type: ignore[assignment]
        if sid not in resources:
            continue
        touched.append(rule_id)
        rules_file = txn.after.rules.file
        left = tuple(r for r in resources if r != sid)
        if left:
            text = RULES.render(entry.type, entry.name, {**entry.values, "resources": left})
            txn.update("rules", rules_file.replace(rule_id, text))
        else:
            txn.update("rules", rules_file.remove(rule_id))
    return touched


# --- groups -------------------------------------------------------------------------------


def add_group(store: Store, group: str, options: Options) -> None:
    check_id(group)
    with store.transaction() as txn:
        snap = txn.after
        if group in snap.groups.entries:
            raise UsageError(f"ha group ID '{group}' already defined")
        values = _values(GROUPS, GROUP_TYPE, options)
        _require(GROUPS, GROUP_TYPE, values)
        txn.update("groups", snap.groups.file.append(GROUPS.render(GROUP_TYPE, group, values)))
        checks.check_no_new_drops(txn.before, txn.after)


def set_group(store: Store, group: str, options: Options, delete: str | None = None) -> None:
    with store.transaction() as txn:
        snap = txn.after
        entry = snap.groups.entries.get(group)
        if entry is None:
            raise UsageError(f"HA group '{group}' does not exist")
        values = _merge(GROUPS, GROUP_TYPE, entry.values, options, delete)
        txn.update(
            "groups", snap.groups.file.replace(group, GROUPS.render(GROUP_TYPE, group, values))
        )
        checks.check_no_new_drops(txn.before, txn.after)


def remove_group(store: Store, group: str) -> None:
    with store.transaction() as txn:
        snap = txn.after
        if group not in snap.groups.entries:
            raise UsageError(f"HA group '{group}' does not exist")
        for sid, entry in snap.resources.entries.items():
            if entry.values.get("group") == group:
                raise UsageError(f"ha group is used by service '{sid}'")
        txn.update("groups", snap.groups.file.remove(group))


# --- rules --------------------------------------------------------------------------------


def add_rule(
    store: Store, type_: str, rule: str, options: Options, cluster: Cluster | None = None
) -> list[str]:
    """Create ``rule``; refused if the HA manager would drop it. Returns notes on what
    could not be checked (node names or count, when ``cluster`` knows no nodes)."""
    check_id(rule)
    cluster = cluster or local_cluster(store)
    with store.transaction() as txn:
        snap = txn.after
        if rule in snap.rules.entries:
            raise UsageError(f"HA rule '{rule}' already defined")
        values = _values(RULES, type_, options)
        notes = _check_rule(snap, type_, values, cluster)
        txn.update("rules", snap.rules.file.append(RULES.render(type_, rule, values)))
        return notes + checks.check_rule(txn.before, txn.after, rule, cluster)


def set_rule(
    store: Store,
    type_: str,
    rule: str,
    options: Options,
    delete: str | None = None,
    cluster: Cluster | None = None,
) -> list[str]:
    """Change ``rule``, with :func:`add_rule`'s checks. Returns notes."""
    cluster = cluster or local_cluster(store)
    with store.transaction() as txn:
        snap = txn.after
        entry = _rule(snap, rule)
        if entry.type != type_:
            raise UsageError(f"HA rule '{rule}' is of type '{entry.type}', not '{type_}'")
        values = _merge(RULES, type_, entry.values, options, delete)
        if "disable" in values and not values["disable"]:
            del values["disable"]  # PVE: the key's presence alone disables a rule
        notes = _check_rule(snap, type_, values, cluster)
        txn.update("rules", snap.rules.file.replace(rule, RULES.render(type_, rule, values)))
        return notes + checks.check_rule(txn.before, txn.after, rule, cluster)


def remove_rule(store: Store, rule: str) -> None:
    with store.transaction() as txn:
        _rule(txn.after, rule)
        txn.update("rules", txn.after.rules.file.remove(rule))


def _rule(snap: Snapshot, rule: str) -> Entry:
    entry = snap.rules.entries.get(rule)
    if entry is None:
        raise UsageError(f"HA rule '{rule}' does not exist")
    return entry


def _check_rule(
    snap: Snapshot, type_: str, values: Mapping[str, object], cluster: Cluster
) -> list[str]:
    """PVE's create/update checks before feasibility: required keys, managed resources,
    existing nodes. Returns notes."""
    if "resources" not in values:
        raise UsageError("no resources were specified")
    if type_ == NODE_AFFINITY and "nodes" not in values:
        raise UsageError("no nodes were specified")
    _require(RULES, type_, values)
    resources: tuple[str, ...] = values["resources"]  # type: ignore[assignment]
    unmanaged = [sid for sid in resources if sid not in snap.resources.entries]
    if unmanaged:
        raise UsageError(f"cannot use unmanaged resource(s) {', '.join(unmanaged)}.")
    if type_ != NODE_AFFINITY:
        return []
    nodes: tuple[tuple[str, int], ...] = values["nodes"]  # type: ignore[assignment]
    return checks.check_rule_nodes([n for n, _ in nodes], cluster)


# --- crm commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Queued:
    """A crm command line, for the CLI to report: ``queued`` is False when nothing was
    written (nothing to do); ``also`` = resources the manager moves along; ``notes`` =
    what could not be checked."""

    line: str
    queued: bool = True
    also: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def queue_motion(
    store: Store, command: str, sid: str, node: str, cluster: Cluster | None = None
) -> Queued:
    """``migrate``/``relocate`` SID NODE, queued only if the manager would carry it out
    (:func:`pvha.config.checks.plan_motion`; UsageError otherwise)."""
    check_node(node)
    plan = checks.plan_motion(store.load(), cluster or local_cluster(store), command, sid, node)
    line = f"{command} {sid} {node}"
    if not plan.queue:
        return Queued(line, queued=False, notes=plan.notes)
    _queue(store, line)
    return Queued(line, also=plan.also, notes=plan.notes)


def queue_stop(store: Store, sid: str, timeout: str) -> Queued:
    """``stop SID TIMEOUT``: HA managed and not in ``error`` (PVE)."""
    if not _VMID_ONLY.match(timeout):
        raise UsageError(f"invalid timeout '{timeout}' (expected an integer >= 0)")
    checks.check_managed(store.load(), local_cluster(store), sid)
    return _queue(store, f"stop {sid} {int(timeout)}")


def queue_node_maintenance(store: Store, action: str, node: str) -> Queued:
    check_node(node)
    return _queue(store, f"{action}-node-maintenance {node}")


def queue_disarm(store: Store, mode: str) -> Queued:
    return _queue(store, f"disarm-ha {mode}")


def queue_arm(store: Store) -> Queued:
    return _queue(store, "arm-ha")


def _queue(store: Store, line: str) -> Queued:
    store.append_crm_command(line)
    return Queued(line)
