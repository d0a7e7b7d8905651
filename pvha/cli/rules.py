"""``rules add|set|remove|config|list`` for node-affinity and resource-affinity rules.

``config`` and ``list`` take PVE's standard output options, as ``ha-manager`` does
(``--output-format``, ``--noborder``, ``--noheader``, ``--quiet``, ``--human-readable``).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from pvha.cli import checked, render
from pvha.cli.common import (
    BOOL_METAVAR,
    Bool,
    CommentOpt,
    ConfigDirOpt,
    DeleteOpt,
    HumanReadableOpt,
    NoBorderOpt,
    NoHeaderOpt,
    OutputFormat,
    OutputOpt,
    QuietOpt,
    RuleArg,
    pve_bool,
    shape,
    store_for,
    value,
)
from pvha.cli.render import Column
from pvha.cli.status import read_json
from pvha.config import ops, views
from pvha.config.store import MANAGER_STATUS, Store
from pvha.errors import UsageError

rules_app = typer.Typer(
    name="rules", help="HA rules: node affinity and resource affinity.", no_args_is_help=True
)


class RuleType(str, Enum):
    node_affinity = "node-affinity"
    resource_affinity = "resource-affinity"


class Affinity(str, Enum):
    positive = "positive"
    negative = "negative"


TypeArg = Annotated[RuleType, typer.Argument(metavar="TYPE", help="Rule type.", show_default=False)]
ResourcesOpt = Annotated[
    str | None,
    typer.Option(
        "--resources", metavar="SIDS", help="Comma-separated HA resource ids.", show_default=False
    ),
]
NodesOpt = Annotated[
    str | None,
    typer.Option(
        "--nodes",
        metavar="NODES",
        help="node-affinity: nodes with optional priority, e.g. node1:2,node2.",
        show_default=False,
    ),
]
StrictOpt = Annotated[
    Bool | None,
    typer.Option(
        "--strict", parser=pve_bool, metavar=BOOL_METAVAR,
        help="node-affinity: only these nodes (default: 0).", show_default=False
    ),
]
AffinityOpt = Annotated[
    Affinity | None,
    typer.Option(
        "--affinity", help="resource-affinity: keep together or apart.", show_default=False
    ),
]
DisableOpt = Annotated[
    Bool | None,
    typer.Option("--disable", parser=pve_bool, metavar=BOOL_METAVAR, help="Disable the rule (default: 0).",
                 show_default=False),
]

RULE_COLUMNS = [
    Column("enabled", "ENABLED"),
    Column("state", "STATE"),
    Column("rule", "RULE"),
    Column("type", "TYPE"),
    Column("resources", "RESOURCES"),
    Column("comment", "COMMENT"),
]
LIST_COLUMNS = [
    Column("rule", "RULE"),
    Column("type", "TYPE"),
    Column("resources", "RESOURCES"),
    Column("nodes", "NODES"),
    Column("strict", "STRICT"),
    Column("affinity", "AFFINITY"),
    Column("disable", "DISABLE"),
    Column("comment", "COMMENT"),
    Column("order", "ORDER"),
]


def _options(
    type_: RuleType,
    resources: str | None,
    nodes: str | None,
    strict: Bool | None,
    affinity: Affinity | None,
    comment: str | None,
    disable: Bool | None,
) -> ops.Options:
    options = {"resources": resources, "comment": comment, "disable": value(disable)}
    wrong = []
    if type_ is RuleType.node_affinity:
        options.update(nodes=nodes, strict=value(strict))
        wrong = [name for name, v in (("--affinity", affinity),) if v is not None]
    else:
        options.update(affinity=value(affinity))
        wrong = [name for name, v in (("--nodes", nodes), ("--strict", strict)) if v is not None]
    if wrong:
        raise UsageError(f"option {wrong[0]} does not apply to {type_.value} rules")
    return options


@rules_app.command("add")
def add(
    ctx: typer.Context,
    type_: TypeArg,
    rule: RuleArg,
    resources: ResourcesOpt = None,
    nodes: NodesOpt = None,
    strict: StrictOpt = None,
    affinity: AffinityOpt = None,
    comment: CommentOpt = None,
    disable: DisableOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Create an HA rule (refused if the HA manager would ignore it because of a conflict)."""
    options = _options(type_, resources, nodes, strict, affinity, comment, disable)
    store = store_for(ctx, config_dir)
    cluster = checked.cluster_for(store, f"rule '{rule}'")
    checked.notes(ops.add_rule(store, type_.value, rule, options, cluster))


