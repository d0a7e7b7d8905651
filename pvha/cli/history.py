"""``history``: fence and recovery events of ``pvha watch`` (``<config dir>/history.jsonl``,
merged with the agents' ``history.d/<node>.jsonl``: :class:`pvha.shell.history.History`).

One row per event: when (local time), what (``node`` / ``fence`` / ``recovery``), the
node, the guest (recoveries), the outcome (``offline``, ``fence``, ``online``;
``started``, ``failed``, ``verified off``, ``acknowledged, not verified``, ``lease
expired``; ``placed``, ``running``, ``no recovery node``) and details (device, attempt,
target node, why a fence failed). ``--incidents`` groups them into one timeline per
node failure, with its durations (:mod:`pvha.incidents`). PVE's standard output options
apply to the table; ``--human-readable 0`` shows the times as recorded (seconds since
the epoch).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from pvha.cli import render
from pvha.cli.common import (
    ConfigDirOpt,
    HumanReadableOpt,
    NoBorderOpt,
    NoHeaderOpt,
    OutputFormat,
    OutputOpt,
    QuietOpt,
    shape,
    store_for,
)
from pvha.cli.render import Column

COLUMNS = [Column("when", "TIME"), Column("event", "EVENT"), Column("node", "NODE"),
           Column("sid", "SID"), Column("outcome", "OUTCOME"), Column("detail", "DETAIL")]


def rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as table rows: ``when`` added (local time), extras folded into ``detail``."""
    out = []
    for ev in events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ev["time"])))
        extra = []
        if ev.get("device"):
            extra.append(f"device {ev['device']}")
        if ev.get("attempt"):
            extra.append(f"attempt {ev['attempt']}")
        if ev.get("target"):
            extra.append(f"on {ev['target']}")
        if ev.get("silent") is not None:
            extra.append(f"agent lease not renewed for {ev['silent']:g} s")
        if ev.get("by"):
            extra.append(f"by {ev['by']}")
        if ev.get("detail"):
            extra.append(str(ev["detail"]))
        out.append({"when": when, **ev, "sid": ev.get("sid", ""),
                    "detail": "; ".join(extra)})
    return out


def history(
    ctx: typer.Context,
    node: Annotated[str | None, typer.Option("--node", help="Only events of this node.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1,
                                              help="Only the last N events.")] = None,
    incidents: Annotated[bool, typer.Option(
        "--incidents", help="One timeline per node failure (detection, fencing, proof, each "
        "guest placed and running) with its durations, instead of the events.")] = False,
    output_format: OutputOpt = OutputFormat.text,
    noborder: NoBorderOpt = "0",
    noheader: NoHeaderOpt = "0",
    quiet: QuietOpt = "0",
    human_readable: HumanReadableOpt = "1",
    config_dir: ConfigDirOpt = None,
) -> None:
    """List fence and recovery events (time, node, guest, outcome), oldest first."""
    from pvha.shell.history import History

    store = store_for(ctx, config_dir)
    events = History(store.dir).read()
    if node is not None:
        events = [e for e in events if e.get("node") == node]
    if incidents:
        _incidents(events, limit, output_format)
        return
    if limit is not None:
        events = events[-limit:]
    table, how = rows(events), shape(noborder, noheader, quiet)
    if output_format is OutputFormat.text:
        columns = COLUMNS if human_readable == "1" else [Column("time", "TIME"), *COLUMNS[1:]]
        render.render(table, columns, "text", shape=how)
        return
    render.render([{k: v for k, v in r.items() if k != "when"} for r in table], COLUMNS,
                  output_format.value, shape=how)


def _incidents(events: list[dict[str, Any]], limit: int | None, fmt: OutputFormat) -> None:
    """The incidents of ``events`` (the last ``limit``), as text blocks or documents."""
    from pvha import incidents

    found = incidents.group(events)
    if limit is not None:
        found = found[-limit:]
    if fmt is OutputFormat.text and not found:
        render.note("no incidents in the history")
        return
    render.render([i.to_json() for i in found], COLUMNS, fmt.value, text=lambda _rows: (
        incidents.text(found, lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)),
                       lambda t: time.strftime("%H:%M:%S", time.localtime(t)))))
