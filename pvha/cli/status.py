"""``status``: the configuration (read leniently: a bad section is listed, not fatal), the
last manager status found in the config dir, the fencing ``fence.cfg`` puts in force,
and, when an API is configured (``PVHA_HOSTS`` or the settings file), quorum and guest
locations as the cluster reports them now (3 API calls). ``--watch`` refreshes
(:mod:`pvha.cli.live_view`: a full-screen view on a terminal, appended blocks otherwise).

The exit status is a health check (:data:`pvha.status.EXIT_OK` and the others, listed
in the command's help)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from pvha import status as ha_status
from pvha.cli import render
from pvha.cli.common import ConfigDirOpt, OutputFormat, OutputOpt, SettingsOpt, store_for
from pvha.cli.render import Column
from pvha.config.faults import ConfigFault
from pvha.config.store import LRM_STATUS_DIR, MANAGER_STATUS, Store
from pvha.errors import ApiError, StoreError
from pvha.fsutil import parse_json_object
from pvha.ports import NODE_NAME_RE

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


@dataclass(frozen=True, slots=True)
class Collected:
    """Everything ``pvha status`` shows, and its exit status."""

    entries: list[Any]
    manager_status: dict[str, Any]
    lrm: dict[str, dict[str, Any] | None]
    quorum: ha_status.Quorum
    exit_code: int
    api: ApiAnswer

    def tell(self) -> None:
        """The API's trouble on stderr, one line each (none when it answered)."""
        if self.api.error is not None:
            render.error("cluster API failed, quorum unknown (showing the status files): "
                         + self.api.error)
        for warning in self.api.warnings:  # a host failed, another answered: worth knowing
            render.warn(f"warning: API host failed, another one answered: {warning}")


def read_fencing(store: Store) -> tuple[ha_status.Fencing, list[ConfigFault]]:
    """The fence devices ``fence.cfg`` connects each node to (none without the file).
    An invalid file gives one fault per bad line; an unreadable one raises ConfigError."""
    from pvha.shell.fencing import FenceAcks
    from pvha.shell.power import FENCE_CFG

    acks_dir = FenceAcks(store.dir)
    acks = {n: a.by for n in acks_dir.nodes() if (a := acks_dir.get(n)) is not None}
    agents, stale = read_agents(store.dir)
    renewed = lease_ages(store.dir.parent / "priv" / "lock", agents, time.time())
    extra: dict[str, Any] = {"agents": agents, "acks": acks, "renewed_ago": renewed,
                             "stale": stale}
    path = store.dir / FENCE_CFG
    if not path.exists():
        return ha_status.Fencing(**extra), []
    from pvha.fence.config import FenceConfigError, load_fence_config

    try:
        config = load_fence_config(path)
    except FenceConfigError as err:
        faults = [ConfigFault(FENCE_CFG, line, None, message) for line, message in err.issues]
        return ha_status.Fencing(invalid=True, **extra), faults
    devices = {n: tuple(level.device for level in config.levels(n)) for n in config.nodes()}
    return ha_status.Fencing(devices, **extra), []


def lease_ages(lock_dir: Path, agents: dict[str, str], now: float) -> dict[str, float]:
    """Seconds since each agent's lease was last renewed, where the config dir sits in
    the cluster filesystem root as ``<root>/pvha`` (its default)."""
    from pvha.shell.agent import lease_mtime

    return {node: max(0.0, now - mtime) for node in agents
            if (mtime := lease_mtime(lock_dir, node)) is not None}


