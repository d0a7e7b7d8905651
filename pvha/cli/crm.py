"""``crm-command``: requests queued into ``crm_commands`` for the HA manager (semantics 1.5)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from pvha.cli import checked
from pvha.cli.common import ConfigDirOpt, NodeArg, SettingsOpt, SidArg, store_for
from pvha.config import ops

crm_app = typer.Typer(
    name="crm-command", help="Queue a command for the HA manager.", no_args_is_help=True
)
maintenance_app = typer.Typer(
    name="node-maintenance",
    help="Put a node into or out of maintenance mode.",
    no_args_is_help=True,
)
crm_app.add_typer(maintenance_app, name="node-maintenance")


class DisarmMode(str, Enum):
    freeze = "freeze"
    ignore = "ignore"


@crm_app.command("migrate")
def migrate(
    ctx: typer.Context, sid: SidArg, node: NodeArg, config_dir: ConfigDirOpt = None
) -> None:
    """Request an online migration of a resource to NODE."""
    checked.move(store_for(ctx, config_dir), "migrate", sid, node)


@crm_app.command("relocate")
def relocate(
    ctx: typer.Context, sid: SidArg, node: NodeArg, config_dir: ConfigDirOpt = None
) -> None:
    """Request a relocation (stop, move, start) of a resource to NODE."""
    checked.move(store_for(ctx, config_dir), "relocate", sid, node)


@crm_app.command("stop")
def stop(
    ctx: typer.Context,
    sid: SidArg,
    timeout: Annotated[
        str, typer.Argument(metavar="TIMEOUT", help="Seconds before a hard stop; 0 stops at once.")
    ],
    config_dir: ConfigDirOpt = None,
) -> None:
    """Request a stop of a resource (it stays HA managed)."""
    store = store_for(ctx, config_dir)
    resolved = ops.resolve_sid(sid, configured=store.load().resources.entries)
    ops.queue_stop(store, resolved, timeout)


@maintenance_app.command("enable")
def maintenance_enable(
    ctx: typer.Context,
    node: NodeArg,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Refuse when the other nodes cannot take the node's guests (memory "
        "as static CRS counts it; needs the API).")] = False,
    config_dir: ConfigDirOpt = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Move the node's resources away and keep them off it. With an API configured, warns
    about every guest the other nodes have no room for."""
    from pvha.cli.whatif import maintenance_room

    maintenance_room(ctx, config_dir, node, settings_file, strict)
    ops.queue_node_maintenance(store_for(ctx, config_dir, settings_file), "enable", node)


@maintenance_app.command("disable")
def maintenance_disable(ctx: typer.Context, node: NodeArg, config_dir: ConfigDirOpt = None) -> None:
    """End maintenance mode of the node."""
    ops.queue_node_maintenance(store_for(ctx, config_dir), "disable", node)


@crm_app.command("disarm-ha")
def disarm_ha(
    ctx: typer.Context,
    mode: Annotated[
        DisarmMode,
        typer.Argument(
            metavar="MODE", help="freeze: freeze resources; ignore: stop tracking them."
        ),
    ],
    config_dir: ConfigDirOpt = None,
) -> None:
    """Release all watchdogs cluster-wide (for maintenance without fencing)."""
    ops.queue_disarm(store_for(ctx, config_dir), mode.value)


@crm_app.command("arm-ha")
def arm_ha(ctx: typer.Context, config_dir: ConfigDirOpt = None) -> None:
    """Re-arm the HA stack after disarm-ha."""
    ops.queue_arm(store_for(ctx, config_dir))
