"""The runtime around the engine (issue 8): rounds never wait on a task, state survives
restarts and ``--once`` runs, transient API trouble is not fatal, every guest status
PVE reports has an HA meaning, failures are reported.

On the in-memory API of :mod:`tests.shell.fakes` (tasks that take virtual time) and a
real cluster-fs directory; the same points against ``pvha sim serve`` are in
``tests/e2e/test_runtime_e2e.py``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from pvha.adapters import cfs as cfs_mod
from pvha.config import ops
from pvha.config.store import Store
from pvha.errors import ApiPermanentError, ApiTransientError, StoreError
from pvha.shell.fencing import FenceAcks
from pvha.shell.loop import Watcher
from tests.shell.fakes import FakeApi, make_cluster, new_cfs

STEP = 10


def watcher(api: FakeApi, cfs: Any, **kw: Any) -> Watcher:
    kw.setdefault("fence_delay", 60)
    w = Watcher(api, cfs, api.clock, round_interval=STEP, **kw)
    w.executors.parallel = 1  # one order of log lines and actions, for comparisons
    return w


def rounds(w: Watcher, n: int, step: float = STEP) -> list[str]:
    out = []
    for _ in range(n):
        out.append(w.safe_round())
        w.api.clock.sleep(step)
    return out


def states(cfs: Any) -> dict[str, str]:
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    return {sid: sd["state"] for sid, sd in ms["service_status"].items()}


def add(api: FakeApi, cfs: Any, vmid: int, node: str, **options: str) -> None:
    api.add_guest(vmid, node)
    ops.add_resource(Store(cfs.config_dir), f"vm:{vmid}", options)


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[FakeApi, Any]:
    api, cfs, _clock = make_cluster(tmp_path)
    for vmid, node in ((100, "node2"), (101, "node2"), (102, "node3")):
        add(api, cfs, vmid, node)
    return api, cfs


# --- 1. non-blocking execution -----------------------------------------------------------


def test_a_round_posts_and_never_waits_on_a_task(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.task_seconds = 300  # every start takes five minutes
    w = watcher(api, cfs)
    before = api.clock.time()
    w.safe_round()
    assert api.clock.time() == before, "the round slept"
    assert sorted(a[1] for a in api.actions) == ["vm:100", "vm:101", "vm:102"]
    assert api.running == set()
    assert sorted(w.executors.in_flight()) == sorted(api.tasks)
    # rounds go on while the tasks run: nothing is posted twice
    rounds(w, 5)
    assert len(api.actions) == 3 and api.running == set()
    api.clock.sleep(300)
    rounds(w, 2)
    assert api.running == {100, 101, 102}
    assert set(states(cfs).values()) == {"started"}


def test_a_node_failing_during_a_long_migration_is_fenced_at_once(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=0)
    rounds(w, 2)
    api.task_seconds = 300
    Store(cfs.config_dir).append_crm_command("migrate vm:100 node1")
    rounds(w, 1)
    assert api.actions[-1] == ("migrate", "vm:100", "node2->node1")
    api.power["node3"] = False
    api.running.discard(102)
    said = rounds(w, 2)
    assert "fencing node3: waiting for fence-ack" in said[-1]
    assert states(cfs)["vm:102"] == "fence" and states(cfs)["vm:100"] == "migrate"


def test_the_loop_wakes_when_a_task_ends(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.task_seconds = 3
    w = watcher(api, cfs)
    started = api.clock.monotonic()
    w.safe_round()
    w.wait(started)
    assert api.clock.monotonic() - started < STEP  # woke before the next tick
    assert api.clock.monotonic() - started >= 3  # when the tasks had ended
    w.safe_round()
    assert api.running == {100, 101, 102}


def test_the_loop_wakes_when_the_membership_changes(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    rounds(w, 2)
    started = api.clock.monotonic()
    w.safe_round()
    api.power["node3"] = False
    w.wait(started)
    assert api.clock.monotonic() - started <= 1.5  # one membership poll
    assert "node3 offline" in w.safe_round()


# --- 2. state that survives ------------------------------------------------------------


def _decisions(caplog: pytest.LogCaptureFixture) -> list[str]:
    keep = re.compile(r"state changed|restart policy|relocat|recover|unable to start|"
                      r"entering error|starting service|service status")
    return [r.getMessage() for r in caplog.records
            if r.name.startswith(("pvha.crm", "pvha.lrm")) and keep.search(r.getMessage())]


def _failure_sequence(tmp: Path, caplog: pytest.LogCaptureFixture, once: bool) -> tuple[Any, ...]:
    """vm:100 cannot start on node2 (max_restart 2, max_relocate 1); node3 fails and is
    acked; the same watcher throughout, or a new process for every round."""
    caplog.clear()
    api, cfs, _clock = make_cluster(tmp)
    add(api, cfs, 100, "node2", max_restart="2")
    add(api, cfs, 101, "node3")
    api.broken_starts = {(100, "node2")}
    api.task_seconds = 5
    w = watcher(api, cfs, fence_delay=20)
    for i in range(30):
        if i == 8:
            api.power["node3"] = False
            api.running.discard(101)
        if i == 12:
            FenceAcks(cfs.config_dir).ack("node3", now=api.clock.time(), by="test")
        if once:
            watcher(api, new_cfs(api), fence_delay=20).run(once=True)
        else:
            w.safe_round()
        api.clock.sleep(STEP)
    return api.actions, states(cfs), _decisions(caplog)


def test_once_runs_decide_exactly_as_one_continuous_watcher(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    continuous = _failure_sequence(tmp_path / "continuous", caplog, once=False)
    once = _failure_sequence(tmp_path / "once", caplog, once=True)
    actions, final, decisions = continuous
    # the restart policy ran its course: 3 starts on node2, then relocation to node1
    assert actions.count(("start", "vm:100", "node2")) == 3
    assert ("migrate", "vm:100", "node2->node1") in actions or \
        ("start", "vm:100", "node1") in actions
    assert any("restart policy: retry number 2 for service 'vm:100'" in d for d in decisions)
    assert final == {"vm:100": "started", "vm:101": "started"}
    assert once == continuous


def test_a_restarted_watcher_resumes_a_task_in_flight(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.task_seconds = 30
    w = watcher(api, cfs)
    w.safe_round()
    assert len(api.actions) == 3
    # kill -9: the lock stays until it expires; the new process finds the UPIDs
    api.clock.sleep(cfs_mod.LOCK_LIFETIME + 1)
    w2 = watcher(api, new_cfs(api))
    rounds(w2, 2)
    assert len(api.actions) == 3, "a task in flight was posted again"
    assert api.running == {100, 101, 102}
    assert set(states(cfs).values()) == {"started"}


def test_a_watcher_that_lost_the_lock_forgets_what_it_held(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    a = watcher(api, new_cfs(api))
    rounds(a, 2)
    # a pauses past the lock lifetime; b takes over and moves vm:100
    api.clock.sleep(cfs_mod.LOCK_LIFETIME + 1)
    b = watcher(api, new_cfs(api))
    rounds(b, 1)
    Store(cfs.config_dir).append_crm_command("migrate vm:100 node1")
    rounds(b, 3)
    assert api.config_nodes(100) == ["node1"]
    after_b = states(cfs)
    b.release(final=False)
    # a resumes and takes the free lock: it starts from b's status, not its own memory
    rounds(a, 2)
    assert states(cfs) == after_b
    assert api.config_nodes(100) == ["node1"]
    assert api.actions.count(("migrate", "vm:100", "node2->node1")) == 1


# --- 3. transient is not fatal ---------------------------------------------------------


def test_transient_errors_during_a_recovery_never_reach_error(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=0)
    rounds(w, 2)
    api.power["node3"] = False
    api.running.discard(102)
    FenceAcks(cfs.config_dir).ack("node3", now=api.clock.time(), by="test")
    missing = ApiPermanentError(
        "node1: 500 Configuration file 'nodes/node1/qemu-server/102.conf' does not exist")
    api.faults = {
        "post_start:102": [missing, ApiTransientError("node1: 503 busy", status=503),
                           ApiTransientError("connection aborted", request_sent=True)],
        "guest_status:102": [ApiPermanentError("node1: 500 Internal Server Error")],
        "task_status": [ApiTransientError("node1: 595 timeout", status=595)],
    }
    rounds(w, 10)
    assert states(cfs)["vm:102"] == "started"
    assert 102 in api.running
    assert api.config_nodes(102) in (["node1"], ["node2"])


def test_a_failing_shutdown_connection_is_retried_not_an_error(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    rounds(w, 2)
    api.faults = {"post_shutdown:100": [ApiTransientError("connection reset", request_sent=True)]}
    ops.set_resource(Store(cfs.config_dir), "vm:100", {"state": "stopped"})
    rounds(w, 4)
    assert states(cfs)["vm:100"] == "stopped" and 100 not in api.running


def test_a_guest_that_really_cannot_start_goes_through_the_policy(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.broken_starts = {(100, n) for n in api.nodes}
    w = watcher(api, cfs)
    rounds(w, 12)
    assert states(cfs)["vm:100"] == "error"
    assert {a[2] for a in api.actions if a[:2] == ("start", "vm:100")} == {"node2", "node1"}


def test_transient_trouble_beyond_the_budget_is_a_failed_start(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.faults = {"post_start:100@node2": [ApiTransientError("node2: 503", status=503)] * 100}
    w = watcher(api, cfs)
    rounds(w, 20, step=30)
    # counted against max_restart only after the budget: then relocated to another node
    assert api.config_nodes(100) != ["node2"]
    assert states(cfs)["vm:100"] == "started" and 100 in api.running


# --- 3b. guest states ------------------------------------------------------------------


@pytest.mark.parametrize("qemu", ["paused", "suspended", "prelaunch", "io-error",
                                  "postmigrate", "internal-error"])
def test_a_live_vm_in_any_qemu_state_counts_as_running(cluster, qemu: str) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.running = {100, 101, 102}
    api.status = {100: qemu}
    w = watcher(api, cfs)
    rounds(w, 4)
    assert not [a for a in api.actions if a[1] == "vm:100"], "a start loop on a live VM"
    Store(cfs.config_dir).append_crm_command("migrate vm:100 node1")
    rounds(w, 3)
    # a live migration (a running VM is never migrated with online=0)
    assert ("migrate", "vm:100", "node2->node1") in api.actions
    assert states(cfs)["vm:100"] == "started" and 100 in api.running


# --- 4. honest exits -------------------------------------------------------------------


def test_once_exits_non_zero_when_the_api_fails(cluster, caplog) -> None:  # type: ignore[no-untyped-def]
    api, _cfs = cluster
    api.fail_snapshot = [ApiTransientError("node1: cannot connect", request_sent=False)]
    with caplog.at_level(logging.INFO):
        assert watcher(api, new_cfs(api)).run(once=True) == 1
    assert any(r.levelno >= logging.WARNING and "cannot read the cluster" in r.getMessage()
               for r in caplog.records)
    assert watcher(api, new_cfs(api)).run(once=True) == 0


def test_a_continuous_watcher_logs_persisting_api_failure_as_error(cluster, caplog) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    api.fail_snapshot = [ApiTransientError("node1: cannot connect")] * 4
    w = watcher(api, cfs)
    with caplog.at_level(logging.INFO):
        rounds(w, 4)
    levels = [r.levelno for r in caplog.records if "cannot read the cluster" in r.getMessage()]
    assert levels[0] == logging.WARNING and levels[-1] == logging.ERROR


def test_manager_status_says_who_manages_since_when_and_a_clean_stop(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    since = api.clock.time()
    rounds(w, 2)
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    assert ms["pvha"]["master_since"] == since and ms["pvha"]["round_interval"] == STEP
    assert "stopped_at" not in ms["pvha"]
    w.release(final=True)
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    assert ms["pvha"]["stopped_at"] == api.clock.time()
    # --once runs keep one master_since and never claim a stop
    for _ in range(3):
        watcher(api, new_cfs(api)).run(once=True)
        api.clock.sleep(STEP)
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    assert "stopped_at" not in ms["pvha"]
    assert api.clock.time() - ms["pvha"]["master_since"] == 3 * STEP


# --- 5. config faults degrade, never stop ----------------------------------------------


def test_a_bad_section_is_skipped_and_the_rest_managed(cluster, caplog) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    rounds(w, 2)
    path = cfs.config_dir / "resources.cfg"
    good = path.read_text()
    # vm:101's section gets a typo; vm:102 a bad value; a new vm:103 is fine
    bad = good.replace("vm: 101\n", "vm: 101\n\tstate stoped\n").replace(
        "vm: 102\n", "vm: 102\n\tmax_restart many\n") + "vm: 103\n\tstate started\n\n"
    api.add_guest(103, "node1")
    path.write_text(bad)
    api.running.discard(100)  # vm:100 crashed: it must still be restarted
    with caplog.at_level(logging.WARNING):
        said = rounds(w, 3)
    assert "HA degraded: resources.cfg:" in said[-1], said[-1]
    assert api.running >= {100, 101, 102, 103}
    # the bad sections keep their last good settings: nothing was stopped or dropped
    assert states(cfs) == {f"vm:{v}": "started" for v in (100, 101, 102, 103)}
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    assert len(ms["pvha"]["degraded"]) == 2 and all(
        d.startswith("resources.cfg:") for d in ms["pvha"]["degraded"])
    assert sum("HA config: resources.cfg:" in r.getMessage() for r in caplog.records) == 2
    path.write_text(good + "vm: 103\n\tstate started\n\n")
    said = rounds(w, 1)
    assert "degraded" not in said[-1]
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    assert ms["pvha"]["degraded"] == []


def test_a_watcher_starting_on_a_bad_section_manages_the_rest(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    path = cfs.config_dir / "resources.cfg"
    path.write_text(path.read_text().replace("vm: 101\n", "vm: 101\n\tbogus 1\n"))
    said = rounds(watcher(api, cfs), 3)
    assert api.running == {100, 102}
    assert "HA degraded: resources.cfg:" in said[-1]


def test_safety_rule1_maintenance_with_fence_delay_0_never_fences(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=0)
    rounds(w, 2)
    Store(cfs.config_dir).append_crm_command("enable-node-maintenance node2")
    said = rounds(w, 6)
    assert "fencing" not in " ".join(said)
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    assert ms["node_status"]["node2"] == "maintenance"
    assert api.config_nodes(100) != ["node2"] and api.config_nodes(101) != ["node2"]
    assert api.running == {100, 101, 102} and api.power["node2"]
    assert set(states(cfs).values()) == {"started"}


def test_a_stop_command_edits_only_its_section_under_the_domain_lock(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    rounds(w, 2)
    path = cfs.config_dir / "resources.cfg"
    text = path.read_text().replace("vm: 102\n", "vm: 102\n\tbogus 1\n")  # bad elsewhere
    path.write_text(text)
    Store(cfs.config_dir).append_crm_command("stop vm:100 0")
    rounds(w, 3)
    assert path.read_text() == text.replace("vm: 100\n", "vm: 100\n\tstate stopped\n")
    assert states(cfs)["vm:100"] == "stopped" and 100 not in api.running
    assert not (cfs.lock_dir / cfs_mod.DOMAIN_LOCK).exists()


# --- issue 9: a failed config move never stops the rounds ------------------------------


def test_a_config_move_that_fails_leaves_that_service_in_recovery_and_the_rest_managed(
        cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    add(api, cfs, 103, "node3")
    add(api, cfs, 104, "node3")
    w = watcher(api, cfs, fence_delay=0)
    rounds(w, 2)
    api.power["node3"] = False
    api.running -= {102, 103, 104}
    rounds(w, 2)
    assert {states(cfs)[f"vm:{v}"] for v in (102, 103, 104)} == {"fence"}
    conf = cfs.root / "nodes/node3/qemu-server"
    # vm:103: an earlier recovery renamed it to node2 and died before writing its status
    (conf / "103.conf").rename(cfs.root / "nodes/node2/qemu-server/103.conf")
    # vm:104: the rename itself fails (an I/O error of the cluster filesystem)
    real = cfs.steal_guest_config

    def steal(kind, vmid, old, new):  # type: ignore[no-untyped-def]
        if vmid == 104:
            raise StoreError(f"cannot move {vmid}.conf: Input/output error")
        return real(kind, vmid, old, new)

    cfs.steal_guest_config = steal  # type: ignore[method-assign]
    FenceAcks(cfs.config_dir).ack("node3", now=api.clock.time(), by="test")
    said = rounds(w, 3)
    st = states(cfs)
    assert st["vm:102"] == "started" and 102 in api.running
    assert st["vm:103"] == "started" and api.config_nodes(103) == ["node2"] and 103 in api.running
    assert st["vm:104"] == "recovery" and 104 not in api.running  # tried again every round
    assert said[-1].startswith("manager: 2 nodes online")


def test_a_node_back_before_it_was_fenced_leaves_fence_when_nothing_can_fence_it(cluster) -> None:  # type: ignore[no-untyped-def]
    """Regression: such a node stayed in ``fence`` forever (fence-ack refuses an online
    node; without a device or a watchdog nothing else ever fences it)."""
    api, cfs = cluster
    w = watcher(api, cfs, fence_delay=0)
    rounds(w, 2)
    api.power["node2"] = False  # cut off: its guests keep running there, unseen
    said = rounds(w, 3)
    assert "fencing node2: waiting for fence-ack" in said[-1]
    assert states(cfs)["vm:100"] == "fence"
    api.power["node2"] = True
    said = rounds(w, 3)
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    assert ms["node_status"]["node2"] == "online"
    assert set(states(cfs).values()) == {"started"}
    assert api.config_nodes(100) == ["node2"] and api.config_nodes(101) == ["node2"]
    assert not [a for a in api.actions if a[1] in ("vm:100", "vm:101") and a[0] != "start"]
    assert "fencing" not in said[-1]


def test_a_lost_migrate_answer_is_checked_where_the_config_is_not_an_error(cluster) -> None:  # type: ignore[no-untyped-def]
    api, cfs = cluster
    w = watcher(api, cfs)
    rounds(w, 2)
    real = api.post_migrate

    def lost(ref, target, online):  # type: ignore[no-untyped-def]
        real(ref, target, online)  # PVE got it and migrates; the answer never came back
        raise ApiTransientError("node2: connection reset by peer", request_sent=True)

    api.post_migrate = lost  # type: ignore[method-assign]
    Store(cfs.config_dir).append_crm_command("migrate vm:100 node1")
    rounds(w, 4)
    assert api.config_nodes(100) == ["node1"] and 100 in api.running
    assert states(cfs)["vm:100"] == "started"
    assert api.actions.count(("migrate", "vm:100", "node2->node1")) == 1
