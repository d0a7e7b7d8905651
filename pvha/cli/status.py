"""``status``: the configuration plus the last manager status found in the config dir."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from pvha import status as ha_status
from pvha.cli import render
from pvha.cli.common import ConfigDirOpt, OutputFormat, OutputOpt, store_for
from pvha.cli.render import Column
from pvha.config.store import LRM_STATUS_DIR, MANAGER_STATUS, Store
from pvha.errors import StoreError

STATUS_COLUMNS = [Column("type", "TYPE"), Column("status", "STATUS")]


def read_json(store: Store, name: str) -> dict[str, Any] | None:
    text = store.read_text(name)
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise StoreError(f"{store.path(name)}: invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise StoreError(f"{store.path(name)}: expected a JSON object")
    return data


def _lrm_status(store: Store, nodes: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each node's ``lrm_status/<node>``; an unreadable one counts as missing, as in PVE."""
    result: dict[str, dict[str, Any] | None] = {}
    for node in nodes:
        try:
            result[node] = read_json(store, f"{LRM_STATUS_DIR}/{node}")
        except StoreError:
            result[node] = None
    return result


def status(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also print the full cluster state as JSON.")
    ] = False,
    output_format: OutputOpt = OutputFormat.text,
    config_dir: ConfigDirOpt = None,
) -> None:
    """Show HA status as `ha-manager status` does (from the config dir's status files)."""
    store = store_for(ctx, config_dir)
    config = store.load().ha_config()
    manager_status = read_json(store, MANAGER_STATUS) or {}
    lrm = _lrm_status(store, sorted(manager_status.get("node_status") or {}))
    entries = ha_status.status_entries(manager_status, lrm, config, now=time.time())

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
