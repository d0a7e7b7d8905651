"""`pvha sim serve` (a fake PVE over HTTPS on loopback) and `pvha sim ctl` (its control
channel). ``register(sim_app)`` adds both to the ``sim`` sub-app.

``serve`` runs in the foreground until SIGTERM or SIGINT, then closes the listeners and
removes ``DIR/ctl.sock``. It prints where ``DIR/env`` is and which addresses answer, on
stderr; secrets are only in ``DIR/token`` and ``DIR/password`` (mode 0600).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from pvha.errors import PvhaError

STATE_DIR_HELP = "State directory (certificates, token, cfs, env, ctl.sock)."


def serve(
    state_dir: Annotated[Path, typer.Option("--state-dir", help=STATE_DIR_HELP)],
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=32, help="Cluster nodes.")] = 3,
    guests: Annotated[int, typer.Option("--guests", min=0, help="Guests (fresh cfs).")] = 4,
    ha_guests: Annotated[int | None, typer.Option(
        "--ha-guests", min=0, help="Guests put under pvha HA [default: all].")] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port on every node address (0 = free).")] = 0,
    first_ip: Annotated[str, typer.Option(
        "--first-ip", help="Loopback address of node1; node2 is the next, ...")] = "127.0.0.11",
    task_seconds: Annotated[float, typer.Option(
        "--task-seconds", min=0, help="Duration of start/stop tasks.")] = 1.0,
    migrate_seconds: Annotated[float, typer.Option(
        "--migrate-seconds", min=0, help="Duration of migrations.")] = 2.0,
    proxy_delay: Annotated[float, typer.Option(
        "--proxy-delay", min=0, help="Wait before a 595 for a dead node.")] = 1.0,
    stale_seconds: Annotated[float, typer.Option(
        "--stale-seconds", min=0,
        help="How long a dead node's guests keep their last status.")] = 300.0,
    rrd_interval: Annotated[float, typer.Option(
        "--rrd-interval", min=0, help="Guest status broadcast period (PVE: 10).")] = 0.0,
    auth_fail_delay: Annotated[float, typer.Option(
        "--auth-fail-delay", min=0, help="Delay of 401 answers (PVE: 3).")] = 3.0,
    reboot_seconds: Annotated[float, typer.Option(
        "--reboot-seconds", min=0, help="Down time of 'reboot NODE'.")] = 5.0,
    membership_delay: Annotated[float, typer.Option(
        "--membership-delay", min=0,
        help="Seconds a failed node stays a cluster member (corosync's token timeout).")] = 0.0,
    watchdog_timeout: Annotated[float, typer.Option(
        "--watchdog-timeout", min=0.1,
        help="Seconds a client of a node's watchdog-mux socket (STATE_DIR/nodes/NODE/"
             "watchdog-mux.sock) may go unfed before the node resets.")] = 60.0,
    cfs_delay: Annotated[float, typer.Option(
        "--cfs-delay", min=0, max=3600,
        help="Seconds before a change to one node's pmxcfs mount (STATE_DIR/nodes/NODE/pve) "
             "shows on the others.")] = 0.05,  # pvha.fakepve.server.CFS_DELAY
    cfs_lock_timeout: Annotated[float, typer.Option(
        "--cfs-lock-timeout", min=0.1,
        help="Seconds an unrenewed pmxcfs lock lives (PVE: 120).")] = 120.0,
    agents: Annotated[bool, typer.Option(
        "--agents", help="Run one `pvha agent` per node (its mount, its watchdog socket), "
        "started at boot and killed with the node's power.")] = False,
    agent_interval: Annotated[float, typer.Option(
        "--agent-interval", min=0.1, max=30,
        help="Seconds between an agent's lease renewals.")] = 5.0,
    bmc: Annotated[str | None, typer.Option(
        "--bmc", help="One BMC emulator per node (ipmi|redfish), wired to its power; "
        "writes cfs/pvha/fence.cfg.")] = None,
) -> None:
    """Serve a simulated cluster behind a strict fake PVE API over HTTPS on loopback."""
    from pvha.fakepve.cluster import Timing
    from pvha.fakepve.ctl import CtlServer
    from pvha.fakepve.server import FakePve

    timing = Timing(task_seconds=task_seconds, migrate_seconds=migrate_seconds,
                    proxy_delay=proxy_delay, stale_seconds=stale_seconds,
                    rrd_interval=rrd_interval, auth_fail_delay=auth_fail_delay,
                    reboot_seconds=reboot_seconds, membership_delay=membership_delay,
                    watchdog_seconds=watchdog_timeout, cfs_lock_seconds=cfs_lock_timeout)
    fake = FakePve(state_dir, nodes=nodes, guests=guests, ha_guests=ha_guests, port=port,
                   first_ip=first_ip, timing=timing, bmc=bmc, cfs_delay=cfs_delay,
                   agents=agents, agent_interval=agent_interval)
    stop = threading.Event()
    ctl: CtlServer | None = None
    try:
        fake.start()
        ctl = CtlServer(fake).start()
        previous = {sig: signal.signal(sig, lambda *_: stop.set())
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        _announce(fake)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except (PvhaError, OSError, ValueError) as exc:
        _fail(str(exc))
    finally:
        if ctl is not None:
            ctl.stop()
        fake.stop()
    typer.echo("pvha sim serve: stopped", err=True)


def _announce(fake: Any) -> None:
    typer.echo(f"pvha sim serve: env file {fake.env_path} "
               f"(source it to point pvha at the simulator)", err=True)
    for name in fake.names:
        ip, port = fake.address(name)
        typer.echo(f"  {name}: https://{ip}:{port}/api2/json", err=True)
    if fake.cfs_notice is not None:
        typer.echo(f"pvha sim serve: {fake.cfs_notice}", err=True)
    else:
        typer.echo(f"  cfs: one pmxcfs mount per node at {fake.state}/nodes/NODE/pve, "
                   f"changes reach the other nodes after {fake.cfs_delay:g} s", err=True)
    if fake.agents is not None:
        typer.echo(f"  agents: pvha agent on every node, logs in {fake.state}/nodes/NODE/"
                   "agent.log", err=True)
    if fake.bmcs is not None:
        for name, (ip, port) in sorted(fake.bmcs.endpoints.items()):
            typer.echo(f"  {name} BMC ({fake.bmcs.kind}): {ip}:{port}", err=True)
    typer.echo(f"  control: pvha sim ctl --state-dir {fake.state} \"power node2 off\"",
               err=True)


def ctl(
    command: Annotated[list[str], typer.Argument(help="e.g. 'power node2 off', 'status'.")],
    state_dir: Annotated[Path, typer.Option("--state-dir", help=STATE_DIR_HELP)],
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds.")] = 30.0,
) -> None:
    """Send a command to a running `pvha sim serve` (hardware events and faults).

    \b
    power NODE on|off       network NODE on|off      reboot NODE   shutdown NODE
                            (reboot, shutdown: orderly; with --agents the HA
                            shutdown policy is applied before the power goes off)
    partition node1,node2 node3,node4 (split)        partition heal
    guest VMID start|stop   guest VMID lock NAME|unlock
    guest VMID pause|resume|suspend|io-error (a running VM's QEMU state)
    guest VMID fail start|migrate   guest VMID hang start|stop|shutdown|migrate
                            (the guest's next such task fails / never ends)
    guest VMID fail ha-delete (the next DELETE of its PVE HA resource fails)
    guest VMID template     (a stopped guest becomes a template)
    guest VMID agent ok|hung|broken (a VM's guest agent answers / hangs until the VM's
                            next start / never answers again)
    guest VMID pve-ha started|stopped|disabled|ignored|off
                            (PVE's own HA manages it; STATE_DIR/cfs/ha/*.cfg,
                            PVE's HA config, seeds it too)
    latency MS [NODE]       drop COUNT [NODE]
    fail5xx COUNT [NODE] [STATUS]                    expire-tickets  clear-faults
    bmc NODE fail|work      (with --bmc: the node's BMC stops / starts answering)
    cfs NODE delay SECONDS|stop|resume   (cfs propagation to NODE;
                                         resume: --cfs-delay)
    cfs NODE readonly on|off             cfs NODE full on|off (EROFS / ENOSPC)
    status                  (the cluster's truth as JSON)
    requests [reset]        (API requests handled, by method and path template)
    """
    from pvha.fakepve.ctl import send

    try:
        result = send(state_dir, " ".join(command), timeout=timeout)
    except PvhaError as exc:
        _fail(str(exc))
        return
    if result is not None:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def register(sim_app: typer.Typer) -> None:
    """Add ``serve`` and ``ctl`` to the ``pvha sim`` sub-app."""
    sim_app.command("serve")(serve)
    sim_app.command("ctl")(ctl)


def _standalone() -> typer.Typer:
    app = typer.Typer(name="sim", no_args_is_help=True)
    register(app)
    return app


if __name__ == "__main__":  # python -m pvha.cli.sim_serve serve --state-dir DIR
    _standalone()()
