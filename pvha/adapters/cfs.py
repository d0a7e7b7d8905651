"""The cluster filesystem adapter: pmxcfs-style locks, status files, the crm command queue,
HA config files and the config steal, over a root directory (``/etc/pve`` or a test dir).

Layout under the root (``--cfs-root`` / ``PVHA_CFS_ROOT``)::

    priv/lock/<lock id>/                  locks (directories), e.g. pvha_manager_lock
    <config dir>/                         default <root>/pvha
        resources.cfg groups.cfg rules.cfg fence.cfg
        manager_status                    JSON, semantics §1.3
        lrm_status/<node>                 JSON, semantics §1.4 (one per executor node)
        crm_commands                      one command per line, semantics §1.5
        .pvha.lock                        flock file shared with pvha.config.store
    nodes/<node>/qemu-server/<vmid>.conf  guest configs (owned by PVE; pvha only renames)
    nodes/<node>/lxc/<vmid>.conf

Locks (semantics §1.7). On pmxcfs the filesystem enforces the rules: mkdir fails while
the lock exists, utime by the owner renews, a lock untouched for 120 s expires, and
``utime(path, 0, 0)`` asks pmxcfs to delete it if expired. On a plain directory (tests,
demo, ``pvha sim serve``) this module emulates the same: the lock's mtime is its last
renewal; an expired lock is broken under a short "break" mutex (``<lock>.break``) so two
processes can never both break and retake it; and a renewal checks the directory is
still ours (same inode and the mtime we last wrote) before touching it.

Config writes and the crm_commands read-and-truncate hold two locks, in this order: the
cluster-wide HA domain lock (a lock directory, like PVE's ``domain-ha``) and the local
``flock`` on ``<config dir>/.pvha.lock`` that ``pvha.config.store`` (the CLI) takes
when it appends commands or rewrites config files, so neither loses the other's update.

Writes are atomic: temp file in the same directory, fsync, rename, fsync of the
directory (skipped where the filesystem refuses, as FUSE may).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvha.errors import LockError, StoreError
from pvha.fsutil import atomic_write, flock_wait, fsync_dir, parse_json_object
from pvha.ports import NODE_NAME_RE, GuestKind

log = logging.getLogger("pvha.cfs")

PMXCFS_LOCK_LIFETIME = 120.0
"""pmxcfs ``CFS_LOCK_TIMEOUT``: a lock not renewed for this long is expired."""
LOCK_LIFETIME = PMXCFS_LOCK_LIFETIME
"""The lifetime this process assumes (``pvha watch`` sets it from its settings)."""
DOMAIN_LOCK = "pvha_domain_ha"
DOMAIN_LOCK_RETRY = 1.0
"""Seconds between tries of the domain lock, as PVE's ``cfs_lock``: on pmxcfs every
mkdir is a message to the whole cluster."""
"""Serialises config writes and crm_commands read-and-truncate, as PVE's ``domain-ha``."""
LOCAL_LOCK_FILE = ".pvha.lock"
"""Must equal ``pvha.config.store.LOCK_FILE`` (a test checks it)."""
CONFIG_FILES = ("resources.cfg", "groups.cfg", "rules.cfg", "fence.cfg")
_CONF_DIRS: dict[str, str] = {"qemu": "qemu-server", "lxc": "lxc"}
_LOCK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LOCK_LINE = re.compile(r"^lock:\s*(\S+)\s*$")


@dataclass(slots=True)
class _Held:
    """What this process knows about a lock it took: when it last succeeded, and (plain
    directories only) the identity of the directory it created."""

    last_ok: float
    identity: tuple[int, int, int, int]  # dev, ino, mtime_ns, ctime_ns after our last write


def lock_lifetime_for(setting: float, pmxcfs: bool) -> float:
    """The lock lifetime to assume: the setting on a plain directory (pvha enforces it);
    on pmxcfs never longer than pmxcfs keeps a lock, since believing a lock held longer
    than that would renew a lock another process has taken since."""
    return min(setting, PMXCFS_LOCK_LIFETIME) if pmxcfs else setting


