"""Legacy HA group commands: ``groupadd``, ``groupset``, ``groupremove``, ``groupconfig``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from pvha.cli import render
from pvha.cli.common import (
    BOOL_METAVAR,
    Bool,
    CommentOpt,
    ConfigDirOpt,
    DeleteOpt,
    GroupArg,
    OutputFormat,
    OutputOpt,
    pve_bool,
    store_for,
    value,
)
from pvha.cli.render import Column
from pvha.config import ops, views

NODES_HELP = "Nodes with optional priority, e.g. node1:2,node2 (higher is preferred)."
RestrictedOpt = Annotated[
    Bool | None,
    typer.Option(
        "--restricted", parser=pve_bool, metavar=BOOL_METAVAR,
        help="Run only on the group's nodes (default: 0).", show_default=False
    ),
]
NofailbackOpt = Annotated[
    Bool | None,
    typer.Option(
        "--nofailback", parser=pve_bool, metavar=BOOL_METAVAR,
        help="Do not move back to a higher-priority node (default: 0).",
        show_default=False,
    ),
]
GROUP_COLUMNS = [
    Column("group", "GROUP"),
    Column("nodes", "NODES"),
    Column("restricted", "RESTRICTED"),
    Column("nofailback", "NOFAILBACK"),
    Column("comment", "COMMENT"),
]


def groupadd(
    ctx: typer.Context,
    group: GroupArg,
    nodes: Annotated[
        str, typer.Option("--nodes", metavar="NODES", help=NODES_HELP, show_default=False)
    ],
    restricted: RestrictedOpt = None,
    nofailback: NofailbackOpt = None,
    comment: CommentOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Create an HA group."""
    options = {
        "nodes": nodes,
        "restricted": value(restricted),
        "nofailback": value(nofailback),
        "comment": comment,
    }
    ops.add_group(store_for(ctx, config_dir), group, options)


def groupset(
    ctx: typer.Context,
    group: GroupArg,
    nodes: Annotated[
        str | None, typer.Option("--nodes", metavar="NODES", help=NODES_HELP, show_default=False)
    ] = None,
    restricted: RestrictedOpt = None,
    nofailback: NofailbackOpt = None,
    comment: CommentOpt = None,
    delete: DeleteOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Change an HA group."""
    options = {
        "nodes": nodes,
        "restricted": value(restricted),
        "nofailback": value(nofailback),
        "comment": comment,
    }
    ops.set_group(store_for(ctx, config_dir), group, options, delete)


def groupremove(ctx: typer.Context, group: GroupArg, config_dir: ConfigDirOpt = None) -> None:
    """Delete an HA group (refused while a resource uses it)."""
    ops.remove_group(store_for(ctx, config_dir), group)


def groupconfig(
    ctx: typer.Context,
    output_format: OutputOpt = OutputFormat.text,
    config_dir: ConfigDirOpt = None,
) -> None:
    """List HA groups (text: as `ha-manager groupconfig` prints them)."""
    rows = views.group_rows(store_for(ctx, config_dir).load())

    def text(rows: Sequence[render.Row]) -> str:
        return render.section_text(
            rows, header=lambda r: f"group: {r['group']}", skip=("group", "type", "digest")
        )

    render.render(rows, GROUP_COLUMNS, output_format.value, text=text)


def register(app: typer.Typer) -> None:
    for command in (groupadd, groupset, groupremove, groupconfig):
        app.command(command.__name__)(command)
