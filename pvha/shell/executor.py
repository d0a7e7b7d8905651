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

A node shutdown (:mod:`pvha.shell.agent`): when a node's agent reports that systemd is
shutting the node down or rebooting it, that node's executor gets PVE's LRM shutdown
request, with the datacenter shutdown policy (stop and freeze, stop, or maintenance
that migrates everything away), and runs until the core LRM would exit. Then the request
is marked done in ``lrm_status/<node>`` (with the count of guests that did not stop) for
the agent, and the executor does nothing more for that node (it must not start the
stopped guests again) until the agent runs again after the reboot: a new executor,
in mode ``active``, then starts the frozen guests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from pvha.core.lrm import MEMORY_KEY, Lrm
from pvha.core.ports import CfsError
from pvha.core.start_order import ORDER_WAIT
from pvha.shell.agent import AgentStatus, shutdown_done
from pvha.shell.env import ExecutorEnv, Shared

MAX_WORKERS = 4
"""Guest tasks in flight per node at once (PVE's datacenter ``max_workers`` default)."""


class Executors:
    """One core Lrm per online node, created on first sight (resumed from the node's
    status file) and dropped when the node leaves the view or the lock tenure ends."""

    def __init__(self, shared: Shared, parallel: int = 8, max_workers: int = MAX_WORKERS,
                 task_timeout: float = 600.0, order_wait: int = ORDER_WAIT) -> None:
        self.shared = shared
        self.order_wait = order_wait
        self.parallel = max(1, parallel)
        self.max_workers = max_workers
        self.task_timeout = int(task_timeout)
        self.lrms: dict[str, Lrm] = {}
        self.shutdowns: dict[str, int] = {}  # node -> the shutdown request its Lrm serves
        self.done: set[str] = set()  # nodes whose shutdown request was carried out
        self.log = logging.getLogger("pvha.watch")
        self._pool: ThreadPoolExecutor | None = None  # kept: threads cost ~1 ms each

    def reset(self) -> None:
        """A new tenure of the manager lock: forget every executor (another watcher may
        have run them meanwhile); the next round resumes them from their files."""
        self.lrms.clear()
        self.shutdowns.clear()
        self.done.clear()

    def _new(self, node: str, now: int) -> Lrm:
        env = ExecutorEnv(self.shared, node)
        lrm = Lrm(env, now, max_workers=self.max_workers, task_timeout=self.task_timeout,
                  order_wait=self.order_wait)
        lrm.resume(env.read_lrm_status(node))
        return lrm

    def run_round(self, now: int, agents: Mapping[str, AgentStatus | None] | None = None) -> None:
        """One executor iteration per online node (never one for an offline node), except
        nodes whose shutdown request (``agents``: each node's agent status) is done."""
        view = self.shared.auth.require_view()
        for node in list(self.lrms):
            if node not in view.online:
                self._forget(node)
        nodes = [n for n in sorted(view.online) if self._prepare(n, now, (agents or {}).get(n))]
        if self.parallel == 1 or len(nodes) < 2:
            for node in nodes:
                self._iterate(node, now)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel, "pvha-exec")
        for future in [self._pool.submit(self._iterate, node, now) for node in nodes]:
            future.result()

    def _forget(self, node: str) -> None:
        self.lrms.pop(node, None)
        self.shutdowns.pop(node, None)
        self.done.discard(node)

    def _prepare(self, node: str, now: int, agent: AgentStatus | None) -> bool:
        """Make ``node``'s Lrm ready for this round; False: it must not run (its node's
        shutdown was carried out, see the module docstring)."""
        request = agent.request if agent is not None and agent.shutdown else None
        if request is None:
            if node in self.shutdowns:  # the agent runs again: a new executor
                self._forget(node)
        elif self.shutdowns.get(node) == request:
            return node not in self.done
        else:  # a first look at this request
            served = self.lrms.get(node)
            if served is not None and served.shutdown_request_time is not None:
                self._forget(node)  # it served an earlier request
            self.done.discard(node)
            self.shutdowns[node] = request
            if shutdown_done(self.shared.statuses.read_lrm(node), request) is not None or (
                    agent is not None and agent.state != "shutting-down"):
                self.done.add(node)  # done before, or the agent stopped without it
                return False
        lrm = self.lrms.get(node)
        if lrm is None:
            lrm = self.lrms[node] = self._new(node, now)
        if request is not None and lrm.shutdown_request_time is None and agent is not None:
            assert isinstance(lrm.env, ExecutorEnv)
            lrm.env.node_shutdown = (True, agent.shutdown == "reboot")
            lrm.shutdown_request(now)
        return True

    def close(self) -> None:
        """Stop the worker threads (the watcher is ending)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _iterate(self, node: str, now: int) -> None:
        if not self.shared.auth.may_act():
            return
        lrm = self.lrms[node]
        try:
            if not lrm.do_one_iteration(now) and node in self.shutdowns:
                self._shutdown_done(node, lrm)
        except Exception as err:  # noqa: BLE001 - one node's trouble must not stop the others
            self.log.error("executor for %s: unexpected error: %s", node, err)

    def _shutdown_done(self, node: str, lrm: Lrm) -> None:
        """The core Lrm would exit: tell the node's agent, and run no more for it."""
        status = dict(self.shared.statuses.read_lrm(node))
        memory = dict(status.get(MEMORY_KEY) or {})
        memory["shutdown_done"] = {"request": self.shutdowns[node], "mode": lrm.mode,
                                   "errors": lrm.shutdown_errors}
        status[MEMORY_KEY] = memory
        try:
            lrm.env.write_lrm_status(status)
        except CfsError as err:
            self.log.error("executor for %s: cannot mark its shutdown done: %s", node, err)
            return  # marked at the next round
        self.done.add(node)
        self.log.info("node %s: shutdown policy applied (mode '%s'%s)", node, lrm.mode,
                      f", {lrm.shutdown_errors} guest(s) did not stop"
                      if lrm.shutdown_errors else "")

    def in_flight(self) -> list[str]:
        """UPIDs of the tasks the workers wait for."""
        out = []
        for lrm in self.lrms.values():
            for w in lrm.workers.values():
                task = w["job"].get("task")
                if task:
                    out.append(str(task))
        return out
