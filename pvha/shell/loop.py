"""``pvha watch``: the HA loop on the real ports.

Theory of operation. One round (:meth:`Watcher.round`):

1. read one :class:`~pvha.shell.snapshot.RoundView` (3 API calls, one answering node)
   and the HA configuration (:class:`~pvha.shell.config.ConfigSource`);
2. forget the fence proofs of nodes that the quorate view shows online again;
3. run one iteration of the core's CRM (:class:`~pvha.core.crm.Crm`): it takes or
   renews the manager lock (only on a quorate view) and, as master, runs the manager's
   ``manage()`` round, whose fencing step succeeds only with a proof that the node is
   off, whose recovery moves configs with one rename, and which writes
   ``manager_status`` atomically;
4. as master, run the executors of the online nodes (:mod:`pvha.shell.executor`): they
   post guest actions and look at the tasks posted earlier, never waiting on one;
5. log one sentence saying what the round did (:mod:`pvha.shell.summary`).

Between rounds the loop waits for the next tick, but starts the next round at once when
something it waits for happens: a guest task ends (it looks at the tasks in flight
about once a second), a fence device job ends, the membership or quorum seen by the API
node changes (one ``/cluster/status`` GET about once a second, only while master), or a
fence delay runs out. So the round interval bounds how stale a decision can be, not how
long a recovery takes.

State that survives (issue 8 point 2): everything the manager and the executors
remember between rounds is in the status files (``manager_status["pvha"]``: last-online
times, uid counter, since when this manager holds the lock; ``lrm_status/<node>``:
restart counters, workers with their task UPIDs, results; ``fence_state``: fence jobs;
``health_state``: guest health records, :mod:`pvha.shell.health`), written atomically.
A restarted watcher, a series of ``--once`` runs or another node's watcher taking over
resume from them and decide as one continuous watcher would. Whenever this process does
not hold the manager lock, it forgets what it has in memory, so it can never act on a
state another watcher has moved on from.

An exception inside a round is logged and the loop goes on; only SIGTERM/SIGINT end it.
On the way out a continuous watcher writes ``stopped_at`` into the manager status (so
``pvha status`` says "no pvha manager running since ...") and releases the manager
lock, so a standby or the next ``--once`` run takes over at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from pvha.config import datacenter
from pvha.core.crm import Crm
from pvha.core.node_status import FENCE_DELAY
from pvha.core.ports import CfsError
from pvha.core.start_order import ORDER_WAIT
from pvha.core.transitions import CRM, CrmEvent, next_state
from pvha.errors import ApiError
from pvha.ports import Clock
from pvha.shell.authority import Authority
from pvha.shell.config import ConfigSource
from pvha.shell.env import ManagerEnv, Shared
from pvha.shell.executor import MAX_WORKERS, Executors
from pvha.shell.fencing import FenceAcks, Fencing
from pvha.shell.guests import Guests
from pvha.shell.health import HealthMonitor
from pvha.shell.history import History, Recorder
from pvha.shell.lease import Leases
from pvha.shell.notifications import Notifier
from pvha.shell.notify import notify
from pvha.shell.power import DEVICE_FENCE_DELAY, DEVICE_TIMEOUT, FENCE_CFG, PowerFencing
from pvha.shell.snapshot import RoundView, take_view
from pvha.shell.statusfiles import StatusFiles
from pvha.shell.summary import describe_fence, round_sentence

__all__ = ["Watcher", "describe_fence", "resolve_fence_delay"]

log = logging.getLogger("pvha.watch")
POLL_INTERVAL = 1.0
"""Seconds between looks at tasks in flight and at the membership while waiting."""
WAIT_STEP = 0.2
API_ERROR_AFTER = 3
"""Consecutive rounds without the API after which the loop logs at ERROR, not WARNING."""


def resolve_fence_delay(configured: int | None, has_device: bool) -> int:
    """The fence delay: as configured; otherwise PVE's 60 s, or DEVICE_FENCE_DELAY with a
    fence device, since a verified power-off needs no wait for a self-fence."""
    if configured is not None:
        return configured
    return DEVICE_FENCE_DELAY if has_device else FENCE_DELAY


class ShellCrm(Crm):
    """The core CRM, resuming the previous master's memory, telling the watcher when
    it becomes master."""

    on_master: Any = None

    def fire(self, event: CrmEvent) -> None:
        if (self.on_master is not None and self.state != "master"
                and next_state(CRM, self.state, event) == "master"):
            self.on_master()  # before the new Manager reads the manager status
        super().fire(event)


class Watcher:
    """The loop; ``api``/``cfs``/``clock`` are the real adapters or test doubles."""

    def __init__(self, api: Any, cfs: Any, clock: Clock, *, fence_delay: int | None = None,
                 round_interval: float = 10.0, fencer: Any = None,
                 fence_timeout: float = DEVICE_TIMEOUT, max_workers: int = MAX_WORKERS,
                 task_timeout: float = 600.0, poll_interval: float = POLL_INTERVAL,
                 shutdown_policy: str | None = None, notifier: Notifier | None = None,
                 metrics: Any = None, order_wait: int = ORDER_WAIT) -> None:
        """With ``<config dir>/fence.cfg`` the manager fences through its devices
        (:mod:`pvha.shell.power`; ``fencer`` replaces the default Fencer in tests); an
        invalid fence.cfg raises ConfigError here. ``fence_delay`` None: PVE's 60 s, or
        DEVICE_FENCE_DELAY with a fence device. ``shutdown_policy`` None: the one
        datacenter.cfg names (pvha.config.datacenter). ``notifier`` gets the HA events
        (pvha.shell.notifications; None: none are sent); ``metrics`` (a
        pvha.shell.metrics.Metrics) what each round saw."""
        self.api, self.cfs, self.clock = api, cfs, clock
        self.round_interval = round_interval
        self.poll_interval = poll_interval
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.auth = Authority(cfs, clock)
        self.notifier = notifier or Notifier([])
        self.metrics = metrics
        self.history = History(cfs.config_dir, on_append=self._history_event)
        self._quorate: bool | None = None  # at the last round that read the view
        self._degraded: tuple[str, ...] = ()
        self.config = ConfigSource(cfs)
        self.statuses = StatusFiles(cfs, clock)
        self.guests = Guests(self.auth, api)
        self.power = self._power(fencer, fence_timeout)
        self.leases = Leases(cfs, clock.monotonic)
        self.fencing = Fencing(self.auth, FenceAcks(cfs.config_dir), self.power, self.history,
                               self.leases)
        self.health = HealthMonitor(api, cfs.config_dir)
        self.shared = Shared(self.auth, self.config, self.statuses, self.guests, self.fencing,
                             Recorder(self.history, clock.time, self._guest_error),
                             lambda: datacenter.shutdown_policy(Path(cfs.root), shutdown_policy),
                             self.health)
        self.executors = Executors(self.shared, max_workers=max_workers,
                                   task_timeout=task_timeout, order_wait=order_wait)
        self.fence_delay = resolve_fence_delay(fence_delay, self.power is not None)
        self.crm: ShellCrm | None = None
        self.crm_node: str | None = None
        self.master_since: float | None = None
        self.ok = True  # the last round read the cluster and the configuration
        self.api_failures = 0
        self._signals = 0

    def _power(self, fencer: Any, timeout: float) -> PowerFencing | None:
        from pvha.fence.config import load_fence_config

        path = self.cfs.config_dir / FENCE_CFG
        if not path.exists():
            return None
        config = load_fence_config(path)
        return PowerFencing(config, self.cfs.config_dir, self.history, self.auth.node_online,
                            self.clock.time, fencer, timeout, on_done=self.wake.set)

    # --- one round -------------------------------------------------------------------

    def round(self) -> str:
        """One round; returns (and logs) its sentence. Never raises an ApiError."""
        now = int(self.clock.time())
        if not self.auth.holds_manager_lock():
            self.statuses.reset()
            self.executors.reset()
            self.health.reset()
        began = self.clock.monotonic()
        try:
            view = take_view(self.api)
        except ApiError as err:
            if self.metrics is not None:
                self.metrics.api_read(self.clock.monotonic() - began, ok=False)
            self.auth.set_view(None)
            self.ok = False
            self.api_failures += 1
            level = logging.ERROR if self.api_failures >= API_ERROR_AFTER else logging.WARNING
            return self._say(f"cannot read the cluster through the API ({err}), waiting", level)
        self.api_failures = 0
        if self.metrics is not None:
            self.metrics.api_read(self.clock.monotonic() - began, ok=True)
        self.auth.set_view(view)
        self.guests.new_view(view)
        try:
            self.config.refresh()
        except CfsError as err:
            self.ok = False
            return self._say(f"{err}; waiting", logging.ERROR)
        self.ok = True
        self._changes(view)
        self.leases.observe(view.members)
        if view.quorate and self.auth.holds_manager_lock():
            self.fencing.node_back(view)
        crm = self._crm(view, now)
        if crm.state == "master" and not self.auth.holds_manager_lock():
            # the hold lapsed (this process was paused or starved past the lock's
            # lifetime): another watcher may have acted meanwhile, so the manager's
            # memory is worthless; end the tenure, the CRM takes the lock anew from disk
            log.error("the manager lock lapsed while this process held it; starting over "
                      "from the status files")
            crm.fire(CrmEvent.LOCK_LOST)
        crm.do_one_iteration(now)
        if crm.state == "master" and self.auth.may_act():
            self.executors.run_round(now, self.leases.statuses())
            self.health.save(self.clock.time())
        sentence = round_sentence(view, crm, self.fence_delay, self.fence_wait,
                                  self.config.degraded)
        degraded = self.config.degraded or " in error (" in sentence
        return self._say(sentence, logging.WARNING if degraded else logging.INFO)

    def _history_event(self, record: dict[str, Any]) -> None:
        self.notifier.history(record)
        if self.metrics is not None:
            self.metrics.history(record)

    def _changes(self, view: RoundView) -> None:
        """Quorum and configuration health changes, as notifications."""
        if view.quorate != self._quorate and (self._quorate is not None or not view.quorate):
            if view.quorate:
                self.notifier.event("quorum-back", f"{view.local_node} sees a quorate "
                                    "cluster again", node=view.local_node)
            else:
                self.notifier.event("quorum-lost", f"{view.local_node} sees no quorum: HA "
                                    "does nothing until it is back", node=view.local_node)
        self._quorate = view.quorate
        degraded = tuple(self.config.degraded)
        if degraded != self._degraded:
            if degraded:
                self.notifier.event("ha-degraded", "HA degraded: " + "; ".join(degraded),
                                    faults=list(degraded))
            else:
                self.notifier.event("ha-healthy", "HA no longer degraded: the configuration "
                                    "is whole again")
            self._degraded = degraded

    def _guest_error(self, sid: str, previous: str) -> None:
        self.notifier.event("guest-error", f"{sid} entered the error state (from {previous}):"
                            " HA no longer acts on it until it is disabled and enabled", sid=sid,
                            previous=previous)

    def _crm(self, view: RoundView, now: int) -> ShellCrm:
        if self.crm is None or self.crm_node != view.local_node:
            env = ManagerEnv(self.shared, self._extras)
            crm = ShellCrm(env, now, self.fence_delay, resume=True)
            crm.on_master = self._on_master
            self.crm, self.crm_node = crm, view.local_node
        return self.crm

    def _on_master(self) -> None:
        """About to become master: drop what memory holds, note since when."""
        self.statuses.reset()
        self.executors.reset()
        self.health.reset()
        now = self.clock.time()
        self.master_since = now
        try:
            ms = self.statuses.read_manager()
        except CfsError:
            return
        since = (ms.get("pvha") or {}).get("master_since") if isinstance(ms, dict) else None
        view = self.auth.view
        same = view is not None and ms.get("master_node") == view.local_node
        fresh = isinstance(ms.get("timestamp"), (int, float)) and now - ms["timestamp"] <= 120
        if same and fresh and isinstance(since, (int, float)) \
                and not (ms.get("pvha") or {}).get("stopped_at"):
            self.master_since = float(since)  # the same manager, one --once run later
            return
        me = view.local_node if view is not None else None
        before = ms.get("master_node")
        self.notifier.event("manager-takeover", f"the manager is now on {me}" + (
            f" (was on {before})" if before and before != me else ""), node=me,
            previous=before if before != me else None)

    def _extras(self) -> dict[str, Any]:
        """What the watcher adds to the manager's memory in manager_status["pvha"]."""
        return {"master_since": self.master_since, "round_interval": self.round_interval,
                "degraded": list(self.config.degraded)}

    def _say(self, sentence: str, level: int = logging.INFO) -> str:
        log.log(level, "%s", sentence)
        return sentence

    def fence_wait(self, node: str) -> str:
        """What the fencing of ``node`` waits for, in words."""
        left = self.leases.left(node)
        if left is not None and node not in self.leases.fenced and not (
                self.power is not None and self.power.has_device(node)):
            return f"waiting for its agent's lease to expire ({left:.0f} s) or pvha fence-ack"
        return describe_fence(node, self.power.state() if self.power else {},
                              self.power is not None and self.power.has_device(node),
                              self.clock.time())

    # --- between rounds --------------------------------------------------------------

    def wait(self, started: float) -> None:
        """Until the next tick, or at once when something awaited happens (see the
        module docstring)."""
        deadline = started + self.round_interval
        due = self._due()
        if due is not None:
            deadline = min(deadline, self.clock.monotonic() + max(0.0, due - self.clock.time()))
        next_poll = self.clock.monotonic() + self.poll_interval
        while not self.stop_event.is_set():
            now = self.clock.monotonic()
            if now >= deadline:
                return
            if self.wake.is_set():
                self.wake.clear()
                return
            if now >= next_poll:
                next_poll = now + self.poll_interval
                view = self.auth.view
                if view is not None:  # a renewal is timed when it is seen: look often
                    self.leases.observe(view.members, statuses=False)
                if self._changed():
                    return
            self.clock.sleep(min(WAIT_STEP, deadline - now, max(0.0, next_poll - now)))

    def _master(self) -> bool:
        return self.crm is not None and self.crm.state == "master" and self.auth.may_act()

    def _due(self) -> float | None:
        """Wall time at which a fence delay runs out (an offline node's services go to
        ``fence`` then) or an agent lease proves a fenced node dead, or None."""
        if not self._master() or self.crm is None or self.crm.manager is None:
            return None
        ns = self.crm.manager.ns
        view = self.auth.view
        times = [last + max(self.fence_delay, 1) for node, last in ns.last_online.items()
                 if view is not None and node not in view.online
                 and ns.get_node_state(node) not in ("fence", "gone")]
        now = self.clock.time()
        # a node in fence whose agent lease is about to prove it dead: wake when it does
        times += [now + left + 0.1 for node in ns.status
                  if ns.get_node_state(node) == "fence"
                  and (left := self.leases.left(node)) is not None and left > 0]
        future = [t for t in times if t > now]
        return min(future) if future else None

    def _changed(self) -> bool:
        """Did a task end, or the membership or quorum change, since the round?"""
        if not self._master():
            return False
        upids = self.executors.in_flight()
        if upids and self.guests.poll(upids):
            return True
        view = self.auth.view
        probe = getattr(self.api, "get_cluster_status", None)
        if view is None or probe is None:
            return False
        try:
            status = probe()
        except ApiError:
            return False
        online = frozenset(n.name for n in status.nodes if n.online)
        return bool(status.quorate) != view.snapshot.status.quorate or online != frozenset(
            n.name for n in view.snapshot.status.nodes if n.online)

    # --- the loop ----------------------------------------------------------------------

    def safe_round(self) -> str:
        """A round that never raises (except for the second-signal abort)."""
        began = self.clock.monotonic()
        try:
            return self.round()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:
            self.ok = False
            log.exception("round failed")
            return f"round failed: {err}"
        finally:
            if self.metrics is not None:
                self._measure(self.clock.monotonic() - began)

    def _measure(self, seconds: float) -> None:
        view = self.auth.view
        master = self.auth.holds_manager_lock()
        try:
            ms: dict[str, Any] | None = self.statuses.read_manager()
        except CfsError:
            ms = None
        self.metrics.round_done(seconds, view.quorate if view is not None else None,
                                master, ms)

    def run(self, once: bool = False) -> int:
        """Rounds until stopped (or one with ``once``); releases the lock on the way out.
        Returns the exit status: 0, or 1 when ``once`` and the round could not read the
        cluster or the configuration."""
        ready = False
        try:
            while not self.stop_event.is_set():
                started = self.clock.monotonic()
                sentence = self.safe_round()
                notify(*(() if ready else ("READY=1",)), "WATCHDOG=1", f"STATUS={sentence}")
                ready = True
                if once:
                    break
                self.wait(started)
        finally:
            notify("STOPPING=1")
            if once:
                self.health.settle()  # its pings' answers count in the next run
            self._flush()
            self.release(final=not once)
            self.executors.close()
            self.health.close()
            if self.power is not None:
                self.power.close()
            self.notifier.close()
        return 0 if self.ok or not once else 1

    def _flush(self) -> None:
        """Persist what the executors hold only in memory, while the lock is still ours."""
        try:
            if self.auth.may_act():
                self.statuses.flush()
                self.health.save(self.clock.time(), force=True)
        except Exception as err:  # noqa: BLE001 - the next process confirms again
            log.warning("could not write the executor status files: %s", err)

    def release(self, final: bool = True) -> None:
        """Give up the manager lock, so another watcher takes over now. ``final`` (a
        continuous watcher stopping): first note ``stopped_at`` in the manager status."""
        crm = self.crm
        try:
            if crm is not None and crm.state == "master" and self.auth.holds_manager_lock():
                if final and self.auth.may_act():
                    ms = dict(self.statuses.read_manager())
                    if ms:
                        ms["pvha"] = {**(ms.get("pvha") or {}), "stopped_at": self.clock.time()}
                        self.statuses.write_manager(ms)
                crm.shutdown_request()
                crm._work_master()
            elif self.auth.holds_manager_lock():
                ManagerEnv(self.shared).release_ha_manager_lock()
        except Exception as err:  # noqa: BLE001 - the lock then expires by itself
            log.warning("could not release the manager lock: %s", err)
        log.info("watcher stopped")

    def install_signals(self) -> None:
        """SIGTERM/SIGINT: finish the round and stop; a second one aborts the round."""

        def handler(signum: int, _frame: Any) -> None:
            self._signals += 1
            self.stop_event.set()
            self.wake.set()
            if self._signals == 1:
                log.info("got %s, stopping after this round", signal.Signals(signum).name)
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
