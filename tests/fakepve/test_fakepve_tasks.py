"""Tasks (UPIDs, status, logs) and guest actions with PVE's sync/task error split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fakepve_helpers import ctl, token_client, wait_for, wait_task
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

from pvha.fakepve.ctl import CtlError
from pvha.fakepve.server import FakePve


def test_task_upid_status_and_log(fake: FakePve) -> None:
    px = token_client(fake)
    upid = px.nodes("node1").qemu(100).status.stop.post()
    info = Tasks.decode_upid(upid)  # needs exactly PVE's 9 fields and the trailing colon
    assert (info["node"], info["type"], info["id"], info["user"]) == (
        "node1", "qmstop", "100", "root@pam")
    assert px.nodes("node1").tasks(upid).status.get()["status"] == "running"
    final = Tasks.blocking_status(px, upid, timeout=5, polling_interval=0.05)
    assert final["status"] == "stopped" and final["exitstatus"] == "OK"
    assert final["pid"] == info["pid"] and final["starttime"] == info["starttime"]
    log = px.nodes("node1").tasks(upid).log.get()
    assert log[-1] == {"n": len(log), "t": "TASK OK"} and log[0]["n"] == 1
    listed = px.nodes("node1").tasks.get(vmid=100)
    assert listed[0]["upid"] == upid and listed[0]["status"] == "OK"
    # task status lives on the task's node only
    with pytest.raises(ResourceException) as err:
        px.nodes("node2").tasks(upid).status.get()
    assert err.value.errors == {"upid": "no such task"}
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").tasks("UPID:garbage").status.get()
    assert err.value.errors == {"upid": "unable to parse worker upid"}


def test_start_errors_like_pve(fake: FakePve) -> None:
    px = token_client(fake)
    # qemu: already running is reported in the task
    upid = px.nodes("node1").qemu(100).status.start.post()
    assert wait_task(px, "node1", upid)["exitstatus"] == "VM 100 already running"
    # qemu: a config that is not on this node fails in the task, after a UPID
    upid = px.nodes("node2").qemu(100).status.start.post()
    assert wait_task(px, "node2", upid)["exitstatus"] == (
        "Configuration file 'nodes/node2/qemu-server/100.conf' does not exist")
    log = px.nodes("node2").tasks(upid).log.get()
    assert log[-1]["t"].startswith("TASK ERROR: Configuration file")
    # lxc: already running is a sync error, the missing config a task error
    with pytest.raises(ResourceException) as err:
        px.nodes("node3").lxc(102).status.start.post()
    assert (err.value.status_code, err.value.content) == (500, "CT 102 already running")
    upid = px.nodes("node1").lxc(102).status.start.post()
    assert wait_task(px, "node1", upid)["exitstatus"] == (
        "Configuration file 'nodes/node1/lxc/102.conf' does not exist")
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").lxc(102).status.reboot.post()
    assert err.value.content == "VM 102 not running"
    # stop asymmetry: qemu stop of a stopped VM is a no-op task, lxc is a sync error
    wait_task(px, "node3", px.nodes("node3").lxc(102).status.stop.post())
    with pytest.raises(ResourceException) as err:
        px.nodes("node3").lxc(102).status.stop.post()
    assert err.value.content == "CT 102 not running"
    wait_task(px, "node1", px.nodes("node1").qemu(100).status.stop.post())
    upid = px.nodes("node1").qemu(100).status.stop.post()
    assert wait_task(px, "node1", upid)["exitstatus"] == "OK"


def test_migrate_moves_config_file(fake: FakePve) -> None:
    px = token_client(fake)
    src = fake.cfs_root() / "nodes/node1/qemu-server/100.conf"
    dst = fake.cfs_root() / "nodes/node2/qemu-server/100.conf"
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(100).migrate.post(target="node2")
    assert err.value.content == "can't migrate running VM without --online"
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(100).migrate.post(target="node1", online=1)
    assert err.value.errors == {"target": "target is local node."}
    upid = px.nodes("node1").qemu(100).migrate.post(target="node2", online=1)
    res = px.cluster.resources.get(type="vm")
    assert next(g for g in res if g["vmid"] == 100).get("lock") == "migrate"
    assert src.exists() and not dst.exists()  # the config moves at the end
    assert wait_task(px, "node1", upid)["exitstatus"] == "OK"
    assert dst.exists() and not src.exists()  # node1 made the rename: seen there at once
    # node2 sees it once pmxcfs delivers it there
    cur = wait_for(lambda: _or_none(px.nodes("node2").qemu(100).status.current.get))
    assert (cur["status"], cur["qmpstatus"], cur["ha"]) == ("running", "running", {"managed": 0})
    assert fake.cluster.truth()["guests"]["100"]["running_on"] == ["node2"]


def test_lxc_restart_migration(fake: FakePve) -> None:
    px = token_client(fake)
    with pytest.raises(ResourceException) as err:
        px.nodes("node3").lxc(102).migrate.post(target="node1")
    assert "without --online or --restart" in err.value.content
    upid = px.nodes("node3").lxc(102).migrate.post(target="node1", restart=1)
    assert wait_task(px, "node3", upid)["exitstatus"] == "OK"
    assert (fake.cfs_root("node3") / "nodes/node1/lxc/102.conf").exists()  # done on node3
    wait_for((fake.cfs_root("node1") / "nodes/node1/lxc/102.conf").exists)  # node1 later
    assert px.nodes("node1").lxc(102).status.current.get()["status"] == "running"


def test_migrate_to_dead_target_fails_in_task(fake: FakePve) -> None:
    px = token_client(fake)
    ctl(fake, "power node3 off")
    upid = px.nodes("node1").qemu(100).migrate.post(target="node3", online=1)
    final = wait_task(px, "node1", upid)
    assert final["exitstatus"] == "migration aborted"
    log = [line["t"] for line in px.nodes("node1").tasks(upid).log.get()]
    assert "Can't connect to destination address using public key" in log[-2]
    assert (fake.cfs_root() / "nodes/node1/qemu-server/100.conf").exists()


def test_config_steal_is_seen_at_once_by_the_node_that_made_it(fake: FakePve) -> None:
    """pvha's recovery renames the config in the cfs; the API follows the file."""
    px = token_client(fake)
    ctl(fake, "power node2 off")
    src = fake.cfs_root() / "nodes/node2/qemu-server/101.conf"
    src.rename(fake.cfs_root() / "nodes/node1/qemu-server/101.conf")
    g = next(g for g in px.cluster.resources.get(type="vm") if g["vmid"] == 101)
    assert (g["node"], g["status"]) == ("node1", "stopped")
    wait_task(px, "node1", px.nodes("node1").qemu(101).status.start.post())
    assert px.nodes("node1").qemu(101).status.current.get()["status"] == "running"


