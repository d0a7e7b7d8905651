"""``what-if`` and ``check``: the engine run on the live cluster (or an inventory file) with
nodes failed (pvha.whatif)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pvha.cli import render
from pvha.cli.common import (
    ConfigDirOpt,
    NoBorderOpt,
    NoHeaderOpt,
    OutputFormat,
    OutputOpt,
    QuietOpt,
    SettingsOpt,
    shape,
    store_for,
)
from pvha.cli.render import Column
from pvha.errors import ApiError, UsageError

COLUMNS = [Column("sid", "SID"), Column("from", "FROM"), Column("to", "TO"),
           Column("state", "STATE"), Column("verdict", "VERDICT")]
InventoryOpt = Annotated[
    Path | None,
    typer.Option("--inventory", metavar="FILE", show_default=False,
                 help="Nodes and guests (JSON, see the README) instead of the live cluster."),
]


def _inputs(ctx: typer.Context, config_dir: str | None, inventory: Path | None,
            settings_file: str | None, need_api: bool = True) -> tuple[Any, Any, str, str]:
    """Inventory, HA config and the groups' and rules' texts. Without ``need_api``, an
    inventory of None when no API is configured."""
    from pvha import whatif
    from pvha.settings import load_settings
    from pvha.shell import live

    store = store_for(ctx, config_dir, settings_file)
    store.require_dir()
    cfg = store.load().ha_config()
    texts = [_text(store.dir / name) for name in ("groups.cfg", "rules.cfg")]
    if inventory is not None:
        return whatif.load_inventory(inventory), cfg, texts[0], texts[1]
    settings = load_settings(path=settings_file)
    try:
        view, _warnings = live.view_with_reasons(settings)
    except ApiError as err:
        raise UsageError(f"cannot read the cluster through the API: {err}") from None
    if view is None:
        if not need_api:
            return None, cfg, texts[0], texts[1]
        raise UsageError("no API configured ([api] hosts / PVHA_HOSTS): give --inventory FILE")
    return whatif.inventory_of_view(view), cfg, texts[0], texts[1]


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _rows(outcome: Any) -> list[dict[str, Any]]:
    out = []
    for row, p in zip(outcome.rows(), outcome.placements, strict=True):
        verdict = (row["note"] or "no node") if not p.placed and p.state != "stopped" else (
            "recovered" if p.moved else "stays")
        out.append({**row, "verdict": verdict})
    return out


def what_if(
    ctx: typer.Context,
    fail: Annotated[str, typer.Option("--fail", metavar="NODE[,NODE...]",
                                      help="The nodes that fail.")],
    inventory: InventoryOpt = None,
    output_format: OutputOpt = OutputFormat.text,
    noborder: NoBorderOpt = "0",
    noheader: NoHeaderOpt = "0",
    quiet: QuietOpt = "0",
    config_dir: ConfigDirOpt = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Where every HA guest would run if these nodes failed, and which would find no room
    (memory as static CRS counts it). Exit 1 when a guest would be left unplaced."""
    from pvha import whatif

    nodes = [n for n in fail.split(",") if n]
    if not nodes:
        raise UsageError("--fail needs at least one node")
    inv, cfg, groups, rules = _inputs(ctx, config_dir, inventory, settings_file)
    outcome = whatif.what_if(inv, cfg, groups, rules, nodes)
    how = shape(noborder, noheader, quiet)
    render.render(_rows(outcome), COLUMNS, output_format.value, shape=how)
    if output_format is OutputFormat.text and not how.quiet:
        for node, load in sorted(outcome.nodes.items()):
            render.note(f"{node}: memory {load.mem / whatif.GIB:.1f} of "
                        f"{load.maxmem / whatif.GIB:.1f} GiB, cores {load.cpu:g} of "
                        f"{load.maxcpu:g}")
    if outcome.unplaced:
        raise typer.Exit(1)


def check(
    ctx: typer.Context,
    tolerate: Annotated[int, typer.Option("--tolerate", metavar="N", min=1,
                                          help="How many nodes may fail at once.")] = 1,
    inventory: InventoryOpt = None,
    config_dir: ConfigDirOpt = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Exit 1 when the loss of any TOLERATE nodes would leave an HA guest unplaced (for
    cron and monitoring); says which."""
    from pvha import whatif

    inv, cfg, groups, rules = _inputs(ctx, config_dir, inventory, settings_file)
    bad = whatif.check(inv, cfg, groups, rules, tolerate)
    for outcome in bad:
        names = ", ".join(f"{p.sid} ({p.note or 'no node'})" for p in outcome.unplaced)
        typer.echo(f"losing {'+'.join(outcome.failed)} leaves unplaced: {names}")
    if bad:
        raise typer.Exit(1)
    typer.echo(f"ok: the loss of any {tolerate} node{'s' if tolerate > 1 else ''} leaves every "
               "HA guest placed")


def maintenance_room(ctx: typer.Context, config_dir: str | None, node: str,
                     settings_file: str | None, strict: bool) -> None:
    """Before ``node-maintenance enable NODE``: can the other nodes take NODE's guests?
    A warning per guest that would find no room, or with ``strict`` a refusal (UsageError,
    nothing queued). Without an API, ``strict`` refuses: the room cannot be checked."""
    from pvha import whatif

    inv, cfg, groups, rules = _inputs(ctx, config_dir, None, settings_file, need_api=False)
    if inv is None:
        if strict:
            raise UsageError("--strict: no API configured to check the other nodes' room")
        return
    outcome = whatif.what_if(inv, cfg, groups, rules, [node], maintenance=True)
    short = [f"{p.sid} ({p.note or 'no node'})" for p in outcome.unplaced
             if p.before == node]
    if not short:
        return
    if strict:
        raise UsageError(f"the other nodes cannot take {node}'s guests: {', '.join(short)}; "
                         "not queued")
    for item in short:
        render.warn(f"warning: {item} would not find room off {node}")


def register(app: typer.Typer) -> None:
    app.command("what-if")(what_if)
    app.command("check")(check)
