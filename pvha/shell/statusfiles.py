"""``manager_status`` and ``lrm_status/<node>``, written through to the cluster filesystem
and read back from memory.

In PVE the CRM and each LRM are separate processes that exchange these files. In
``pvha watch`` the manager and the executors of every node run in one process, so the
file this process wrote milliseconds ago is not read back from disk: :class:`StatusFiles`
keeps what it wrote and answers from memory. Disk is read only for what this process has
not written during its current tenure of the manager lock (the first round after taking
the lock, when another watcher or an earlier process may have written last);
:meth:`StatusFiles.reset` starts a new tenure. Every manager status goes to disk at
once, atomically (safety rule 4), so a restarted or another watcher resumes from it.

An executor status goes to disk when what it remembers changed (role state, mode,
restart counters, workers with their task UPIDs: what a successor could not recompute),
and otherwise at least every :data:`PERSIST_EVERY` seconds and when the watcher ends
(:meth:`flush`). In between, only its results move: every round the manager hands out a
new uid to each started service and the executor confirms it runs (PVE's "ensure
started"), and a successor that misses such a result simply confirms again. That spares
a write and an fsync per node per round.

The dicts handed out are the ones written: callers must not mutate them.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from pvha.core.ports import CfsError
from pvha.errors import PvhaError

PERSIST_EVERY = 20.0
"""Seconds an executor status may stay in memory only (status calls one older than 30 s
stale)."""


class StatusFiles:
    """Write-through cache of the status files over a ClusterFs."""

    def __init__(self, cfs: Any, clock: Any = None) -> None:
        self.cfs = cfs
        self.clock = clock
        self._manager: dict[str, Any] | None = None
        self._lrm: dict[str, dict[str, Any]] = {}
        self._persisted: dict[str, tuple[str, float]] = {}  # node -> (memory, when)
        self._dirty: set[str] = set()  # nodes whose latest status is only in memory
        self._mutex = threading.Lock()  # executors write their files from threads

    def reset(self) -> None:
        """Forget what was written: the next reads go to disk (new lock tenure)."""
        with self._mutex:
            self._manager = None
            self._lrm.clear()
            self._persisted.clear()
            self._dirty.clear()

    def read_manager(self) -> dict[str, Any]:
        """The manager status ({} if there is none). CfsError if unreadable."""
        if self._manager is not None:
            return self._manager
        try:
            return self.cfs.read_manager_status() or {}
        except PvhaError as err:
            raise CfsError(str(err)) from None

    def write_manager(self, ms: dict[str, Any]) -> None:
        try:
            self.cfs.write_manager_status(ms)
        except PvhaError as err:
            raise CfsError(str(err)) from None
        self._manager = ms

    def read_lrm(self, node: str) -> dict[str, Any]:
        """``node``'s executor status ({} if missing or unreadable, as in PVE)."""
        with self._mutex:
            cached = self._lrm.get(node)
        if cached is not None:
            return cached
        try:
            return self.cfs.read_executor_status(node) or {}
        except PvhaError:
            return {}

    def write_lrm(self, node: str, status: dict[str, Any]) -> None:
        """Keep ``node``'s executor status; to disk as the module docstring says."""
        memory = _memory(status)
        now = self.clock.time() if self.clock is not None else 0.0
        with self._mutex:
            last = self._persisted.get(node)
        if last is None or last[0] != memory or now - last[1] >= PERSIST_EVERY:
            self._persist(node, status, memory, now)
            with self._mutex:
                self._dirty.discard(node)
        else:
            with self._mutex:
                self._dirty.add(node)
        with self._mutex:
            self._lrm[node] = status

    def _persist(self, node: str, status: dict[str, Any], memory: str, now: float) -> None:
        try:
            self.cfs.write_executor_status(node, status)
        except PvhaError as err:
            raise CfsError(str(err)) from None
        with self._mutex:
            self._persisted[node] = (memory, now)

    def flush(self) -> None:
        """Write every executor status held only in memory (the watcher is ending)."""
        with self._mutex:
            pending = [(n, self._lrm[n]) for n in sorted(self._dirty) if n in self._lrm]
            self._dirty.clear()
        now = self.clock.time() if self.clock is not None else 0.0
        for node, status in pending:
            self._persist(node, status, _memory(status), now)


def _memory(status: dict[str, Any]) -> str:
    """What of an executor status a successor could not recompute, as a comparable key."""
    return json.dumps([status.get("state"), status.get("mode"), status.get("pvha")],
                      sort_keys=True, default=str)
