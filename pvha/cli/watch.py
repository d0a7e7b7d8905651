"""``watch`` (the HA loop) and ``fence-ack`` (an administrator's proof of power-off)."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pvha.cli import render
from pvha.cli.common import NodeArg, SettingsOpt, settings_for
from pvha.errors import UsageError
from pvha.ports import NODE_NAME_RE


def _logging(verbose: bool) -> None:
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if journal else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt,
                        stream=sys.stderr, force=True)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def watch(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run one round, then exit.")] = False,
    round_interval: Annotated[
        float | None,
        typer.Option("--round-interval", metavar="SECONDS",
                     help="Seconds between rounds (default 10).", show_default=False),
    ] = None,
    fence_delay: Annotated[
        int | None,
        typer.Option("--fence-delay", metavar="SECONDS",
                     help="Seconds offline before a node is fenced (default 60; 0 when "
                          "the config dir has a fence.cfg).",
                     show_default=False),
    ] = None,
    cfs_root: Annotated[
        str | None,
        typer.Option("--cfs-root", metavar="DIR",
                     help="Cluster filesystem root (default /etc/pve).", show_default=False),
    ] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option("--metrics-listen", metavar="HOST:PORT",
                     help="Serve Prometheus metrics there (default: none).",
                     show_default=False),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Debug logging.")] = False,
    settings_file: SettingsOpt = None,
) -> None:
    """Run the HA loop: manager and executors through the PVE API (stop with SIGTERM)."""
    # imported here: requests/proxmoxer cost ~0.1 s that other commands and completion skip
    from pvha.adapters import build_real_adapters
    from pvha.adapters import cfs as cfs_mod
    from pvha.shell.loop import Watcher
    from pvha.shell.notifications import notifier_for

    flags: dict[str, Any] = {"round_interval": round_interval, "fence_delay": fence_delay,
                             "cfs_root": cfs_root, "metrics_listen": metrics_listen}
    settings = settings_for(flags, settings_file)
    notifier = notifier_for(settings)
    metrics = server = None
    if settings.watch.metrics_listen:
        from pvha.shell.metrics import Metrics, serve

        metrics = Metrics()
        server = serve(metrics, settings.watch.metrics_listen)
    _logging(verbose)
    api, cfs, clock = build_real_adapters(settings)
    cfs_mod.LOCK_LIFETIME = cfs_mod.lock_lifetime_for(settings.watch.lock_lifetime, cfs.pmxcfs)
    watcher = Watcher(api, cfs, clock, fence_delay=settings.watch.fence_delay,
                      round_interval=settings.watch.round_interval,
                      fence_timeout=settings.watch.fence_timeout,
                      max_workers=settings.watch.max_workers,
                      order_wait=settings.watch.order_wait,
                      task_timeout=settings.api.task_timeout,
                      shutdown_policy=settings.watch.shutdown_policy,
                      notifier=notifier, metrics=metrics)
    watcher.install_signals()
    logging.getLogger("pvha.watch").info(
        "pvha watch starting: API %s, cluster filesystem %s, rounds every %g s, "
        "fence delay %d s, fencing by %s%s", ",".join(settings.api.hosts), cfs.root,
        settings.watch.round_interval, watcher.fence_delay,
        "fence device (fence.cfg), agent lease or fence-ack" if watcher.power
        else "agent lease or fence-ack",
        " (once)" if once else "")
    if server is not None:
        logging.getLogger("pvha.watch").info("metrics at http://%s:%d/metrics",
                                             *server.server_address[:2])
    try:
        code = watcher.run(once=once)
    except KeyboardInterrupt:
        code = 0
    finally:
        if server is not None:
            server.shutdown()
    if code:
        raise typer.Exit(code)


def fence_ack(
    ctx: typer.Context,
    node: NodeArg,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask: the node is known to be powered off.")] = False,
    settings_file: SettingsOpt = None,
) -> None:
    """Confirm that NODE is powered off, so its HA guests may be recovered elsewhere.

    Refused while the API shows NODE online or answering, while its agent's lease still
    protects it, or when there is no API to check with. The ack is not verified: if NODE
    still runs, its guests run twice.
    """
    import time

    from pvha.shell.fencing import FenceAcks
    from pvha.shell.live import check_fence_ack

    if not NODE_NAME_RE.match(node):
        raise UsageError(f"invalid node name '{node}'")
    settings = settings_for({}, settings_file)
    config_dir = _config_dir(ctx, settings)
    if not config_dir.is_dir():
        raise UsageError(f"no pvha configuration at {config_dir} (--config-dir, "
                         "PVHA_CONFIG_DIR or [cfs] in the settings): nothing recorded")
    check_fence_ack(settings, node, time.time())
    risk = (f"node '{node}' will be treated as powered off, without proof: if it still "
            "runs, its HA guests will run twice (here and where they are recovered), "
            "which can corrupt their disks")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"{risk}; confirm with --yes once it is off")
        if not typer.confirm(f"{risk}. Is {node} powered off?", default=False):
            raise UsageError("fence-ack not recorded")
    FenceAcks(config_dir).ack(node, now=time.time(), by=_who())
    render.note(f"fence-ack recorded (acknowledged, not verified): node '{node}' is treated "
                "as powered off; pvha watch recovers its HA guests on other nodes (the ack "
                "is dropped when the node comes back online)")


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - only a label
        return "unknown"


def _config_dir(ctx: typer.Context, settings: Any) -> Path:
    root_dir = ctx.find_root().params.get("config_dir")
    if root_dir:
        return Path(root_dir)
    return Path(settings.cfs.resolved_config_dir)


def register(app: typer.Typer) -> None:
    from pvha.cli.history import history

    app.command("watch")(watch)
    app.command("fence-ack")(fence_ack)
    app.command("history")(history)
