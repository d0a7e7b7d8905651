"""Fence acknowledgements: an administrator's statement that a node is powered off.

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
Fence devices plug in here later.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pvha.errors import StoreError
from pvha.fsutil import atomic_write, fsync_dir
from pvha.ports import NODE_NAME_RE

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
        """Record that ``node`` is proven off. StoreError if it cannot be written."""
        path = self._path(node)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
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
