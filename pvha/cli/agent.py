"""``agent``: the per-node lease holder that feeds the node's watchdog (pvha.shell.agent)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from pvha.cli.common import SettingsOpt, settings_for
from pvha.errors import UsageError
from pvha.ports import NODE_NAME_RE


def agent(
    node: Annotated[str | None, typer.Option(
        "--node", metavar="NODE", envvar="PVHA_NODE",
        help="This node's name in the cluster (default: the short host name).",
        show_default=False)] = None,
    watchdog_socket: Annotated[Path, typer.Option(
        "--watchdog-socket", metavar="PATH", envvar="PVHA_WATCHDOG_SOCKET",
        help="watchdog-mux's socket.")] = Path("/run/watchdog-mux.sock"),
    interval: Annotated[float, typer.Option(
        "--interval", metavar="SECONDS", min=0.1, max=30,
        help="Seconds between lease renewals (each one feeds the watchdog).")] = 5.0,
    watchdog_timeout: Annotated[float, typer.Option(
        "--watchdog-timeout", metavar="SECONDS", min=0.1, max=600,
        help="Seconds watchdog-mux lets a client go unfed before the node resets: 60 on "
             "PVE, must match the mux (the manager waits this, plus 10 s for the hardware "
             "watchdog and a margin, before it counts the node fenced).")] = 60.0,
    run_dir: Annotated[Path, typer.Option(
        "--run-dir", metavar="DIR",
        help="Where the guests' pidfiles are (qemu-server/VMID.pid), to find stale "
             "copies.")] = Path("/var/run"),
    cgroup_root: Annotated[Path, typer.Option(
        "--cgroup-root", metavar="DIR",
        help="The cgroup v2 hierarchy, where the containers are (lxc/VMID), to find "
             "stale copies.")] = Path("/sys/fs/cgroup"),
    shutdown_timeout: Annotated[float, typer.Option(
        "--shutdown-timeout", metavar="SECONDS", min=0, max=86400,
        help="When the node shuts down or reboots: seconds to wait for the manager to "
             "apply the HA shutdown policy to this node's guests.")] = 900.0,
    cfs_root: Annotated[str | None, typer.Option(
        "--cfs-root", metavar="DIR",
        help="Cluster filesystem root (default /etc/pve).", show_default=False)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Debug logging.")] = False,
    settings_file: SettingsOpt = None,
) -> None:
    """Hold this node's lease and feed its watchdog while the node is quorate. SIGTERM
    closes the watchdog cleanly; during a node shutdown or reboot, only after the manager
    applied the HA shutdown policy to the node's guests."""
    from pvha.adapters.cfs import ClusterFs
    from pvha.adapters.guestprocs import LocalGuests
    from pvha.cli.watch import _logging
    from pvha.shell.agent import Agent
    from pvha.shell.notifications import notifier_for

    name = node or socket.gethostname().split(".")[0]
    if not NODE_NAME_RE.match(name):
        raise UsageError(f"invalid node name '{name}'")
    settings = settings_for({"cfs_root": cfs_root}, settings_file)
    _logging(verbose)
    cfs = ClusterFs(settings.cfs.root, settings.cfs.resolved_config_dir)
    notifier = notifier_for(settings)
    runner = Agent(cfs, name, watchdog_socket, interval=interval,
                   watchdog_timeout=watchdog_timeout, guests=LocalGuests(run_dir, cgroup_root),
                   shutdown_timeout=shutdown_timeout, on_event=notifier.history)

    def stop(_signum: int, _frame: Any) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        code = runner.run()  # AgentError: one line on stderr, exit 1 (pvha.cli.main)
    finally:
        notifier.close()
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
