"""``pvha sim serve --agents``: one real ``pvha agent`` process per simulated node,
configured as on a real node: its node name, its own pmxcfs mount as the cluster
filesystem, its node's watchdog-mux socket, the simulator's watchdog timeout, and its
node's guest pidfiles (:mod:`pvha.fakepve.procs`).

An agent runs while its node is powered on, as a systemd unit would: it is started when
the node boots (at start and after every power-on) and killed with SIGKILL when the node
loses power or is reset (every process of a node dies with it). ``network``, ``partition``
and ``kill -9`` of the agent act on it as on real hardware. Each agent logs to
``STATE_DIR/nodes/NODE/agent.log``.

A node's systemd is what the agent asks when it is stopped (``systemctl --full
list-jobs``): each node has a ``systemctl`` of its own first in the agent's PATH
(``STATE_DIR/nodes/NODE/bin``), which prints the jobs of ``STATE_DIR/nodes/NODE/jobs``.
``reboot NODE`` and ``shutdown NODE`` queue ``shutdown.target`` (and ``reboot.target``)
there and stop the agent with SIGTERM, as systemd stops its unit, waiting for it as
systemd would (its ``--shutdown-timeout`` plus 30 s, then SIGKILL).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("pvha.fakepve")


SYSTEMCTL = """#!/bin/sh
# the systemctl of simulated node {node}: only "--full list-jobs", from its jobs file
[ "$1 $2" = "--full list-jobs" ] || exit 0
if [ -s "{jobs}" ]; then cat "{jobs}"; else echo "No jobs running."; fi
"""


class AgentFarm:
    """The agent processes of every node (see the module docstring)."""

    def __init__(self, state: Path, roots: dict[str, Path], sockets: dict[str, Path],
                 watchdog_seconds: float, interval: float, run_dirs: dict[str, Path],
                 shutdown_timeout: float = 900.0) -> None:
        self.state, self.roots, self.sockets, self.run_dirs = state, roots, sockets, run_dirs
        self.watchdog_seconds, self.interval = watchdog_seconds, interval
        self.shutdown_timeout = shutdown_timeout
        for node in roots:
            bin_dir = self._home(node) / "bin"
            bin_dir.mkdir(parents=True, exist_ok=True)
            shim = bin_dir / "systemctl"
            shim.write_text(SYSTEMCTL.format(node=node, jobs=self._jobs(node)), "utf-8")
            shim.chmod(0o755)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._starts = dict.fromkeys(roots, 0)
        self._exits: dict[str, int | None] = {}  # the last exit status of a node's agent
        self._lock = threading.Lock()
        self._settings = state / "agent-settings.toml"  # empty: only the flags count
        self._settings.write_text("# pvha sim serve --agents: agents take flags only\n",
                                  encoding="utf-8")

    def start(self, node: str) -> None:
        """The node booted: its agent starts (once)."""
        with self._lock:
            proc = self._procs.get(node)
            if proc is not None and proc.poll() is None:
                return
            self._jobs(node).unlink(missing_ok=True)  # a node boots with no shutdown queued
            env = {k: v for k, v in os.environ.items() if not k.startswith("PVHA_")}
            env.update(PVHA_SETTINGS=str(self._settings), PYTHONUNBUFFERED="1",
                       PATH=f"{self._home(node) / 'bin'}{os.pathsep}{env.get('PATH', '')}")
            argv = [sys.executable, "-m", "pvha", "agent", "--node", node,
                    "--watchdog-socket", str(self.sockets[node]),
                    "--cfs-root", str(self.roots[node]), "--interval", f"{self.interval:g}",
                    "--run-dir", str(self.run_dirs[node]),
                    "--cgroup-root", str(self._home(node) / "cgroup"),  # none: pidfiles only
                    "--watchdog-timeout", f"{self.watchdog_seconds:g}",
                    "--shutdown-timeout", f"{self.shutdown_timeout:g}"]
            logfile = self._home(node) / "agent.log"
            with logfile.open("ab") as fh:
                self._procs[node] = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True)
            self._starts[node] += 1

    def _home(self, node: str) -> Path:
        return self.roots[node].parent

    def _jobs(self, node: str) -> Path:
        return self._home(node) / "jobs"

    def shut_down(self, node: str, reboot: bool) -> None:
        """systemd shuts ``node`` down (or reboots it): its agent's unit is stopped (see
        the module docstring). Returns once the agent is gone."""
        jobs = "  71 shutdown.target start waiting\n"
        if reboot:
            jobs += "  72 reboot.target   start waiting\n"
        self._jobs(node).write_text(jobs, "utf-8")
        with self._lock:
            proc = self._procs.get(node)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self.shutdown_timeout + 30)
        except subprocess.TimeoutExpired:
            self.kill(node)

    def kill(self, node: str) -> None:
        """The node lost power: its agent dies with it."""
        with self._lock:
            proc = self._procs.pop(node, None)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        with self._lock:
            self._exits[node] = proc.returncode

    def describe(self, node: str) -> dict[str, Any]:
        with self._lock:
            proc = self._procs.get(node)
            alive = proc is not None and proc.poll() is None
            return {"pid": proc.pid if alive and proc is not None else None,
                    "running": alive, "starts": self._starts[node],
                    "exit": self._exits.get(node) if proc is None
                    else None if alive else proc.returncode,
                    "log": str(self._home(node) / "agent.log")}

    def stop(self) -> None:
        """The simulator stops: agents get SIGTERM (a clean stop), then SIGKILL."""
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
