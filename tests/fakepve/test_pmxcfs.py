"""The pmxcfs-like FUSE filesystem (pvha.fakepve.pmxcfs) through real mounts and plain os
calls: locks, quorum, propagation delays, size limits and the fault hooks."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pvha.adapters.cfs import ClusterFs, detect_pmxcfs
from pvha.fakepve.pmxcfs import MAX_FILE, Pmxcfs

NODES = ("n1", "n2", "n3")
DELAY = 0.2
LOCK_TIMEOUT = 1.0


class Cluster:
    def __init__(self, cfs: Pmxcfs, mounts: dict[str, Path]) -> None:
        self.cfs, self.m = cfs, mounts

    def lock(self, node: str, name: str = "l1") -> Path:
        return self.m[node] / "priv" / "lock" / name


@pytest.fixture
def cl(tmp_path: Path) -> Iterator[Cluster]:
    cfs = Pmxcfs(NODES, delay=DELAY, lock_timeout=LOCK_TIMEOUT)
    cfs.seed("/priv/lock")
    for n in NODES:
        cfs.seed(f"/nodes/{n}/qemu-server")
    try:
        mounts = {n: cfs.mount(n, tmp_path / "nodes" / n / "pve") for n in NODES}
        yield Cluster(cfs, mounts)
    finally:
        cfs.unmount_all()
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        assert str(tmp_path) not in fh.read()


def fails(code: int, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
    with pytest.raises(OSError) as info:
        fn(*args, **kwargs)
    assert info.value.errno == code, info.value


def unlock(lock: Path) -> None:
    """The unlock request, granted: the lock is gone, so the kernel's re-read of its
    attributes after the setattr reports ENOENT (callers ignore utime's result)."""
    fails(errno.ENOENT, os.utime, lock, (0, 0))
    assert not lock.exists()


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


def wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_mount_is_pmxcfs_and_leaves_the_process_alone(cl: Cluster) -> None:
    root = cl.m["n1"]
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        line = next(ln for ln in fh if ln.split()[1] == str(root))
    assert line.split()[:3] == ["pmxcfs", str(root), "fuse"]
    assert detect_pmxcfs(root)
    assert os.getcwd() != "/"  # fuse_main's chdir("/") was undone
    assert sorted(os.listdir(root)) == ["nodes", "priv"]
    assert os.listdir(root / "nodes") == ["n1", "n2", "n3"]


def test_write_is_visible_at_once_locally_and_after_the_delay_elsewhere(cl: Cluster) -> None:
    (cl.m["n1"] / "f.txt").write_text("hello")
    assert (cl.m["n1"] / "f.txt").read_text() == "hello"
    assert not (cl.m["n2"] / "f.txt").exists()
    time.sleep(DELAY + 0.1)
    assert (cl.m["n2"] / "f.txt").read_text() == "hello"
    assert (cl.m["n3"] / "f.txt").read_text() == "hello"
    # changes arrive in the order they were made
    (cl.m["n1"] / "f.txt").write_text("one")
    os.rename(cl.m["n1"] / "f.txt", cl.m["n1"] / "g.txt")
    assert (cl.m["n2"] / "f.txt").read_text() == "hello"
    time.sleep(DELAY + 0.1)
    assert not (cl.m["n2"] / "f.txt").exists()
    assert (cl.m["n2"] / "g.txt").read_text() == "one"


def test_lock_mkdir_twice_is_eexist_and_owner_renews(cl: Cluster) -> None:
    lock = cl.lock("n1")
    os.mkdir(lock)
    fails(errno.EEXIST, os.mkdir, lock)
    fails(errno.EEXIST, os.mkdir, cl.lock("n2"))  # a write sees the whole cluster state
    mtime = int(os.stat(lock).st_mtime)
    os.utime(lock, (0, mtime + 1))
    assert os.stat(lock).st_mtime == mtime + 1
    os.utime(lock, (0, mtime + 1))  # same mtime: allowed
    fails(errno.EACCES, os.utime, lock, (0, mtime))  # backwards
    time.sleep(DELAY + 0.1)
    assert os.stat(cl.lock("n2")).st_mtime == mtime + 1
    fails(errno.EACCES, os.utime, cl.lock("n2"), (0, mtime + 5))  # not the creator
    os.rmdir(cl.lock("n2"))  # rmdir releases, from any node
    assert not cl.lock("n2").exists()
    wait_for(lambda: not lock.exists())
    os.mkdir(lock)


def test_unlock_request_only_after_expiry_and_renewal_extends(cl: Cluster) -> None:
    lock = cl.lock("n1")
    os.mkdir(lock)
    t0 = time.monotonic()
    mtime = int(os.stat(lock).st_mtime)
    fails(errno.EACCES, os.utime, lock, (0, 0))
    sleep_until(t0 + 0.7)
    os.utime(lock, (0, mtime))  # renewal (same mtime) restarts the timeout
    t1 = time.monotonic()
    sleep_until(t0 + 1.15)  # expired if counted from the creation, not from the renewal
    fails(errno.EACCES, os.utime, lock, (0, 0))
    fails(errno.EACCES, os.utime, cl.lock("n2"), (0, 0))
    sleep_until(t1 + DELAY + LOCK_TIMEOUT + 0.15)  # n2 saw the renewal DELAY later
    unlock(cl.lock("n2"))  # any node may ask once it expired
    os.mkdir(cl.lock("n2"))


def test_expiry_is_measured_per_mount(cl: Cluster) -> None:
    cl.cfs.set_delay("n2", 0.8)
    t0 = time.monotonic()
    os.mkdir(cl.lock("n1", "a"))
    os.mkdir(cl.lock("n1", "b"))
    sleep_until(t0 + 1.3)
    # n1 saw both at t0 (expired at t0+1), n2 only at t0+0.8 (expires at t0+1.8)
    fails(errno.EACCES, os.utime, cl.lock("n2", "b"), (0, 0))
    unlock(cl.lock("n1", "a"))
    sleep_until(t0 + 2.0)
    unlock(cl.lock("n2", "b"))


def test_no_quorum_refuses_writes_keeps_reads_and_resyncs(cl: Cluster) -> None:
    n3 = cl.m["n3"]
    (cl.m["n1"] / "old").write_text("old")
    os.mkdir(cl.m["n1"] / "d")
    time.sleep(DELAY + 0.1)
    cl.cfs.set_partitions([["n1", "n2"], ["n3"]])
    assert not cl.cfs.quorate("n3") and cl.cfs.quorate("n1")
    fails(errno.EACCES, os.mkdir, n3 / "x")
    fails(errno.EACCES, open, n3 / "new", "w")
    fails(errno.EACCES, open, n3 / "old", "a")
    fails(errno.EACCES, os.rename, n3 / "old", n3 / "old2")
    fails(errno.EACCES, os.unlink, n3 / "old")
    fails(errno.EACCES, os.rmdir, n3 / "d")
    fails(errno.EACCES, os.utime, n3 / "old")
    fails(errno.EACCES, os.truncate, n3 / "old", 0)
    fails(errno.EACCES, os.mkdir, n3 / "priv" / "lock" / "l")
    assert (n3 / "old").read_text() == "old"
    (cl.m["n1"] / "new").write_text("from n1")
    time.sleep(DELAY + 0.1)
    assert (cl.m["n2"] / "new").read_text() == "from n1"
    assert not (n3 / "new").exists()
    cl.cfs.set_partitions([NODES])  # healed: n3 resyncs at once
    assert (n3 / "new").read_text() == "from n1"
    (n3 / "back").write_text("n3")
    cl.cfs.set_quorate("n1", False)  # forced, whatever the partitions say
    fails(errno.EACCES, os.mkdir, cl.m["n1"] / "y")
    cl.cfs.set_quorate("n1", None)
    assert (cl.m["n1"] / "back").read_text() == "n3"


def test_rename_between_node_dirs_and_replace(cl: Cluster) -> None:
    m1 = cl.m["n1"]
    src = m1 / "nodes" / "n1" / "qemu-server" / "100.conf"
    dst = m1 / "nodes" / "n2" / "qemu-server" / "100.conf"
    src.write_text("memory: 512\n")
    os.rename(src, dst)
    assert not src.exists() and dst.read_text() == "memory: 512\n"
    wait_for(lambda: (cl.m["n2"] / "nodes" / "n2" / "qemu-server" / "100.conf").exists())
    assert not (cl.m["n2"] / "nodes" / "n1" / "qemu-server" / "100.conf").exists()
    tmp = dst.with_name(".100.conf.tmp")
    with open(tmp, "w") as fh:
        fh.write("memory: 1024\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dst)  # temp file + rename replaces the old config
    assert dst.read_text() == "memory: 1024\n"
    assert sorted(os.listdir(dst.parent)) == ["100.conf"]
    fails(errno.ENOENT, os.rename, src, dst)
    os.rename(m1 / "nodes" / "n2", m1 / "nodes" / "n4")  # a directory moves with its tree
    fails(errno.ENOTEMPTY, os.rename, m1 / "nodes" / "n1", m1 / "nodes" / "n4")
    moved = cl.m["n3"] / "nodes" / "n4" / "qemu-server" / "100.conf"
    wait_for(lambda: moved.exists())
    assert moved.read_text() == "memory: 1024\n"
    assert sorted(os.listdir(cl.m["n3"] / "nodes")) == ["n1", "n3", "n4"]
    dst = m1 / "nodes" / "n4" / "qemu-server" / "100.conf"
    fails(errno.ENOENT, os.rename, dst, m1 / "nodes" / "n9" / "qemu-server" / "100.conf")


def test_file_size_is_capped_at_1_mib(cl: Cluster) -> None:
    f = cl.m["n1"] / "big"
    f.write_bytes(b"x" * MAX_FILE)
    assert f.stat().st_size == MAX_FILE
    fails(errno.EFBIG, f.write_bytes, b"x" * (MAX_FILE + 1))
    fails(errno.EFBIG, os.truncate, cl.m["n1"] / "big", MAX_FILE + 1)


def test_mtime_never_moves_backwards_on_files(cl: Cluster) -> None:
    f = cl.m["n1"] / "f"
    f.write_text("x")
    mtime = int(f.stat().st_mtime)
    os.utime(f, (0, mtime + 10))
    fails(errno.EACCES, os.utime, f, (0, mtime))
    os.utime(f)  # now: never before the current mtime
    assert f.stat().st_mtime == mtime + 10


def test_enospc_fault_and_capacity(cl: Cluster) -> None:
    cl.cfs.fill("n1")
    fails(errno.ENOSPC, (cl.m["n1"] / "f").write_text, "x")
    fails(errno.ENOSPC, os.mkdir, cl.m["n1"] / "d")
    (cl.m["n2"] / "f").write_text("fine on n2")
    cl.cfs.fill("n1", False)
    os.mkdir(cl.m["n1"] / "d")
    cl.cfs.capacity = 2 * MAX_FILE
    (cl.m["n1"] / "a").write_bytes(b"a" * MAX_FILE)
    fails(errno.ENOSPC, (cl.m["n2"] / "b").write_bytes, b"b" * MAX_FILE)
    os.unlink(cl.m["n1"] / "a")
    (cl.m["n2"] / "b").write_bytes(b"b" * MAX_FILE)


def test_readonly_fault(cl: Cluster) -> None:
    (cl.m["n1"] / "f").write_text("x")
    cl.cfs.set_readonly("n2")
    time.sleep(DELAY + 0.1)
    assert (cl.m["n2"] / "f").read_text() == "x"
    fails(errno.EROFS, (cl.m["n2"] / "f").write_text, "y")
    fails(errno.EROFS, os.mkdir, cl.m["n2"] / "d")
    fails(errno.EROFS, os.unlink, cl.m["n2"] / "f")
    cl.cfs.set_readonly("n2", False)
    (cl.m["n2"] / "f").write_text("y")


def test_propagation_stopped_to_one_node(cl: Cluster) -> None:
    cl.cfs.set_delay("n2", None)
    (cl.m["n1"] / "f").write_text("x")
    time.sleep(DELAY + 0.2)
    assert (cl.m["n3"] / "f").exists()
    assert not (cl.m["n2"] / "f").exists()
    cl.cfs.set_delay("n2", 0.05)
    wait_for(lambda: (cl.m["n2"] / "f").exists(), 1.0)


def test_cluster_fs_adapter_on_the_mount(cl: Cluster) -> None:
    a = ClusterFs(cl.m["n1"])
    b = ClusterFs(cl.m["n2"])
    assert a.pmxcfs and b.pmxcfs
    assert a.acquire_lock("pvha_manager_lock")
    assert not b.acquire_lock("pvha_manager_lock")  # held, not expired
    assert a.acquire_lock("pvha_manager_lock")  # renew
    assert a.holds_lock("pvha_manager_lock")
    a.release_lock("pvha_manager_lock")
    assert not (cl.m["n1"] / "priv" / "lock" / "pvha_manager_lock").exists()
    assert b.acquire_lock("pvha_manager_lock")
    a.write_manager_status({"master_node": "n1"})  # atomic write + domain lock
    assert a.read_manager_status() == {"master_node": "n1"}
    wait_for(lambda: b.read_manager_status() == {"master_node": "n1"})
    (cl.m["n1"] / "nodes" / "n1" / "qemu-server" / "100.conf").write_text("cores: 1\n")
    assert a.steal_guest_config("qemu", 100, "n1", "n2")
    wait_for(lambda: b.find_guest_config("qemu", 100) == ["n2"])


def test_a_lock_taken_just_before_a_second_ticks_over_is_held(cl: Cluster) -> None:
    """``now`` read before the mkdir, the second ticks over in between: pmxcfs stamps the
    lock with the later second. A utime(now) right after the mkdir would move its mtime
    backwards, be refused, and leave the taker locked out of its own lock for 120 s;
    taken by mkdir alone (as PVE's get_pve_lock), the lock is held."""
    a = ClusterFs(cl.m["n1"], clock=lambda: time.time() - 1.5)  # a clock 1.5 s behind
    assert a.acquire_lock("pvha_manager_lock")
    assert a.holds_lock("pvha_manager_lock")
    assert not ClusterFs(cl.m["n2"]).acquire_lock("pvha_manager_lock")
