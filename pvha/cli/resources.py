"""Resource commands: ``config``, ``add``, ``set``, ``remove``/``delete``, ``migrate``, ``relocate``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from pvha.cli import checked, fast, render
from pvha.cli.common import (
    BOOL_METAVAR,
    Bool,
    CommentOpt,
    ConfigDirOpt,
    DeleteOpt,
    NodeArg,
    OutputFormat,
    OutputOpt,
    ResourceType,
    SidArg,
    State,
    pve_bool,
    store_for,
    value,
)
from pvha.config import ops

StateOpt = Annotated[
    State | None, typer.Option("--state", help="Requested resource state.", show_default=False)
]
GroupOpt = Annotated[
    str | None,
    typer.Option("--group", metavar="GROUP", help="HA group identifier.", show_default=False),
]


def _value_option(name: str, metavar: str, help_: str) -> Any:
    """A value option of resources.cfg's key ``name``, spelt dashed (``--max-restart``)
    and, for a key with an underscore, as PVE spells it (``--max_restart``) too."""
    flag = "--" + name.replace("_", "-")
    spellings = [flag, f"--{name}"] if "_" in name else [flag]
    return typer.Option(*spellings, metavar=metavar, help=help_, show_default=False)


MaxRestartOpt = Annotated[str | None, _value_option(
    "max_restart", "N", "Restarts on the same node after a failed start (default: 1).")]
MaxRelocateOpt = Annotated[str | None, _value_option(
    "max_relocate", "N", "Relocations to other nodes after failed starts (default: 1).")]
FailbackOpt = Annotated[
    Bool | None,
    typer.Option(
        "--failback", parser=pve_bool, metavar=BOOL_METAVAR,
        help="Move back to the preferred node when it returns (default: 1).",
        show_default=False,
    ),
]
PriorityOpt = Annotated[str | None, _value_option(
    "priority", "N", "pvha: start priority, -1000 to 1000; higher starts first (default: 0).")]
AfterOpt = Annotated[str | None, _value_option(
    "after", "SID", "pvha: the HA resource that must run before this one starts.")]
HealthOpt = Annotated[str | None, _value_option(
    "health", "agent", "pvha extension, vm: only: restart the guest when its QEMU guest agent "
    "stops answering pings.")]
HealthGraceOpt = Annotated[str | None, _value_option(
    "health_grace", "SECONDS", "Seconds after a start before failed pings count (default: 300).")]
HealthFailuresOpt = Annotated[str | None, _value_option(
    "health_failures", "N", "Failed pings in a row that make the guest unhealthy (default: 3).")]
HealthIntervalOpt = Annotated[str | None, _value_option(
    "health_interval", "SECONDS", "Seconds between pings of the guest agent (default: 30).")]
TypeOpt = Annotated[
    ResourceType | None,
    typer.Option("--type", help="Resource type, when SID is a bare VMID.", show_default=False),
]


def _options(state: State | None, failback: Bool | None, **values: str | None) -> ops.Options:
    """The resources.cfg options of ``add``/``set``: the given ones, by key."""
    return {"state": value(state), "failback": value(failback), **values}


def config(
    ctx: typer.Context,
    type_: Annotated[
        ResourceType | None, typer.Option("--type", help="Only resources of this type.")
    ] = None,
    output_format: OutputOpt = OutputFormat.text,
    config_dir: ConfigDirOpt = None,
) -> None:
    """List HA resources (text: as `ha-manager config` prints them)."""
    # The body is shared with the fast path, which serves `pvha config` without Typer.
    store = store_for(ctx, config_dir)
    warnings, output = fast.config_output(store, value(type_), output_format.value)
    for line in warnings:
        render.warn(line)
    sys.stdout.write(output)


def add(
    ctx: typer.Context,
    sid: SidArg,
    state: StateOpt = None,
    group: GroupOpt = None,
    max_restart: MaxRestartOpt = None,
    max_relocate: MaxRelocateOpt = None,
    comment: CommentOpt = None,
    failback: FailbackOpt = None,
    priority: PriorityOpt = None,
    after: AfterOpt = None,
    health: HealthOpt = None,
    health_grace: HealthGraceOpt = None,
    health_failures: HealthFailuresOpt = None,
    health_interval: HealthIntervalOpt = None,
    type_: TypeOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Add a resource to HA management.

    With an API configured, the guest must exist in the cluster with that type, must
    not be a template, and must not be managed by PVE's own HA; a bare VMID gets its
    type from the cluster.
    """
    store = store_for(ctx, config_dir)
    options = _options(state, failback, group=group, max_restart=max_restart,
                       max_relocate=max_relocate, comment=comment, priority=priority,
                       after=after, health=health, health_grace=health_grace,
                       health_failures=health_failures, health_interval=health_interval)
    bare = sid.isascii() and sid.isdigit() and type_ is None
    resolved, note = _check_guest(sid if bare else ops.resolve_sid(sid, value(type_)))
    ops.add_resource(store, resolved, options)
    if note:
        render.warn(note)


