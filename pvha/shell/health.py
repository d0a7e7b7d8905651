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
is later.

What survives (as the executors' status files do): the records, the answers not yet
folded and the time of the last ping are written to ``<config dir>/health_state``
(atomically, when changed, at most every :data:`SAVE_EVERY` s and when the watcher
ends) and read back when a watcher begins its tenure of the manager lock
(:meth:`reset`). So a restarted watcher, another node's watcher taking over and a
series of ``pvha watch --once`` runs (a timer) judge as one continuous watcher would;
a ``--once`` run waits for its pings in flight (:meth:`settle`, at most
:data:`SETTLE_WAIT` s) before it writes them. A missing or damaged file is a fresh
start: every guest gets a new grace, which never restarts a guest too early. Records of
guests not asked about for :data:`FORGET_AFTER` s are dropped.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pvha.core.health import Decision, HealthRecord, HealthSpec, decide
from pvha.errors import ApiError, StoreError
from pvha.fsutil import atomic_write, parse_json_object
from pvha.ports import Guest, GuestRef

PING_THREADS = 4
"""Pings in flight at once, over all guests."""
HEALTH_STATE = "health_state"
"""File in the config dir that keeps the records between watchers."""
SAVE_EVERY = 20.0
"""Seconds between two writes of changed records by a running watcher."""
SETTLE_WAIT = 45.0
"""Seconds a ``--once`` run waits for its pings in flight (the API client's read
timeout, 40 s by default, bounds a ping)."""
FORGET_AFTER = 3600.0
"""Seconds after the last question about a guest (or after its record was read back)
when its record is dropped."""
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
    asked: float = 0.0  # when a verdict was last asked for, or it was read back (not saved)

    def saved(self) -> dict[str, Any]:
        return {"record": asdict(self.record), "answers": list(self.answers),
                "last_ping": self.last_ping}

    @classmethod
    def of(cls, data: Any, now: float) -> _Probe:
        """A probe from its saved form, read back at ``now``; ValueError/TypeError/
        KeyError when damaged."""
        rec, answers, last = data["record"], data["answers"], data["last_ping"]
        if not isinstance(rec, dict) or set(rec) != {f.name for f in fields(HealthRecord)} \
                or not all(v is None or type(v) is int for v in rec.values()):
            raise ValueError("bad record")
        if not (isinstance(answers, list) and all(type(a) is bool for a in answers)):
            raise ValueError("bad answers")
        if last is not None and type(last) not in (int, float):
            raise ValueError("bad last_ping")
        return cls(HealthRecord(**rec), answers, last_ping=last, asked=now)


class HealthMonitor:
    """Per-guest health records and background pings through ``api`` (see the module
    docstring), kept in ``config_dir`` (None: in memory only). Thread-safe: executors
    of several nodes ask at once."""

    def __init__(self, api: Any, config_dir: Path | None = None,
                 threads: int = PING_THREADS) -> None:
        self.api = api
        self.config_dir = config_dir
        self.threads = threads
        self._probes: dict[str, _Probe] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # a ping came back
        self._pool: ThreadPoolExecutor | None = None
        self._loaded = config_dir is None
        self._saved: dict[str, Any] | None = None
        self._saved_at: float | None = None

    def reset(self) -> None:
        """A new tenure of the manager lock: forget what memory holds; the records are
        read again from ``health_state`` at the next question."""
        with self._lock:
            self._probes.clear()
            self._loaded = self.config_dir is None
            self._saved = self._saved_at = None

    def save(self, now: float, force: bool = False) -> None:
        """Write ``health_state`` if the records changed, at most every
        :data:`SAVE_EVERY` s unless ``force`` (call only while holding the manager
        lock). An error is only logged: the next watcher then starts with new graces."""
        if self.config_dir is None:
            return
        with self._lock:
            if not self._loaded:
                return  # nothing was asked in this tenure: the file is as it was
            if not force and self._saved_at is not None and now - self._saved_at < SAVE_EVERY:
                return
            for sid in [s for s, p in self._probes.items()
                        if now - p.asked > FORGET_AFTER]:
                del self._probes[sid]
            state = {sid: probe.saved() for sid, probe in sorted(self._probes.items())}
            if state == self._saved:
                return
            try:
                atomic_write(self.config_dir / HEALTH_STATE,
                             json.dumps(state, sort_keys=True).encode())
                self._saved, self._saved_at = state, now
            except Exception as err:  # noqa: BLE001 - the next watcher starts afresh
                log.warning("cannot write %s: %s", HEALTH_STATE, err)

    def settle(self, timeout: float = SETTLE_WAIT) -> None:
        """Wait until no ping is in flight, at most ``timeout`` s (a ``--once`` run,
        before :meth:`save`): their answers then count in the next run."""
        with self._idle:
            self._idle.wait_for(lambda: not any(p.in_flight for p in self._probes.values()),
                                timeout)

    def _load(self, now: float) -> None:
        """Read ``health_state`` once per tenure (under ``_lock``)."""
        self._loaded = True
        assert self.config_dir is not None
        path = self.config_dir / HEALTH_STATE
        try:
            data = parse_json_object(path.read_text(encoding="utf-8"), path) or {}
            probes = {str(sid): _Probe.of(item, now) for sid, item in data.items()}
        except FileNotFoundError:
            return
        except (OSError, StoreError, ValueError, TypeError, KeyError) as err:
            log.warning("%s unreadable (%s): every checked guest starts a new grace",
                        path, err)
            return
        self._probes.update(probes)
        self._saved = {sid: p.saved() for sid, p in sorted(probes.items())}

    def started(self, sid: str, now: float) -> None:
        """A start of ``sid`` was posted: its grace counts from ``now``."""
        with self._lock:
            if not self._loaded:
                self._load(now)
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
            if not self._loaded:
                self._load(now)
            probe = self._probes.setdefault(sid, _Probe())
            probe.asked = now
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
        with self._idle:
            probe = self._probes.get(sid)
            if probe is not None:
                probe.in_flight = False
                if answered is not None:
                    probe.answers.append(answered)
                if note is not None and probe.warned != note:
                    log.warning("health check of %s: ping not counted: %s", sid, note)
                probe.warned = note
            self._idle.notify_all()
