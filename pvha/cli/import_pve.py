"""``import-pve``: take guests over from PVE's own HA (issue 12 point 7).

One live view of the cluster and PVE's groups and rules through the API, the plan of
:mod:`pvha.config.pve_import` (its docstring gives the mapping and why the order is
safe), then, unless ``--dry-run``: pvha's config written, each resource removed from
PVE's HA, then the groups no PVE resource uses any more. A refusal (a conflict with
pvha's config, an entry pvha cannot carry over, a guest ``pvha add`` would refuse)
comes before anything is written or removed. A removal that fails leaves that guest
with PVE's HA (pvha keeps skipping it); the command says so and exits 1, and running it
again finishes the job. This command is the one way past ``pvha add``'s refusal of a
guest PVE's HA manages.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any

import typer

from pvha.cli import render
from pvha.cli.common import ConfigDirOpt, OutputFormat, OutputOpt, SettingsOpt, store_for
from pvha.cli.render import Column
from pvha.config import ops
from pvha.errors import ApiError, UsageError

COLUMNS = [Column("kind", "KIND"), Column("id", "ID"), Column("pvha", "PVHA"),
           Column("pve", "PVE HA")]
_DONE = {"add": "added", "update": "updated", "present": "present"}


def import_pve(
    ctx: typer.Context,
    sids: Annotated[list[str] | None, typer.Argument(
        metavar="SID", help="Resources to take over (vm:100, or a VMID); default: all.",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would be written and removed; change nothing.")] = False,
    output_format: OutputOpt = OutputFormat.text,
    config_dir: ConfigDirOpt = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Move resources, with their groups and rules, from PVE's own HA into pvha's config.

    pvha's config is written first (pvha keeps leaving a guest alone while PVE's HA
    lists it), then each resource is removed from PVE's HA: no guest is ever managed by
    both, and pvha's next round takes it over. Exit 1 when something was refused or a
    removal failed (run it again to finish).
    """
    from pvha.config import checks, pve_import
    from pvha.config.checks import Cluster
    from pvha.shell import live

    store = store_for(ctx, config_dir, settings_file)
    api, view, groups, rules = _read(settings_file)
    snap = store.load()
    chosen = _choose(sids or [], [r.sid for r in view.snapshot.pve_ha_resources],
                     snap.resources.entries)
    if chosen is None:
        return
    plan = pve_import.plan(snap, view.snapshot.pve_ha_resources, groups, rules, chosen)
    if not plan.items:
        render.note("nothing to import: PVE's own HA manages no guest")
        return
    facts = live.api_facts(view)
    for sid in plan.remove_resources:
        checks.check_guest(facts, sid)
    cluster = Cluster(ops.manager_status(store), facts)
    if dry_run:
        notes = pve_import.check(store, plan, cluster)
        _show(_rows(plan), output_format, [*notes, "dry run: nothing written, nothing removed"])
        return
    notes = pve_import.write(store, plan, cluster) if plan.writes else []
    failed = _remove(api, plan)
    _show(_rows(plan, failed), output_format, notes)
    if failed:
        raise ApiError(f"PVE's HA still has {', '.join(sorted(failed))} (pvha leaves its "
                       "guests alone until they are removed there); run pvha import-pve again")


def _read(settings_file: str | None) -> tuple[Any, Any, Any, Any]:
    """The API adapter, one live view, PVE's groups and rules; one line if unreadable."""
    from pvha.settings import load_settings
    from pvha.shell import live
    from pvha.shell.snapshot import take_view

    api = live.api_for(load_settings(path=settings_file))
    if api is None:
        raise UsageError("no API configured ([api] hosts / PVHA_HOSTS): import-pve reads "
                         "and changes PVE's HA config through it")
    with live.failover_reasons():
        try:
            return api, take_view(api), api.get_ha_groups(), api.get_ha_rules()
        except ApiError as err:
            raise ApiError(f"cannot read PVE's HA config: {err}") from None


def _choose(sids: list[str], pve: list[str], ours: Collection[str]) -> list[str] | None:
    """The sids to import ([] = all); None when every one given is imported already."""
    chosen = []
    for raw in sids:
        sid = ops.resolve_sid(raw, None, [*pve, *ours])
        if sid in pve:
            chosen.append(sid)
        elif sid in ours:
            render.note(f"{sid} is in pvha's config and not in PVE's HA: imported already")
        else:
            raise UsageError(f"{sid} is not managed by PVE's own HA")
    return None if sids and not chosen else chosen


def _remove(api: Any, plan: Any) -> dict[str, str]:
    """Remove the resources, then the groups only they used, from PVE's HA; id -> the
    reason of each removal that failed. A group a failed resource still uses is kept."""
    failed: dict[str, str] = {}
    for sid in plan.remove_resources:
        try:
            api.delete_ha_resource(sid)
        except ApiError as err:
            failed[sid] = str(err)
    users = {str(i.values.get("group")) for i in plan.items
             if i.kind == "resource" and i.id in failed}
    for group in plan.remove_groups:
        if group in users:
            failed[group] = "still used by a resource PVE's HA manages"
            continue
        try:
            api.delete_ha_group(group)
        except ApiError as err:
            failed[group] = str(err)
    return failed


def _rows(plan: Any, failed: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per item; after the run (``failed`` given) in the past tense."""
    out = []
    for item in plan.items:
        pvha, pve = item.pvha, item.pve
        if failed is not None:
            pvha = _DONE[pvha]
            pve = _outcome(item, failed) if pve == "remove" else pve
        out.append({"kind": item.kind, "id": item.id, "pvha": pvha, "pve": pve})
    return out


def _outcome(item: Any, failed: dict[str, str]) -> str:
    if item.id in failed:
        return f"not removed: {failed[item.id]}"
    if item.kind == "rule":  # PVE drops a rule with its last resource
        left = [s for s in item.values["resources"] if s in failed]
        return f"kept for {', '.join(left)}" if left else "removed"
    return "removed"


def _show(rows: list[dict[str, Any]], fmt: OutputFormat, notes: list[str]) -> None:
    render.render(rows, COLUMNS, fmt.value)
    for note in notes:
        render.note(note)


def register(app: typer.Typer) -> None:
    app.command("import-pve")(import_pve)
