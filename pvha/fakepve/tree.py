"""Where the simulated cluster's filesystem lives, as the fake API reads and writes it.

:class:`ViewTree` is the strict one: every node has its own view of a
:class:`pvha.fakepve.pmxcfs.Pmxcfs` (mounted at ``STATE_DIR/nodes/NODE/pve``), so a node's
API answers from what that node has received, and a write is refused where pmxcfs would
refuse it. :class:`DirTree` is the fallback where FUSE cannot be used: one plain
directory every node sees at once.

Paths are relative to the cfs root (``nodes/node1/qemu-server/100.conf``); errors are
``OSError`` with pmxcfs's errno. Reads take ``node=None`` for the whole history (the
truth that ``sim ctl status`` shows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pvha.fakepve.pmxcfs import Pmxcfs


class Tree(Protocol):
    def version(self, node: str | None) -> int | None:
        """A number that changes whenever ``nodes/`` (the guest configs) changes in
        ``node``'s view (None: unknown)."""

    def listdir(self, node: str | None, rel: str) -> list[str]: ...

    def read(self, node: str | None, rel: str) -> bytes: ...

    def write(self, node: str, rel: str, data: bytes) -> None: ...

    def rename(self, node: str, old: str, new: str) -> None: ...

    def root(self, node: str) -> Path:
        """Where ``node``'s view is in the host's filesystem."""


class DirTree:
    """One plain directory, the same for every node."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    def version(self, node: str | None) -> int | None:
        return None

    def listdir(self, node: str | None, rel: str) -> list[str]:
        return sorted(os.listdir(self._root / rel))

    def read(self, node: str | None, rel: str) -> bytes:
        return (self._root / rel).read_bytes()

    def write(self, node: str, rel: str, data: bytes) -> None:
        (self._root / rel).write_bytes(data)

    def rename(self, node: str, old: str, new: str) -> None:
        (self._root / new).parent.mkdir(parents=True, exist_ok=True)
        os.rename(self._root / old, self._root / new)

    def root(self, node: str) -> Path:
        return self._root


class ViewTree:
    """Each node's own view of a pmxcfs, mounted at ``mounts[node]``."""

    def __init__(self, cfs: Pmxcfs, mounts: dict[str, Path]) -> None:
        self.cfs, self.mounts = cfs, mounts

    def version(self, node: str | None) -> int | None:
        return self.cfs.version(node)

    def listdir(self, node: str | None, rel: str) -> list[str]:
        return self.cfs.listdir(node, "/" + rel)

    def read(self, node: str | None, rel: str) -> bytes:
        return self.cfs.read_file(node, "/" + rel)

    def write(self, node: str, rel: str, data: bytes) -> None:
        self.cfs.write_file(node, "/" + rel, data)

    def rename(self, node: str, old: str, new: str) -> None:
        self.cfs.rename(node, "/" + old, "/" + new)

    def root(self, node: str) -> Path:
        return self.mounts[node]
