"""Fencing proofs: an administrator's fence-ack, a fence device's verified power-off, or
an agent's lease not renewed for longer than its watchdog lets a node live.

Safety rule 1 (design §4): a guest of a node that is not online is started elsewhere
only after that node is fenced. In this mode (no pvha code on the nodes, no fence
device yet) the proof is ``pvha fence-ack NODE``: a record
``<config dir>/fence/<node>`` (JSON, written atomically) that the manager's fencing
step checks in place of PVE's "acquire the dead node's agent lock". A record only
counts while the node is not online; the loop deletes the record of a node it sees
online again in a quorate view, so an acknowledgement is consumed by the node's
return and never carries over to its next failure; and a record older than the last
time the watcher saw the node online is ignored (should the deletion have failed).
``pvha fence-ack`` itself refuses a node that a quorate API view shows online.

:class:`Fencing` is the manager's one question "is this node fenced?" (its fencing
step, in PVE "get the dead node's agent lock"): a valid fence-ack, else the expiry of
the node's agent lease (:class:`pvha.shell.lease.Leases`), else, for a node that
``fence.cfg`` connects to a device, one non-blocking step of
:class:`pvha.shell.power.PowerFencing`, which says yes only after the device read back
"off": whichever proof comes first counts, and the log and the history name it. Never
for a node that is online in this round's view, never for a process that may not act.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvha.errors import StoreError
from pvha.fsutil import atomic_write, fsync_dir
from pvha.ports import NODE_NAME_RE
from pvha.shell.authority import Authority
from pvha.shell.lease import Leases

FENCE_DIR = "fence"


@dataclass(frozen=True, slots=True)
class FenceAck:
    """One acknowledgement: ``node`` is off, said ``by`` at ``acked_at`` (epoch s)."""

    node: str
    acked_at: float
    by: str


class FenceAcks:
    """The records under ``<config_dir>/fence``; all writes atomic."""

    def __init__(self, config_dir: Path | str) -> None:
        self.dir = Path(config_dir) / FENCE_DIR

    def _path(self, node: str) -> Path:
        if not isinstance(node, str) or not NODE_NAME_RE.match(node):
            raise ValueError(f"invalid node name {node!r}")
        return self.dir / node

    def ack(self, node: str, *, now: float, by: str) -> FenceAck:
        """Record that an administrator says ``node`` is off (not verified). StoreError if
        it cannot be written; the config dir must exist (nothing is created outside it)."""
        path = self._path(node)
        try:
            self.dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.dir}: {exc.strerror}") from None
        record = FenceAck(node, float(now), by)
        data = {"node": node, "acked_at": record.acked_at, "by": by}
        atomic_write(path, json.dumps(data, sort_keys=True).encode())
        return record

    def get(self, node: str) -> FenceAck | None:
        """The record for ``node``, or None (a damaged record counts as none)."""
        try:
            data = json.loads(self._path(node).read_text(encoding="utf-8"))
            return FenceAck(str(data["node"]), float(data["acked_at"]), str(data.get("by", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def nodes(self) -> list[str]:
        """Nodes with a record."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        return sorted(n for n in names if NODE_NAME_RE.match(n))

    def clear(self, node: str) -> bool:
        """Delete ``node``'s record; True if there was one."""
        path = self._path(node)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot remove {path}: {exc.strerror}") from None
        with contextlib.suppress(StoreError):
            fsync_dir(self.dir)
        return True


class Fencing:
    """The proofs of one watcher (see the module docstring). ``power`` is a
    :class:`~pvha.shell.power.PowerFencing` when ``fence.cfg`` exists, else None;
    ``history`` the fence journal."""

    def __init__(self, auth: Authority, acks: FenceAcks, power: Any, history: Any,
                 leases: Leases | None = None) -> None:
        self.auth = auth
        self.acks = acks
        self.power = power
        self.history = history
        self.leases = leases
        self.log = logging.getLogger("pvha.crm")

    def fenced(self, node: str) -> bool:
        """One step of fencing ``node``: True only with a proof (see module docstring)."""
        auth = self.auth
        if not auth.may_act() or auth.node_online(node):
            return False
        ack = self._valid_ack(node)
        if ack is not None:
            by = f" by {ack.by}" if ack.by else ""
            self.log.info("fencing: node '%s' acknowledged off%s (fence-ack, not verified)",
                          node, by)
            self.history.append("fence", node, time=auth.clock.time(),
                                outcome="acknowledged, not verified", by=ack.by or None)
            if self.power is not None:
                self.power.drop(node)
            return True
        leases = self.leases
        if leases is not None and node in leases.fenced:
            return True
        silent = leases.expired(node) if leases is not None else None
        if leases is not None and silent is not None:
            self.log.info("fencing: node '%s' fenced by lease expiry: its agent's lease was not "
                          "renewed for %d s (its watchdog resets it within %g s)", node,
                          silent, leases.fence_after(node))
            self.history.append("fence", node, time=auth.clock.time(), outcome="lease expired",
                                proof="lease", silent=round(silent, 1))
            leases.fenced.add(node)
            if self.power is not None:
                self.power.drop(node)
            return True
        if self.power is None or not self.power.has_device(node):
            return False
        # a node in fence state that is online again is still powered off (PVE's node
        # would self-fence); the step itself never reports an online node fenced
        return bool(self.power.step(node))

    def _valid_ack(self, node: str) -> FenceAck | None:
        ack = self.acks.get(node)
        if ack is None:
            return None
        seen = self.auth.seen_online.get(node)
        if seen is not None and ack.acked_at < seen:
            # an ack from before the node's last return: proves nothing about now
            self.log.warning("fence-ack of %s is older than its last time online; ignored "
                             "(run pvha fence-ack %s again once it is off)", node, node)
            return None
        return ack

    def proven_off(self, node: str) -> bool:
        """The config move's own check of safety rule 1: a fence-ack record, or a
        verified power-off the node has not come back from."""
        if self.acks.get(node) is not None:
            return True
        if self.leases is not None and node in self.leases.fenced:
            return True
        return self.power is not None and node in self.power.fenced

    def node_back(self, view: Any) -> None:
        """Nodes online again in a quorate view consume their acks and proofs."""
        for node in self.acks.nodes():
            if node in view.online and self.acks.clear(node):
                self.log.info("node '%s' is online again: its fence-ack is consumed", node)
        if self.power is not None:
            for node in list(self.power.fenced):
                if node in view.online:
                    self.power.node_back(node)
        if self.leases is not None:
            for node in list(self.leases.fenced):
                if node in view.online:
                    self.leases.node_back(node)

    def waiting(self, node: str) -> bool:
        """True while a fence device job for ``node`` runs (its end wakes the loop)."""
        return self.power is not None and node in self.power.jobs

