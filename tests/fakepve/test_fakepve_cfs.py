"""``pvha sim serve``'s cluster filesystem: one pmxcfs mount per node, each node's API
answering from its own view, and the cfs faults of ``sim ctl``. These tests need the
mounts: where FUSE is missing they fail (CI installs fuse3), they never skip."""

from __future__ import annotations

import errno
import os
import time
from typing import Any

import pytest
from fakepve_helpers import ctl, token_client, wait_for, wait_task
from proxmoxer.core import ResourceException

from pvha.adapters.cfs import detect_pmxcfs
from pvha.fakepve.ctl import CtlError
from pvha.fakepve.server import FakePve

CONF = "nodes/node1/qemu-server/100.conf"
MOVED = "nodes/node3/qemu-server/100.conf"


def owner(fake: FakePve, viewer: str, vmid: int = 100) -> str:
    rows = token_client(fake, viewer).cluster.resources.get(type="vm")
    return str(next(r["node"] for r in rows if r["vmid"] == vmid))


def current(fake: FakePve, viewer: str, node: str, vmid: int = 100) -> Any:
    return token_client(fake, viewer).nodes(node).qemu(vmid).status.current.get()


def fails(code: int, fn: Any, *args: Any) -> None:
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == code, info.value


def test_every_node_has_its_own_pmxcfs_mount_listed_in_status(fake: FakePve) -> None:
    assert fake.cfs_notice is None, fake.cfs_notice
    status = ctl(fake, "status")
    for node in fake.names:
        root = fake.cfs_root(node)
        assert root == fake.state / "nodes" / node / "pve"
        assert detect_pmxcfs(root)  # source pmxcfs, type fuse in /proc/self/mounts
        assert status["nodes"][node]["cfs"] == {
            "mount": str(root), "quorate": True, "delay": fake.cfs_delay,
            "readonly": False, "full": False, "queued": 0}
        # laid out like /etc/pve
        assert {"nodes", "priv", "pvha"} <= set(os.listdir(root))
    env = (fake.state / "env").read_text()
    assert f"PVHA_CFS_ROOT={fake.cfs_root('node1')}\n" in env


def test_a_rename_reaches_another_node_only_through_pmxcfs(fake: FakePve) -> None:
    """pvha's config steal on node1's mount: node1's API follows at once, node3's only
    once the change is delivered there (stopped here, then resumed)."""
    ctl(fake, "cfs node3 stop")
    wait_task(token_client(fake), "node1",
              token_client(fake).nodes("node1").qemu(100).status.stop.post())
    root = fake.cfs_root("node1")
    os.rename(root / CONF, root / MOVED)
    assert owner(fake, "node1") == "node3"
    assert owner(fake, "node3") == "node1"  # node3's own view
    assert ctl(fake, "status")["nodes"]["node3"]["cfs"]["queued"] == 1
    with pytest.raises(ResourceException) as err:  # proxied to node3, read there
        current(fake, "node1", "node3")
    assert err.value.content == "Configuration file 'nodes/node3/qemu-server/100.conf' " \
        "does not exist"
    assert ctl(fake, "status")["guests"]["100"]["node"] == "node3"  # the truth
    ctl(fake, "cfs node3 resume")
    wait_for(lambda: owner(fake, "node3") == "node3")
    assert current(fake, "node1", "node3")["status"] == "stopped"


def test_a_migration_target_may_not_see_the_config_yet(fake: FakePve) -> None:
    """The migration renames the config on the source node; with a slow link to the
    target its API says the config does not exist until the change arrives."""
    ctl(fake, "cfs node2 delay 1.5")
    px = token_client(fake)
    upid = px.nodes("node1").qemu(100).migrate.post(target="node2", online=1)
    assert wait_task(px, "node1", upid)["exitstatus"] == "OK"
    with pytest.raises(ResourceException) as err:
        current(fake, "node1", "node2")
    assert "does not exist" in err.value.content
    cur = wait_for(lambda: _or_none(lambda: current(fake, "node1", "node2")), timeout=5)
    assert cur["status"] == "running"


