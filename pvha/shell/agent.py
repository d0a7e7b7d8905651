"""``pvha agent``: the per-node part of self-fencing, as pve-ha-lrm's agent lock and
watchdog are.

One agent runs on every node. It holds its node's lease, the lock directory
``priv/lock/pvha_agent_<node>`` (never PVE's own ``ha_agent_<node>_lock``), renewing it
every ``interval`` seconds, and feeds the node's watchdog through watchdog-mux's socket
after each renewal that succeeded, and only then. On pmxcfs a renewal succeeds only while
the node is quorate (a node without quorum has a read-only cfs) and while the lease is
still its own, so losing quorum, losing the lease or hanging all mean no more feeding: the
mux resets the node at most ``MUX_CLIENT_TIMEOUT`` + ``HARDWARE_TIMEOUT`` seconds after
the last renewal. That is what lets the manager count the node fenced once it has seen no
renewal for longer than that (plus a margin), on its own clock.

States (written to ``<config dir>/agent_status/<node>`` on each change, for the manager
and ``pvha status``): ``waiting`` (the lease is not ours yet: held by an earlier run until
it expires, or no quorum; the watchdog is not open), ``active`` (lease held, watchdog
armed and fed), ``lost`` (a renewal failed: feeding stopped for good, the node will be
reset), ``shutting-down`` (the node is shutting down or rebooting: lease held and watchdog
fed while the manager applies the HA shutdown policy), ``stopped`` (clean stop: watchdog
closed with the magic ``V``, lease released).

Shutdown policy. A stop while systemd shuts the node down or reboots it
(:mod:`pvha.adapters.systemd`, asked as pve-ha-lrm asks) is a request: the agent writes
``shutting-down`` with the kind and a request id, keeps renewing and feeding, and waits
(at most ``shutdown_timeout`` s) until the manager's executor of this node has applied the
datacenter shutdown policy as PVE's LRM does (stop and freeze, stop, or migrate everything
away: pvha.shell.executor) and marks the request done in ``lrm_status/<node>``. Then it
stops cleanly; the node is not fenced by its lease (a guest stopped by a clean shutdown is
recovered elsewhere only after a fence device or ``pvha fence-ack``). If a guest did not
stop, it leaves the watchdog armed and the lease held, as PVE's LRM does: the node is
reset, and the lease proves it. A stop without a shutdown (``systemctl restart``, an
upgrade) changes nothing for the guests: they stay managed through the API.

After every renewal that succeeded, and so before it first arms, it looks at the guest
processes running on its node (:mod:`pvha.adapters.guestprocs`: QEMU pidfiles, container
cgroups): a process of an HA guest
whose config now belongs to another node is a stale copy (the node was fenced by an
acknowledgement while it still ran, and rejoined): it is killed, logged, put in the
history (``stale-copy``) and listed in the agent status (``stale_stopped``) for ``pvha
status``. A renewal that succeeded means a quorate node whose cfs view is current.

It refuses to start, in one line, without a watchdog-mux socket or on a cluster
filesystem that is not pmxcfs (where losing quorum would not stop the renewals).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvha.adapters.cfs import ClusterFs
from pvha.adapters.guestprocs import LocalGuests
from pvha.adapters.systemd import node_shutdown
from pvha.adapters.watchdog import HARDWARE_TIMEOUT, MUX_CLIENT_TIMEOUT, WatchdogClient
from pvha.config.resources import parse_resources_text
from pvha.errors import PvhaError
from pvha.fsutil import atomic_write
from pvha.shell.history import History

log = logging.getLogger("pvha.agent")

LEASE_PREFIX = "pvha_agent_"
STATUS_DIR = "agent_status"
SHUTDOWN_TIMEOUT = 900.0
"""Seconds a node shutdown waits for the manager to apply the shutdown policy (migrating
every guest away may take minutes); systemd's TimeoutStopSec of the unit is longer."""
ARMED_STATES = ("active", "shutting-down", "lost")


class AgentError(PvhaError):
    """The agent cannot arm (no watchdog, no pmxcfs) or its watchdog went away."""


def lease_id(node: str) -> str:
    return f"{LEASE_PREFIX}{node}"


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """``<config dir>/agent_status/<node>`` as an agent wrote it (see the module
    docstring); ``fence_after``: the seconds its watchdog may let the node live unfed."""

    state: str
    fence_after: float
    interval: float = 5.0
    stale_stopped: tuple[str, ...] = ()
    stale_running: tuple[str, ...] = ()
    shutdown: str | None = None  # "shutdown" | "reboot": the node's shutdown in progress
    request: int | None = None  # its id, echoed by the manager when the policy is applied

    @property
    def armed(self) -> bool:
        """Lease held and watchdog fed (``active``, ``shutting-down``), or feeding stopped
        for good (``lost``): the node lives at most ``fence_after`` s past its last
        renewal."""
        return self.state in ARMED_STATES and self.fence_after > 0


