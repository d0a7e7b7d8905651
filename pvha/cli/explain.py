"""``explain SID``: why a guest is where it is or did not move (pvha.explain).

Reads what ``pvha watch`` works from: the configuration (leniently, as ``status``), the
last manager status, the executor status of the guest's node (restart counters), the
fence jobs and acks, the agents' stale copies, and, when an API is configured, one live
view (3 GETs): node online states and where the guest's config is. Without an API, or
when it fails, the files alone, and the answer says so. Writes nothing.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from pvha.cli import render
from pvha.cli.common import ConfigDirOpt, OutputFormat, OutputOpt, SettingsOpt, SidArg, store_for
from pvha.cli.render import Column
from pvha.config.store import LRM_STATUS_DIR, MANAGER_STATUS, Store
from pvha.errors import ApiError, StoreError, UsageError

COLUMNS = [Column("sid", "SID"), Column("state", "STATE"), Column("node", "NODE")]


def _live(settings_file: str | None) -> tuple[Any, str | None]:
    """(the live view's ApiFacts or None, the API's failure or None)."""
    from pvha.settings import load_settings
    from pvha.shell import live

    try:
        view, _warnings = live.view_with_reasons(load_settings(path=settings_file))
    except ApiError as err:
        return None, str(err)
    return (None if view is None else live.api_facts(view)), None


def _executor(store: Store, node: Any, sid: str) -> tuple[dict[str, dict[str, int]], str | None]:
    """The executor of ``node``'s restart counters and the guest ``sid``'s start waits
    for (pvha.core.start_order), from its memory in ``lrm_status/<node>``."""
    from pvha.cli.status import read_json

    if not isinstance(node, str):
        return {}, None
    try:
        memory = (read_json(store, f"{LRM_STATUS_DIR}/{node}") or {}).get("pvha") or {}
    except StoreError:
        return {}, None
    tries = memory.get("restart_tries")
    worker = (memory.get("workers") or {}).get(sid) or {}
    waits = (worker.get("job") or {}).get("waits_for") if isinstance(worker, dict) else None
    return ({node: {str(k): v for k, v in tries.items() if isinstance(v, int)}}
            if isinstance(tries, dict) else {}), (str(waits) if waits else None)


def _fence_wait(store: Store, nodes: list[str], now: float) -> dict[str, str]:
    """Per node being fenced: what its fencing waits for, and the fencing in force."""
    from pvha.cli.status import read_fencing
    from pvha.shell.power import read_fence_state
    from pvha.shell.summary import describe_fence

    fencing, _faults = read_fencing(store)
    state = read_fence_state(store.dir)
    return {n: f"{describe_fence(n, state, bool(fencing.devices.get(n)), now)} "
               f"({fencing.method(n, detail=False)})" for n in nodes}


def _blocked(store: Store, nodes: list[str]) -> frozenset[str]:
    from pvha.shell.agent import read_status

    return frozenset(n for n in nodes if (s := read_status(store.dir, n)) is not None
                     and s.stale_running)


def explain(
    ctx: typer.Context,
    sid: SidArg,
    output_format: OutputOpt = OutputFormat.text,
    config_dir: ConfigDirOpt = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Why a guest is where it is, or did not move: its state, the group and rules that
    apply (and those dropped), each node with why it is excluded or its CRS score, the
    node placement chooses, restart and relocate counters, and what it waits for."""
    from pvha import explain as ex
    from pvha import status as ha_status
    from pvha.cli.status import read_json
    from pvha.config import ops

    store = store_for(ctx, config_dir, settings_file)
    store.require_dir()
    snap, _faults = store.load_lenient()
    resolved = ops.resolve_sid(sid, configured=snap.resources.entries)
    if resolved not in snap.resources.entries:
        raise UsageError(f"no such resource '{resolved}'")
    ms = read_json(store, MANAGER_STATUS) or {}
    now = time.time()
    node_status = ms.get("node_status") if isinstance(ms.get("node_status"), dict) else {}
    nodes = sorted(node_status)
    sd = (ms.get("service_status") or {}).get(resolved) or {}
    live, problem = _live(settings_file)
    tries, start_wait = _executor(store, sd.get("node"), resolved)
    inputs = ex.Inputs(
        sid=resolved, config=snap.ha_config(), manager_status=ms,
        manager_running=ha_status.manager_of(ms, now).running,
        restart_tries=tries, start_wait=start_wait,
        fence_wait=_fence_wait(store, nodes, now), blocked=_blocked(store, nodes),
        live=live, api_problem=problem)
    doc = ex.explain(inputs)
    render.render([doc], COLUMNS, output_format.value, text=lambda _rows: ex.text(doc))


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
