"""The LRM daemon role state machine and its executor logic (semantics §1.10, ``LRM.pm``).

One :class:`Lrm` per node; the shell calls :meth:`Lrm.do_one_iteration` with ``now``
each daemon round (False = exit). Workers are resumable jobs
(:mod:`pvha.core.executor`): with ports that act at once (the simulator, PVE's
``max_workers = 0`` path) a worker ends within the round that queued it; with ports that
post guest tasks (``pvha watch``) it stays in flight across rounds, like PVE's forked
workers, and is looked at again each round until its task has ended.

Memory (a pvha extension, as :class:`pvha.core.manager.Manager` has): the status this
LRM writes carries, under ``"pvha"``, its role state, restart counters, idle count and
workers, and :meth:`Lrm.resume` starts from them, so a restarted watcher, or the next
``--once`` run, behaves as one continuous LRM.

Guest health (a pvha extension, :mod:`pvha.core.health`): a ``started`` command that
ends with :data:`~pvha.core.executor.EUNHEALTHY` is a failed start for the restart
policy: it counts in ``restart_tries`` against ``max_restart`` (the same log lines), and
then the command is queued again as a restart (hard stop, start); past ``max_restart``
it ends with ERROR, so the manager relocates the guest, then puts it in ``error``.
The successful start of such a restart does not reset ``restart_tries``, nor does a
command that finds the guest not yet judged (``waiting``: in its grace, paused): only a
guest that answers again, or one without health checks, resets it, as a start does.
"""

from __future__ import annotations

from typing import Any

from pvha.core.daemon import error_text as _msg
from pvha.core.daemon import guarded_work
from pvha.core.executor import (
    EUNHEALTHY,
    RETRY_BUDGET,
    TASK_TIMEOUT,
    Job,
    RetryLater,
    in_flight,
    new_job,
    step,
)
from pvha.core.health import WAITING
from pvha.core.lrm_work import do_work, state_changes
from pvha.core.ports import CfsError, HaEnv
from pvha.core.start_order import ORDER_WAIT, StartOrder, ordered, priority
from pvha.core.states import ExitCode
from pvha.core.transitions import LRM, LrmEvent, next_state

MEMORY_KEY = "pvha"
_INDEX: list[Any] = [None]  # (the last service status indexed, its index): one slot, so
# executor threads swap it atomically
_WORKER_KEYS = ("sid", "uid", "state", "params", "start_tries", "job")
_NOT_ACTIVE = ("stopped", "freeze", "error", "request_start")


