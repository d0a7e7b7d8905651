"""Guests as this watcher knows them, and the guest operations of one node's executor.

Theory of operation. The round's view (``/cluster/resources``) lags behind actions by up
to a pvestatd cycle, so :class:`Guests` corrects it with what this process itself just
did: a config it moved (a recovery's rename, a finished migration) and a guest whose
running state it confirmed on the owning node. A config move is believed until a view
agrees or :data:`OVERLAY_TTL` passes; a running state until the next view that can tell
(a view that disagrees may lag, or the guest crashed since: then its node is asked).
After an action whose outcome is not known yet, the guest is marked unsure and the next
question about it goes to its node (one proxied GET).

:class:`GuestOps` is the resource port of one node's executor (the core's
:class:`pvha.core.executor.Resources`): it posts guest actions through the API and returns
their UPIDs, and tells whether a task still runs; it never waits on a task. Whatever
cannot be known or done now raises :class:`~pvha.core.executor.RetryLater`: the API did
not answer, a 5xx, a config not yet visible on its new node right after the recovery
rename (pmxcfs propagates renames asynchronously), the owning node not online, or this
process not (or no longer) allowed to act. A refusal that is final (the guest is locked,
its node refused the migration) is logged and leaves the outcome to the job's check of
the guest's real state.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pvha.core.executor import RetryLater
from pvha.errors import ApiError, ApiPermanentError, ApiTransientError
from pvha.ports import GuestKind, GuestRef, TaskStatus, guest_alive
from pvha.shell.authority import Authority
from pvha.shell.snapshot import RoundView

OVERLAY_TTL = 60.0
"""Seconds an overlay (our own action's outcome) may override the view."""
DEFAULT_SHUTDOWN_TIMEOUT = 60  # PVE HA's resource plugins use 60 s, then force a stop
MAX_TASKS = 10_000  # finished task statuses kept (the oldest go first)


def split_sid(sid: str) -> tuple[GuestKind, int]:
    """``vm:100`` -> ("qemu", 100); ``ct:101`` -> ("lxc", 101)."""
    rtype, _, name = sid.partition(":")
    if rtype not in ("vm", "ct") or not name.isdigit():
        raise ValueError(f"invalid service id {sid!r}")
    return ("qemu" if rtype == "vm" else "lxc"), int(name)


def ref_of(sid: str, node: str) -> GuestRef:
    kind, vmid = split_sid(sid)
    return GuestRef(kind, vmid, node)


class Guests:
    """The round's view of the guests, corrected by this process's own actions."""

    def __init__(self, auth: Authority, api: Any) -> None:
        self.auth = auth
        self.api = api
        self.node_overlay: dict[str, tuple[str, float]] = {}
        self.run_overlay: dict[str, tuple[bool, float]] = {}
        self.unsure: set[str] = set()
        self.tasks: dict[str, TaskStatus] = {}  # finished tasks, by UPID
        self.generation = 0  # changes with every view and every config move of ours
        self._mutex = threading.Lock()

    def new_view(self, view: RoundView) -> None:
        """Drop the corrections the view now confirms or that aged."""
        self.generation += 1
        now = self.auth.clock.time()
        for sid, (node, since) in list(self.node_overlay.items()):
            g = view.guests.get(sid)
            if (g is not None and g.node == node) or now - since > OVERLAY_TTL:
                del self.node_overlay[sid]
        for sid, (running, since) in list(self.run_overlay.items()):
            g = view.guests.get(sid)
            seen = None if g is None or g.status_stale else guest_alive(g.status)
            if seen is not None and seen != running:
                # the view lags behind our action, or the guest changed since (a crash):
                # only its node can tell which, so ask it instead of trusting either
                self.unsure.add(sid)
            if seen is not None or now - since > OVERLAY_TTL:
                del self.run_overlay[sid]

    def node_of(self, sid: str) -> str | None:
        """Where the guest's config is: our own recent move, else the view."""
        if sid in self.node_overlay:
            return self.node_overlay[sid][0]
        view = self.auth.view
        g = view.guests.get(sid) if view is not None else None
        return g.node if g is not None else None

    def moved(self, sid: str, node: str) -> None:
        self.node_overlay[sid] = (node, self.auth.clock.time())
        self.generation += 1
        # what we or the view knew of the old placement says nothing now: ask the node
        self.run_overlay.pop(sid, None)
        self.unsure.add(sid)

    def ran(self, sid: str, running: bool) -> None:
        self.run_overlay[sid] = (running, self.auth.clock.time())
        self.unsure.discard(sid)

    def doubt(self, sid: str) -> None:
        """The outcome of an action is unknown: ask the node next time."""
        self.unsure.add(sid)
        self.run_overlay.pop(sid, None)

    def running(self, sid: str) -> bool:
        """Whether the guest's process runs. RetryLater when nobody can tell now."""
        return self._running(sid, record=True)

    def runs_now(self, sid: str) -> bool:
        """:meth:`running` for a bystander (the start order's question about another
        guest): an answer of its node is not kept, so a question asked while that
        guest's own action is in flight never stands for the action's outcome."""
        return self._running(sid, record=False)

    def _running(self, sid: str, record: bool) -> bool:
        if sid in self.run_overlay:
            return self.run_overlay[sid][0]
        view = self.auth.require_view()
        node = self.node_of(sid)
        g = view.guests.get(sid)
        if node is None or g is None:
            return False
        if sid not in self.unsure and not g.status_stale and g.node == node:
            alive = guest_alive(g.status)
            if alive is not None:
                return alive
        if not self.auth.node_online(node):
            raise RetryLater(f"cannot tell whether {sid} runs: node '{node}' is not online")
        try:
            status = self.api.guest_status(ref_of(sid, node))
        except ApiError as err:
            raise RetryLater(f"cannot tell whether {sid} runs: {err}") from None
        alive = guest_alive(status.status)
        if alive is None:
            raise RetryLater(f"{node} reports the status of {sid} as '{status.status}'")
        if record:
            self.ran(sid, alive)
        return alive

    # --- tasks -----------------------------------------------------------------------

    def task_running(self, upid: str) -> bool:
        """Whether the task still runs (one GET, unless its end was already seen)."""
        if upid in self.tasks:
            return False
        try:
            st = self.api.task_status(upid)
        except ApiError as err:
            raise RetryLater(f"cannot read task {upid}: {err}") from None
        if st.running:
            return True
        self._finished(st)
        return False

    def poll(self, upids: list[str]) -> bool:
        """Between rounds: look at running tasks; True if any has ended. Never raises."""
        ended = False
        for upid in upids:
            if upid in self.tasks:
                ended = True
                continue
            try:
                st = self.api.task_status(upid)
            except (ApiError, ValueError):
                continue
            if not st.running:
                self._finished(st)
                ended = True
        return ended

    def _finished(self, st: TaskStatus) -> None:
        with self._mutex:
            self.tasks[st.upid] = st
            while len(self.tasks) > MAX_TASKS:
                del self.tasks[next(iter(self.tasks))]


class GuestOps:
    """The resource port of the executor of ``node`` (see the module docstring)."""

    def __init__(self, guests: Guests, node: str) -> None:
        self.guests = guests
        self.auth = guests.auth
        self.api = guests.api
        self.node = node
        self.log = logging.getLogger(f"pvha.lrm.{node}")

    def _guard(self, *nodes: str) -> None:
        if not self.auth.may_act():
            raise RetryLater("not holding the manager lock on a quorate node")
        for node in nodes:
            if not self.auth.node_online(node):
                raise RetryLater(f"node '{node}' is not online")

    def check_running(self, sid: str) -> bool:
        return self.guests.running(sid)

    def task_running(self, handle: str) -> bool:
        return self.guests.task_running(handle)

    def start(self, sid: str) -> str | None:
        """Post a start; None when there is nothing to wait for."""
        self._guard(self.node)
        try:
            upid = self.api.post_start(ref_of(sid, self.node))
        except ApiError as err:
            if isinstance(err, ApiPermanentError) and "already running" in str(err):
                self.guests.ran(sid, True)
                return None
            self._refused(sid, "start", err)
            return None
        self.guests.doubt(sid)
        return str(upid)

    def shutdown(self, sid: str, timeout: Any = None) -> str | None:
        """Post a clean shutdown with a forced stop after ``timeout`` (0 = hard stop)."""
        self._guard(self.node)
        ref = ref_of(sid, self.node)
        t = DEFAULT_SHUTDOWN_TIMEOUT if timeout is None else int(timeout)
        try:
            if t == 0:
                upid = self.api.post_stop(ref)
            else:
                upid = self.api.post_shutdown(ref, t, force_stop=True)
        except ApiError as err:
            if isinstance(err, ApiPermanentError) and "not running" in str(err):
                self.guests.ran(sid, False)
                return None
            self._refused(sid, "shutdown", err)
            return None
        self.guests.doubt(sid)
        return str(upid)

    def migrate(self, sid: str, target: str, online: bool, after: str | None = None) -> str | bool:
        """A live (``online``) or offline migration to ``target``; a running guest is shut
        down first for an offline one (relocate). Returns the UPID to wait for, or True
        once the config is on ``target`` (False: it will not get there)."""
        self._guard(self.node, target)
        if after is not None:
            if self.guests.task_running(after):  # (re)reads its end after a restart
                return after
            done = self.guests.tasks[after]
            if "migrate" in done.type:
                return self._migrated(sid, target, done)
            if self.check_running(sid):  # the relocation's shutdown did not stop it
                return False
        if self.guests.node_of(sid) == target:
            return True
        view = self.auth.require_view()
        g = view.guests.get(sid)
        if g is not None and g.lock == "migrate":
            raise RetryLater(f"a migration of {sid} is in progress")
        running = self.check_running(sid)
        if running and not online:
            stop = self.shutdown(sid)
            if stop is not None:
                return stop
        try:
            upid = self.api.post_migrate(ref_of(sid, self.node), target, online and running)
        except ApiError as err:
            self._refused(sid, f"migration to {target}", err)
            return False
        self.guests.doubt(sid)
        return str(upid)

    def _migrated(self, sid: str, target: str, done: TaskStatus) -> bool:
        if done.ok:
            self.guests.moved(sid, target)
            return True
        self.log.error("migration of %s to %s failed: %s", sid, target, done.exitstatus)
        self.guests.doubt(sid)
        return self.guests.node_of(sid) == target

    def _refused(self, sid: str, what: str, err: ApiError) -> None:
        """An action the API did not take: retry later if that may help, else log it
        and let the job's check of the guest's real state decide."""
        self.guests.doubt(sid)
        if isinstance(err, ApiTransientError):
            raise RetryLater(f"{what} of {sid}: {err}") from None
        if "does not exist" in str(err):
            # the config was just renamed here; this node may not see it yet
            raise RetryLater(f"{what} of {sid}: {err}") from None
        self.log.error("%s of %s failed: %s", what, sid, err)