def test_task_of_a_crashed_node(fake: FakePve) -> None:
    fake.cluster.timing.task_seconds = 5.0
    px = token_client(fake)
    upid = px.nodes("node2").qemu(101).status.stop.post()
    ctl(fake, "power node2 off")
    ctl(fake, "power node2 on")
    final = px.nodes("node2").tasks(upid).status.get()
    assert (final["status"], final["exitstatus"]) == ("stopped", "unexpected status")


def test_locks_like_pve(fake: FakePve) -> None:
    px = token_client(fake)
    ctl(fake, "guest 100 lock backup")
    with pytest.raises(ResourceException) as err:  # qemu migrate: sync
        px.nodes("node1").qemu(100).migrate.post(target="node2", online=1)
    assert err.value.content == "VM is locked (backup)"
    wait_task(px, "node1", px.nodes("node1").qemu(103).status.stop.post())
    ctl(fake, "guest 103 lock backup")
    upid = px.nodes("node1").qemu(103).status.start.post()  # start: in the task
    assert wait_task(px, "node1", upid)["exitstatus"] == "VM is locked (backup)"
    ctl(fake, "guest 102 lock backup")
    upid = px.nodes("node3").lxc(102).migrate.post(target="node1", restart=1)  # lxc: task
    assert wait_task(px, "node3", upid)["exitstatus"] == "migration aborted"
    ctl(fake, "guest 102 unlock")
    # the lock is the config's `lock:` line, written on the owner's node (node3) and seen
    # by the others once pmxcfs has passed it on, as any config change
    conf102 = (fake.cfs_root("node3") / "nodes/node3/lxc/102.conf").read_text()
    assert "lock:" not in conf102
    assert "lock: backup\n" in (fake.cfs_root("node1") / "nodes/node1/qemu-server/100.conf"
                                ).read_text()

    def resources() -> dict[int, dict[str, Any]]:
        return {g["vmid"]: g for g in px.cluster.resources.get(type="vm")}

    wait_for(lambda: "lock" not in resources()[102], 10)
    assert resources()[100]["lock"] == "backup"
    with pytest.raises(CtlError, match="bad lock name"):  # never a line of its own making
        ctl(fake, "guest 100 lock Backup:x")
    ctl(fake, "network node3 off")  # node3's pmxcfs is read-only without quorum
    with pytest.raises(CtlError, match="cannot write the config of guest 102"):
        ctl(fake, "guest 102 lock backup")
    ctl(fake, "network node3 on")
    # a lock written in the config file counts too (written on node2, whose API answers)
    conf = fake.cfs_root("node2") / "nodes/node2/qemu-server/101.conf"
    conf.write_text(conf.read_text() + "lock: migrate\n")
    with pytest.raises(ResourceException) as err:
        px.nodes("node2").qemu(101).migrate.post(target="node1", online=1)
    assert err.value.content == "VM is locked (migrate)"


def _or_none(get: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """``get()``, or None while the answering node does not see the config yet."""
    try:
        return get()
    except ResourceException as err:
        assert "does not exist" in err.content, err.content
        return None
