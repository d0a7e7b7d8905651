"""The executors: the LRM work of every online node, run by the active manager.

Theory of operation. PVE runs one LRM per node; pvha's active manager runs the core's
:class:`~pvha.core.lrm.Lrm` once per round *for each node that the round's quorate view
shows online*, each through its own :class:`~pvha.shell.env.ShellEnv`, and performs
the guest operations through the PVE API with :class:`GuestOps`. Nodes that are not
online get no executor round and no API call at all (a call proxied to a dead node can
hang for 30 s).

Nodes run in parallel (one thread per node, at most ``parallel``), each node's
commands one after the other, so a recovery spread over the surviving nodes waits for
one task per node at a time, not for all of them in a row. The threads share only the
:class:`~pvha.shell.env.World` (single dict/set operations) and the API client; each
writes only its own node's status file.

Nothing lost, nothing done twice: an executor's results (uid -> exit code) are written
to ``lrm_status/<node>`` atomically every round, and a new executor (after a restart of
the watcher) starts from the results in that file, so a command whose result was
recorded is not run again. A command interrupted before its result was recorded is run
again, and every operation is idempotent by construction: start checks first whether
the guest runs, a steal of a config that already moved is a no-op, a migration to the
node that already owns the config succeeds at once.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pvha.core.lrm import Lrm
from pvha.core.ports import CfsError
from pvha.errors import ApiError, ApiPermanentError, PvhaError
from pvha.fsutil import atomic_write
from pvha.ports import GuestKind, GuestRef
from pvha.shell.env import ShellEnv, World

DEFAULT_SHUTDOWN_TIMEOUT = 60  # PVE HA's resource plugins use 60 s, then force a stop
_LOCK_LINE = re.compile(r"^lock:\s*(\S+)\s*$")


class ActionRefused(CfsError):
    """A write was refused by the shell's own safety checks."""


def split_sid(sid: str) -> tuple[GuestKind, int]:
    """``vm:100`` -> ("qemu", 100); ``ct:101`` -> ("lxc", 101)."""
    rtype, _, name = sid.partition(":")
    if rtype not in ("vm", "ct") or not name.isdigit():
        raise ValueError(f"invalid service id {sid!r}")
    return ("qemu" if rtype == "vm" else "lxc"), int(name)


