"""Plain rows of the configuration, shaped like PVE's API answers (for ``config`` & co.).

Values are JSON-ready: booleans as 0/1 (PVE's API style), node and resource lists as
the strings written in the files. Rows hold only the keys set in the file, as PVE's
``ha-manager config`` shows them; defaults are not filled in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pvha.config.schema import Entry, Kind
from pvha.config.store import Snapshot
from pvha.core.rules import compile_rules

Row = dict[str, object]


def _value(kind: Kind, entry: Entry, key: str, value: object) -> object:
    spec = kind.types[entry.type][key]
    if spec.boolean:
        return 1 if value else 0
    if isinstance(value, (int, str)):
        return value
    return spec.fmt(value)


def _values(kind: Kind, entry: Entry) -> Row:
    return {k: _value(kind, entry, k, v) for k, v in sorted(entry.values.items())}


def resource_rows(snap: Snapshot, type_: str | None = None) -> list[Row]:
    """One row per resource, sorted by sid as a string (as ``ha-manager config`` sorts).

    A row whose group does not exist carries ``errors: {"group": "..."}`` like PVE's API.
    """
    rows = []
    for sid in sorted(snap.resources.entries):
        entry = snap.resources.entries[sid]
        if type_ is not None and entry.type != type_:
            continue
        row: Row = {"sid": sid, "type": entry.type, **_values(snap.resources.kind, entry)}
        group = entry.values.get("group")
        if group is not None and group not in snap.groups.entries:
            row["errors"] = {"group": f"group '{group}' does not exist"}
        rows.append(row)
    return rows


def group_rows(snap: Snapshot) -> list[Row]:
    """One row per group, sorted by id, with ``group`` and ``type`` keys first."""
    return [
        {"group": gid, "type": "group", **_values(snap.groups.kind, snap.groups.entries[gid])}
        for gid in sorted(snap.groups.entries)
    ]


def rule_conflicts(snap: Snapshot, nodes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Rules the HA manager would drop (rule id -> reasons), by the engine's feasibility check.

    ``nodes`` stands for the CRM node table (it matters for "more resources than nodes").
    """
    cfg = snap.ha_config()
    dropped = compile_rules(cfg.rules, cfg.groups, cfg.resources, nodes).dropped
    return {rid: tuple(reasons) for rid, reasons in dropped.items() if rid in cfg.rules}


def rule_rows(
    snap: Snapshot,
    type_: str | None = None,
    resource: str | None = None,
    conflicts: Mapping[str, Sequence[str]] | None = None,
) -> list[Row]:
    """One row per rule in file order; ``enabled`` is 0 when the ``disable`` key is present.

    ``state`` is ``in use``, ``ignored (conflicts)`` for rules in ``conflicts`` (whose
    reasons go to ``errors``), or ``disabled``.
    """
    conflicts = conflicts or {}
    rows = []
    for order, (rid, entry) in enumerate(snap.rules.entries.items(), start=1):
        if type_ is not None and entry.type != type_:
            continue
        if resource is not None and resource not in entry.values["resources"]:  # type: ignore[operator]
            continue
        enabled = "disable" not in entry.values
        state = "in use" if enabled else "disabled"
        row: Row = {"rule": rid, "type": entry.type, **_values(snap.rules.kind, entry)}
        if enabled and rid in conflicts:
            state = "ignored (conflicts)"
            row["errors"] = list(conflicts[rid])
        row.update(order=order, enabled=1 if enabled else 0, state=state)
        rows.append(row)
    return rows


def known_ids(
    snap: Snapshot, what: str, manager_status: Mapping[str, object] | None = None
) -> list[str]:
    """Ids for shell completion: ``sids``, ``groups``, ``rules`` or ``nodes`` (local config only)."""
    if what == "sids":
        return sorted(snap.resources.entries)
    if what == "groups":
        return sorted(snap.groups.entries)
    if what == "rules":
        return list(snap.rules.entries)
    if what == "nodes":
        nodes: set[str] = set()
        for entry in [*snap.groups.entries.values(), *snap.rules.entries.values()]:
            nodes.update(n for n, _ in entry.values.get("nodes", ()))  # type: ignore[attr-defined]
        node_status = (manager_status or {}).get("node_status")
        if isinstance(node_status, dict):
            nodes.update(str(n) for n in node_status)
        return sorted(nodes)
    return []
