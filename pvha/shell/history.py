"""The fence and recovery journal of ``pvha watch`` (``<config dir>/history.jsonl``).

Theory of operation. One JSON object per line: ``time`` (epoch seconds), ``event``
(``fence``, ``recovery``, ``node``, ``health``; ``stale-copy`` from ``pvha agent``),
``node``, optional ``sid``, ``outcome`` and ``detail``. Each event is appended with a
single ``write(2)`` on a file opened ``O_APPEND`` and then fsynced, so the writers of
one node never interleave within a line and a crash leaves at most a torn last line,
which :meth:`History.read` skips.

One writer per file across the cluster: an append through pmxcfs lands at the end of the
file *as the writing node sees it*, so two nodes appending to one file at once overwrite
each other's lines (pmxcfs applies each write at its offset, in cluster order). The
manager's events (one master at a time) go to ``history.jsonl``; each node's agent
writes its own ``history.d/<node>.jsonl`` (``writer``). :meth:`read` merges them by
time. pmxcfs caps a file at 1 MiB (a write past it fails), so the journal stays under
:data:`MAX_BYTES`: an append that would cross it first rewrites the file (atomically)
with the newest events that fill half of it. Details never hold secrets: they come from
:class:`pvha.fence.fencer.FenceResult`, which redacts them.

:class:`Recorder` turns the manager's and executors' log lines (the core's PVE wording)
into node and recovery events, so the pure core needs no hook of its own:

* the manager's node state changes, as ``node`` events for ``pvha history
  --incidents`` (:mod:`pvha.incidents`): ``'online' => 'unknown'`` (or from
  ``maintenance``) -> ``offline``, the failure detected; ``... => 'fence'`` -> ``fence``,
  fencing begins; ``'unknown'`` or ``'fence' => 'online'`` -> ``online``, the node is back;
* ``recover service '<sid>' from fenced node '<n>' to node '<t>'`` -> ``placed``;
* ``recovering service '<sid>' from fenced node '<n>' failed, no recovery node found``
  -> ``no recovery node``;
* an executor's ``service status <sid> started`` for a service placed by a recovery ->
  ``running``: the guest runs elsewhere;
* an executor's ``service '<sid>' unhealthy: <why>`` (pvha.core.health) -> a ``health``
  event, ``unhealthy``: the restart policy restarts or relocates the guest.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pvha.errors import StoreError
from pvha.fsutil import atomic_write

HISTORY = "history.jsonl"
WRITERS_DIR = "history.d"
"""Directory of the per-node journals of the agents (``<node>.jsonl``)."""
MAX_BYTES = 512 * 1024
"""The journal's size bound, half of pmxcfs's 1 MiB file limit."""
log = logging.getLogger("pvha.watch")

_PLACED = re.compile(r"^recover service '([^']+)' from fenced node '([^']+)' to node '([^']+)'$")
_NO_NODE = re.compile(r"^recovering service '([^']+)' from fenced node '([^']+)' failed")
_STARTED = re.compile(r"^service status (\S+) started$")
_NODE = re.compile(r"^node '([^']+)': state changed from '([^']+)' => '([^']+)'$")
_UNHEALTHY = re.compile(r"^service '([^']+)' unhealthy: (.*)$")
_ERROR = re.compile(r"^service '([^']+)': state changed from '([^']+)' to 'error'")


class History:
    """Append-only journal in ``config_dir`` (see the module docstring)."""

    def __init__(self, config_dir: Path | str,
                 on_append: Callable[[dict[str, Any]], None] | None = None,
                 writer: str | None = None) -> None:
        """``on_append`` sees every event, written or not (pvha.shell.notifications).
        ``writer``: the node whose agent appends (its own file); None for the manager."""
        self.dir = Path(config_dir)
        self.path = self.dir / HISTORY if writer is None else \
            self.dir / WRITERS_DIR / f"{writer}.jsonl"
        self.on_append = on_append
        self._lock = threading.Lock()

    def append(self, event: str, node: str, *, time: float, sid: str | None = None,
               outcome: str = "", **extra: Any) -> None:
        """Append one event; an IO error is logged, never raised (the journal is a
        record, not a precondition of any HA action)."""
        record: dict[str, Any] = {"time": round(float(time), 3), "event": event,
                                  "node": node, "outcome": outcome}
        if sid is not None:
            record["sid"] = sid
        record.update({k: v for k, v in extra.items() if v is not None})
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            try:
                self._rotate(len(data))
                if self.path.parent != self.dir:
                    self.path.parent.mkdir(exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as err:
                log.warning("cannot append to %s: %s", self.path, err.strerror)
            except StoreError as err:
                log.warning("cannot rotate %s: %s", self.path, err)
        if self.on_append is not None:
            self.on_append(record)

    def _rotate(self, incoming: int) -> None:
        """Keep the newest whole lines that fit in half of :data:`MAX_BYTES` when
        ``incoming`` more bytes would cross it."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + incoming <= MAX_BYTES:
            return
        lines = self.path.read_bytes().splitlines(keepends=True)
        kept: list[bytes] = []
        room = MAX_BYTES // 2
        for line in reversed(lines):
            if not line.endswith(b"\n"):
                continue  # a torn last line
            if len(line) > room:
                break
            kept.append(line)
            room -= len(line)
        atomic_write(self.path, b"".join(reversed(kept)), 0o644)

    def read(self) -> list[dict[str, Any]]:
        """Every complete event of the config dir's journals (the manager's and every
        agent's), oldest first; a torn or damaged line is skipped. StoreError when a
        journal cannot be read."""
        try:
            agents = sorted(p for p in (self.dir / WRITERS_DIR).iterdir()
                            if p.suffix == ".jsonl")
        except (FileNotFoundError, NotADirectoryError):
            agents = []
        except OSError as err:
            raise StoreError(f"cannot read {self.dir / WRITERS_DIR}: {err.strerror}") from None
        out: list[dict[str, Any]] = []
        for path in (self.dir / HISTORY, *agents):
            out.extend(_events(path))
        out.sort(key=lambda e: e["time"])  # stable: one file's order is kept
        return out