def test_a_node_without_quorum_keeps_its_last_view_read_only(fake: FakePve) -> None:
    root1, root3 = fake.cfs_root("node1"), fake.cfs_root("node3")
    ctl(fake, "network node3 off")
    assert ctl(fake, "status")["nodes"]["node3"]["cfs"]["quorate"] is False
    fails(errno.EACCES, (root3 / "pvha" / "x").write_text, "x")
    fails(errno.EACCES, os.mkdir, root3 / "priv" / "lock" / "l")
    (root1 / "pvha" / "from-node1").write_text("1")  # the quorate side writes
    assert (root3 / "pvha" / "resources.cfg").read_text()  # reads go on
    time.sleep(4 * fake.cfs_delay)  # longer than a delivery takes
    assert not (root3 / "pvha" / "from-node1").exists()  # and see nothing new
    ctl(fake, "network node3 on")
    wait_for((root3 / "pvha" / "from-node1").exists)  # resync on regaining quorum
    (root3 / "pvha" / "x").write_text("x")


def test_readonly_and_full_faults(fake: FakePve) -> None:
    root = fake.cfs_root("node2")
    ctl(fake, "cfs node2 readonly on")
    fails(errno.EROFS, (root / "pvha" / "a").write_text, "a")
    assert ctl(fake, "status")["nodes"]["node2"]["cfs"]["readonly"] is True
    ctl(fake, "cfs node2 readonly off")
    ctl(fake, "cfs node2 full on")
    fails(errno.ENOSPC, (root / "pvha" / "a").write_text, "a")
    (fake.cfs_root("node1") / "pvha" / "a").write_text("a")  # other nodes have room
    ctl(fake, "cfs node2 full off")
    (root / "pvha" / "b").write_text("b")


@pytest.mark.parametrize("command", [
    "cfs node9 stop", "cfs node1 delay x", "cfs node1 delay -1", "cfs node1 readonly maybe",
    "cfs node1 full", "cfs node1 explode", "cfs node1 stop now"])
def test_bad_cfs_commands_are_refused(fake: FakePve, command: str) -> None:
    with pytest.raises(CtlError) as err:
        ctl(fake, command)
    assert "\n" not in str(err.value) and str(err.value)


def test_the_tree_is_saved_when_the_simulator_stops(fake_factory: Any) -> None:
    from fakepve_helpers import start_fake

    fp = fake_factory(nodes=3, guests=2)
    (fp.cfs_root("node2") / "pvha" / "kept").write_text("yes")
    (fp.cfs_root("node2") / "pvha" / ".hidden").mkdir()
    (fp.cfs_root("node2") / "pvha" / ".hidden" / "f").write_text("too")
    fp.stop()
    assert (fp.state / "cfs" / "pvha" / "kept").read_text() == "yes"
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        assert str(fp.state) not in fh.read()
    again = start_fake(fp.state, nodes=3, guests=2)  # loaded from the saved tree
    try:
        root = again.cfs_root("node3")
        assert (root / "pvha" / "kept").read_text() == "yes"
        assert (root / "pvha" / ".hidden" / "f").read_text() == "too"
    finally:
        again.stop()


def _or_none(call: Any) -> Any:
    try:
        return call()
    except ResourceException as err:
        assert "does not exist" in err.content, err.content
        return None


def test_without_fuse_one_line_notice_and_the_shared_directory(
        fake_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a mount fails (no /dev/fuse), the simulator says why in one line and every
    node shares ``STATE_DIR/cfs``, as before the mounts; cfs faults are refused."""
    from pvha.fakepve import pmxcfs

    def no_fuse(self: Any, node: str, path: Any, timeout: float = 10.0) -> Any:
        raise RuntimeError(f"cannot mount pmxcfs for {node} at {path}: fuse: device not "
                           "found, try 'modprobe fuse' first\nsecond line")

    monkeypatch.setattr(pmxcfs.Pmxcfs, "mount", no_fuse)
    fp = fake_factory(nodes=3, guests=2)
    assert fp.pmxcfs is None and fp.cfs_notice is not None
    assert "\n" not in fp.cfs_notice and "modprobe fuse" in fp.cfs_notice
    assert all(fp.cfs_root(n) == fp.state / "cfs" for n in fp.names)
    assert f"PVHA_CFS_ROOT={fp.state / 'cfs'}\n" in (fp.state / "env").read_text()
    assert owner(fp, "node2") == "node1"
    assert ctl(fp, "status")["nodes"]["node2"]["cfs"]["shared_dir"] == str(fp.state / "cfs")
    with pytest.raises(CtlError, match="no pmxcfs mounts: pmxcfs mounts unavailable"):
        ctl(fp, "cfs node2 stop")