@rules_app.command("set")
def set_(
    ctx: typer.Context,
    type_: TypeArg,
    rule: RuleArg,
    resources: ResourcesOpt = None,
    nodes: NodesOpt = None,
    strict: StrictOpt = None,
    affinity: AffinityOpt = None,
    comment: CommentOpt = None,
    disable: DisableOpt = None,
    delete: DeleteOpt = None,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Change an HA rule (refused if the HA manager would ignore it because of a conflict)."""
    options = _options(type_, resources, nodes, strict, affinity, comment, disable)
    store = store_for(ctx, config_dir)
    cluster = checked.cluster_for(store, f"rule '{rule}'")
    checked.notes(ops.set_rule(store, type_.value, rule, options, delete, cluster))


@rules_app.command("remove")
def remove(ctx: typer.Context, rule: RuleArg, config_dir: ConfigDirOpt = None) -> None:
    """Delete an HA rule."""
    ops.remove_rule(store_for(ctx, config_dir), rule)


FilterType = Annotated[
    RuleType | None, typer.Option("--type", help="Only rules of this type.", show_default=False)
]
FilterResource = Annotated[
    str | None,
    typer.Option(
        "--resource", metavar="SID", help="Only rules naming this resource.", show_default=False
    ),
]


def _rows(store: Store, type_: str | None, resource: str | None) -> list[render.Row]:
    """Rule rows with the engine's conflict check over the last known node table.

    The nodes are those of the last manager status; without one, the nodes named in
    the configuration stand in for the cluster.
    """
    snap = store.load()
    manager_status = read_json(store, MANAGER_STATUS) or {}
    nodes = sorted(manager_status.get("node_status") or {}) or views.known_ids(snap, "nodes")
    return views.rule_rows(snap, type_, resource, views.rule_conflicts(snap, nodes))


@rules_app.command("config")
def config(
    ctx: typer.Context,
    type_: FilterType = None,
    resource: FilterResource = None,
    output_format: OutputOpt = OutputFormat.text,
    noborder: NoBorderOpt = "0",
    noheader: NoHeaderOpt = "0",
    quiet: QuietOpt = "0",
    human_readable: HumanReadableOpt = "1",
    config_dir: ConfigDirOpt = None,
) -> None:
    """Show HA rules with their state (in use, or ignored because of conflicts), in file order."""
    del human_readable  # accepted as PVE accepts it: no rule value has a rendering
    rows = _rows(store_for(ctx, config_dir), value(type_), resource)
    render.render(rows, RULE_COLUMNS, output_format.value, shape=shape(noborder, noheader, quiet))


@rules_app.command("list")
def list_(
    ctx: typer.Context,
    type_: FilterType = None,
    resource: FilterResource = None,
    output_format: OutputOpt = OutputFormat.text,
    noborder: NoBorderOpt = "0",
    noheader: NoHeaderOpt = "0",
    quiet: QuietOpt = "0",
    human_readable: HumanReadableOpt = "1",
    config_dir: ConfigDirOpt = None,
) -> None:
    """List HA rules with all their options."""
    del human_readable  # accepted as PVE accepts it: no rule value has a rendering
    rows = _rows(store_for(ctx, config_dir), value(type_), resource)
    render.render(rows, LIST_COLUMNS, output_format.value, shape=shape(noborder, noheader, quiet))