def read_agents(config_dir: Path) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Each node's ``pvha agent`` state and the stale copies it stopped, from
    ``agent_status/<node>`` (a damaged file: nothing)."""
    from pvha.shell.agent import STATUS_DIR, read_status

    states: dict[str, str] = {}
    stale: dict[str, tuple[str, ...]] = {}
    try:
        names = sorted(os.listdir(config_dir / STATUS_DIR))
    except OSError:
        return states, stale
    for name in names:
        status = read_status(config_dir, name) if NODE_NAME_RE.match(name) else None
        if status is not None:
            states[name] = status.state
            if status.shutdown and status.state == "stopped":
                states[name] = f"stopped for node {status.shutdown}"
            if status.stale_stopped:
                stale[name] = status.stale_stopped
    return states, stale


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """What the API said: quorum and guest locations (unknown without a configured API),
    and, told rather than printed, why it failed (one line) or which hosts failed while
    another answered."""

    quorum: ha_status.Quorum
    guests: dict[str, str] | None
    error: str | None = None
    warnings: tuple[str, ...] = ()


def live_quorum(settings_file: str | None) -> ApiAnswer:
    """Quorum and guest locations through the API; an API failure gives an unknown
    quorum and its reason."""
    from pvha.settings import load_settings
    from pvha.shell import live

    settings = load_settings(path=settings_file)
    try:
        view, warnings = live.view_with_reasons(settings)
    except ApiError as err:
        return ApiAnswer(ha_status.Quorum.failed(), None, " ".join(str(err).split()))
    if view is None:
        return ApiAnswer(ha_status.Quorum.no_api(), None, None, tuple(warnings))
    guests = {sid: g.node for sid, g in view.guests.items()}
    return ApiAnswer(ha_status.Quorum(view.local_node, view.quorate), guests, None,
                     tuple(warnings))


def collect(store: Store, settings_file: str | None = None) -> Collected:
    """Status entries, manager status, lrm status, quorum and exit status: the files,
    plus the live cluster view when an API is configured. StoreError if the config dir
    does not exist or a file cannot be read."""
    store.require_dir()
    snapshot, faults = store.load_lenient()
    manager_status = read_json(store, MANAGER_STATUS) or {}
    node_status = manager_status.get("node_status")
    lrm = _lrm_status(store, sorted(node_status) if isinstance(node_status, dict) else [])
    fencing, fence_faults = read_fencing(store)
    api = live_quorum(settings_file)
    now = time.time()
    report = ha_status.status_report(
        manager_status, lrm, snapshot.ha_config(), now=now, quorum=api.quorum,
        fencing=fencing, faults=[*faults, *fence_faults], guest_nodes=api.guests,
    )
    entries = report.entries + fence_entries(store, manager_status, now, fencing)
    return Collected(entries, manager_status, lrm, api.quorum, report.exit_code, api)


def fence_entries(
    store: Store,
    manager_status: dict[str, Any],
    now: float,
    fencing: ha_status.Fencing | None = None,
) -> list[Any]:
    """One ``fence <node>: <what it waits for>`` entry per node that is being fenced or
    was fenced by a device and has not come back (none otherwise, so the text stays
    ``ha-manager status``'s when nothing is fenced)."""
    from pvha.shell.power import read_fence_state

    state = read_fence_state(store.dir)
    node_status = manager_status.get("node_status") or {}
    nodes = [
        node
        for node in sorted(set(state) | {n for n, s in node_status.items() if s == "fence"})
        # skip a job the manager no longer needs
        if node_status.get(node) == "fence" or (state.get(node) or {}).get("state") == "fenced"
    ]
    if not nodes:
        return []
    from pvha.shell.loop import describe_fence  # the watch loop's wording, loaded only here

    if fencing is None:
        fencing = read_fencing(store)[0]
    out: list[Any] = []
    for node in nodes:
        what = describe_fence(node, state, bool(fencing.devices.get(node)), now)
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
        bool, typer.Option("--watch", help="Refresh until interrupted (Ctrl-C): on a "
                           "terminal a full-screen view of the state and the latest "
                           "events; piped, or in json/yaml, one appended block per "
                           "refresh.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", metavar="SECONDS", help="Refresh period of --watch.")
    ] = 2.0,
    config_dir: ConfigDirOpt = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Show HA status as `ha-manager status` does, as pvha runs it (exit status: health).

    Quorum comes only from the API; the master line names the pvha manager and since
    when (or since when none runs); the fencing and lrm lines name the fencing in force
    per node (fence device from fence.cfg, or fence-ack only); one "HA degraded" line
    per config section skipped as invalid.

    \b
    Exit status, a health check (when several apply, the first listed):
      1: a config or status file cannot be read, or fence.cfg is invalid;
      6: the API is configured but failed (unreachable, authentication, TLS);
      5: no API configured, so quorum is unknown;
      4: no quorum on the node the API answered from;
      3: no pvha manager running (stopped, or its last round too old);
      0: HA operating (also with "HA degraded" lines).
    """
    store = store_for(ctx, config_dir, settings_file)
    if watch:
        from pvha.cli import live_view

        live_view.watch(store, settings_file, output_format.value, max(0.2, interval))
        return
    got = collect(store, settings_file)
    got.tell()

    def text(rows: Sequence[render.Row]) -> str:
        out = ha_status.format_status_text(rows)
        if verbose:
            full: dict[str, Any] = {"manager_status": got.manager_status, "lrm_status": got.lrm}
            if got.quorum.quorate is not None:
                full["quorum"] = {"node": got.quorum.node, "quorate": int(got.quorum.quorate)}
            out += (
                "full cluster state:\n"
                + json.dumps(full, indent=3, sort_keys=True, separators=(",", " : "))
                + "\n"
            )
        return out

    render.render(got.entries, STATUS_COLUMNS, output_format.value, text=text)
    if got.exit_code:
        raise typer.Exit(got.exit_code)
