"""What an LRM worker does for one command (semantics §1.10 ``exec_resource_agent``), as a
job that can be resumed.

Theory of operation. PVE forks a worker per command and the worker runs it to its end,
waiting on the guest's task. pvha's watch loop must never wait on a task, so a job
advances in steps: :func:`step` either ends the job with an exit code or leaves a task
running, with its handle (a UPID) in the job, and returns None; a later round calls
:func:`step` again, which looks at the task and goes on once it has ended. The job is
plain JSON-shaped data (``phase``, ``task``, ``since``), so the shell persists it and a
restarted watcher, or the next ``--once`` run, resumes it instead of starting over.

A port whose actions complete at once (the simulator: ``start`` returns None,
``migrate`` returns a bool) runs every job to its end in one step, logging PVE's lines
in PVE's order.

Port calls may raise :class:`RetryLater`: the fact or the action is not available now
(the API did not answer, a 5xx, a guest config not yet visible on its new node right
after the recovery rename). The job then stays where it is, without an exit code and
without counting as an attempt, and is tried again in a later round; only after
``budget`` seconds of that does it end as ERROR, which the restart and relocation
policies then handle as a failed start.

Job phases: None (not begun), ``start``, ``stop`` (a start/shutdown task posted or
done: check the result), ``move`` (a migration or its preceding shutdown posted: ask
the port to go on, passing the task that ended), ``restart`` (the hard stop of a
restart by health posted: once stopped, start).

Guest health (a pvha extension, :mod:`pvha.core.health`): a ``started`` command that
finds its guest running asks the port for the guest's health verdict and keeps it in
the job (``health``); an ``unhealthy`` guest ends the command with
:data:`EUNHEALTHY`, which the LRM's restart policy turns into a restart (a job marked
``restart``: hard stop, then start) or, past ``max_restart``, into ERROR.
"""

from __future__ import annotations

from typing import Any, Protocol

from pvha.core.health import UNHEALTHY
from pvha.core.states import ExitCode

RETRY_BUDGET = 120
"""Seconds a job may be held up by :class:`RetryLater` before it fails as ERROR."""
TASK_TIMEOUT = 600
"""Seconds a job waits for a task; then it judges by the guest's real state."""

Job = dict[str, Any]
EUNHEALTHY = 64
"""pvha's exit code of a ``started`` command whose guest is unhealthy; the LRM's restart
policy turns it into ETRY_AGAIN or ERROR, so it is never a result."""


class RetryLater(Exception):
    """Raised by a resource port: cannot tell or cannot act now; the message says why."""


class Resources(Protocol):
    """The resource operations a job uses (part of :class:`pvha.core.ports.HaEnv`).

    Actions return a task handle (str) when they leave a task running, None when done.
    ``migrate`` returns a handle, or a bool when done (True: the guest's config is on
    ``target``); called again with ``after`` = the handle of the task that ended, it
    goes on with the next part (a relocation's migration after its shutdown) or reports
    the outcome. ``task_running`` tells whether a task is still running."""

    def log(self, level: str, msg: str) -> None: ...

    def nodename(self) -> str: ...

    def resource_type_known(self, rtype: str) -> bool: ...

    def check_running(self, sid: str) -> bool: ...

    def start(self, sid: str) -> str | None: ...

    def shutdown(self, sid: str, timeout: Any = None) -> str | None: ...

    def migrate(
        self, sid: str, target: str, online: bool, after: str | None = None
    ) -> str | bool: ...

    def task_running(self, handle: str) -> bool: ...

    def guest_health(self, sid: str) -> tuple[str, str]: ...


def new_job(now: int) -> Job:
    """A job that has not begun; ``since`` starts the RetryLater budget."""
    return {"phase": None, "task": None, "since": now}


def in_flight(job: Job) -> bool:
    """True once the job has begun acting (PVE: the worker process exists)."""
    return job.get("phase") is not None


def step(
    env: Resources, sid: str, cd: dict[str, Any] | None, cmd: str, params: dict[str, Any],
    job: Job, now: int, budget: int = RETRY_BUDGET, task_timeout: int = TASK_TIMEOUT,
) -> int | None:
    """Advance ``job`` (mutated in place); the exit code when it ends, else None."""
    try:
        task = job.get("task")
        if task is not None:
            if env.task_running(task):
                waited = now - int(job.get("posted", now))
                if waited < task_timeout:
                    return None
                env.log("warning", f"service {sid}: task {task} still running after "
                                   f"{waited} s; no longer waiting for it")
            job["task"] = None
            job["ended"] = task
        phase = job.get("phase")
        if phase is None:
            code = _begin(env, sid, cd, cmd, params, job)
        else:
            code = _resume(env, sid, cmd, params, job, phase)
        if job.get("task") is not None:
            job["posted"] = now
        return code
    except RetryLater as why:
        waited = now - int(job.get("since", now))
        if waited < budget:
            if not job.get("held"):
                env.log("warning", f"service {sid}: cannot go on now, retrying: {why}")
                job["held"] = True
            return None
        env.log("err", f"service {sid}: giving up after {waited} s: {why}")
        return ExitCode.ERROR