class Lrm:
    """One node's LRM. ``max_workers`` bounds the workers in flight at once (0 = no
    bound, PVE's inline path); ``budget`` is the RetryLater budget of a job and
    ``task_timeout`` how long a job waits for one task (seconds)."""

    def __init__(
        self, env: HaEnv, now: int, max_workers: int = 0, budget: int = RETRY_BUDGET,
        task_timeout: int = TASK_TIMEOUT, order_wait: int = ORDER_WAIT,
    ) -> None:
        self.env = env
        self.order_wait = order_wait
        self.now = now
        self.max_workers = max_workers
        self.budget = budget
        self.task_timeout = task_timeout
        self.state = "startup"
        self.state_change_time = now
        self.workers: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.restart_tries: dict[str, int] = {}
        self.shutdown_request_time: int | None = None
        self.shutdown_errors = 0
        self.mode = "active"
        self.cluster_state_update = False
        self.active_idle_rounds = 0
        self._ss: dict[str, dict[str, Any]] = {}
        self._mine: list[str] = []  # sids whose node is this node, sorted
        self._active = 0
        self._fenced = 0
        self.node_status = "unknown"
        self.node_states: dict[str, str] = {}
        self.wd: str | None = None
        self.wrote_status_at_startup = False
        self.fire(LrmEvent.BOOT)

    def fire(self, event: LrmEvent) -> None:
        """The one setter of the LRM role: table-checked and logged."""
        new = next_state(LRM, self.state, event)
        if new == self.state:
            return
        self.env.log("info", f"status change {self.state} => {new}")
        self.state = new
        self.state_change_time = self.now

    # ------------------------------------------------------------------ memory
    def memory(self) -> dict[str, Any]:
        """What :meth:`resume` reads back (JSON-shaped)."""
        return {
            "state": self.state,
            "state_change_time": self.state_change_time,
            "restart_tries": dict(self.restart_tries),
            "active_idle_rounds": self.active_idle_rounds,
            "workers": {sid: {k: w[k] for k in _WORKER_KEYS if k in w}
                        for sid, w in self.workers.items()},
        }

    def resume(self, status: dict[str, Any]) -> None:
        """Start from a status this LRM (or one in an earlier process) wrote: results,
        mode, and the memory under ``"pvha"``. Malformed parts are ignored."""
        results = status.get("results")
        if isinstance(results, dict):
            self.results = {u: r for u, r in results.items() if isinstance(r, dict)}
        if status.get("mode") in ("active", "maintenance", "disarm"):
            self.mode = str(status["mode"])
        memory = status.get(MEMORY_KEY)
        if not isinstance(memory, dict):
            return
        if memory.get("state") in ("wait_for_agent_lock", "active", "maintenance",
                                   "lost_agent_lock"):
            self.state = str(memory["state"])
            since = memory.get("state_change_time")
            self.state_change_time = since if isinstance(since, int) else self.now
            self.wrote_status_at_startup = True
        tries = memory.get("restart_tries")
        if isinstance(tries, dict):
            self.restart_tries = {str(k): v for k, v in tries.items() if isinstance(v, int)}
        idle = memory.get("active_idle_rounds")
        if isinstance(idle, int):
            self.active_idle_rounds = idle
        workers = memory.get("workers")
        if isinstance(workers, dict):
            for sid, w in workers.items():
                if isinstance(w, dict) and isinstance(w.get("job"), dict) and "state" in w:
                    self.workers[str(sid)] = {k: w[k] for k in _WORKER_KEYS if k in w}

    # ------------------------------------------------------------------ shutdown
    def shutdown_request(self, now: int) -> None:
        """SIGTERM: apply the datacenter shutdown policy (§1.10 table)."""
        if self.shutdown_request_time is not None:
            return
        self.now = now
        env = self.env
        shutdown, reboot = env.is_node_shutdown()
        policy = (env.get_datacenter_settings().get("ha") or {}).get(
            "shutdown_policy"
        ) or "conditional"
        if shutdown:
            env.log("info", f"got shutdown request with shutdown policy '{policy}'")
        freeze_all = False
        maintenance = False
        if policy == "conditional":
            freeze_all = reboot
        elif policy == "freeze":
            freeze_all = True
        elif policy == "failover":
            freeze_all = False
        elif policy == "migrate":
            maintenance = True
        else:
            env.log("err", f"unknown shutdown policy '{policy}', fall back to conditional")
            freeze_all = reboot
        me = env.nodename()
        if not maintenance and shutdown:
            for sid in sorted(self.service_status):
                if self.service_status[sid].get("node") == me:
                    self.queue_resource_command(sid, None, "request_stop")
        self._apply_shutdown_mode(shutdown, reboot, policy, maintenance, freeze_all)
        self.shutdown_request_time = now
        try:
            if not self.update_lrm_status():
                raise CfsError("not quorate?")
        except CfsError as err:
            env.log("err", f"unable to update lrm status file - {_msg(err)}")

    def _apply_shutdown_mode(
        self, shutdown: bool, reboot: bool, policy: str, maintenance: bool, freeze_all: bool
    ) -> None:
        env = self.env
        if shutdown:
            kind = "reboot" if reboot else "shutdown"
            if self.mode == "maintenance":
                if maintenance:
                    env.log(
                        "info",
                        f"{kind} LRM, ignore maintenance policy, already in maintenance mode",
                    )
                else:
                    env.log(
                        "info",
                        f"{kind} LRM, ignore {policy} policy as manual maintenance mode is enabled",
                    )
            elif maintenance:
                env.log(
                    "info", f"{kind} LRM, doing maintenance, removing this node from active list"
                )
                self.mode = "maintenance"
            elif freeze_all:
                env.log("info", f"{kind} LRM, stop and freeze all services")
                self.mode = "restart"
            else:
                env.log("info", "shutdown LRM, stop all services")
                self.mode = "shutdown"
        elif self.mode == "maintenance":
            env.log(
                "info",
                "Restarting LRM in maintenance mode may be delayed until all services are moved",
            )
        else:
            env.log("info", "restart LRM, freeze all services")
            self.mode = "restart"

    # ------------------------------------------------------------------ status files
    def update_lrm_status(self) -> bool:
        if not self.env.quorate():
            return False
        status = {
            "state": self.state,
            "mode": self.mode,
            "results": dict(self.results),
            "timestamp": self.now,
            MEMORY_KEY: self.memory(),
        }
        try:
            self.env.write_lrm_status(status)
        except CfsError as err:
            self.env.log("err", f"unable to write lrm status file - {_msg(err)}")
            return False
        return True

    def update_service_status(self) -> bool:
        try:
            ms = self.env.read_manager_status()
        except CfsError as err:
            self.env.log("err", f"updating service status from manager failed: {_msg(err)}")
            return False
        self.service_status = ms.get("service_status") or {}
        me = self.env.nodename()
        self.node_states = ms.get("node_status") or {}
        self.node_status = self.node_states.get(me) or "unknown"
        if self.shutdown_request_time is None:
            request = (ms.get("node_request") or {}).get(me) or {}
            if request.get("maintenance"):
                self.mode = "maintenance"
            elif ms.get("disarm"):
                self.mode = "disarm"
            elif self.mode in ("maintenance", "disarm"):
                self.mode = "active"
        return True

    # ------------------------------------------------------------------ counting
    @property
    def service_status(self) -> dict[str, dict[str, Any]]:
        """The manager's service status as last read (not mutated by the LRM)."""
        return self._ss

    @service_status.setter
    def service_status(self, ss: dict[str, dict[str, Any]]) -> None:
        if ss is self._ss:
            return
        mine, active, fenced = _per_node(ss).get(self.env.nodename(), ((), 0, 0))
        self._ss, self._mine, self._active, self._fenced = ss, list(mine), active, fenced

    def active_service_count(self) -> int:
        """Services with this node as node or target in a state that occupies it."""
        return self._active

    def fenced_service_count(self) -> int:
        """Services on this node waiting in ``fence`` (a fence request for this node)."""
        return self._fenced

    def has_configured_service_on_local_node(self) -> bool:
        return bool(self._mine)

    def get_protected_ha_agent_lock(self) -> bool:
        for _attempt in range(6):
            if self.env.get_ha_agent_lock():
                if self.wd is not None:
                    self.env.watchdog_update(self.wd)
                else:
                    self.wd = self.env.watchdog_open()
                return True
        return False

    def give_up_watchdog_protection(self) -> None:
        if self.wd is not None:
            self.env.watchdog_close(self.wd)
            self.wd = None

    # ------------------------------------------------------------------ round
    def do_one_iteration(self, now: int) -> bool:
        self.now = now
        self.cluster_state_update = self.env.cluster_state_update()
        return guarded_work(self.env, self.work)

    def work(self) -> bool:
        if not self.wrote_status_at_startup:
            if self.update_lrm_status():
                self.wrote_status_at_startup = True
            else:
                return self.shutdown_request_time is None
        self.update_service_status()
        state_changes(self)
        return do_work(self)

    # ------------------------------------------------------------------ workers
    def queue_resource_command(
        self, sid: str, uid: str | None, state: str, params: dict[str, Any] | None = None
    ) -> None:
        """Queue a command for ``sid``: none if its uid already has a result (except
        ``stopped``, enforced every round); a worker in flight is left alone, a queued
        one that has not begun is replaced, unless it is the same command (then it keeps
        its job, whose RetryLater budget runs on)."""
        if state != "stopped" and uid and uid in self.results:
            return
        w = self.workers.get(sid)
        if w is not None:
            if in_flight(w["job"]):
                return
            if w["uid"] == uid and w["state"] == state:
                w["params"] = params
                return
            del self.workers[sid]
        self.workers[sid] = {
            "sid": sid,
            "uid": uid,
            "state": state,
            "params": params,
            "start_tries": 0,
            "job": new_job(self.now),
        }

    def manage_resources(self) -> int:
        """Queue the commands of the services on this node, then run the workers."""
        ss = self.service_status
        for sid in list(self.restart_tries):
            if sid not in ss:
                del self.restart_tries[sid]
        for sid in self._mine:
            sd = ss[sid]
            if not sd.get("uid"):
                continue
            state = sd.get("state")
            if state is None or state in ("recovery", "freeze", "request_start"):
                continue
            self.queue_resource_command(
                sid, sd["uid"], state, {"target": sd.get("target"), "timeout": sd.get("timeout")}
            )
        return self.run_workers()

    def run_workers(self) -> int:
        """Advance every worker once: those in flight first (PVE's
        ``check_active_workers``), then the queued ones in fair order (most waited
        first), at most ``max_workers`` in flight. Returns the workers left."""
        sc = self.env.read_service_config()
        workers = self.workers
        for sid in sorted(s for s, w in workers.items() if in_flight(w["job"])):
            self._advance(sid, sc.get(sid))
        busy = sum(1 for w in workers.values() if in_flight(w["job"]))
        pending = sorted(
            (sid for sid, w in workers.items() if not in_flight(w["job"])),
            key=lambda s: (-priority(sc.get(s)), -workers[s]["start_tries"], s),
        )
        gate = (StartOrder(sc, self.service_status, self.node_states, self.env.guest_runs)
                if pending and ordered(sc) else None)
        for sid in pending:
            w = workers[sid]
            w["start_tries"] += 1
            if self.max_workers and busy >= self.max_workers:
                continue
            if gate is not None and w["state"] == "started" and self._waits(gate, sid, w["job"]):
                continue
            self._advance(sid, sc.get(sid))
            if sid in workers and in_flight(w["job"]):
                busy += 1
        if pending:
            self._prune_results()
        return len(self.workers)

    def _waits(self, gate: StartOrder, sid: str, job: dict[str, Any]) -> bool:
        """Whether the start of ``sid`` waits for another guest to run first
        (:mod:`pvha.core.start_order`), at most ``order_wait`` seconds."""
        try:
            if self.env.check_running(sid):
                return False
        except RetryLater:
            return False  # the job itself deals with a port that cannot tell
        found = gate.blocker(sid)
        if found is None:
            if job.pop("waits_for", None) is not None:
                job["since"] = self.now  # the RetryLater budget starts now
            return False
        other, why = found
        waited = self.now - int(job.setdefault("wait_since", self.now))
        if waited >= self.order_wait:
            self.env.log("warning", f"service '{sid}': waited {waited} s for '{other}' ({why}) "
                                    "to run; starting it anyway")
            job.pop("waits_for", None)
            job["since"] = self.now
            return False
        if job.get("waits_for") != other:
            self.env.log("info", f"service '{sid}' waits for '{other}' ({why}) to run first")
            job["waits_for"] = other
        return True

    def _advance(self, sid: str, cd: dict[str, Any] | None) -> None:
        w = self.workers[sid]
        try:
            res = step(self.env, sid, cd, w["state"], w.get("params") or {}, w["job"],
                       self.now, self.budget, self.task_timeout)
        except Exception as err:  # noqa: BLE001 - a failing worker reports, never kills the LRM
            self.env.log("err", str(err).rstrip("\n"))
            res = -1
        if res is None:
            return
        if w.get("uid") is not None:
            self.resource_command_finished(sid, w["uid"], res)
        else:
            self.stop_command_finished(sid, res)

    def resource_command_finished(self, sid: str, uid: str, exit_code: int) -> None:
        w = self.workers.pop(sid, None)
        if w is None:
            return
        if exit_code == -1:
            self.env.log("err", f"resource agent {sid} finished - failed to execute")
        code = self.handle_service_exitcode(sid, w["state"], exit_code, w["job"])
        if code == ExitCode.ETRY_AGAIN:
            if exit_code == EUNHEALTHY:  # the retry is a restart: kept for the next round
                self.workers[sid] = {**w, "job": {**new_job(self.now), "restart": True}}
            return
        self.results[uid] = {"sid": w["sid"], "state": w["state"], "exit_code": int(code)}

    def _prune_results(self) -> None:
        # PVE prunes after every finished command; the service status does not change
        # while workers run, so pruning once per batch keeps the same results in O(n).
        # uids are unique to one service: a result is valid while its service has its uid
        ss = self.service_status
        self.results = {u: r for u, r in self.results.items()
                        if (ss.get(str(r.get("sid"))) or {}).get("uid") == u}

    def stop_command_finished(self, sid: str, exit_code: int) -> None:
        if self.workers.pop(sid, None) is None:
            return
        if exit_code == -1:
            self.env.log("err", f"resource agent {sid} finished - failed to execute")
        if exit_code != 0:
            self.shutdown_errors += 1

    def handle_service_exitcode(self, sid: str, cmd: str, exit_code: int,
                                job: Job | None = None) -> int:
        sc = self.env.read_service_config()
        cd = sc.get(sid)
        max_restart = int(cd.get("max_restart", 1)) if cd else 0
        if cmd != "started":
            return exit_code
        if exit_code == ExitCode.SUCCESS:
            if not job or not (job.get("restart") or job.get("health") == WAITING):
                self.restart_tries[sid] = 0
            return exit_code
        if exit_code in (ExitCode.ERROR, EUNHEALTHY):
            tries = self.restart_tries.setdefault(sid, 0)
            if tries >= max_restart:
                what = "recover unhealthy" if exit_code == EUNHEALTHY else "start"
                self.env.log(
                    "err", f"unable to {what} service {sid} on local node after {tries} retries"
                )
                self.restart_tries[sid] = 0
                return ExitCode.ERROR
            self.restart_tries[sid] = tries + 1
            self.env.log("warning", f"restart policy: retry number {tries + 1} for service '{sid}'")
            return ExitCode.ETRY_AGAIN
        return exit_code


