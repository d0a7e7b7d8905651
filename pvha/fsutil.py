"""Crash-safe file primitives shared by the config store and the cluster filesystem.

Safety rule 4 (design.md §4): state is written atomically — write a temp file in the
same directory, fsync it, rename it over the target, fsync the directory — so a crash
at any instant leaves the previous or the new content, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pvha.errors import LockError, StoreError


def reason(err: BaseException) -> str:
    """The human part of an OS error (``Permission denied``), without errno noise."""
    if isinstance(err, OSError) and err.errno is not None:
        return os.strerror(err.errno)
    return str(err)


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``mode`` None keeps the mode of an existing file (0o644 for a new one). Raises
    StoreError naming the path; the temp file never survives a failure.
    """
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        except OSError as err:
            raise StoreError(f"cannot write {path}: {reason(err)}") from None
    # unique per writer (process and thread), in the same directory so rename is atomic
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as err:
        raise StoreError(f"cannot write to {path.parent}: {reason(err)}") from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):  # umask may have narrowed it; pmxcfs refuses chmod
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StoreError(f"cannot write {path}: {reason(err)}") from None
    fsync_dir(path.parent)
    sweep_temp_files(path)


ORPHAN_AGE = 60.0
"""Seconds after which a temp file of a writer that is gone counts as left behind."""


def sweep_temp_files(path: Path, now: float | None = None) -> list[Path]:
    """Remove the temp files of ``path`` that a killed writer left behind (``kill -9``
    between create and rename); returns them. A temp file counts as left behind when it
    is older than :data:`ORPHAN_AGE` (a write takes milliseconds) and no process of its
    pid runs here (on a cluster filesystem the writer may be on another node, where the
    age alone decides). Never raises."""
    prefix = f".{path.name}.tmp."
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        tmp = path.parent / name
        try:
            if now - tmp.stat().st_mtime <= ORPHAN_AGE:
                continue
            pid = int(name[len(prefix):].split(".", 1)[0])
            if pid != os.getpid() and _running(pid):
                continue
            tmp.unlink()
            removed.append(tmp)
        except (OSError, ValueError):
            continue
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; some filesystems (FUSE) cannot, and say so."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EBADF):
            raise StoreError(f"cannot sync directory {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def flock_wait(
    fd: int,
    timeout: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take an exclusive flock on ``fd``, waiting up to ``timeout`` seconds.

    Raises LockError("<what> is locked by another command …") when it cannot.
    """
    deadline = clock() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if clock() >= deadline:
                raise LockError(
                    f"{what} is locked by another command (waited {timeout:g} s)"
                ) from None
            sleep(0.02)


def parse_json_object(text: str | None, where: Path | str) -> dict[str, Any] | None:
    """A status file's content: None when missing or empty, else the JSON object it holds.

    Raises StoreError naming ``where`` for invalid JSON or a value that is not an object.
    """
    if text is None or not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise StoreError(f"{where}: invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise StoreError(f"{where}: expected a JSON object")
    return data
