"""ClusterFs on a tmp dir: locks (incl. two processes racing), status files, commands,
HA config, the config steal, atomic writes."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
from pathlib import Path

import pytest
from pve_fake import FakeTime

from pvha.adapters import cfs as cfs_mod
from pvha.adapters.cfs import LOCK_LIFETIME, ClusterFs
from pvha.errors import LockError, StoreError
from pvha.fsutil import atomic_write
from pvha.ports import MANAGER_LOCK, ClusterFilesystem, agent_lock


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime(start=1_700_000_000.0)


def make(root: Path, clock: FakeTime, **kw: object) -> ClusterFs:
    return ClusterFs(root, clock=clock.time, sleep=clock.sleep, pmxcfs=False, **kw)


def test_implements_the_port(tmp_path, clock):
    assert isinstance(make(tmp_path, clock), ClusterFilesystem)
    assert ClusterFs(tmp_path).pmxcfs is False  # a tmp dir is not a FUSE mount


# --- locks -----------------------------------------------------------------------------------


def test_take_renew_and_release(tmp_path, clock, caplog):
    caplog.set_level(logging.INFO, logger="pvha.cfs")
    fs = make(tmp_path, clock)
    path = tmp_path / "priv" / "lock" / MANAGER_LOCK
    assert fs.acquire_lock(MANAGER_LOCK)
    assert path.is_dir() and path.stat().st_mtime == clock.now
    clock.now += 100
    assert fs.acquire_lock(MANAGER_LOCK)  # renewal
    assert path.stat().st_mtime == clock.now
    assert [r.getMessage() for r in caplog.records] == [
        f"successfully acquired lock '{MANAGER_LOCK}'"]  # transitions only
    fs.release_lock(MANAGER_LOCK)
    assert not path.exists() and not fs.holds_lock(MANAGER_LOCK)


def test_a_held_lock_cannot_be_taken_by_another_until_it_expires(tmp_path, clock):
    a, b = make(tmp_path, clock), make(tmp_path, clock)
    assert a.acquire_lock(MANAGER_LOCK)
    clock.now += LOCK_LIFETIME  # exactly 120 s: not yet expired
    assert not b.acquire_lock(MANAGER_LOCK)
    clock.now += 1
    assert b.acquire_lock(MANAGER_LOCK)  # expired: broken and retaken in one attempt
    assert not (tmp_path / "priv" / "lock" / f"{MANAGER_LOCK}.break").exists()


def test_a_lock_taken_over_is_lost_and_not_renewed(tmp_path, clock, caplog):
    a, b = make(tmp_path, clock), make(tmp_path, clock)
    assert a.acquire_lock("x")
    clock.now += 121
    assert b.acquire_lock("x")
    clock.now += 1
    # a's own last success is 122 s old, so it tries mkdir, fails: b holds it
    assert not a.acquire_lock("x")
    assert b.acquire_lock("x")


def test_renewal_detects_takeover_within_lifetime(tmp_path, clock, caplog):
    a, b = make(tmp_path, clock), make(tmp_path, clock)
    assert a.acquire_lock("x")
    # someone removes and retakes it behind a's back (e.g. an admin's rmdir)
    os.rmdir(tmp_path / "priv" / "lock" / "x")
    clock.now += 1
    assert b.acquire_lock("x")
    clock.now += 10
    with caplog.at_level(logging.ERROR, logger="pvha.cfs"):
        assert not a.acquire_lock("x")
    assert "lost lock 'x' - lock was taken over" in caplog.text
    assert b.acquire_lock("x")


def test_release_by_a_non_holder_leaves_the_lock(tmp_path, clock):
    a, b = make(tmp_path, clock), make(tmp_path, clock)
    assert a.acquire_lock("x")
    b.release_lock("x")
    assert (tmp_path / "priv" / "lock" / "x").is_dir() and a.acquire_lock("x")


def test_pmxcfs_mode_sends_the_unlock_request(tmp_path, clock):
    a = make(tmp_path, clock)
    b = ClusterFs(tmp_path, clock=clock.time, pmxcfs=True)
    assert a.acquire_lock("x")
    assert not b.acquire_lock("x")
    # utime(path, 0, 0): on pmxcfs this deletes an expired lock; a plain dir just shows it
    assert (tmp_path / "priv" / "lock" / "x").stat().st_mtime == 0


def test_read_only_cfs_means_no_lock(tmp_path, clock, monkeypatch):
    """pmxcfs is read-only without quorum: mkdir fails with EROFS, not EEXIST."""
    fs = make(tmp_path, clock)
    assert fs.acquire_lock("x")
    fs.release_lock("x")

    def read_only(path, *a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cfs_mod.os, "mkdir", read_only)
    assert not fs.acquire_lock("x")
    monkeypatch.undo()
    assert not (tmp_path / "priv" / "lock" / "x").exists()


def test_renewal_fails_on_a_read_only_cfs(tmp_path, clock, monkeypatch, caplog):
    fs = make(tmp_path, clock)
    assert fs.acquire_lock("x")

    def read_only(path, *a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cfs_mod.os, "utime", read_only)
    clock.now += 10
    with caplog.at_level(logging.ERROR, logger="pvha.cfs"):
        assert not fs.acquire_lock("x")
    assert "lost lock 'x' - Read-only file system" in caplog.text
    assert not fs.holds_lock("x")


def test_lock_ids_are_checked(tmp_path, clock):
    fs = make(tmp_path, clock)
    for bad in ("../x", "a/b", "", "x.break"):
        with pytest.raises(ValueError):
            fs.acquire_lock(bad)
    assert agent_lock("pve1") == "pvha_agent_pve1_lock"
    with pytest.raises(ValueError):
        agent_lock("../pve1")


def _race(root: str, lock_id: str, barrier, results) -> None:  # runs in a child process
    fs = ClusterFs(root, pmxcfs=False)
    barrier.wait()
    results.put(fs.acquire_lock(lock_id))


@pytest.mark.parametrize("expired", [False, True])
def test_processes_racing_for_one_lock_exactly_one_wins(tmp_path, expired):
    if expired:  # a stale lock left by a dead holder: everyone tries to break it at once
        stale = tmp_path / "priv" / "lock" / "race"
        stale.mkdir(parents=True)
        old = os.stat(stale).st_mtime - 10 * LOCK_LIFETIME
        os.utime(stale, (old, old))
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), "race", barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(outcome) == [False] * (n - 1) + [True]
    assert (tmp_path / "priv" / "lock" / "race").is_dir()


# --- atomic writes and status files ----------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_atomic_write_failure_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "f"
    atomic_write(target, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cfs_mod.os, "replace", broken_replace)
    with pytest.raises(StoreError, match="No space left"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_manager_and_executor_status_round_trip(tmp_path, clock):
    fs = make(tmp_path, clock)
    assert fs.read_manager_status() is None and fs.read_executor_status("pve1") is None
    status = {"master_node": "pve1", "timestamp": 5, "node_status": {"pve1": "online"},
              "service_status": {}}
    fs.write_manager_status(status)
    fs.write_executor_status("pve2", {"state": "active", "results": {}})
    assert fs.read_manager_status() == status
    assert fs.read_executor_status("pve2") == {"state": "active", "results": {}}
    assert (tmp_path / "pvha" / "manager_status").is_file()
    assert (tmp_path / "pvha" / "lrm_status" / "pve2").is_file()  # where `pvha status` reads


def test_broken_status_is_a_store_error(tmp_path, clock):
    fs = make(tmp_path, clock, config_dir=tmp_path / "cfg")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "manager_status").write_text("{torn")
    with pytest.raises(StoreError, match="invalid JSON"):
        fs.read_manager_status()


# --- crm commands and config -----------------------------------------------------------------


def test_command_queue_is_consumed_once(tmp_path, clock):
    fs = make(tmp_path, clock)
    fs.append_command("migrate vm:100 pve2")
    fs.append_command("stop vm:101 0")
    assert fs.take_commands() == ["migrate vm:100 pve2", "stop vm:101 0"]
    assert fs.take_commands() == []
    assert not (tmp_path / "priv" / "lock" / cfs_mod.DOMAIN_LOCK).exists()  # released
    with pytest.raises(StoreError):
        fs.append_command("migrate vm:100 pve2\narm-ha")


def test_commands_wait_for_the_domain_lock_and_give_up(tmp_path, clock):
    other = make(tmp_path, clock)
    assert other.acquire_lock(cfs_mod.DOMAIN_LOCK)
    fs = make(tmp_path, clock)
    with pytest.raises(LockError):
        fs.append_command("arm-ha")
    assert 10 <= sum(clock.sleeps) < 11  # waited ~10 s on the injected clock
    # one try a second, as PVE's cfs_lock (on pmxcfs each try is a cluster-wide message)
    assert clock.sleeps == [1.0] * 10
    assert fs.read_config("resources.cfg") is None


def test_config_files(tmp_path, clock):
    fs = make(tmp_path, clock)
    fs.write_config("resources.cfg", "vm: 100\n\tstate started\n")
    assert fs.read_config("resources.cfg") == "vm: 100\n\tstate started\n"
    with pytest.raises(ValueError):
        fs.read_config("../priv/authkey.key")


# --- config steal ------------------------------------------------------------------------------


def _layout(root: Path) -> None:
    for node in ("pve1", "pve2"):
        for sub in ("qemu-server", "lxc"):
            (root / "nodes" / node / sub).mkdir(parents=True)
    (root / "nodes" / "pve1" / "qemu-server" / "100.conf").write_text("memory: 2048\n")


def test_steal_moves_the_config_with_one_rename(tmp_path, clock, monkeypatch):
    _layout(tmp_path)
    renames = []
    real_rename = os.rename

    def counting_rename(src, dst):
        renames.append((src, dst))
        real_rename(src, dst)

    monkeypatch.setattr(cfs_mod.os, "rename", counting_rename)
    fs = make(tmp_path, clock)
    assert fs.steal_guest_config("qemu", 100, "pve1", "pve2") is True
    assert (tmp_path / "nodes/pve2/qemu-server/100.conf").read_text() == "memory: 2048\n"
    assert not (tmp_path / "nodes/pve1/qemu-server/100.conf").exists()
    assert len(renames) == 1
    assert fs.steal_guest_config("qemu", 100, "pve1", "pve2") is False  # resumed: nothing to do


def test_steal_refuses_unsafe_cases(tmp_path, clock):
    _layout(tmp_path)
    fs = make(tmp_path, clock)
    with pytest.raises(StoreError, match="no config"):
        fs.steal_guest_config("lxc", 100, "pve1", "pve2")
    (tmp_path / "nodes/pve2/qemu-server/100.conf").write_text("other\n")
    with pytest.raises(StoreError, match="both"):
        fs.steal_guest_config("qemu", 100, "pve1", "pve2")
    with pytest.raises(StoreError, match="does not exist"):
        fs.steal_guest_config("lxc", 101, "pve1", "pve9")
    with pytest.raises(ValueError):
        fs.steal_guest_config("qemu", 100, "pve1", "../pve2")
    assert (tmp_path / "nodes/pve1/qemu-server/100.conf").read_text() == "memory: 2048\n"


def test_pmxcfs_is_detected_from_the_mount_table(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      "/dev/fuse /etc/pve fuse rw,nosuid,nodev,allow_other 0 0\n")
    assert cfs_mod.detect_pmxcfs(Path("/etc/pve"), str(mounts))
    assert cfs_mod.detect_pmxcfs(Path("/etc/pve/priv/lock"), str(mounts))
    assert not cfs_mod.detect_pmxcfs(Path("/etc/pvefoo"), str(mounts))
    assert not cfs_mod.detect_pmxcfs(Path("/srv/cfs"), str(mounts))


def test_command_queue_is_shared_with_the_config_store(tmp_path, clock):
    """The CLI appends through pvha.config.store under its flock; the manager takes the
    queue through ClusterFs under the same flock (plus the cluster-wide domain lock)."""
    from pvha.config import store as store_mod

    assert cfs_mod.LOCAL_LOCK_FILE == store_mod.LOCK_FILE
    assert (store_mod.CRM_COMMANDS, store_mod.MANAGER_STATUS, store_mod.LRM_STATUS_DIR) == (
        "crm_commands", "manager_status", "lrm_status")
    fs = make(tmp_path, clock)
    cli = store_mod.Store(fs.config_dir)
    cli.append_crm_command("migrate vm:100 pve2")
    fs.append_command("stop vm:101 0")
    assert fs.take_commands() == ["migrate vm:100 pve2", "stop vm:101 0"]
    # while the CLI holds its flock, the manager waits (and here gives up) instead of
    # truncating the queue under the CLI's feet
    with cli.locked():
        cli_append = (fs.config_dir / "crm_commands").open("a")
        cli_append.write("arm-ha\n")
        cli_append.close()
        with pytest.raises(LockError, match="locked by another command"):
            fs.take_commands()
    assert fs.take_commands() == ["arm-ha"]


def test_lock_lifetime_never_exceeds_what_pmxcfs_keeps() -> None:
    from pvha.adapters.cfs import PMXCFS_LOCK_LIFETIME, lock_lifetime_for

    assert lock_lifetime_for(300.0, pmxcfs=False) == 300.0  # plain directory: pvha enforces it
    assert lock_lifetime_for(300.0, pmxcfs=True) == PMXCFS_LOCK_LIFETIME == 120.0
    assert lock_lifetime_for(6.0, pmxcfs=True) == 6.0  # a simulated pmxcfs that expires sooner
