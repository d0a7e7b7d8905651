"""Guest health checks of ``pvha watch``: the guest agent pinged in the background.

Theory of operation. A ``started`` command of an executor that finds its guest running
asks :class:`HealthMonitor.verdict` (through ``ExecutorEnv.guest_health``) about the
guest, when its resource has ``health agent``. The monitor keeps, per guest, the
:class:`~pvha.core.health.HealthRecord` and the ping answers that arrived since the last
question; it folds them with the core's pure :func:`~pvha.core.health.decide` and, when
the decision asks for pings (not paused, grace over) and the last ping is
``health_interval`` s old, posts the
next ping (:meth:`pvha.adapters.pve_api.PveApi.agent_ping`) on a small thread pool. A
ping never blocks a round: a hung agent keeps one pool thread busy until PVE answers
(PVE gives up on the agent after its own timeout), and a guest has at most one ping in
flight. Only guests with ``health agent`` are ever pinged.

What counts: an answer is a good ping; PVE's ``QEMU guest agent is not running`` a
failed one. Anything else (the API or the node not answering, ``VM <vmid> not
running``, ``No QEMU guest agent configured``: logged once per guest) says nothing about
the guest's health and is not counted.

Paused (:func:`pause_reason`, from the round's view of ``/cluster/resources``): a guest
that holds a config lock (``backup``, ``migrate``, ``snapshot``, ``rollback``,
``clone``, ...), whose QEMU state is not ``running`` (paused, suspended, in or after a
migration), or whose status is not known now. The grace counts from the guest's start:
its ``uptime`` in the view, or a start this watcher posted (:meth:`started`), whichever
is later. Records live in memory: a restarted watcher gives every guest a new grace.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from pvha.core.health import Decision, HealthRecord, HealthSpec, decide
from pvha.errors import ApiError
from pvha.ports import Guest, GuestRef

PING_THREADS = 4
"""Pings in flight at once, over all guests."""
_FAILED = "guest agent is not running"  # PVE's answer after its agent timeout
log = logging.getLogger("pvha.health")


def pause_reason(g: Guest | None) -> str | None:
    """Why the guest must not be judged now (see the module docstring), or None."""
    if g is None or g.status_stale:
        return "its status is not known now"
    if g.lock:
        return f"locked ({g.lock})"
    if g.status != "running":
        return f"QEMU state '{g.status}'"
    return None


@dataclass
class _Probe:
    record: HealthRecord = field(default_factory=HealthRecord)
    answers: list[bool] = field(default_factory=list)
    in_flight: bool = False
    last_ping: float | None = None
    warned: str | None = None


class HealthMonitor:
    """Per-guest health records and background pings through ``api`` (see the module
    docstring). Thread-safe: executors of several nodes ask at once."""

    def __init__(self, api: Any, threads: int = PING_THREADS) -> None:
        self.api = api
        self.threads = threads
        self._probes: dict[str, _Probe] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def started(self, sid: str, now: float) -> None:
        """A start of ``sid`` was posted: its grace counts from ``now``."""
        with self._lock:
            probe = self._probes.get(sid)
            if probe is not None:
                probe.record = replace(probe.record, started_at=int(now), failures=0,
                                       healthy_since=None)
                probe.answers.clear()

    def verdict(self, sid: str, ref: GuestRef, spec: HealthSpec, g: Guest | None,
                now: float) -> Decision:
        """The verdict on the running guest ``sid`` (``g``: its entry in the round's
        view); posts its next ping when one is due."""
        with self._lock:
            probe = self._probes.setdefault(sid, _Probe())
            record = probe.record
            if g is not None and g.uptime is not None and not g.status_stale:
                seen = int(now) - g.uptime
                if record.started_at is None or seen > record.started_at:
                    record = replace(record, started_at=seen)
            answers, probe.answers = probe.answers, []
            decision = decide(spec, record, answers, pause_reason(g), int(now))
            probe.record = decision.record
            due = probe.last_ping is None or now - probe.last_ping >= spec.interval
            if decision.ping and due and not probe.in_flight:
                probe.in_flight, probe.last_ping = True, now
                self._submit(sid, ref)
        return decision

    def close(self) -> None:
        """Stop the ping threads (the watcher is ending); pings in flight are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _submit(self, sid: str, ref: GuestRef) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, "pvha-health")
        self._pool.submit(self._ping, sid, ref)

    def _ping(self, sid: str, ref: GuestRef) -> None:
        answered: bool | None
        note = None
        try:
            self.api.agent_ping(ref)
            answered = True
        except ApiError as err:
            answered = False if _FAILED in str(err) else None
            note = None if answered is False else str(err)
        except Exception as err:  # noqa: BLE001 - a ping must never kill its thread
            answered, note = None, f"{type(err).__name__}: {err}"
        with self._lock:
            probe = self._probes.get(sid)
            if probe is None:
                return
            probe.in_flight = False
            if answered is not None:
                probe.answers.append(answered)
            if note is not None and probe.warned != note:
                log.warning("health check of %s: ping not counted: %s", sid, note)
            probe.warned = note
