"""Tasks as PVE's workers show them: UPIDs, status, exit status and logs.

A task belongs to the node that runs it (the node in its UPID). It is ``running`` until
:meth:`Task.finish` writes the final ``TASK OK`` / ``TASK ERROR: ...`` line; a task whose
node dies first is ``stopped`` with exit status ``unexpected status`` and no final line,
as PVE reports after a crash (pve-api-notes §3.3). UPID format (pve-common ``UPID.pm``):
``UPID:<node>:<pid 8 hex>:<pstart 8 hex>:<starttime 8 hex>:<type>:<id>:<user>:``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pvha.fakepve")

UPID_RE = re.compile(
    r"^UPID:(?P<node>[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s/]+):"
    r"(?P<id>[^:\s/]*):(?P<user>[^:\s/]+):$"
)


@dataclass
class Task:
    """One worker. ``user`` is the full id (``root@pam!pvha`` for a token)."""

    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    lines: list[str] = field(default_factory=list)
    exitstatus: str | None = None
    endtime: int | None = None

    @property
    def running(self) -> bool:
        return self.exitstatus is None

    def log(self, line: str) -> None:
        self.lines.append(line)

    def finish(self, error: str | None = None, now: float | None = None) -> None:
        """End the task: OK, or the error (first line kept, as PVE does in the status)."""
        if not self.running:
            return
        if error is None:
            self.log("TASK OK")
            self.exitstatus = "OK"
        else:
            text = " ".join(error.strip().splitlines())
            self.log(f"TASK ERROR: {text}")
            self.exitstatus = text
        self.endtime = int(now if now is not None else time.time())

    def crash(self, now: float) -> None:
        """The node died under the task: no final line, ``unexpected status``."""
        if self.running:
            self.exitstatus = "unexpected status"
            self.endtime = int(now)

    def status(self) -> dict[str, Any]:
        """``GET /nodes/{node}/tasks/{upid}/status``."""
        user, _, tokenid = self.user.partition("!")
        out: dict[str, Any] = {
            "upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.type, "id": self.id, "user": user,
            "status": "running" if self.running else "stopped",
        }
        if tokenid:
            out["tokenid"] = tokenid
        if not self.running:
            out["exitstatus"] = self.exitstatus
        return out

    def list_entry(self) -> dict[str, Any]:
        """An item of ``GET /nodes/{node}/tasks`` and ``/cluster/tasks``."""
        out: dict[str, Any] = {
            "upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.type, "id": self.id, "user": self.user,
        }
        if not self.running:
            out["status"] = self.exitstatus
            out["endtime"] = self.endtime
        return out

    def log_page(self, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """``GET .../log``: lines numbered from 1; ``no content`` for an empty log."""
        lines = self.lines or ["no content"]
        page = lines[start:start + limit] if limit else lines[start:]
        return [{"n": start + i + 1, "t": t} for i, t in enumerate(page)], len(lines)


class TaskTable:
    """All tasks of the cluster, by UPID. Not thread-safe: the cluster lock guards it."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._pids = itertools.count(0x1D300)

    def new(self, node: str, boot_time: float, type_: str, id_: str, user: str,
            now: float) -> Task:
        """Create a running task on ``node`` (booted at ``boot_time``)."""
        pid = next(self._pids)
        pstart = max(1, int((now - boot_time) * 100))  # clock ticks since boot
        start = int(now)
        upid = f"UPID:{node}:{pid:08X}:{pstart:08X}:{start:08X}:{type_}:{id_}:{user}:"
        task = Task(upid, node, pid, pstart, start, type_, id_, user)
        self._tasks[upid] = task
        return task

    def get(self, upid: str) -> Task | None:
        return self._tasks.get(upid)

    def on_node(self, node: str) -> list[Task]:
        """Tasks of ``node``, newest first."""
        tasks = [t for t in self._tasks.values() if t.node == node]
        return sorted(tasks, key=lambda t: (t.starttime, t.pid), reverse=True)

    def all(self) -> list[Task]:
        return sorted(self._tasks.values(), key=lambda t: (t.starttime, t.pid), reverse=True)

    def crash_node(self, node: str, now: float) -> None:
        """The node lost power: its running tasks end without a final line."""
        for task in self._tasks.values():
            if task.node == node:
                task.crash(now)


class Scheduler:
    """Runs callbacks at a later wall-clock time on one daemon thread (task completion,
    reboots). ``stop`` drops whatever is still pending."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fakepve-scheduler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (self._clock() + max(0.0, delay), next(self._seq), fn))
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap and self._heap[0][0] <= self._clock():
                        break
                    wait = self._heap[0][0] - self._clock() if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a bug in one callback must not stop the clock
                log.exception("scheduled callback failed")