class GuestOps:
    """Guest operations through the API, each guarded by the safety checks."""

    def __init__(self, world: World) -> None:
        self.world = world

    def _log(self, node: str) -> logging.Logger:
        return logging.getLogger(f"pvha.lrm.{node}")

    def _ref(self, sid: str, node: str) -> GuestRef:
        kind, vmid = split_sid(sid)
        return GuestRef(kind, vmid, node)

    def _guard(self, *nodes: str) -> None:
        w = self.world
        if not w.may_act():
            raise ActionRefused("refused: not holding the manager lock on a quorate node")
        for node in nodes:
            if not w.node_online(node):
                raise ActionRefused(f"refused: node '{node}' is not online")

    # --- reads -----------------------------------------------------------------------

    def check_running(self, sid: str) -> bool:
        """Our own recent action's outcome, else the snapshot; the owning node is asked
        (one proxied call) only when the snapshot cannot tell: stale status, a config we
        just moved, or an action whose outcome is unknown."""
        w = self.world
        if sid in w.run_overlay:
            return bool(w.run_overlay[sid][0])
        node = w.guest_node(sid)
        view = w.require_view()
        g = view.guests.get(sid)
        if node is None or g is None:
            return False
        if sid not in w.verify and not g.status_stale and g.node == node:
            return g.status == "running"
        if not w.node_online(node):
            raise ActionRefused(f"cannot tell whether {sid} runs: node '{node}' is not online")
        status = w.api.guest_status(self._ref(sid, node))
        running = bool(status.status == "running")
        w.ran(sid, running)
        return running

    # --- actions ---------------------------------------------------------------------

    def start(self, node: str, sid: str) -> None:
        """Start; errors are logged and leave the outcome to ``check_running``."""
        self._guard(node)
        try:
            self.world.api.start(self._ref(sid, node))
            self.world.ran(sid, True)
        except ApiError as err:
            if isinstance(err, ApiPermanentError) and "already running" in str(err):
                self.world.ran(sid, True)
                return
            self._failed(node, sid, "start", err)

    def shutdown(self, node: str, sid: str, timeout: Any = None) -> None:
        """Clean shutdown with a forced stop after ``timeout`` (0 = hard stop)."""
        self._guard(node)
        ref = self._ref(sid, node)
        t = DEFAULT_SHUTDOWN_TIMEOUT if timeout is None else int(timeout)
        try:
            if t == 0:
                self.world.api.stop(ref)
            else:
                self.world.api.shutdown(ref, t, force_stop=True)
            self.world.ran(sid, False)
        except ApiError as err:
            if isinstance(err, ApiPermanentError) and "not running" in str(err):
                self.world.ran(sid, False)
                return
            self._failed(node, sid, "shutdown", err)

    def migrate(self, node: str, sid: str, target: str, online: bool) -> bool:
        """Live (``online``) or offline migration; a running guest is shut down first
        for an offline one (relocate). True when the config is on ``target``."""
        self._guard(node, target)
        if self.world.guest_node(sid) == target:
            return True
        running = self.check_running(sid)
        if running and not online:
            self.shutdown(node, sid)
            if self.check_running(sid):
                return False
            running = False
        try:
            self.world.api.migrate(self._ref(sid, node), target, online and running)
        except ApiError as err:
            self._failed(node, sid, f"migration to {target}", err)
            return False
        self.world.moved(sid, target)
        self.world.ran(sid, online and running)
        return True

    def _failed(self, node: str, sid: str, what: str, err: Exception) -> None:
        self._log(node).error("%s of %s failed: %s", what, sid, err)
        self.world.verify.add(sid)  # outcome unknown: ask the node next time
        self.world.run_overlay.pop(sid, None)

    # --- recovery (manager side) -----------------------------------------------------

    def steal(self, sid: str, old: str, new: str) -> None:
        """Safety rule 3: one atomic rename of the config from the fenced ``old`` node
        to ``new``, only by the lock holder on a quorate view, and only when ``old`` is
        not online and proven off (fence-ack or verified power-off). Repeating it after a crash is a no-op."""
        if old == new:
            return
        w = self.world
        if not w.may_act():
            raise ActionRefused(f"refusing to move {sid}: not the active manager on quorum")
        if w.node_online(old) or not w.proven_off(old):
            raise ActionRefused(f"refusing to move {sid}: node '{old}' is not fenced")
        kind, vmid = split_sid(sid)
        try:
            w.cfs.steal_guest_config(kind, vmid, old, new)
        except PvhaError as err:
            raise CfsError(str(err)) from None
        w.moved(sid, new)
        w.verify.add(sid)  # the snapshot's status of the old placement is stale

    def remove_locks(self, sid: str, locks: list[str], node: str) -> str | None:
        """Drop a leftover config lock (backup, mounted, ...) before a recovery, as PVE's
        ``remove_locks`` does; returns the removed lock or None."""
        w = self.world
        g = w.require_view().guests.get(sid)
        if g is None or not g.lock or g.lock not in locks:
            return None
        kind, vmid = split_sid(sid)
        path = w.cfs.guest_config_path(kind, vmid, node)
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except OSError:
            return None
        for i, line in enumerate(lines):
            if line.startswith("["):
                break  # only the main section, not snapshots
            m = _LOCK_LINE.match(line.rstrip("\n"))
            if m and m.group(1) in locks:
                del lines[i]
                atomic_write(path, "".join(lines).encode("utf-8"))
                return m.group(1)
        return None


class Executors:
    """One core Lrm per online node, created on first sight (seeded with the node's
    recorded results) and dropped when the node leaves the view."""

    def __init__(self, world: World, ops: GuestOps, parallel: int = 8) -> None:
        self.world = world
        self.ops = ops
        self.parallel = max(1, parallel)
        self.lrms: dict[str, Lrm] = {}
        self.log = logging.getLogger("pvha.watch")

    def _new(self, node: str, now: int) -> Lrm:
        env = ShellEnv(self.world, node, self.ops)
        lrm = Lrm(env, now)
        old = env.read_lrm_status(node)
        results = old.get("results")
        if isinstance(results, dict):
            lrm.results = {u: r for u, r in results.items() if isinstance(r, dict)}
        return lrm

    def run_round(self, now: int) -> None:
        """One executor iteration per online node (never one for an offline node)."""
        view = self.world.require_view()
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
        with ThreadPoolExecutor(min(self.parallel, len(nodes)), "pvha-exec") as pool:
            for future in [pool.submit(self._iterate, node, now) for node in nodes]:
                future.result()

    def _iterate(self, node: str, now: int) -> None:
        if not self.world.may_act():
            return
        try:
            self.lrms[node].do_one_iteration(now)
        except Exception as err:  # noqa: BLE001 - one node's trouble must not stop the others
            self.log.error("executor for %s: unexpected error: %s", node, err)
