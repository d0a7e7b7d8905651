"""A pmxcfs-like cluster filesystem: one in-process store, one FUSE mount per node.

``Pmxcfs(nodes)`` is the cluster (pmxcfs's memdb replicated over corosync); ``mount(node,
path)`` serves that node's view at ``path`` from a FUSE thread of its own (fsname
``pmxcfs``: ``/proc/mounts`` shows source ``pmxcfs``, type ``fuse``, so
:func:`pvha.adapters.cfs.detect_pmxcfs` takes its pmxcfs path). ``pvha sim serve`` mounts
one per node; its fake API reads and renames guest configs through the same views
in-process (:meth:`listdir`, :meth:`read_file`, :meth:`write_file`, :meth:`rename`), with
the same rules, without a FUSE round trip per file.

Theory of operation
-------------------
Each node has a view (path -> immutable :class:`Entry`: directory or regular file, data,
mtime in whole seconds as in memdb, writer node) and a FIFO of changes made elsewhere
that it has not applied yet. A change is a patch: the new entries (None = removed) of the
paths one operation touched, as they are in the writer's view after the operation.

* Writes. A write on node N is refused with EACCES if N has no quorum (pmxcfs's
  read-only cfs gives EACCES or EPERM; this module always says EACCES), EROFS under the
  read-only fault, ENOSPC when full. Otherwise N first applies everything queued for it
  (as totem orders N's message after all those already sent), the operation runs on N's
  view at once and its patch is queued for every other node. All views apply the same
  patches in the same order, so each is a prefix of one history and a write is always
  checked against the latest state.
* Delivery is lazy: before any operation on a node, its queued changes that are due
  (made + the node's delay) are applied in order, if it is quorate and its propagation
  is not stopped (delay None). Every fault change first settles all nodes up to now, so
  a change is never applied as if seen before the node could receive it.
* Quorum: forced by :meth:`set_quorate`, else the ``quorum`` callable given to the
  constructor (the simulated cluster's corosync), else a strict majority in the node's
  partition (:meth:`set_partitions`; default one partition). A change of the callable's
  answer is noticed at the node's next operation. A node that regains quorum applies
  its whole queue at once (the resync); reads work throughout from its last view. There
  is one history: two quorate partitions (possible only by forcing) share it.
* Locks are the directories ``priv/lock/<id>``. Each node remembers per lock the
  monotonic time its view of the lock last changed (creation, renewal, resync); the lock
  is expired on that node ``lock_timeout`` s later. mkdir of an existing lock: EEXIST.
  ``utime(lock, (0, t))`` by the node that created it renews (t >= mtime), else EACCES
  (backwards, or another node). ``utime(lock, (0, 0))`` is the unlock request, from any
  node: the lock is removed if expired on this node's view, else EACCES (a granted
  request reports ENOENT: the kernel re-reads the attributes of what is gone; callers
  ignore utime's result, as PVE does, and look). rmdir releases.
* mtime never moves backwards on files and directories either: utime to an older
  second is EACCES. Writes and truncates set the mtime to now.
* Files are capped at 1 MiB (EFBIG), the whole store at ``capacity`` bytes (ENOSPC).
  rename works anywhere in the mount (also between ``nodes/<a>`` and ``nodes/<b>``) and
  replaces an existing target atomically; rename flags are ignored. chmod only accepts
  the fixed mode (0640 files, 0755 dirs), else EPERM; chown, fsync and flush succeed.

The kernel's attribute, entry and page caches are off (timeouts 0, direct_io) so a
change shows on a mount as soon as it is applied. One RLock guards the whole store.
libfuse's ``fuse_main`` does ``chdir("/")`` and takes SIGTERM/SIGHUP: :meth:`mount`
gives both back (signals only when called from the main thread). Mounts use libfuse's
``auto_unmount``: when the process dies (even by SIGKILL), the ``fusermount3`` helper
unmounts them; a leftover dead mount ("Transport endpoint is not connected") is lazily
unmounted by the next :meth:`mount` on the same path.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import posixpath
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mfusepy as fuse

MAX_FILE = 1024 * 1024
"""pmxcfs refuses files over 1 MiB (EFBIG)."""
LOCK_TIMEOUT = 120.0
"""pmxcfs ``CFS_LOCK_TIMEOUT``."""
CAPACITY = 128 * MAX_FILE
LOCK_DIR = "/priv/lock"
GUEST_TREE = "/nodes/"
_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND
Patch = list[tuple[str, "Entry | None"]]


@dataclass(frozen=True, slots=True)
class Entry:
    is_dir: bool
    data: bytes
    mtime: int  # wall clock, whole seconds
    writer: str  # node that created it (locks: the owner)


def _err(code: int) -> fuse.FuseOSError:
    return fuse.FuseOSError(code)


def _is_lock(path: str, entry: Entry | None) -> bool:
    return entry is not None and entry.is_dir and posixpath.dirname(path) == LOCK_DIR


class Pmxcfs:
    """The cluster store and its mounts; see the module docstring."""

    def __init__(self, nodes: Iterable[str], delay: float = 0.05, *,
                 lock_timeout: float = LOCK_TIMEOUT, capacity: int = CAPACITY,
                 quorum: Callable[[str], bool] | None = None) -> None:
        self.nodes = list(nodes)
        self._quorum = quorum
        self._was_quorate: dict[str, bool] = {}
        self._version = dict.fromkeys(self.nodes, 0)
        self._written = 0  # changes made anywhere (seeds included)
        self._latest: tuple[int, dict[str, Entry]] | None = None
        self.lock_timeout = lock_timeout
        self.capacity = capacity
        self._lock = threading.RLock()
        root = Entry(True, b"", int(time.time()), "")
        self._views: dict[str, dict[str, Entry]] = {n: {"/": root} for n in self.nodes}
        self._queue: dict[str, deque[tuple[float, Patch]]] = {n: deque() for n in self.nodes}
        self._seen: dict[str, dict[str, float]] = {n: {} for n in self.nodes}
        self._since = dict.fromkeys(self.nodes, time.monotonic())
        self._delay: dict[str, float | None] = dict.fromkeys(self.nodes, delay)
        self._forced: dict[str, bool | None] = dict.fromkeys(self.nodes)
        self._partition = dict.fromkeys(self.nodes, frozenset(self.nodes))
        self._readonly: set[str] = set()
        self._full: set[str] = set()
        self._mounts: dict[str, tuple[str, threading.Thread]] = {}
        self._errors: dict[str, BaseException] = {}

    # --- mounts ------------------------------------------------------------------------

    def mount(self, node: str, path: Path | str, timeout: float = 10.0) -> Path:
        """Serve ``node``'s view at ``path`` (created if missing); returns once the mount
        shows in /proc/self/mounts. RuntimeError if it does not."""
        if node not in self._views:
            raise ValueError(f"unknown node {node!r}")
        if node in self._mounts:
            raise RuntimeError(f"node {node} is already mounted")
        real, cwd = os.path.realpath(path), os.getcwd()
        if _mounted(real):  # left behind by a process that died
            _unmount(real, lazy=True)
        os.makedirs(real, exist_ok=True)
        ready = threading.Event()
        thread = threading.Thread(target=self._serve, args=(node, real, ready), daemon=True,
                                  name=f"pmxcfs-{node}")
        with _libfuse_quiet():
            thread.start()
            self._mounts[node] = (real, thread)
            deadline = time.monotonic() + timeout
            while not (ready.is_set() and _mounted(real)):
                if not thread.is_alive() or time.monotonic() > deadline:
                    self._mounts.pop(node)
                    raise RuntimeError(f"cannot mount pmxcfs for {node} at {real}: "
                                       f"{self._errors.get(node, 'timed out')}")
                time.sleep(0.01)
        # fuse_main() has done chdir("/") and taken SIGTERM/SIGHUP (if at their default)
        # for itself before it answers FUSE_INIT: give both back to the process
        os.chdir(cwd)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGHUP, signal.SIGTERM):
                if (handler := signal.getsignal(sig)) is not None:
                    signal.signal(sig, handler)
        return Path(real)

    def _serve(self, node: str, path: str, ready: threading.Event) -> None:
        try:
            fuse.FUSE(_Mount(self, node, ready), path, foreground=True, nothreads=False,
                      fsname="pmxcfs", auto_unmount=True)
        except Exception as exc:  # noqa: BLE001 - reported by mount()
            self._errors[node] = exc

    def unmount_all(self, timeout: float = 10.0) -> None:
        """``fusermount3 -u`` every mount (lazily if busy) and join its thread."""
        with _libfuse_quiet():
            for node, (path, thread) in list(self._mounts.items()):
                if not _unmount(path, lazy=False):
                    _unmount(path, lazy=True)
                thread.join(timeout)
                del self._mounts[node]

    # --- set-up and faults ---------------------------------------------------------------

    def seed(self, path: str, data: bytes | None = None) -> None:
        """Create a file (``data``) or directory (None), and missing parent directories,
        on every view at once, with no rule checked: the cluster's initial tree."""
        with self._lock:
            self._written += 1
            now = int(time.time())
            parts = path.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                p = "/" + "/".join(parts[:i])
                last = i == len(parts) and data is not None
                entry = Entry(not last, data if last else b"", now, "")
                for node, view in self._views.items():
                    if last or p not in view:
                        view[p] = entry
                        self._version[node] += p.startswith(GUEST_TREE)
                        if _is_lock(p, entry):
                            self._seen[node][p] = time.monotonic()

    def backdate(self, path: str, seconds: float) -> None:
        """Make ``path`` ``seconds`` older on every view, with no rule checked (tests: a
        file left long ago, which a utime could not fake since mtime never goes back)."""
        with self._lock:
            self._written += 1
            for view in self._views.values():
                if (entry := view.get(path)) is not None:
                    view[path] = replace(entry, mtime=entry.mtime - int(seconds))

    def quorate(self, node: str) -> bool:
        forced = self._forced[node]
        if forced is not None:
            return forced
        if self._quorum is None:
            return 2 * len(self._partition[node]) > len(self.nodes)
        with self._lock:
            now_q = bool(self._quorum(node))
            if self._was_quorate.get(node, now_q) != now_q:
                self._since[node] = time.monotonic()  # able to receive from now on
            self._was_quorate[node] = now_q
            return now_q

    def set_quorate(self, node: str, quorate: bool | None) -> None:
        """Force ``node``'s quorum on or off; None = follow the partitions."""
        self._fault(lambda: self._forced.__setitem__(node, quorate))

    def set_partitions(self, groups: Iterable[Iterable[str]]) -> None:
        """Split the nodes into partitions (nodes left out are alone); a partition with
        a strict majority is quorate. ``[nodes]`` heals."""
        def apply() -> None:
            self._partition = {n: frozenset([n]) for n in self.nodes}
            for group in groups:
                members = frozenset(group)
                self._partition.update(dict.fromkeys(members, members))
        self._fault(apply)

    def set_delay(self, node: str, seconds: float | None) -> None:
        """Propagation delay to ``node``; None stops propagation to it until restored."""
        self._fault(lambda: self._delay.__setitem__(node, seconds))

    def set_readonly(self, node: str, readonly: bool = True) -> None:
        """Writes on ``node`` fail with EROFS."""
        self._fault(lambda: (self._readonly.add if readonly else self._readonly.discard)(node))

    def fill(self, node: str, full: bool = True) -> None:
        """Writes that need space on ``node`` fail with ENOSPC."""
        self._fault(lambda: (self._full.add if full else self._full.discard)(node))

    def _fault(self, change: Any) -> None:
        with self._lock:
            for n in self.nodes:
                self._settle(n)
            before = {n: self.quorate(n) for n in self.nodes}
            change()
            now = time.monotonic()
            for n in self.nodes:
                self._since[n] = now
                if self.quorate(n) and not before[n] and self._delay[n] is not None:
                    self._settle(n, force=True)  # resync on regaining quorum

    # --- in-process access (the fake API's reads and writes, same rules as the mount) --

    def version(self, node: str | None) -> int:
        """Changes under ``/nodes/`` (the guest configs) ``node``'s view has applied so
        far (None: changes made anywhere in the cluster); a cache key for its readers."""
        with self._lock:
            if node is None:
                return self._written
            self._read(node)
            return self._version[node]

    def listdir(self, node: str | None, path: str) -> list[str]:
        """Names in directory ``path`` of ``node``'s view (None: :meth:`latest`);
        OSError ENOENT/ENOTDIR."""
        with self._lock:
            view = self._view(node)
            if not _get(view, path).is_dir:
                raise _err(errno.ENOTDIR)
            return sorted(_children(view, path))

    def read_file(self, node: str | None, path: str) -> bytes:
        with self._lock:
            entry = _get(self._view(node), path)
            if entry.is_dir:
                raise _err(errno.EISDIR)
            return entry.data

    def write_file(self, node: str, path: str, data: bytes) -> None:
        """Create or replace the file's content, as one change."""
        self._write(node, self._replace, path, data)

    def rename(self, node: str, old: str, new: str) -> None:
        self._write(node, self._rename, old, new)

    def latest(self) -> dict[str, Entry]:
        """The whole history applied: what a node with nothing queued would see (the
        truth, and what is saved when the simulator stops)."""
        with self._lock:
            if self._latest is not None and self._latest[0] == self._written:
                return self._latest[1]
            node = self.nodes[0]
            view = dict(self._views[node])
            for _, patch in self._queue[node]:
                for path, entry in patch:
                    if entry is None:
                        view.pop(path, None)
                    else:
                        view[path] = entry
            self._latest = (self._written, view)
            return view

    def _view(self, node: str | None) -> dict[str, Entry]:
        return self.latest() if node is None else self._read(node)

    def describe(self, node: str) -> dict[str, Any]:
        """The node's mount and faults, for ``sim ctl status``."""
        with self._lock:
            mount = self._mounts.get(node)
            delay = self._delay[node]
            return {"mount": mount[0] if mount else None, "quorate": self.quorate(node),
                    "delay": "stopped" if delay is None else delay,
                    "readonly": node in self._readonly, "full": node in self._full,
                    "queued": len(self._queue[node])}

    # --- replication ---------------------------------------------------------------------

    def _apply(self, node: str, patch: Patch, at: float) -> None:
        view, seen = self._views[node], self._seen[node]
        if any(path.startswith(GUEST_TREE) for path, _ in patch):
            self._version[node] += 1
        for path, entry in patch:
            if entry is None:
                view.pop(path, None)
                seen.pop(path, None)
            else:
                view[path] = entry
                if _is_lock(path, entry):
                    seen[path] = at

    def _settle(self, node: str, force: bool = False) -> None:
        """Apply the changes due for ``node`` (all of them if ``force``). A change counts
        as seen when it fell due, or when the node last became able to receive."""
        queue, delay = self._queue[node], self._delay[node]
        if not queue or not self.quorate(node):
            return
        now = time.monotonic()
        while queue:
            due = queue[0][0] + delay if delay is not None else math.inf
            if due > now and not force:
                break
            self._apply(node, queue.popleft()[1], max(due, self._since[node]) if due <= now else now)

    def _read(self, node: str) -> dict[str, Entry]:
        self._settle(node)
        return self._views[node]

    def _write(self, node: str, op: Any, *args: Any) -> None:
        """Run a write operation ``op(node, view, *args) -> patch`` on ``node``."""
        with self._lock:
            self._check_writable(node)
            self._settle(node, force=True)
            patch = op(node, self._views[node], *args)
            self._written += 1
            now = time.monotonic()
            self._apply(node, patch, now)
            for other in self.nodes:
                if other != node and patch:
                    self._queue[other].append((now, patch))

    def _check_writable(self, node: str) -> None:
        if not self.quorate(node):
            raise _err(errno.EACCES)
        if node in self._readonly:
            raise _err(errno.EROFS)

    def _check_space(self, node: str, view: dict[str, Entry], old: int, new: int) -> None:
        if new > MAX_FILE:
            raise _err(errno.EFBIG)
        used = sum(len(e.data) for e in view.values())
        if node in self._full or used - old + new > self.capacity:
            raise _err(errno.ENOSPC)

    # --- operations (called with the lock held; write ops return a patch) -----------------

    def _new(self, node: str, view: dict[str, Entry], path: str, is_dir: bool) -> Patch:
        """mkdir or create."""
        _parent(view, path)
        if path in view:
            raise _err(errno.EEXIST)
        self._check_space(node, view, 0, 0)
        return [(path, Entry(is_dir, b"", int(time.time()), node))]

    def _put(self, node: str, view: dict[str, Entry], path: str, offset: int,
             data: bytes, length: int | None) -> Patch:
        """write (``data`` at ``offset``) or truncate (to ``length``)."""
        old = _get(view, path)
        if old.is_dir:
            raise _err(errno.EISDIR)
        if length is None:
            new = old.data[:offset].ljust(offset, b"\0") + data + old.data[offset + len(data):]
        else:
            new = old.data[:length].ljust(length, b"\0")
        self._check_space(node, view, len(old.data), len(new))
        return [(path, replace(old, data=new, mtime=max(old.mtime, int(time.time()))))]

    def _replace(self, node: str, view: dict[str, Entry], path: str, data: bytes) -> Patch:
        """The whole content of a file, created if missing."""
        old = view.get(path)
        if old is None:
            _parent(view, path)
        elif old.is_dir:
            raise _err(errno.EISDIR)
        self._check_space(node, view, len(old.data) if old else 0, len(data))
        mtime = max(old.mtime if old else 0, int(time.time()))
        return [(path, Entry(False, data, mtime, old.writer if old else node))]

    def _remove(self, node: str, view: dict[str, Entry], path: str, is_dir: bool) -> Patch:
        """rmdir or unlink."""
        if _get(view, path).is_dir != is_dir:
            raise _err(errno.ENOTDIR if is_dir else errno.EISDIR)
        if path == "/":
            raise _err(errno.EBUSY)
        if _children(view, path):
            raise _err(errno.ENOTEMPTY)
        return [(path, None)]

    def _rename(self, node: str, view: dict[str, Entry], old: str, new: str) -> Patch:
        entry = _get(view, old)
        _parent(view, new)
        if new == old:
            return []
        if new.startswith(old + "/"):
            raise _err(errno.EINVAL)
        target = view.get(new)
        if target is not None:
            if target.is_dir != entry.is_dir:
                raise _err(errno.EISDIR if target.is_dir else errno.ENOTDIR)
            if target.is_dir and _children(view, new):
                raise _err(errno.ENOTEMPTY)
        moved = [old] + [p for p in view if p.startswith(old + "/")]
        return ([(p, None) for p in moved]
                + [(new + p[len(old):], view[p]) for p in moved])

    def _utime(self, node: str, view: dict[str, Entry], path: str, mtime_ns: int) -> Patch:
        entry = _get(view, path)
        if mtime_ns == _UTIME_OMIT:
            return []
        mtime = max(entry.mtime, int(time.time())) if mtime_ns == _UTIME_NOW \
            else mtime_ns // 10**9
        if _is_lock(path, entry):
            if mtime == 0:  # the unlock request
                if time.monotonic() - self._seen[node][path] <= self.lock_timeout:
                    raise _err(errno.EACCES)
                return [(path, None)] + [(p, None) for p in view if p.startswith(path + "/")]
            if entry.writer != node:
                raise _err(errno.EACCES)
        if mtime < entry.mtime:
            raise _err(errno.EACCES)
        return [(path, replace(entry, mtime=mtime))]


