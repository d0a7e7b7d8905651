"""Power fencing in ``pvha watch``: fence devices from ``<config dir>/fence.cfg``.

Theory of operation. When ``fence.cfg`` exists, the manager's fencing step ("get the
dead node's agent lock", :meth:`pvha.shell.env.ShellEnv.get_ha_agent_lock`) asks
:meth:`PowerFencing.step` about every node that the file connects to a device. A step
never blocks the loop: the fence itself (:meth:`pvha.fence.fencer.Fencer.fence`: off,
then polled read-back of "off", then the liveness probe) runs in a worker thread.

* No job, or the last one failed and its backoff has passed: start attempt N in the
  worker (logged ``fencing: powering off node 'n' via <device> (attempt N)``).
* A job is running: not fenced yet.
* The job finished without proof: log it, journal it, retry after a backoff that
  doubles from :data:`RETRY_FIRST` to :data:`RETRY_MAX` seconds. Never fenced.
* The job finished with proof (the device read back "off" and the probe found the node
  silent) and the node is not online in this round's view: fenced
  (``fencing: node 'n' powered off by device 'd' (verified)``). The core then logs
  ``fencing: acknowledged``, moves the node to ``unknown`` and recovers its guests.

The liveness probe is "the node is online in the latest quorate API view" (a node that
still answers after a device said "off" was not fenced by that device). Only a
process that may act (manager lock, quorate view) starts fences.

The per-node state (``fencing``, ``failed``, ``fenced``) is written atomically to
``<config dir>/fence_state`` when it changes, for ``pvha status``; fence events go to
the journal (:mod:`pvha.shell.history`). A restarted watcher (or the next ``--once``
run) reloads it: the ``fenced`` proofs (like fence-ack records, they last until the node
is seen online again), so a recovery interrupted by the restart can finish, and the jobs
with their attempt counts and back-off, so fencing goes on where it was (a call that was
running when the process ended counts as a failed attempt). A new fencing of the node
starts by dropping the old proof. ``on_done`` is called (in the worker thread) whenever
a fence call ends, so the loop can start its next round at once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvha.fence.config import FenceConfig
from pvha.fence.fencer import FencePolicy, Fencer, FenceResult
from pvha.fsutil import atomic_write
from pvha.shell.history import History

FENCE_CFG = "fence.cfg"
FENCE_STATE = "fence_state"
DEVICE_FENCE_DELAY = 0
"""Default fence delay (s) when a fence device proves power-off (PVE: 60 s, kept without
a device). Corosync has already waited out its token timeout (and consensus) before a
node counts as offline; Pacemaker fences at that point, and so does pvha with a device.
The 60 s exist in PVE for the watchdog self-fence, which a verified power-off replaces.
A member in maintenance is never offline, whatever the delay (NodeStatus)."""
RETRY_FIRST = 5.0
RETRY_MAX = 60.0
DEVICE_TIMEOUT = 20.0


def device_policy(timeout: float = DEVICE_TIMEOUT) -> FencePolicy:
    """One attempt per job (the watcher retries across rounds, visible in status and
    history); ``timeout`` (seconds, setting ``fence_timeout``) bounds each device call
    and the read-back."""
    timeout = max(timeout, 0.5)
    return FencePolicy(call_timeout=timeout, verify_timeout=timeout,
                       poll_interval=min(0.5, timeout / 4), attempts=1)

log = logging.getLogger("pvha.crm")


@dataclass(slots=True)
class FenceJob:
    """Fencing of one node. ``attempt`` counts started fence calls."""

    node: str
    device: str
    attempt: int = 0
    future: Future[FenceResult] | None = None
    next_try: float = 0.0
    since: float = 0.0
    detail: str = ""


class PowerFencing:
    """Fence jobs of one watcher (see the module docstring).

    ``online(node)`` tells whether the latest quorate view shows the node online;
    ``clock()`` gives epoch seconds. ``fencer`` defaults to a :class:`Fencer` on
    ``config`` with :func:`device_policy` (``timeout``) and that liveness probe."""

    def __init__(self, config: FenceConfig, config_dir: Path, history: History,
                 online: Callable[[str], bool], clock: Callable[[], float],
                 fencer: Fencer | None = None, timeout: float = DEVICE_TIMEOUT,
                 on_done: Callable[[], None] | None = None) -> None:
        self.config = config
        self.config_dir = config_dir
        self.history = history
        self.online = online
        self.clock = clock
        self.fencer = fencer or Fencer(config, liveness_probe=online,
                                        policy=device_policy(timeout))
        self.jobs: dict[str, FenceJob] = {}
        self.fenced: dict[str, dict[str, Any]] = {}  # node -> {device, at}
        self.on_done = on_done
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pvha-fence")
        self._lock = threading.Lock()
        self._saved: dict[str, Any] | None = None
        # a restarted watcher keeps the proofs of nodes that have not come back (as
        # fence-ack records persist): services already in recovery can still move
        for node, info in read_fence_state(config_dir).items():
            if not isinstance(info, dict):
                continue
            try:
                if info.get("state") == "fenced":
                    self.fenced[node] = {"device": str(info.get("device", "?")),
                                         "at": float(info.get("at", 0))}
                elif info.get("state") in ("fencing", "failed"):
                    detail = str(info.get("detail") or "") or "interrupted (watcher restarted)"
                    self.jobs[node] = FenceJob(node, self.device_label(node),
                                               int(info.get("attempt", 0)),
                                               next_try=float(info.get("next_try", 0)),
                                               since=float(info.get("since", 0)), detail=detail)
            except (TypeError, ValueError):
                continue
        self._saved = self.state()

    def has_device(self, node: str) -> bool:
        return bool(self.config.levels(node))

    def device_label(self, node: str) -> str:
        levels = self.config.levels(node)
        return "+".join(level.device for level in levels) or "none"

    # --- the fencing step --------------------------------------------------------------

    def step(self, node: str) -> bool:
        """One non-blocking step for ``node``; True only with a verified power-off of
        the current job and the node not online now."""
        now = self.clock()
        job = self.jobs.get(node)
        if job is None:
            job = self.jobs[node] = FenceJob(node, self.device_label(node), since=now)
            self.fenced.pop(node, None)
        if job.future is not None and not job.future.done():
            return False
        if job.future is not None:
            result = self._result(job)
            job.future = None
            if result is not None and result.ok and not self.online(node):
                return self._succeeded(job, result, now)
            self._failed(job, result, now)
            return False
        if now < job.next_try:
            return False
        self._start(job, now)
        return False

    def _start(self, job: FenceJob, now: float) -> None:
        job.attempt += 1
        log.info("fencing: powering off node '%s' via %s (attempt %d)", job.node, job.device,
                 job.attempt)
        self.history.append("fence", job.node, time=now, outcome="started",
                            device=job.device, attempt=job.attempt)
        job.future = self._pool.submit(self.fencer.fence, job.node)
        if self.on_done is not None:
            done = self.on_done
            job.future.add_done_callback(lambda _f: done())
        self.save()

    def _result(self, job: FenceJob) -> FenceResult | None:
        assert job.future is not None
        try:
            return job.future.result()
        except Exception as err:  # noqa: BLE001 - a bug in a device is a failed attempt
            job.detail = f"fence call crashed: {type(err).__name__}"
            return None

    def _succeeded(self, job: FenceJob, result: FenceResult, now: float) -> bool:
        device = result.device or job.device
        log.info("fencing: node '%s' powered off by device '%s' (verified)", job.node, device)
        self.history.append("fence", job.node, time=now, outcome="verified off",
                            device=device, attempt=job.attempt)
        del self.jobs[job.node]
        self.fenced[job.node] = {"device": device, "at": now}
        self.save()
        return True

    def _failed(self, job: FenceJob, result: FenceResult | None, now: float) -> None:
        if result is not None:
            job.detail = result.detail if not result.ok else (
                f"node '{job.node}' is online again after the power-off")
        wait = min(RETRY_MAX, RETRY_FIRST * 2 ** (job.attempt - 1))
        job.next_try = now + wait
        log.warning("fencing: node '%s' not fenced (attempt %d): %s; retrying in %g s",
                    job.node, job.attempt, job.detail, wait)
        self.history.append("fence", job.node, time=now, outcome="failed",
                            device=job.device, attempt=job.attempt, detail=job.detail)
        self.save()

    def node_back(self, node: str) -> None:
        """``node`` is online in a quorate view and not in fence state: forget its
        finished fence (a running job stays: the manager still needs its proof)."""
        if self.fenced.pop(node, None) is not None:
            self.save()

    def drop(self, node: str) -> None:
        """The manager no longer needs ``node`` fenced (e.g. a fence-ack won)."""
        job = self.jobs.pop(node, None)
        if job is not None:
            self.save()

    # --- state for pvha status ---------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """node -> {state, device, attempt, since|at, detail} (JSON-able)."""
        out: dict[str, Any] = {}
        for node, job in sorted(self.jobs.items()):
            running = job.future is not None and not job.future.done()
            out[node] = {"state": "fencing" if running or not job.detail else "failed",
                         "device": job.device, "attempt": job.attempt, "since": job.since,
                         "next_try": job.next_try, "detail": job.detail}
        for node, info in sorted(self.fenced.items()):
            out[node] = {"state": "fenced", "device": info["device"], "at": info["at"]}
        return out

    def save(self) -> None:
        """Write ``fence_state`` if it changed (atomic; an error is only logged)."""
        with self._lock:
            state = self.state()
            if state == self._saved:
                return
            try:
                atomic_write(self.config_dir / FENCE_STATE,
                             json.dumps(state, sort_keys=True).encode())
                self._saved = state
            except Exception as err:  # noqa: BLE001 - status only
                log.warning("cannot write %s: %s", FENCE_STATE, err)

    def close(self) -> None:
        """Stop taking work; a running fence call finishes in its thread (bounded by
        the policy's timeouts)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def read_fence_state(config_dir: Path) -> dict[str, Any]:
    """``fence_state`` as written by :meth:`PowerFencing.save` ({} if absent/damaged)."""
    try:
        data = json.loads((config_dir / FENCE_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