def _per_node(ss: dict[str, dict[str, Any]]) -> dict[str, tuple[list[str], int, int]]:
    """node -> (its sids sorted, its active service count, its services in ``fence``),
    from one scan of ``ss``. Every executor of one watcher reads the same status object
    in a round (it is never mutated), so the last one indexed is kept: one scan a round,
    not one per node; a status read afresh (the simulator) is indexed again."""
    last = _INDEX[0]
    if last is not None and last[0] is ss:
        return last[1]  # type: ignore[no-any-return]
    mine: dict[str, list[str]] = {}
    active: dict[str, int] = {}
    fenced: dict[str, int] = {}
    for sid, sd in ss.items():
        node = sd.get("node")
        if not node:
            continue
        mine.setdefault(node, []).append(sid)
        state = sd.get("state")
        if state == "fence":
            fenced[node] = fenced.get(node, 0) + 1
        if state is None or state in _NOT_ACTIVE:
            continue
        active[node] = active.get(node, 0) + 1
        target = sd.get("target")
        if target and target != node:
            active[target] = active.get(target, 0) + 1
    nodes = set(mine) | set(active)
    index = {n: (sorted(mine.get(n, ())), active.get(n, 0), fenced.get(n, 0)) for n in nodes}
    _INDEX[0] = (ss, index)
    return index

