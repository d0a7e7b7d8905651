"""``pvha watch``: the HA loop on the real ports.

Theory of operation. One round (:meth:`Watcher.round`):

1. read one :class:`~pvha.shell.snapshot.RoundView` (3 API calls, one answering node);
2. forget the fence-acks of nodes that the quorate view shows online again;
3. run one iteration of the core's CRM (:class:`~pvha.core.crm.Crm`): it takes or
   renews the manager lock (only on a quorate view) and, as master, runs the manager's
   ``manage()`` round, whose fencing step succeeds only for acknowledged nodes, whose
   recovery moves configs with one rename, and which writes ``manager_status``
   atomically;
4. as master, run the executors of the online nodes (:mod:`pvha.shell.executor`);
5. log one sentence saying what the round did.

An exception inside a round is logged and the loop goes on; only SIGTERM/SIGINT end
it (a second signal aborts a round that waits on a task). On the way out the manager
lock is released, so a standby or the next ``--once`` run takes over at once.

The manager's memory of when each node was last seen online is kept in
``<config dir>/watch_state`` (written atomically, only when it changes), so a restarted
watcher or a series of ``--once`` runs count the fence delay from the first round that
saw the node gone, instead of starting it again.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from pvha.core.crm import Crm
from pvha.core.node_status import FENCE_DELAY
from pvha.core.transitions import CrmEvent
from pvha.errors import ApiError
from pvha.fsutil import atomic_write
from pvha.ports import Clock
from pvha.shell.env import ShellEnv, World
from pvha.shell.executor import Executors, GuestOps
from pvha.shell.fencing import FenceAcks
from pvha.shell.history import History, Recorder
from pvha.shell.keepalive import HookedClock, KeepAlive, api_quorate
from pvha.shell.notify import notify
from pvha.shell.power import DEVICE_FENCE_DELAY, DEVICE_TIMEOUT, FENCE_CFG, PowerFencing
from pvha.shell.snapshot import RoundView, take_view

WATCH_STATE = "watch_state"
log = logging.getLogger("pvha.watch")


def describe_fence(node: str, state: dict[str, Any], has_device: bool, now: float) -> str:
    """``waiting for fence-ack``, ``fencing via ipmi (attempt 2)``, ``fence via ipmi
    failed (attempt 1), retry in 5 s or pvha fence-ack``, ``fenced (verified off at
    …)``: from a :meth:`PowerFencing.state` entry (shared with ``pvha status``)."""
    import time as _time

    info = state.get(node)
    if not has_device and info is None:
        return "waiting for fence-ack"
    if info is None:
        return "fencing: starting"
    device = info.get("device", "?")
    if info.get("state") == "fenced":
        at = _time.strftime("%H:%M:%S", _time.localtime(float(info.get("at", 0))))
        return f"fenced (verified off at {at} by {device})"
    if info.get("state") == "failed":
        left = max(0, int(float(info.get("next_try", 0)) - now + 0.999))
        return (f"fence via {device} failed (attempt {info.get('attempt')}), retry in "
                f"{left} s or pvha fence-ack")
    return f"fencing via {device} (attempt {info.get('attempt')})"


def resolve_fence_delay(configured: int | None, has_device: bool) -> int:
    """The fence delay: as configured; otherwise PVE's 60 s, or DEVICE_FENCE_DELAY (5 s)
    with a fence device, since a verified power-off needs no wait for a self-fence."""
    if configured is not None:
        return configured
    return DEVICE_FENCE_DELAY if has_device else FENCE_DELAY


class ShellCrm(Crm):
    """The core CRM, plus: a new manager starts from the persisted last-online times."""

    seed: Callable[[], dict[str, int]] = staticmethod(dict)

    def fire(self, event: CrmEvent) -> None:
        super().fire(event)
        if self.manager is not None and not self.manager.ns.last_online:
            self.manager.ns.last_online.update(self.seed())


class Watcher:
    """The loop; ``api``/``cfs``/``clock`` are the real adapters or test doubles."""

    def __init__(self, api: Any, cfs: Any, clock: Clock, *, fence_delay: int | None = None,
                 round_interval: float = 10.0, keepalive: float | None = None,
                 fencer: Any = None, fence_timeout: float = DEVICE_TIMEOUT) -> None:
        """``keepalive`` (seconds): renew the manager lock at most this often during
        waits inside a round, after a quorum probe; needs ``clock`` to be a
        :class:`~pvha.shell.keepalive.HookedClock` (None = off). With
        ``<config dir>/fence.cfg`` the manager fences through its devices
        (:mod:`pvha.shell.power`; ``fencer`` replaces the default Fencer in tests);
        an invalid fence.cfg raises ConfigError here. ``fence_delay`` None: PVE's 60 s,
        or DEVICE_FENCE_DELAY (5 s) with a fence device, since a verified power-off
        needs no wait for a watchdog self-fence."""
        self.world = World(api, cfs, FenceAcks(cfs.config_dir), clock)
        self.world.history = History(cfs.config_dir)
        self.world.recorder = Recorder(self.world.history, clock.time)
        self.ops = GuestOps(self.world)
        self.executors = Executors(self.world, self.ops)
        self.clock = clock
        self.fence_timeout = fence_timeout
        self.round_interval = round_interval
        self.crm: ShellCrm | None = None
        self.crm_node: str | None = None
        self.stop_event = threading.Event()
        self._signals = 0
        self._saved_last_online: dict[str, int] | None = None
        self.keepalive: KeepAlive | None = None
        if keepalive is not None and isinstance(clock, HookedClock):
            self.keepalive = KeepAlive(self.world, api_quorate(api), keepalive)
            clock.hook = self.keepalive
        self.power = self._power(fencer)
        self.world.power = self.power
        self.fence_delay = resolve_fence_delay(fence_delay, self.power is not None)

    def _power(self, fencer: Any) -> PowerFencing | None:
        from pvha.fence.config import load_fence_config

        path = self.world.cfs.config_dir / FENCE_CFG
        if not path.exists():
            return None
        config = load_fence_config(path)
        world = self.world

        def online(node: str) -> bool:
            view = world.view
            return view is not None and node in view.online

        return PowerFencing(config, world.cfs.config_dir, world.history, online,
                            self.clock.time, fencer, self.fence_timeout)

    # --- one round -------------------------------------------------------------------

    def round(self) -> str:
        """One round; returns (and logs) its sentence. Never raises an ApiError."""
        now = int(self.clock.time())
        try:
            view = take_view(self.world.api)
        except ApiError as err:
            self.world.view = None
            return self._say(f"cannot read the cluster through the API ({err}), waiting")
        self.world.set_view(view)
        if view.quorate and self.world.holds_manager_lock():
            self._clear_acks(view)
        crm = self._crm(view, now)
        crm.do_one_iteration(now)
        if self.keepalive is not None:
            self.keepalive.round_started()
        if crm.state == "master" and self.world.may_act():
            self._save_last_online()
            self.executors.run_round(now)
        return self._say(self.summary(view))

    def _crm(self, view: RoundView, now: int) -> ShellCrm:
        if self.crm is None or self.crm_node != view.local_node:
            env = ShellEnv(self.world, None, self.ops)
            crm = ShellCrm(env, now, self.fence_delay)
            crm.seed = self._load_last_online
            self.crm, self.crm_node = crm, view.local_node
        return self.crm

    def _clear_acks(self, view: RoundView) -> None:
        for node in self.world.acks.nodes():
            if node in view.online and self.world.acks.clear(node):
                log.info("node '%s' is online again: its fence-ack is consumed", node)
        if self.power is not None:
            for node in list(self.power.fenced):
                if node in view.online:
                    self.power.node_back(node)

    def _say(self, sentence: str) -> str:
        log.info("%s", sentence)
        return sentence

    def summary(self, view: RoundView) -> str:
        """The round's sentence, from the view and the manager's state."""
        crm = self.crm
        if not view.quorate:
            return f"no quorum on {view.local_node}, waiting"
        if crm is None or crm.state != "master" or crm.manager is None:
            if crm is not None and crm.state == "slave":
                return "standby: another watcher holds the manager lock"
            return "waiting for the manager lock"
        m = crm.manager
        online = sum(1 for n in view.members if n in view.online)
        started = sum(1 for sd in m.ss.values() if sd.get("state") == "started")
        parts = [f"manager: {online} nodes online, {len(m.ss)} services, {started} started"]
        for node in sorted(m.ns.status):
            state = m.ns.get_node_state(node)
            if state == "fence":
                parts.append(f"fencing {node}: {self.fence_wait(node)}")
            elif state == "unknown" and node not in view.online:
                last = m.ns.last_online.get(node)
                left = self.fence_delay - (m.now - last) if last is not None else self.fence_delay
                parts.append(f"{node} offline" + (f", fencing in {left} s" if left > 0 else ""))
        return "; ".join(parts)

    def fence_wait(self, node: str) -> str:
        """What the fencing of ``node`` waits for, in words."""
        return describe_fence(node, self.power.state() if self.power else {},
                              self.power is not None and self.power.has_device(node),
                              self.clock.time())

    # --- persisted last-online times -------------------------------------------------

    def _state_path(self) -> Any:
        return self.world.cfs.config_dir / WATCH_STATE

    def _load_last_online(self) -> dict[str, int]:
        try:
            data = json.loads(self._state_path().read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in (data.get("last_online") or {}).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def _save_last_online(self) -> None:
        """Persist the last-online time of the nodes that are not online (the others'
        change every round and are not needed: they count from their next absence)."""
        crm, view = self.crm, self.world.view
        if crm is None or crm.manager is None or view is None or not self.world.may_act():
            return
        ns = crm.manager.ns
        keep = {n: t for n, t in ns.last_online.items() if n not in view.online}
        if keep == self._saved_last_online:
            return
        try:
            data = json.dumps({"last_online": keep}, sort_keys=True).encode()
            atomic_write(self._state_path(), data)
            self._saved_last_online = keep
        except Exception as err:  # noqa: BLE001 - best effort; the delay restarts at worst
            log.warning("cannot save %s: %s", WATCH_STATE, err)

    # --- the loop ----------------------------------------------------------------------

    def safe_round(self) -> str:
        """A round that never raises (except for the second-signal abort)."""
        try:
            return self.round()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:
            log.exception("round failed")
            return f"round failed: {err}"

    def run(self, once: bool = False) -> int:
        """Rounds until stopped (or one with ``once``); releases the lock on the way out."""
        ready = False
        try:
            while not self.stop_event.is_set():
                started = self.clock.monotonic()
                sentence = self.safe_round()
                notify(*(() if ready else ("READY=1",)), "WATCHDOG=1", f"STATUS={sentence}")
                ready = True
                if once:
                    break
                deadline = started + self.round_interval
                while not self.stop_event.is_set():
                    left = deadline - self.clock.monotonic()
                    if left <= 0:
                        break
                    # between rounds: no lock keep-alive (the next round renews it)
                    getattr(self.clock, "base", self.clock).sleep(min(0.2, left))
        finally:
            notify("STOPPING=1")
            self.release()
            if self.power is not None:
                self.power.close()
        return 0

    def release(self) -> None:
        """Give up the manager lock (clean stop), so another watcher takes over now."""
        crm = self.crm
        try:
            if crm is not None and crm.state == "master" and self.world.holds_manager_lock():
                self._save_last_online()
                crm.shutdown_request()
                crm._work_master()
            elif self.world.holds_manager_lock():
                ShellEnv(self.world).release_ha_manager_lock()
        except Exception as err:  # noqa: BLE001 - the lock then expires by itself
            log.warning("could not release the manager lock: %s", err)
        log.info("watcher stopped")

    def install_signals(self) -> None:
        """SIGTERM/SIGINT: finish the round and stop; a second one aborts the round."""

        def handler(signum: int, _frame: Any) -> None:
            self._signals += 1
            self.stop_event.set()
            if self._signals == 1:
                log.info("got %s, stopping after this round", signal.Signals(signum).name)
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