def read_status(config_dir: Path, node: str) -> AgentStatus | None:
    """The agent status of ``node``; None when there is none or it is damaged."""
    try:
        data = json.loads((config_dir / STATUS_DIR / node).read_text("utf-8"))
        return AgentStatus(str(data["state"]), float(data["fence_after"]),
                           float(data.get("interval", 5.0)),
                           tuple(str(s) for s in data.get("stale_stopped") or ()),
                           tuple(str(s) for s in data.get("stale_running") or ()),
                           _kind(data.get("shutdown")), _request(data.get("request")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _kind(value: Any) -> str | None:
    return value if value in ("shutdown", "reboot") else None


def _request(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def shutdown_done(executor_status: dict[str, Any] | None, request: int) -> dict[str, Any] | None:
    """What the manager reported for shutdown request ``request`` in the node's executor
    status (``{"mode": ..., "errors": N}``), or None while it has not carried it out."""
    memory = (executor_status or {}).get("pvha")
    done = memory.get("shutdown_done") if isinstance(memory, dict) else None
    if isinstance(done, dict) and done.get("request") == request:
        return done
    return None


def lease_mtime(lock_dir: Path, node: str) -> float | None:
    """When ``node``'s lease last changed (its renewal), or None without a lease."""
    try:
        return os.stat(lock_dir / lease_id(node)).st_mtime
    except OSError:
        return None


class Agent:
    """See the module docstring. ``connect(path)`` opens the watchdog (tests may pass
    their own); ``stop()`` may be called from a signal handler."""

    def __init__(self, cfs: ClusterFs, node: str, watchdog: Path, *, interval: float = 5.0,
                 watchdog_timeout: float = MUX_CLIENT_TIMEOUT,
                 guests: LocalGuests | None = None,
                 connect: Callable[[Path], WatchdogClient] = WatchdogClient,
                 clock: Callable[[], float] = time.time,
                 shutdown_probe: Callable[[], tuple[bool, bool]] = node_shutdown,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.cfs, self.node, self.watchdog = cfs, node, Path(watchdog)
        self.guests = guests
        self.stale_stopped: list[str] = []
        self.stale_running: list[str] = []  # copies it could not kill
        self.interval, self.watchdog_timeout = interval, watchdog_timeout
        self._connect, self._clock = connect, clock
        self._probe, self.shutdown_timeout = shutdown_probe, shutdown_timeout
        self.shutdown: str | None = None
        self.request: int | None = None
        self.on_event = on_event  # each history event (pvha.shell.notifications)
        self._stop = threading.Event()
        self._client: WatchdogClient | None = None
        self.state = "starting"

    def check(self) -> None:
        """Refuse to run where self-fencing cannot work (AgentError, one line)."""
        if not self.watchdog.is_socket():
            raise AgentError(f"no watchdog: {self.watchdog} is not a watchdog-mux socket "
                             "(is watchdog-mux running?); refusing to arm")
        if not self.cfs.pmxcfs:
            raise AgentError(f"{self.cfs.root} is not pmxcfs: a node that loses quorum would "
                             "keep renewing its lease; refusing to arm")

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Renew and feed until :meth:`stop`; during a node shutdown, hand the guests over
        first; then close cleanly. 0 after a clean stop, 1 when the watchdog stays armed
        (its connection broke, or a guest did not stop: the node is being reset)."""
        self.check()
        self._set("waiting")
        try:
            while not self._stop.is_set():
                self.step()
                self._stop.wait(self.interval)
            if self.state == "active" and not self._hand_over():
                return 1
        except AgentError as exc:
            log.error("%s", exc)
            return 1
        self._shutdown()
        return 0

    def _hand_over(self) -> bool:
        """A node shutdown: wait until the manager applied the shutdown policy (module
        docstring). False when the watchdog must stay armed (a guest did not stop, or
        the lease was lost meanwhile): the caller exits without closing it."""
        shutdown, reboot = self._probe()
        if not shutdown:
            return True
        self.shutdown = "reboot" if reboot else "shutdown"
        self.request = int(self._clock() * 1000)
        self._set("shutting-down")
        log.info("node %s: %s: waiting for the manager to apply the HA shutdown policy to "
                 "this node's guests (at most %g s)", self.node, self.shutdown,
                 self.shutdown_timeout)
        deadline = time.monotonic() + self.shutdown_timeout
        renew = 0.0
        while True:
            if time.monotonic() >= renew:
                self.step()
                if self.state == "lost":
                    return False
                renew = time.monotonic() + self.interval
            try:
                done = shutdown_done(self.cfs.read_executor_status(self.node), self.request)
            except PvhaError:
                done = None
            if done is not None:
                errors = int(done.get("errors") or 0)
                if errors:
                    log.error("%d HA guest(s) of this node did not stop: leaving the watchdog "
                              "armed and the lease held, the node will be reset", errors)
                    return False  # exiting closes the watchdog without the magic V
                log.info("shutdown policy applied by the manager (mode '%s')",
                         done.get("mode"))
                return True
            if time.monotonic() >= deadline:
                log.warning("no manager applied the shutdown policy within %g s; stopping "
                            "anyway (pve-guests stops the guests that still run)",
                            self.shutdown_timeout)
                return True
            time.sleep(min(1.0, self.interval))

    def step(self) -> None:
        """One renewal, and a feed if it succeeded."""
        if self.state == "lost":  # feeding never resumes: the watchdog resets this node
            if self._client is not None and self._client.dropped():
                self._client = None
                raise AgentError("the watchdog connection broke: the node is being reset")
            return
        if not self.cfs.acquire_lock(lease_id(self.node), quiet=True):
            if self.state in ("active", "shutting-down"):
                self._set("lost")
                log.error("lease %s not renewed (no quorum, or taken over): no longer feeding "
                          "the watchdog, node %s resets within %g s", lease_id(self.node),
                          self.node, self.watchdog_timeout + HARDWARE_TIMEOUT)
            return
        self._stop_stale_copies()
        if self._client is None:
            try:
                self._client = self._connect(self.watchdog)
            except OSError as exc:
                self.cfs.release_lock(lease_id(self.node))
                raise AgentError(f"cannot open the watchdog {self.watchdog}: "
                                 f"{exc.strerror or exc}") from None
            log.info("lease %s held, watchdog armed (%s)", lease_id(self.node), self.watchdog)
            self._set("active")
        try:
            self._client.feed()
        except OSError:
            self._client = None
            raise AgentError("the watchdog connection broke: the node is being reset") from None

    def _stop_stale_copies(self) -> None:
        if self.guests is None:
            return
        procs = self.guests.running()
        failed: list[str] = []
        ha = self._ha_sids() if procs else set()
        for proc in procs:
            if proc.sid not in ha:
                continue
            owners = self.cfs.find_guest_config(proc.kind, proc.vmid)  # type: ignore[arg-type]
            if not owners or self.node in owners:
                continue  # ours, or deleted: not a copy of a guest running elsewhere
            killed = self.guests.kill(proc)
            if not killed:
                failed.append(proc.sid)
                if proc.sid in self.stale_running:
                    continue  # told already; it is tried again at every renewal
            log.error("stale copy of %s %s: it ran on %s, but its config is on %s now (this "
                      "node was fenced while it ran)", proc.sid,
                      "stopped" if killed else "found and NOT stopped (kill failed)",
                      self.node, ",".join(owners))
            History(self.cfs.config_dir, self.on_event, writer=self.node).append(
                "stale-copy", self.node, time=self._clock(), sid=proc.sid,
                outcome="stopped" if killed else "kill failed", target=",".join(owners))
            if killed:
                self.stale_stopped = (self.stale_stopped + [proc.sid])[-20:]
                self._set(self.state)
        if failed != self.stale_running:
            self.stale_running = failed  # the manager places nothing here meanwhile
            self._set(self.state)

    def _ha_sids(self) -> set[str]:
        try:
            text = (self.cfs.config_dir / "resources.cfg").read_text("utf-8")
            return set(parse_resources_text(text))
        except (OSError, PvhaError):
            return set()

    def _shutdown(self) -> None:
        if self._client is not None:
            try:
                self._client.close(clean=True)
            except OSError:
                pass
            self._client = None
        if self.state in ("active", "shutting-down"):
            self.cfs.release_lock(lease_id(self.node))
        self._set("stopped")
        log.info("stopped: watchdog closed cleanly, lease released%s",
                 f" (node {self.shutdown})" if self.shutdown else "")

    def _set(self, state: str) -> None:
        self.state = state
        status: dict[str, Any] = {
            "node": self.node, "state": state, "pid": os.getpid(), "time": int(self._clock()),
            "interval": self.interval,
            "fence_after": self.watchdog_timeout + HARDWARE_TIMEOUT,
            "stale_stopped": self.stale_stopped,
            "stale_running": self.stale_running,
            "shutdown": self.shutdown, "request": self.request,
        }
        path = self.cfs.config_dir / STATUS_DIR / self.node
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, (json.dumps(status, sort_keys=True) + "\n").encode())
        except (OSError, PvhaError) as exc:  # no quorum: the lease tells the truth anyway
            log.warning("cannot write %s: %s", path, getattr(exc, "strerror", None) or exc)

