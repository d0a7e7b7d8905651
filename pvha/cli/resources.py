"""Resource commands: ``config``, ``add``, ``set``, ``remove``/``delete``, ``migrate``, ``relocate``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from pvha.cli import render
from pvha.cli.common import (
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
    store_for,
    value,
)
from pvha.cli.render import Column
from pvha.config import ops, views

StateOpt = Annotated[
    State | None, typer.Option("--state", help="Requested resource state.", show_default=False)
]
GroupOpt = Annotated[
    str | None,
    typer.Option("--group", metavar="GROUP", help="HA group identifier.", show_default=False),
]
MaxRestartOpt = Annotated[
    str | None,
    typer.Option(
        "--max-restart",
        "--max_restart",
        metavar="N",
        help="Restarts on the same node after a failed start (default: 1).",
        show_default=False,
    ),
]
MaxRelocateOpt = Annotated[
    str | None,
    typer.Option(
        "--max-relocate",
        "--max_relocate",
        metavar="N",
        help="Relocations to other nodes after failed starts (default: 1).",
        show_default=False,
    ),
]
FailbackOpt = Annotated[
    Bool | None,
    typer.Option(
        "--failback",
        help="Move back to the preferred node when it returns (default: 1).",
        show_default=False,
    ),
]
TypeOpt = Annotated[
    ResourceType | None,
    typer.Option("--type", help="Resource type, when SID is a bare VMID.", show_default=False),
]

RESOURCE_COLUMNS = [
    Column("sid", "SID"),
    Column("state", "STATE"),
    Column("group", "GROUP"),
    Column("max_restart", "MAX_RESTART"),
    Column("max_relocate", "MAX_RELOCATE"),
    Column("failback", "FAILBACK"),
    Column("comment", "COMMENT"),
]


def _options(
    state: State | None,
    group: str | None,
    max_restart: str | None,
    max_relocate: str | None,
    comment: str | None,
    failback: Bool | None,
) -> ops.Options:
    return {
        "state": value(state),
        "group": group,
        "max_restart": max_restart,
        "max_relocate": max_relocate,
        "comment": comment,
        "failback": value(failback),
    }


def _config_text(rows: Sequence[render.Row]) -> str:
    for row in rows:
        for prop, message in (row.get("errors") or {}).items():
            render.warn(f"error: property '{prop}' - {message}")
    return render.section_text(
        rows, header=lambda r: str(r["sid"]), skip=("sid", "type", "digest", "errors")
    )


def config(
    ctx: typer.Context,
    type_: Annotated[
        ResourceType | None, typer.Option("--type", help="Only resources of this type.")
    ] = None,
    output_format: OutputOpt = OutputFormat.text,
    config_dir: ConfigDirOpt = None,
) -> None:
    """List HA resources (text: as `ha-manager config` prints them)."""
    rows = views.resource_rows(store_for(ctx, config_dir).load(), value(type_))
    render.render(rows, RESOURCE_COLUMNS, output_format.value, text=_config_text)


def add(
    ctx: typer.Context,
    sid: SidArg,
    state: StateOpt = None,
    group: GroupOpt = None,
    max_restart: MaxRestartOpt = None,
    max_relocate: MaxRelocateOpt = None,
    comment: CommentOpt = None,
    failback: FailbackOpt = None,
    type_: TypeOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Add a resource to HA management (refused if PVE's own HA manages the guest)."""
    store = store_for(ctx, config_dir)
    options = _options(state, group, max_restart, max_relocate, comment, failback)
    resolved = ops.resolve_sid(sid, value(type_))
    _refuse_pve_ha(resolved)
    ops.add_resource(store, resolved, options)


def _refuse_pve_ha(sid: str) -> None:
    """Design §5: never manage a guest PVE's HA manages. Asked only when an API is
    configured (``PVHA_HOSTS``/settings file); offline, ``pvha watch`` skips such a guest."""
    from pvha.settings import load_settings
    from pvha.shell.live import check_not_pve_ha

    note = check_not_pve_ha(load_settings(), sid)
    if note:
        render.warn(f"warning: {note}")


def set_(
    ctx: typer.Context,
    sid: SidArg,
    state: StateOpt = None,
    group: GroupOpt = None,
    max_restart: MaxRestartOpt = None,
    max_relocate: MaxRelocateOpt = None,
    comment: CommentOpt = None,
    failback: FailbackOpt = None,
    delete: DeleteOpt = None,
    type_: TypeOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Change options of an HA resource."""
    store = store_for(ctx, config_dir)
    options = _options(state, group, max_restart, max_relocate, comment, failback)
    ops.set_resource(store, ops.resolve_sid(sid, value(type_)), options, delete)


def remove(
    ctx: typer.Context,
    sid: SidArg,
    purge: Annotated[
        Bool, typer.Option("--purge", help="Also remove the resource from rules.")
    ] = Bool.yes,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Remove a resource from HA management."""
    ops.remove_resource(store_for(ctx, config_dir), ops.resolve_sid(sid), purge == Bool.yes)


def migrate(
    ctx: typer.Context, sid: SidArg, node: NodeArg, config_dir: ConfigDirOpt = None
) -> None:
    """Request an online migration of a resource to NODE (alias of crm-command migrate)."""
    ops.queue_motion(store_for(ctx, config_dir), "migrate", ops.resolve_sid(sid), node)


def relocate(
    ctx: typer.Context, sid: SidArg, node: NodeArg, config_dir: ConfigDirOpt = None
) -> None:
    """Request a relocation (stop, move, start) of a resource to NODE (alias of crm-command relocate)."""
    ops.queue_motion(store_for(ctx, config_dir), "relocate", ops.resolve_sid(sid), node)


def register(app: typer.Typer) -> None:
    app.command("config")(config)
    app.command("add")(add)
    app.command("set")(set_)
    app.command("remove")(remove)
    app.command("delete", help="Alias of remove.")(remove)
    app.command("migrate")(migrate)
    app.command("relocate")(relocate)
