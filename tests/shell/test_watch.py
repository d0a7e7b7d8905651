"""The watch loop on an in-memory API and a real cluster-fs directory.

One test per safety rule (design §4), named ``test_safety_rule<N>_...``, plus the loop's
own contracts: 3 API calls per steady round, one sentence per round, survives API
errors, resumes after a restart without repeating work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pvha.adapters import cfs as cfs_mod
from pvha.config import ops
from pvha.config.store import Store
from pvha.errors import ApiPermanentError, ApiTransientError
from pvha.ports import MANAGER_LOCK
from pvha.shell.fencing import FenceAcks
from pvha.shell.loop import Watcher
from tests.shell.fakes import FakeApi, make_cluster, new_cfs

STEP = 10


def watcher(api: FakeApi, cfs: object, fence_delay: int = 60) -> Watcher:
    return Watcher(api, cfs, api.clock, fence_delay=fence_delay, round_interval=STEP)


def rounds(w: Watcher, n: int) -> list[str]:
    out = []
    for _ in range(n):
        out.append(w.safe_round())
        w.api.clock.sleep(STEP)
    return out


def setup_guests(api: FakeApi, cfs: object) -> None:
    """vm:100 and vm:101 on node2, vm:102 on node3 (all HA, started)."""
    store = Store(cfs.config_dir)  # type: ignore[attr-defined]
    for vmid, node in ((100, "node2"), (101, "node2"), (102, "node3")):
        api.add_guest(vmid, node)
        ops.add_resource(store, f"vm:{vmid}", {})


def manager_status(cfs: object) -> dict:
    return json.loads((cfs.config_dir / "manager_status").read_text())  # type: ignore[attr-defined]


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    api, cfs, _clock = make_cluster(tmp_path)
    setup_guests(api, cfs)
    return api, cfs


def test_guests_get_started_and_steady_rounds_make_three_calls(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    rounds(w, 3)
    assert api.running == {100, 101, 102}
    api.calls.clear()
    api.actions.clear()
    said = rounds(w, 2)
    assert api.calls == ["GET cluster/status", "GET cluster/resources",
                         "GET cluster/ha/resources"] * 2
    assert api.actions == []
    assert said[-1] == "manager: 3 nodes online, 3 services, 3 started"
    ms = manager_status(cfs)
    assert ms["master_node"] == "node1"
    assert {sd["state"] for sd in ms["service_status"].values()} == {"started"}


def test_safety_rule1_no_recovery_without_fence_ack(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=30)
    rounds(w, 3)
    api.power["node2"] = False
    api.running -= {100, 101}
    api.calls.clear()
    said = rounds(w, 12)  # 120 s: far past the fence delay
    assert "fencing node2: waiting for fence-ack" in said[-1]
    assert api.config_nodes(100) == ["node2"] and api.config_nodes(101) == ["node2"]
    assert not any("node2" in c for c in api.calls), "no call may go to a dead node"
    assert 100 not in api.running
    ms = manager_status(cfs)
    assert ms["node_status"]["node2"] == "fence"
    assert ms["service_status"]["vm:100"]["state"] == "fence"
    # the administrator confirms the power-off: recovery follows in the next round
    FenceAcks(cfs.config_dir).ack("node2", now=api.clock.time(), by="test")
    rounds(w, 2)
    assert api.config_nodes(100) in (["node1"], ["node3"])
    assert api.config_nodes(101) in (["node1"], ["node3"])
    assert {100, 101, 102} <= api.running
    ms = manager_status(cfs)
    assert ms["service_status"]["vm:100"]["state"] == "started"
    assert ms["node_status"]["node2"] == "unknown"


def test_fence_ack_is_consumed_when_the_node_returns(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=0)
    rounds(w, 2)
    api.power["node2"] = False
    FenceAcks(cfs.config_dir).ack("node2", now=api.clock.time(), by="test")
    rounds(w, 3)
    assert api.config_nodes(100) != ["node2"]
    api.power["node2"] = True
    rounds(w, 1)
    assert FenceAcks(cfs.config_dir).get("node2") is None


def test_safety_rule2_minority_view_does_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.quorate_override = False
    api.local = "node3"
    w = watcher(api, cfs, fence_delay=0)
    said = rounds(w, 5)
    assert said[-1] == "no quorum on node3, waiting"
    assert api.actions == []
    assert not (cfs.config_dir / "manager_status").exists()
    assert not (cfs.lock_dir / MANAGER_LOCK).exists()
    # even with an ack, a manager that sees no quorum moves nothing
    api.power["node2"] = False
    FenceAcks(cfs.config_dir).ack("node2", now=api.clock.time(), by="test")
    rounds(w, 5)
    assert api.config_nodes(100) == ["node2"] and api.actions == []


def test_safety_rule2_losing_quorum_stops_acting(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=0)
    rounds(w, 3)
    before = (cfs.config_dir / "manager_status").read_bytes()
    api.quorate_override = False
    api.running.clear()  # the guests stop: a quorate manager would start them
    api.actions.clear()
    said = rounds(w, 3)
    assert said[-1].startswith("no quorum on node1")
    assert api.actions == []
    assert (cfs.config_dir / "manager_status").read_bytes() == before


def test_safety_rule2_two_watchers_exactly_one_acts(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    a, b = watcher(api, cfs), watcher(api, new_cfs(api))
    for _ in range(4):
        a.safe_round()
        said_b = b.safe_round()
        api.clock.sleep(STEP)
    assert said_b == "standby: another watcher holds the manager lock"
    starts = [x for x in api.actions if x[0] == "start"]
    assert sorted(s for _, s, _ in starts) == ["vm:100", "vm:101", "vm:102"]
    assert b.executors.lrms == {}


def test_safety_rule3_recovery_is_one_rename_then_start(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=0)
    rounds(w, 2)
    api.power["node3"] = False
    api.running.discard(102)
    FenceAcks(cfs.config_dir).ack("node3", now=api.clock.time(), by="test")
    api.actions.clear()
    moves = []
    real = cfs.steal_guest_config

    def spy(kind, vmid, old, new):  # type: ignore[no-untyped-def]
        moves.append((vmid, old, new, sorted(api.running)))
        return real(kind, vmid, old, new)

    cfs.steal_guest_config = spy  # type: ignore[method-assign]
    rounds(w, 3)
    assert len(moves) == 1
    vmid, old, new, running_then = moves[0]
    assert (vmid, old) == (102, "node3") and 102 not in running_then
    assert api.config_nodes(102) == [new]  # exactly one owner
    assert api.actions == [("start", "vm:102", new)]


def test_safety_rule4_restarted_watcher_resumes_without_repeating(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    rounds(w, 3)
    starts = len([a for a in api.actions if a[0] == "start"])
    # "kill -9": the process is gone without releasing its lock; a new one, after expiry
    api.clock.sleep(cfs_mod.LOCK_LIFETIME + 1)
    w2 = watcher(api, new_cfs(api))
    rounds(w2, 3)
    assert len([a for a in api.actions if a[0] == "start"]) == starts
    ms = manager_status(cfs)
    assert {sd["state"] for sd in ms["service_status"].values()} == {"started"}


def test_safety_rule4_status_write_is_atomic(cluster, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    rounds(w, 2)
    before = (cfs.config_dir / "manager_status").read_bytes()

    def crash(src, dst):  # type: ignore[no-untyped-def]
        raise OSError(5, "I/O error (crash before rename)")

    monkeypatch.setattr("os.replace", crash)
    said = rounds(w, 1)
    monkeypatch.undo()
    assert (cfs.config_dir / "manager_status").read_bytes() == before
    assert json.loads(before)["service_status"]
    assert said  # the loop went on


def test_loop_survives_api_errors_and_converges(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.fail_snapshot = [ApiTransientError("node1: 503 busy", status=503),
                         ApiPermanentError("unexpected answer from PVE for /cluster/status"),
                         ApiTransientError("node1: connection failed")]
    w = watcher(api, cfs)
    said = rounds(w, 6)
    assert said[0].startswith("cannot read the cluster through the API")
    assert api.running == {100, 101, 102}


def test_guest_managed_by_pve_ha_is_left_alone(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.pve_ha = {"vm:101"}
    w = watcher(api, cfs)
    rounds(w, 3)
    assert 101 not in api.running and {100, 102} <= api.running


def test_once_releases_the_lock_and_overlapping_runs_do_not_collide(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    holder = watcher(api, new_cfs(api))
    holder.safe_round()  # holds the lock
    other = watcher(api, new_cfs(api))
    assert other.run(once=True) == 0
    assert sorted(a for a in api.actions if a[0] == "start") == [
        ("start", "vm:100", "node2"), ("start", "vm:101", "node2"), ("start", "vm:102", "node3")]
    holder.release()
    assert not (cfs.lock_dir / MANAGER_LOCK).exists()


def test_fence_delay_survives_once_runs(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    watcher(api, new_cfs(api), fence_delay=30).run(once=True)
    api.power["node2"] = False
    FenceAcks(cfs.config_dir).ack("node2", now=api.clock.time(), by="test")
    for _ in range(6):
        api.clock.sleep(STEP)
        watcher(api, new_cfs(api), fence_delay=30).run(once=True)
    assert api.config_nodes(100) != ["node2"]


def test_safety_rule1_a_stale_fence_ack_proves_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=0)
    acks = FenceAcks(cfs.config_dir)
    acks.ack("node2", now=api.clock.time() - 3600, by="test")  # from an earlier failure
    acks.clear = lambda node: False  # type: ignore[method-assign]  # the clean-up failed
    rounds(w, 2)  # node2 seen online
    api.power["node2"] = False
    said = rounds(w, 4)
    assert "fencing node2: waiting for fence-ack" in said[-1]
    assert api.config_nodes(100) == ["node2"]
    acks.ack("node2", now=api.clock.time(), by="test")
    rounds(w, 2)
    assert api.config_nodes(100) != ["node2"]
