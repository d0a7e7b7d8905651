"""``manager_status`` and ``lrm_status/<node>``, written through to the cluster filesystem
and read back from memory.

In PVE the CRM and each LRM are separate processes that exchange these files. In
``pvha watch`` the manager and the executors of every node run in one process, so the
file this process wrote milliseconds ago is not read back from disk: :class:`StatusFiles`
keeps what it wrote and answers from memory. Disk is read only for what this process has
not written during its current tenure of the manager lock (the first round after taking
the lock, when another watcher or an earlier process may have written last);
:meth:`StatusFiles.reset` starts a new tenure. Every write still goes to disk at once,
atomically (safety rule 4), so a restarted or another watcher resumes from it.

The dicts handed out are the ones written: callers must not mutate them.
"""

from __future__ import annotations

import threading
from typing import Any

from pvha.core.ports import CfsError
from pvha.errors import PvhaError


class StatusFiles:
    """Write-through cache of the status files over a ClusterFs."""

    def __init__(self, cfs: Any) -> None:
        self.cfs = cfs
        self._manager: dict[str, Any] | None = None
        self._lrm: dict[str, dict[str, Any]] = {}
        self._mutex = threading.Lock()  # executors write their files from threads

    def reset(self) -> None:
        """Forget what was written: the next reads go to disk (new lock tenure)."""
        with self._mutex:
            self._manager = None
            self._lrm.clear()

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
        try:
            self.cfs.write_executor_status(node, status)
        except PvhaError as err:
            raise CfsError(str(err)) from None
        with self._mutex:
            self._lrm[node] = status
