"""The executors: the LRM work of every online node, run by the active manager.

Theory of operation. PVE runs one LRM per node; pvha's active manager runs the core's
:class:`~pvha.core.lrm.Lrm` once per round *for each node that the round's quorate view
shows online*, each through its own :class:`~pvha.shell.env.ExecutorEnv`. Nodes that
are not online get no executor round and no API call at all (a call proxied to a dead
node can hang for 30 s).

Nothing waits: a worker posts its guest action and keeps the task's UPID in its job; the
next rounds look at the task (one GET each) until it has ended
(:mod:`pvha.core.executor`). A round's work is therefore bounded by the number of
workers (at most ``max_workers`` in flight per node, PVE's default 4), whatever the
tasks' durations. Nodes run in parallel threads, each node's workers one after the other.

Nothing lost, nothing done twice: every round, each executor writes its status
(results, restart counters, workers with their UPIDs: :meth:`Lrm.memory`) to
``lrm_status/<node>`` atomically; a new executor (a restarted watcher, the next
``--once`` run, another node's watcher after a takeover) resumes from that file. A
command interrupted before its job recorded its task is run again, and every operation
checks first: a start looks whether the guest runs, a migration whether the config is
already on the target.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from pvha.core.lrm import Lrm
from pvha.shell.env import ExecutorEnv, Shared

MAX_WORKERS = 4
"""Guest tasks in flight per node at once (PVE's datacenter ``max_workers`` default)."""


class Executors:
    """One core Lrm per online node, created on first sight (resumed from the node's
    status file) and dropped when the node leaves the view or the lock tenure ends."""

    def __init__(self, shared: Shared, parallel: int = 8, max_workers: int = MAX_WORKERS,
                 task_timeout: float = 600.0) -> None:
        self.shared = shared
        self.parallel = max(1, parallel)
        self.max_workers = max_workers
        self.task_timeout = int(task_timeout)
        self.lrms: dict[str, Lrm] = {}
        self.log = logging.getLogger("pvha.watch")
        self._pool: ThreadPoolExecutor | None = None  # kept: threads cost ~1 ms each

    def reset(self) -> None:
        """A new tenure of the manager lock: forget every executor (another watcher may
        have run them meanwhile); the next round resumes them from their files."""
        self.lrms.clear()

    def _new(self, node: str, now: int) -> Lrm:
        env = ExecutorEnv(self.shared, node)
        lrm = Lrm(env, now, max_workers=self.max_workers, task_timeout=self.task_timeout)
        lrm.resume(env.read_lrm_status(node))
        return lrm

    def run_round(self, now: int) -> None:
        """One executor iteration per online node (never one for an offline node)."""
        view = self.shared.auth.require_view()
        for node in list(self.lrms):
            if node not in view.online:
                del self.lrms[node]
        nodes = sorted(view.online)
        for node in nodes:
            if node not in self.lrms:
                self.lrms[node] = self._new(node, now)
        if self.parallel == 1 or len(nodes) < 2:
            for node in nodes:
                self._iterate(node, now)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel, "pvha-exec")
        for future in [self._pool.submit(self._iterate, node, now) for node in nodes]:
            future.result()

    def close(self) -> None:
        """Stop the worker threads (the watcher is ending)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _iterate(self, node: str, now: int) -> None:
        if not self.shared.auth.may_act():
            return
        try:
            self.lrms[node].do_one_iteration(now)
        except Exception as err:  # noqa: BLE001 - one node's trouble must not stop the others
            self.log.error("executor for %s: unexpected error: %s", node, err)

    def in_flight(self) -> list[str]:
        """UPIDs of the tasks the workers wait for."""
        out = []
        for lrm in self.lrms.values():
            for w in lrm.workers.values():
                task = w["job"].get("task")
                if task:
                    out.append(str(task))
        return out
