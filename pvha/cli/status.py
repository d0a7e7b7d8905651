"""``status``: the configuration plus the last manager status found in the config dir,
and, when an API is configured (``PVHA_HOSTS`` or the settings file), quorum and guest
locations as the cluster reports them now (3 API calls). ``--watch`` refreshes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from pvha import status as ha_status
from pvha.cli import render
from pvha.cli.common import ConfigDirOpt, OutputFormat, OutputOpt, SettingsOpt, store_for
from pvha.cli.render import Column
from pvha.config.store import LRM_STATUS_DIR, MANAGER_STATUS, Store
from pvha.errors import ApiError, PvhaError, StoreError
from pvha.fsutil import parse_json_object

STATUS_COLUMNS = [Column("type", "TYPE"), Column("status", "STATUS")]


def read_json(store: Store, name: str) -> dict[str, Any] | None:
    return parse_json_object(store.read_text(name), store.path(name))


def _lrm_status(store: Store, nodes: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each node's ``lrm_status/<node>``; an unreadable one counts as missing, as in PVE."""
    result: dict[str, dict[str, Any] | None] = {}
    for node in nodes:
        try:
            result[node] = read_json(store, f"{LRM_STATUS_DIR}/{node}")
        except StoreError:
            result[node] = None
    return result


def collect(store: Store, settings_file: str | None = None) -> tuple[list[Any], dict[str, Any],
                                                                     dict[str, Any]]:
    """Status entries, manager status and lrm status: files, plus the live cluster view
    when an API is configured (an unreachable API is reported and the files shown)."""
    from pvha.settings import load_settings
    from pvha.shell.live import live_view

    config = store.load().ha_config()
    manager_status = read_json(store, MANAGER_STATUS) or {}
    lrm = _lrm_status(store, sorted(manager_status.get("node_status") or {}))
    quorum = guest_nodes = None
    try:
        view = live_view(load_settings(path=settings_file))
    except ApiError as err:
        render.warn(f"warning: cluster API not reachable, showing files only: {err}")
        view = None
    if view is not None:
        quorum = ha_status.Quorum(view.local_node, view.quorate)
        guest_nodes = {sid: g.node for sid, g in view.guests.items()}
    entries = ha_status.status_entries(manager_status, lrm, config, now=time.time(),
                                       quorum=quorum, guest_nodes=guest_nodes)
    entries = list(entries) + fence_entries(store, manager_status, time.time())
    return entries, manager_status, lrm


def fence_entries(store: Store, manager_status: dict[str, Any], now: float) -> list[Any]:
    """One ``fence <node>: <what it waits for>`` entry per node that is being fenced or
    was fenced by a device and has not come back (none otherwise, so the text stays
    ``ha-manager status``'s when nothing is fenced)."""
    from pvha.shell.loop import describe_fence
    from pvha.shell.power import FENCE_CFG, read_fence_state

    state = read_fence_state(store.dir)
    node_status = manager_status.get("node_status") or {}
    devices: set[str] = set()
    if (store.dir / FENCE_CFG).exists():
        from pvha.fence.config import load_fence_config

        try:
            devices = set(load_fence_config(store.dir / FENCE_CFG).nodes())
        except PvhaError as err:
            render.warn(f"warning: {err}")
    out: list[Any] = []
    for node in sorted(set(state) | {n for n, s in node_status.items() if s == "fence"}):
        if node_status.get(node) != "fence" and (state.get(node) or {}).get("state") != "fenced":
            continue  # a job the manager no longer needs
        what = describe_fence(node, state, node in devices, now)
        out.append({"id": f"fence:{node}", "type": "fence", "node": node,
                    "status": f"{node}: {what}"})
    return out


def status(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also print the full cluster state as JSON.")
    ] = False,
    output_format: OutputOpt = OutputFormat.text,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until interrupted (Ctrl-C).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", metavar="SECONDS", help="Refresh period of --watch.")
    ] = 2.0,
    config_dir: ConfigDirOpt = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Show HA status as `ha-manager status` does (live cluster view when an API is set)."""
    store = store_for(ctx, config_dir)
    if watch:
        _watch(store, settings_file, output_format.value, max(0.2, interval))
        return
    entries, manager_status, lrm = collect(store, settings_file)

    def text(rows: Sequence[render.Row]) -> str:
        out = ha_status.format_status_text(rows)
        if verbose:
            full = {"manager_status": manager_status, "lrm_status": lrm}
            out += (
                "full cluster state:\n"
                + json.dumps(full, indent=3, sort_keys=True, separators=(",", " : "))
                + "\n"
            )
        return out

    render.render(entries, STATUS_COLUMNS, output_format.value, text=text)


def _watch(store: Store, settings_file: str | None, fmt: str, interval: float) -> None:
    """Live refresh: a rich Live display for text, one document per refresh otherwise."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    def frame() -> Text:
        entries = collect(store, settings_file)[0]
        stamp = time.strftime("%H:%M:%S")
        return Text(f"pvha status, every {interval:g} s (Ctrl-C to stop), {stamp}\n\n"
                    + ha_status.format_status_text(entries))

    try:
        if fmt != "text" or not sys.stdout.isatty():  # a pipe gets one frame per refresh
            while True:
                if fmt == "text":
                    sys.stdout.write(frame().plain + "\n")
                    sys.stdout.flush()
                else:
                    render.render(collect(store, settings_file)[0], STATUS_COLUMNS, fmt)
                time.sleep(interval)
        with Live(frame(), console=Console(), auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        return