def _begin(
    env: Resources, sid: str, cd: dict[str, Any] | None, cmd: str, params: dict[str, Any],
    job: Job,
) -> int | None:
    rtype = sid.split(":", 1)[0]
    if not env.resource_type_known(rtype):
        env.log("err", f"service type '{rtype}' not implemented")
        return ExitCode.EUNKNOWN_SERVICE_TYPE
    if not cd:
        env.log("err", f"missing resource configuration for '{sid}'")
        return ExitCode.EUNKNOWN_SERVICE
    if cmd == "error":
        env.log(
            "err",
            f"service {sid} is in an error state and needs manual intervention."
            " Look up 'ERROR RECOVERY' in the documentation.",
        )
        return ExitCode.SUCCESS
    moving = cmd in ("migrate", "relocate", "request_start_balance")
    if moving and job.get("held") and cd.get("node") == params.get("target"):
        # an earlier attempt of this job was held up (a lost answer): its migration
        # went through after all (PVE, whose worker never resumes, has no such case)
        return ExitCode.SUCCESS
    if cd.get("node") != env.nodename():
        env.log("err", f"service '{sid}' not on this node")
        return ExitCode.EWRONG_NODE
    running = env.check_running(sid)
    if cmd == "started":
        if running:
            if job.get("restart"):
                env.log("info", f"restarting service {sid} (hard stop, then start)")
                return _posted(env, sid, cmd, params, job, "restart", env.shutdown(sid, 0))
            verdict, reason = env.guest_health(sid)
            job["health"] = verdict
            if verdict == UNHEALTHY:
                env.log("warning", f"service '{sid}' unhealthy: {reason}")
                return EUNHEALTHY
            return ExitCode.SUCCESS
        env.log("info", f"starting service {sid}")
        return _posted(env, sid, cmd, params, job, "start", env.start(sid))
    if cmd in ("request_stop", "stopped"):
        if not running:
            return ExitCode.SUCCESS
        timeout = params.get("timeout")
        if timeout is not None:
            env.log("info", f"stopping service {sid} (timeout={timeout})")
        else:
            env.log("info", f"stopping service {sid}")
        return _posted(env, sid, cmd, params, job, "stop", env.shutdown(sid, timeout))
    if cmd in ("migrate", "relocate", "request_start_balance"):
        target = params.get("target")
        if target is None:
            raise ValueError(f"{cmd} '{sid}' failed - missing target")
        if cd.get("node") == target:
            return ExitCode.SUCCESS
        if cmd == "request_start_balance" and running:
            env.log("info", f"ignoring rebalance-on-start for service {sid} - already running")
            return ExitCode.IGNORED
        return _moved(env, sid, job, env.migrate(sid, target, cmd == "migrate"))
    env.log("err", f"implement me (cmd '{cmd}')")
    return ExitCode.EUNKNOWN_COMMAND


def _posted(
    env: Resources, sid: str, cmd: str, params: dict[str, Any], job: Job, phase: str,
    handle: str | None,
) -> int | None:
    job["phase"] = phase
    if handle is not None:
        job["task"] = handle
        return None
    return _resume(env, sid, cmd, params, job, phase)


def _resume(
    env: Resources, sid: str, cmd: str, params: dict[str, Any], job: Job, phase: str
) -> int | None:
    if phase == "start":
        if env.check_running(sid):
            env.log("info", f"service status {sid} started")
            return ExitCode.SUCCESS
        env.log("warning", f"unable to start service {sid}")
        return ExitCode.ERROR
    if phase == "stop":
        if not env.check_running(sid):
            env.log("info", f"service status {sid} stopped")
            return ExitCode.SUCCESS
        env.log("info", f"unable to stop service {sid} (still running)")
        return ExitCode.ERROR
    if phase == "restart":
        if env.check_running(sid):
            env.log("warning", f"unable to stop service {sid} (still running)")
            return ExitCode.ERROR
        env.log("info", f"starting service {sid}")
        return _posted(env, sid, cmd, params, job, "start", env.start(sid))
    if phase == "move":
        target = str(params.get("target"))
        return _moved(env, sid, job,
                      env.migrate(sid, target, cmd == "migrate", job.get("ended")))
    raise ValueError(f"job of {sid} in unknown phase {phase!r}")


def _moved(env: Resources, sid: str, job: Job, outcome: str | bool) -> int | None:
    job["phase"] = "move"
    if isinstance(outcome, str):
        job["task"] = outcome
        return None
    if not outcome:
        env.log("err", f"service {sid} not moved (migration error)")
        return ExitCode.ERROR
    return ExitCode.SUCCESS
