"""Keeping the manager lock through long waits inside a round.

A round renews the manager lock once, at its start (the CRM's lock step). A round that
waits long on guest tasks (a migration of a big VM, many starts after an outage) would
let the 120 s lock expire while this process still acts, and a standby could take
over in the middle. So every wait inside a round (task polling, retry back-off: they
all sleep through the shell's clock) first calls :class:`KeepAlive`, which at most
every ``every`` seconds asks the API node whether it is still quorate (one
``/cluster/status`` GET) and then renews the lock. If it is not quorate any more,
the lock is not renewed and :attr:`World.quorum_lost` stops every further action of
the round (safety rule 2); the next round starts from a fresh view.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pvha.ports import MANAGER_LOCK, Clock
from pvha.shell.env import World

log = logging.getLogger("pvha.watch")


class HookedClock:
    """A Clock whose ``sleep`` first calls ``hook`` (set after construction)."""

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.hook: Callable[[], None] | None = None

    def time(self) -> float:
        return self.base.time()

    def monotonic(self) -> float:
        return self.base.monotonic()

    def sleep(self, seconds: float) -> None:
        if self.hook is not None:
            self.hook()
        self.base.sleep(seconds)


def api_quorate(api: Any) -> Callable[[], bool]:
    """Probe: does the answering API node (one ``/cluster/status`` GET) see quorum and
    itself online?"""

    def probe() -> bool:
        status = api.get_cluster_status()
        local = status.local_node
        online = set(status.online_nodes)
        return bool(status.quorate) and (local is None or local in online)

    return probe


class KeepAlive:
    """The sleep hook (see module docstring). Never raises."""

    def __init__(self, world: World, probe: Callable[[], bool], every: float) -> None:
        self.world = world
        self.probe = probe
        self.every = every
        self._last = world.clock.monotonic()
        self._mutex = threading.Lock()  # executors wait in parallel threads

    def round_started(self) -> None:
        """The round's own lock step just renewed the lock."""
        self._last = self.world.clock.monotonic()

    def __call__(self) -> None:
        w = self.world
        if w.quorum_lost or not w.holds_manager_lock():
            return
        if w.clock.monotonic() - self._last < self.every:
            return
        # one renewal at a time; the probe's own retries sleep through this hook too
        if not self._mutex.acquire(blocking=False):
            return
        try:
            if self.probe():
                w.cfs.acquire_lock(MANAGER_LOCK)
            else:
                w.quorum_lost = True
                log.warning("API node lost quorum during the round: stop acting, "
                            "not renewing the manager lock")
        except Exception as err:  # noqa: BLE001 - a failed probe means: do not renew
            log.warning("cannot confirm quorum during the round (%s): not renewing", err)
        finally:
            self._last = w.clock.monotonic()
            self._mutex.release()