def detect_pmxcfs(root: Path, mounts: str = "/proc/self/mounts") -> bool:
    """True if ``root`` is on a FUSE mount (pmxcfs); False for a plain directory."""
    try:
        real = os.path.realpath(root)
        best, fstype = "", ""
        with open(mounts, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3 or len(parts[1]) <= len(best):
                    continue
                if real == parts[1] or real.startswith(parts[1].rstrip("/") + "/"):
                    best, fstype = parts[1], parts[2]
        return fstype.startswith("fuse")
    except OSError:
        return False


class ClusterFs:
    """Implements the ``ClusterFilesystem`` port over ``root`` (see module docstring).

    ``clock`` gives wall time (lock renewals and expiry compare it with mtimes), ``sleep``
    is used only by the domain lock's wait. ``pmxcfs`` None = detect from the mounts.
    Lock state is per instance: use one instance per process.
    """

    def __init__(
        self,
        root: Path | str,
        config_dir: Path | str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        pmxcfs: bool | None = None,
    ) -> None:
        self.root = Path(root)
        self.config_dir = Path(config_dir) if config_dir is not None else self.root / "pvha"
        self.lock_dir = self.root / "priv" / "lock"
        self._clock = clock
        self._sleep = sleep
        self.pmxcfs = detect_pmxcfs(self.root) if pmxcfs is None else pmxcfs
        self._held: dict[str, _Held] = {}

    # --- locks -----------------------------------------------------------------------------

    def acquire_lock(self, lock_id: str, *, quiet: bool = False) -> bool:
        """One attempt at taking or renewing ``lock_id`` (semantics §1.7); never sleeps.
        Renew if our last success is under 120 s old (failure = lost lock); otherwise
        mkdir, and if that fails, break the lock when expired and mkdir once more. A
        hold that lapsed and is taken again counts as a new tenure: callers that keep
        state in memory check :meth:`holds_lock` first (see ``pvha.shell.loop``)."""
        path = self._lock_path(lock_id)
        now = self._clock()
        held = self._held.get(lock_id)
        if held is not None and now - held.last_ok < LOCK_LIFETIME:
            error = self._renew(path, held, now)
            if error is None:
                return True
            del self._held[lock_id]
            if not quiet:
                log.error("lost lock '%s' - %s", lock_id, error)
            return False
        self._held.pop(lock_id, None)
        ok = self._take(path, lock_id, now)
        if quiet:
            pass
        elif ok:
            log.info("successfully acquired lock '%s'", lock_id)
        elif held is not None:
            log.error("lost lock '%s' - not renewed within %g s", lock_id, LOCK_LIFETIME)
        return ok

    def release_lock(self, lock_id: str) -> None:
        """rmdir the lock if we hold it (and, on a plain dir, it is still ours)."""
        path = self._lock_path(lock_id)
        held = self._held.pop(lock_id, None)
        if held is None:
            return
        if not self.pmxcfs and not self._still_ours(path, held):
            return
        with contextlib.suppress(OSError):
            os.rmdir(path)

    def holds_lock(self, lock_id: str) -> bool:
        """Whether this process's last attempt on ``lock_id`` succeeded less than 120 s ago."""
        held = self._held.get(lock_id)
        return held is not None and self._clock() - held.last_ok < LOCK_LIFETIME

    def _lock_path(self, lock_id: str) -> Path:
        if not _LOCK_ID_RE.match(lock_id) or lock_id.endswith(".break"):
            raise ValueError(f"invalid lock id {lock_id!r}")
        return self.lock_dir / lock_id

    def _renew(self, path: Path, held: _Held, now: float) -> str | None:
        """utime(path, 0, now); returns an error text or None."""
        if not self.pmxcfs and not self._still_ours(path, held):
            return "lock was taken over"
        try:
            os.utime(path, ns=(0, int(now * 1e9)))
            identity = _identity(path)
        except OSError as exc:
            return exc.strerror or str(exc)
        held.last_ok, held.identity = now, identity
        return None

    def _take(self, path: Path, lock_id: str, now: float) -> bool:
        if self._mkdir(path, now, lock_id):
            return True
        if not path.exists():
            return False  # mkdir failed for another reason (read-only: no quorum)
        if self.pmxcfs:
            # the "unlock request": pmxcfs deletes the lock if (and only if) it expired
            with contextlib.suppress(OSError):
                os.utime(path, (0, 0))
        elif not self._break_if_expired(path, now):
            return False
        return self._mkdir(path, now, lock_id)

    def _mkdir(self, path: Path, now: float, lock_id: str) -> bool:
        try:
            os.makedirs(path.parent, exist_ok=True)
            os.mkdir(path)
        except OSError:
            return False
        try:
            if not self.pmxcfs:
                os.utime(path, ns=(0, int(now * 1e9)))  # the lock's age is on our clock
            # on pmxcfs mkdir alone takes the lock, as PVE's get_pve_lock does: pmxcfs
            # stamps it, and a utime with a ``now`` read before the second ticked over
            # would move the mtime backwards, be refused, and lock us out for 120 s
            identity = _identity(path)
        except OSError:
            return False
        self._held[lock_id] = _Held(now, identity)
        return True

    def _still_ours(self, path: Path, held: _Held) -> bool:
        """Same directory, untouched since our last write. The kernel-set ctime tells a
        directory retaken by someone else apart even if it reuses the inode number and
        their clock wrote the same mtime."""
        try:
            return _identity(path) == held.identity
        except OSError:
            return False

    def _break_if_expired(self, path: Path, now: float) -> bool:
        """Plain-directory emulation of the unlock request. The check and the removal run
        under ``<lock>.break`` (taken with mkdir) so that no other process can retake the
        lock between our check and our rmdir; a break mutex left by a crashed process
        expires like a lock."""
        mutex = path.with_name(path.name + ".break")
        if not self._try_mutex(mutex, now):
            return False
        try:
            try:
                expired = now - os.stat(path).st_mtime > LOCK_LIFETIME
            except FileNotFoundError:
                return True
            if not expired:
                return False
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                return False
            return True
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(mutex)

    def _try_mutex(self, mutex: Path, now: float) -> bool:
        try:
            os.mkdir(mutex)
            return True
        except FileExistsError:
            with contextlib.suppress(OSError):
                if now - os.stat(mutex).st_mtime > LOCK_LIFETIME:
                    os.rmdir(mutex)  # left behind by a crash inside the break
            return False
        except OSError:
            return False

    @contextlib.contextmanager
    def domain_lock(self, timeout: float = 10.0) -> Iterator[None]:
        """Hold the HA domain lock and the config dir's flock for a short critical
        section, waiting up to ``timeout`` seconds for each (PVE's ``cfs_lock_domain``
        waits 10 s). Raises LockError on timeout. Not re-entrant: do not nest it."""
        deadline = self._clock() + timeout
        while not self.acquire_lock(DOMAIN_LOCK, quiet=True):
            if self._clock() >= deadline:
                raise LockError(f"cannot get the HA domain lock within {timeout:g} s")
            self._sleep(DOMAIN_LOCK_RETRY)
        try:
            with self._local_flock(timeout):
                yield
        finally:
            self.release_lock(DOMAIN_LOCK)

    @contextlib.contextmanager
    def _local_flock(self, timeout: float) -> Iterator[None]:
        self._ensure_dir(self.config_dir)
        try:
            fd = os.open(self.config_dir / LOCAL_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open {self.config_dir / LOCAL_LOCK_FILE}: "
                             f"{exc.strerror}") from None
        try:
            flock_wait(fd, timeout, f"config dir {self.config_dir}", self._clock, self._sleep)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    # --- status files ----------------------------------------------------------------------

    def read_manager_status(self) -> dict[str, Any] | None:
        return self._read_json(self.config_dir / "manager_status")

    def write_manager_status(self, status: dict[str, Any]) -> None:
        self._write_json(self.config_dir / "manager_status", status)

    def read_executor_status(self, node: str) -> dict[str, Any] | None:
        return self._read_json(self.config_dir / "lrm_status" / _node(node))

    def write_executor_status(self, node: str, status: dict[str, Any]) -> None:
        self._write_json(self.config_dir / "lrm_status" / _node(node), status)

    def _read_json(self, path: Path) -> dict[str, Any] | None:
        return parse_json_object(self._read_text(path), path)

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        self._ensure_dir(path.parent)
        atomic_write(path, json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), 0o640)

    # --- crm commands ----------------------------------------------------------------------

    def append_command(self, command: str) -> None:
        """Queue one command line under the domain lock (semantics §1.5 grammar is checked
        by the manager when it consumes the queue, as PVE does)."""
        line = command.strip()
        if not line or "\n" in line or "\r" in line:
            raise StoreError(f"invalid crm command {command!r}")
        path = self.config_dir / "crm_commands"
        with self.domain_lock():
            old = self._read_text(path) or ""
            if old and not old.endswith("\n"):
                old += "\n"
            self._ensure_dir(path.parent)
            atomic_write(path, (old + line + "\n").encode())

    def take_commands(self) -> list[str]:
        """Read and empty the queue in one step under the domain lock."""
        path = self.config_dir / "crm_commands"
        with self.domain_lock():
            text = self._read_text(path)
            if not text:
                return []
            atomic_write(path, b"")
        return [ln.strip() for ln in text.splitlines() if ln.strip()]

    def has_commands(self) -> bool:
        """Peek: is any crm command queued (without consuming it, without a lock)?"""
        try:
            return bool((self._read_text(self.config_dir / "crm_commands") or "").strip())
        except StoreError:
            return False

    # --- HA config -------------------------------------------------------------------------

    def read_config(self, name: str) -> str | None:
        return self._read_text(self.config_dir / _config_name(name))

    def write_config(self, name: str, text: str) -> None:
        path = self.config_dir / _config_name(name)
        with self.domain_lock():
            self._ensure_dir(path.parent)
            atomic_write(path, text.encode("utf-8"))

    def edit_config(self, name: str, edit: Callable[[str], str]) -> None:
        """Read, change (``edit``: old text -> new text, '' for a missing file) and write
        back an HA config file, all under the HA domain lock, so no other edit can come
        in between; nothing is written if ``edit`` raises or changes nothing."""
        path = self.config_dir / _config_name(name)
        with self.domain_lock():
            old = self._read_text(path) or ""
            new = edit(old)
            if new != old:
                self._ensure_dir(path.parent)
                atomic_write(path, new.encode("utf-8"))

    # --- the config steal ------------------------------------------------------------------

    def guest_config_path(self, kind: GuestKind, vmid: int, node: str) -> Path:
        if kind not in _CONF_DIRS:
            raise ValueError(f"unknown guest kind {kind!r}")
        if isinstance(vmid, bool) or not isinstance(vmid, int) or vmid < 1:
            raise ValueError(f"invalid vmid {vmid!r}")
        return self.root / "nodes" / _node(node) / _CONF_DIRS[kind] / f"{vmid}.conf"

    def find_guest_config(self, kind: GuestKind, vmid: int) -> list[str]:
        """The nodes whose config dir holds the guest's config (one, normally)."""
        self.guest_config_path(kind, vmid, "x")  # validates kind and vmid
        try:
            nodes = sorted(os.listdir(self.root / "nodes"))
        except OSError:
            return []
        return [n for n in nodes if NODE_NAME_RE.match(n)
                and self.guest_config_path(kind, vmid, n).exists()]

    def steal_guest_config(self, kind: GuestKind, vmid: int, old_node: str, new_node: str) -> bool:
        """One rename from ``old_node``'s to ``new_node``'s config dir (PVE's
        ``steal_service``). True = moved; False = already on ``new_node``. StoreError if
        the config is on neither, on both, or the target node dir does not exist (a
        typo must not create a node)."""
        src = self.guest_config_path(kind, vmid, old_node)
        dst = self.guest_config_path(kind, vmid, new_node)
        if src == dst:
            raise StoreError(f"{kind} {vmid}: old and new node are the same ({old_node})")
        if dst.exists():
            if src.exists():
                raise StoreError(f"{kind} {vmid}: config exists on both {old_node} and {new_node}")
            return False
        if not dst.parent.is_dir():
            raise StoreError(f"{dst.parent} does not exist (unknown node {new_node}?)")
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            raise StoreError(f"{kind} {vmid}: no config on {old_node} or {new_node}") from None
        except OSError as exc:
            raise StoreError(f"cannot move {src} to {dst}: {exc.strerror}") from None
        fsync_dir(dst.parent)
        fsync_dir(src.parent)
        log.info("moved config of %s %d from %s to %s", kind, vmid, old_node, new_node)
        return True

    def remove_guest_lock(self, kind: GuestKind, vmid: int, node: str,
                          locks: tuple[str, ...] | list[str]) -> str | None:
        """Drop a leftover ``lock:`` line (backup, mounted, ...) from the main section of
        the guest's config on ``node`` (not its snapshots), as PVE's ``remove_locks``
        before a recovery; the file is rewritten atomically. Returns the removed lock,
        or None (no config there, no such lock). Caller holds the manager lock and has
        proven ``node`` off."""
        path = self.guest_config_path(kind, vmid, node)
        text = self._read_text(path)
        if text is None:
            return None
        lines = text.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.startswith("["):
                break
            m = _LOCK_LINE.match(line.rstrip("\n"))
            if m and m.group(1) in locks:
                del lines[i]
                atomic_write(path, "".join(lines).encode("utf-8"))
                return m.group(1)
        return None

    # --- helpers -----------------------------------------------------------------------

    def _read_text(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None

    def _ensure_dir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror}") from None


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _config_name(name: str) -> str:
    if name not in CONFIG_FILES:
        raise ValueError(f"not an HA config file: {name!r}")
    return name


def _node(node: str) -> str:
    if not isinstance(node, str) or not NODE_NAME_RE.match(node):
        raise ValueError(f"invalid node name {node!r}")
    return node