def _check_guest(sid: str) -> tuple[str, str | None]:
    """Design §5 and PVE's checks of ``add``, asked only when an API is configured
    (``PVHA_HOSTS``/settings file); offline, ``pvha watch`` skips a missing guest."""
    from pvha.settings import load_settings
    from pvha.shell.live import check_add

    return check_add(load_settings(), sid)


def set_(
    ctx: typer.Context,
    sid: SidArg,
    state: StateOpt = None,
    group: GroupOpt = None,
    max_restart: MaxRestartOpt = None,
    max_relocate: MaxRelocateOpt = None,
    comment: CommentOpt = None,
    failback: FailbackOpt = None,
    priority: PriorityOpt = None,
    after: AfterOpt = None,
    health: HealthOpt = None,
    health_grace: HealthGraceOpt = None,
    health_failures: HealthFailuresOpt = None,
    health_interval: HealthIntervalOpt = None,
    delete: DeleteOpt = None,
    type_: TypeOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Change options of an HA resource (one in error state takes only --state disabled)."""
    store = store_for(ctx, config_dir)
    options = _options(state, failback, group=group, max_restart=max_restart,
                       max_relocate=max_relocate, comment=comment, priority=priority,
                       after=after, health=health, health_grace=health_grace,
                       health_failures=health_failures, health_interval=health_interval)
    resolved = ops.resolve_sid(sid, value(type_), store.load().resources.entries)
    ops.set_resource(store, resolved, options, delete)


def remove(
    ctx: typer.Context,
    sid: SidArg,
    purge: Annotated[
        Bool, typer.Option("--purge", parser=pve_bool, metavar=BOOL_METAVAR,
                           help="Also remove the resource from rules.")
    ] = "1",
    config_dir: ConfigDirOpt = None,
) -> None:
    """Remove a resource from HA management."""
    store = store_for(ctx, config_dir)
    resolved = ops.resolve_sid(sid, configured=store.load().resources.entries)
    ops.remove_resource(store, resolved, purge == "1")


def migrate(
    ctx: typer.Context, sid: SidArg, node: NodeArg, config_dir: ConfigDirOpt = None
) -> None:
    """Request an online migration of a resource to NODE (alias of crm-command migrate)."""
    checked.move(store_for(ctx, config_dir), "migrate", sid, node)


def relocate(
    ctx: typer.Context, sid: SidArg, node: NodeArg, config_dir: ConfigDirOpt = None
) -> None:
    """Request a relocation (stop, move, start) of a resource to NODE (alias of crm-command relocate)."""
    checked.move(store_for(ctx, config_dir), "relocate", sid, node)


def register(app: typer.Typer) -> None:
    app.command("config")(config)
    app.command("add")(add)
    app.command("set")(set_)
    app.command("remove")(remove)
    app.command("delete", help="Alias of remove.")(remove)
    app.command("migrate")(migrate)
    app.command("relocate")(relocate)