def _events(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return []
    except OSError as err:
        raise StoreError(f"cannot read {path}: {err.strerror}") from None
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record and \
                isinstance(record.get("time"), (int, float)):
            out.append(record)
    return out


class Recorder:
    """Log-line hook of the watcher's ports: recovery events into ``history``."""

    def __init__(self, history: History, clock: Callable[[], float],
                 on_error: Callable[[str, str], None] | None = None) -> None:
        """``on_error(sid, previous state)``: a service entered ``error``."""
        self.history = history
        self.clock = clock
        self.on_error = on_error
        self.placed: dict[str, str] = {}  # sid -> fenced node, until it runs
        self._down: set[str] | None = None  # nodes journaled offline/fence and not back
        self._lock = threading.Lock()

    def _node_event(self, node: str, outcome: str) -> None:
        """Journal a node's detection, fence or return; a return only after a journaled
        failure (a manager's first round sees every node come online: that is no event).
        The failed nodes are first read from the journal, so a restarted watcher still
        records the return of a node that failed under its predecessor."""
        if self._down is None:
            last: dict[str, str] = {}
            for ev in self.history.read():
                if ev.get("event") == "node":
                    last[str(ev.get("node"))] = str(ev.get("outcome"))
            self._down = {n for n, o in last.items() if o != "online"}
        if outcome == "online":
            if node not in self._down:
                return
            self._down.discard(node)
        else:
            self._down.add(node)
        self.history.append("node", node, time=self.clock(), outcome=outcome)

    def __call__(self, node: str | None, msg: str) -> None:
        """``node`` None = a manager line, else the executor of ``node``."""
        if node is None:
            self._manager(msg)
            return
        m = _UNHEALTHY.match(msg)
        if m is not None:
            self.history.append("health", node, time=self.clock(), sid=m.group(1),
                                outcome="unhealthy", detail=m.group(2))
            return
        m = _STARTED.match(msg)
        if m is None:
            return
        with self._lock:
            fenced = self.placed.pop(m.group(1), None)
        if fenced is not None:
            self.history.append("recovery", fenced, time=self.clock(), sid=m.group(1),
                                outcome="running", target=node)

    def _manager(self, msg: str) -> None:
        m = _ERROR.match(msg)
        if m is not None and self.on_error is not None:
            self.on_error(m.group(1), m.group(2))
            return
        m = _NODE.match(msg)
        if m is not None:
            node, old, new = m.groups()
            outcome = ("fence" if new == "fence"
                       else "offline" if new == "unknown" and old in ("online", "maintenance")
                       else "online" if new == "online" and old in ("unknown", "fence")
                       else None)
            if outcome is not None:
                self._node_event(node, outcome)
            return
        m = _PLACED.match(msg)
        if m is not None:
            sid, fenced, target = m.groups()
            with self._lock:
                self.placed[sid] = fenced
            self.history.append("recovery", fenced, time=self.clock(), sid=sid,
                                outcome="placed", target=target)
            return
        m = _NO_NODE.match(msg)
        if m is not None:
            self.history.append("recovery", m.group(2), time=self.clock(), sid=m.group(1),
                                outcome="no recovery node")
