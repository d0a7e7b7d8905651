"""The store: directory choice, atomic writes, the lock, crm_commands."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from pvha.config import ops
from pvha.config.store import LOCK_FILE, Store, resolve_config_dir
from pvha.errors import LockError, StoreError, UsageError


def test_config_dir_precedence(tmp_path: Path) -> None:
    no_pve = tmp_path / "no-etc-pve"
    pve = tmp_path / "etc-pve"
    pve.mkdir()
    env = {"PVHA_CONFIG_DIR": "/from/env", "HOME": "/home/u"}
    assert resolve_config_dir("/from/flag", env, etc_pve=pve) == Path("/from/flag")
    assert resolve_config_dir(None, env, etc_pve=pve) == Path("/from/env")
    assert resolve_config_dir(None, {}, etc_pve=pve, euid=1000) == pve / "pvha"
    assert resolve_config_dir(None, {}, etc_pve=no_pve, euid=0) == Path("/etc/pvha")
    assert resolve_config_dir(None, {"HOME": "/home/u"}, etc_pve=no_pve, euid=1000) == Path(
        "/home/u/.config/pvha"
    )
    xdg = {"HOME": "/home/u", "XDG_CONFIG_HOME": "/x"}
    assert resolve_config_dir(None, xdg, etc_pve=no_pve, euid=1000) == Path("/x/pvha")


def test_missing_dir_reads_as_empty_and_is_created_on_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "a" / "b")
    assert store.load().ha_config().resources == {}
    assert not store.dir.exists()
    ops.add_resource(store, "vm:100", {})
    assert (store.dir / "resources.cfg").read_text() == "vm: 100\n\n"


def test_write_is_atomic_rename_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ops.add_resource(store, "vm:100", {})
    inode = (tmp_path / "resources.cfg").stat().st_ino
    ops.add_resource(store, "vm:101", {})
    assert (tmp_path / "resources.cfg").stat().st_ino != inode  # replaced, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "resources.cfg"]


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ops.add_resource(store, "vm:100", {})
    ops.add_group(store, "g1", {"nodes": "n1"})
    inode = (tmp_path / "groups.cfg").stat().st_ino
    ops.set_resource(store, "vm:100", {"group": "g1"})
    assert (tmp_path / "groups.cfg").stat().st_ino == inode


def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ops.add_resource(store, "vm:100", {})
    before = (tmp_path / "resources.cfg").read_bytes()
    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.update("resources", txn.after.resources.file.remove("vm:100"))
        raise RuntimeError("boom")
    assert (tmp_path / "resources.cfg").read_bytes() == before


def test_lock_times_out_while_held(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with (
        store.locked(),
        pytest.raises(LockError, match="locked by another command"),
        Store(tmp_path).locked(timeout=0.1),
    ):
        pass


def test_writer_waits_for_lock_holder(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ops.add_resource(store, "vm:100", {})
    done = threading.Event()

    def writer() -> None:
        ops.add_resource(Store(tmp_path), "vm:101", {})
        done.set()

    with store.transaction() as txn:
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.2)
        assert not done.is_set()  # blocked on our lock
        txn.update("resources", txn.after.resources.file.append("vm: 102\n"))
    thread.join(5)
    assert done.is_set()
    assert list(Store(tmp_path).load().resources.entries) == ["vm:100", "vm:102", "vm:101"]


def _add_many(directory: str, start: int) -> None:
    store = Store(Path(directory))
    for vmid in range(start, start + 15):
        ops.add_resource(store, f"vm:{vmid}", {})
        store.append_crm_command(f"migrate vm:{vmid} node1")


def test_concurrent_processes_lose_no_update(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_add_many, args=(str(tmp_path), start)) for start in (100, 200, 300)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    sids = set(Store(tmp_path).load().resources.entries)
    assert sids == {f"vm:{v}" for s in (100, 200, 300) for v in range(s, s + 15)}
    assert len((tmp_path / "crm_commands").read_text().splitlines()) == 45


def test_crm_command_must_be_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(tmp_path).append_crm_command("arm-ha\nstop vm:100 0")
    assert not (tmp_path / "crm_commands").exists()


def test_existing_file_mode_is_kept(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ops.add_resource(store, "vm:100", {})
    os.chmod(tmp_path / "resources.cfg", 0o640)
    ops.add_resource(store, "vm:101", {})
    assert (tmp_path / "resources.cfg").stat().st_mode & 0o777 == 0o640


def test_ops_refuse_before_writing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(UsageError, match="missing value for required option 'nodes'"):
        ops.add_group(store, "g1", {})
    with pytest.raises(UsageError, match="no nodes were specified"):
        ops.add_rule(store, "node-affinity", "r1", {"resources": "vm:100"})
    assert not (tmp_path / "groups.cfg").exists() and not (tmp_path / "rules.cfg").exists()


def test_snapshot_typed_view_orders_rules(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for sid in ("vm:100", "vm:101"):
        ops.add_resource(store, sid, {})
    ops.add_rule(
        store, "resource-affinity", "rb", {"resources": "vm:100,vm:101", "affinity": "negative"}
    )
    ops.add_rule(store, "node-affinity", "ra", {"resources": "vm:100", "nodes": "n1"})
    rules = store.load().ha_config().rules
    assert [(r.id, r.order) for r in rules.values()] == [("rb", 1), ("ra", 2)]