def _get(view: dict[str, Entry], path: str) -> Entry:
    entry = view.get(path)
    if entry is None:
        raise _err(errno.ENOENT)
    return entry


def _parent(view: dict[str, Entry], path: str) -> None:
    if path == "/":
        raise _err(errno.EEXIST)
    if not _get(view, posixpath.dirname(path)).is_dir:
        raise _err(errno.ENOTDIR)


def _children(view: dict[str, Entry], path: str) -> list[str]:
    prefix = path.rstrip("/") + "/"
    return [p[len(prefix):] for p in view
            if p.startswith(prefix) and p != prefix and "/" not in p[len(prefix):]]


@contextlib.contextmanager
def _libfuse_quiet() -> Iterator[None]:
    """libfuse prints chatter on fd 2 when a loop starts and ends ("Ignoring invalid max
    threads value ...", "fuse_remove_signal_handlers: unknown session") and the
    auto_unmount helper it spawns inherits fd 2: both get /dev/null. Failures are not
    lost: they come back as exceptions (:meth:`Pmxcfs.mount`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _unmount(path: str, lazy: bool) -> bool:
    cmd = ["fusermount3", "-u", *(["-z"] if lazy else []), path]
    return subprocess.run(cmd, check=False, capture_output=True).returncode == 0


def _mounted(path: str) -> bool:
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return any(line.split()[:2] == ["pmxcfs", path] for line in fh)


class _Mount(fuse.Operations):
    """FUSE operations for one node's view: thin calls into :class:`Pmxcfs`."""

    use_ns = True

    def __init__(self, cfs: Pmxcfs, node: str, ready: threading.Event) -> None:
        self.cfs, self.node, self._ready = cfs, node, ready

    def init_with_config(self, conn_info: Any, config: Any) -> None:
        if config is not None:  # no kernel caching: views change behind the kernel's back
            config.entry_timeout = config.attr_timeout = config.negative_timeout = 0.0
            config.direct_io = config.hard_remove = 1
        self._ready.set()

    def _entry(self, path: str) -> Entry:
        with self.cfs._lock:
            return _get(self.cfs._read(self.node), path)

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        e = self._entry(path)
        mode = stat.S_IFDIR | 0o755 if e.is_dir else stat.S_IFREG | 0o640
        ns = e.mtime * 10**9
        return {"st_mode": mode, "st_nlink": 2 if e.is_dir else 1, "st_size": len(e.data),
                "st_mtime": ns, "st_ctime": ns, "st_atime": ns, "st_uid": 0, "st_gid": 0}

    def readdir(self, path: str, fh: Any) -> list[str]:
        with self.cfs._lock:
            view = self.cfs._read(self.node)
            if not _get(view, path).is_dir:
                raise _err(errno.ENOTDIR)
            return [".", "..", *sorted(_children(view, path))]

    def open(self, path: str, flags: int) -> int:
        with self.cfs._lock:
            self._entry(path)
            if flags & _WRITE_FLAGS:
                self.cfs._check_writable(self.node)
            if flags & os.O_TRUNC:  # libfuse3 asks for atomic_o_trunc
                self.truncate(path, 0)
        return 0

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        return self._entry(path).data[offset:offset + size]

    def statfs(self, path: str) -> dict[str, int]:
        with self.cfs._lock:
            used = sum(len(e.data) for e in self.cfs._read(self.node).values())
        free = max(0, self.cfs.capacity - used) // 4096
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": self.cfs.capacity // 4096,
                "f_bfree": free, "f_bavail": free, "f_namemax": 255}

    def chmod(self, path: str, mode: int) -> int:
        e = self._entry(path)
        if mode & 0o7777 != (0o755 if e.is_dir else 0o640):
            raise _err(errno.EPERM)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self.cfs._write(self.node, self.cfs._new, path, True)
        return 0

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        self.cfs._write(self.node, self.cfs._new, path, False)
        return 0

    def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
        self.cfs._write(self.node, self.cfs._put, path, offset, data, None)
        return len(data)

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        self.cfs._write(self.node, self.cfs._put, path, 0, b"", length)
        return 0

    def unlink(self, path: str) -> int:
        self.cfs._write(self.node, self.cfs._remove, path, False)
        return 0

    def rmdir(self, path: str) -> int:
        self.cfs._write(self.node, self.cfs._remove, path, True)
        return 0

    def rename(self, old: str, new: str) -> int:
        self.cfs._write(self.node, self.cfs._rename, old, new)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self.cfs._write(self.node, self.cfs._utime, path, _UTIME_NOW if times is None else times[1])
        return 0

    def flush(self, path: str, fh: Any) -> int:
        return 0  # every write is already in the store

    def fsync(self, path: str, datasync: int, fh: Any) -> int:
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: Any) -> int:
        return 0
