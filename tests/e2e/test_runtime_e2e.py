"""The runtime (issue 8) end to end: ``pvha watch`` subprocesses on the real adapters
against ``pvha sim serve``'s fake PVE (3 nodes, 6 HA guests: node1 has vm:100 and vm:103,
node2 vm:101 and vm:104, node3 ct:102 and ct:105; 1 s rounds, 3 s fence delay).

Rounds never wait on a task, state survives ``--once`` runs, transient API faults during
a recovery are not fatal, a paused VM is a running one, failures give non-zero exits.
Waits are bounded; nothing here asserts on speed."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.harness import E2E, wait_for


def _node_state(e2e: E2E, node: str) -> str | None:
    return (e2e.manager_status().get("node_status") or {}).get(node)


def _tasks(e2e: E2E, vmid: int, kind: str) -> list[Any]:
    return [t for t in e2e.fp.cluster.tasks.all() if t.id == str(vmid) and t.type == kind]


def test_e2e_a_long_migration_does_not_delay_noticing_a_dead_node(e2e: E2E) -> None:
    e2e.fp.cluster.timing.migrate_seconds = 120.0  # the migration outlives the test
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    res = e2e.pvha("migrate", "vm:100", "node3")
    assert res.returncode == 0, res.stderr
    wait_for(lambda: e2e.fp.cluster.rt(100).lock == "migrate", 20, what="migration running")
    e2e.ctl("power node2 off")
    wait_for(lambda: _node_state(e2e, "node2") == "fence", 30, what="node2 in fence")
    # the migration is still running: the manager did not wait for it
    assert e2e.fp.cluster.rt(100).lock == "migrate"
    assert [t.running for t in _tasks(e2e, 100, "qmigrate")] == [True]
    ss = e2e.manager_status()["service_status"]
    assert ss["vm:100"]["state"] == "migrate" and ss["vm:101"]["state"] == "fence"
    w.wait_log(r"fencing node2: waiting for fence-ack", 10)
    e2e.no_split_brain()


def test_e2e_transient_faults_during_a_recovery_are_not_fatal(e2e: E2E) -> None:
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    e2e.ctl("power node2 off")
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    # every node answers the next requests with 503s, then drops connections
    e2e.ctl("fail5xx 6 * 503")
    e2e.ctl("drop 3")
    # its own checks may hit a 503: then it refuses (2) and records nothing; try again
    ack = e2e.config_dir / "fence" / "node2"
    wait_for(lambda: ack.exists() or e2e.pvha("fence-ack", "node2", "--yes").returncode in (0, 2)
             and ack.exists(), 60, step=0.5, what="the fence-ack recorded")
    wait_for(lambda: set(e2e.service_states().values()) == {"started"}
             and len(e2e.running_via_api()) == 6, 60, what="all recovered and running")
    states = e2e.service_states()
    assert "error" not in states.values(), states
    assert "entering error state" not in w.log()
    e2e.no_split_brain()


def test_e2e_paused_and_io_error_vms_are_running_and_a_paused_one_migrates_live(e2e: E2E) -> None:
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    e2e.ctl("guest 103 pause")
    e2e.ctl("guest 100 io-error")  # a VM stopped on a disk error: QEMU still runs
    e2e.ctl("requests reset")
    starts = len(_tasks(e2e, 103, "qmstart"))
    w.wait_log(r"manager: ", 20, after=w.count(r"manager: ") + 4)  # a few rounds
    assert len(_tasks(e2e, 103, "qmstart")) == starts, "a start loop on a paused VM"
    sent = e2e.ctl("requests")
    assert sent.get("GET /cluster/resources", 0) >= 4, sent  # the rounds did read
    assert not [k for k in sent if k.startswith("POST ")], sent  # no start, stop, migrate
    assert e2e.truth()["guests"]["103"]["qmp"] == "paused"
    assert e2e.service_states()["vm:100"] == "started"
    res = e2e.pvha("migrate", "vm:103", "node2")
    assert res.returncode == 0, res.stderr
    wait_for(lambda: e2e.truth()["guests"]["103"]["node"] == "node2"
             and e2e.service_states().get("vm:103") == "started", 30, what="vm:103 moved")
    # a live migration: the VM kept running (paused) and was never stopped
    assert e2e.truth()["guests"]["103"]["running_on"] == ["node2"]
    assert e2e.truth()["guests"]["103"]["qmp"] == "paused"
    assert not _tasks(e2e, 103, "qmshutdown") and not _tasks(e2e, 103, "qmstop")


def _once(e2e: E2E, **env: str) -> int:
    return e2e.pvha("watch", "--once", env=e2e.env(**env)).returncode


def test_e2e_once_runs_reach_the_restart_policy_and_exit_codes_tell_failure(e2e: E2E) -> None:
    # vm:100 is locked: every start fails ("VM is locked (backup)"), on every node
    e2e.ctl("guest 100 stop")
    e2e.ctl("guest 100 lock backup")
    for _ in range(40):
        assert _once(e2e) == 0
        if e2e.service_states().get("vm:100") == "error":
            break
    # max_restart 1: two starts, then the relocation policy (max_relocate 1) tries to
    # migrate it away, which the lock refuses too; two more starts, then error. With
    # counters that restart every run it would retry forever and never get there.
    assert e2e.service_states()["vm:100"] == "error"
    assert [t.node for t in _tasks(e2e, 100, "qmstart")] == ["node1"] * 4
    ms = e2e.manager_status()
    assert ms["service_status"]["vm:100"]["failed_nodes"] == ["node1", "node1"]
    # a wrong token: the run cannot read the cluster and says so with its exit status
    bad = e2e.tmp / "bad-token"
    bad.write_text("not-the-token\n")
    res = e2e.pvha("watch", "--once", env=e2e.env(PVHA_TOKEN_SECRET_FILE=str(bad)))
    assert res.returncode == 1, res.stderr
    assert "cannot read the cluster through the API" in res.stderr
    assert json.loads((e2e.config_dir / "manager_status").read_text())["timestamp"] == \
        ms["timestamp"], "a run without the API wrote the manager status"


def test_e2e_a_guest_whose_node_dies_during_its_migration_is_recovered_without_the_lock(
        e2e: E2E) -> None:
    """As PVE: a migration writes `lock: migrate` into the guest's config; the source
    node dies before the task clears it, so the config keeps it. After the proof, the
    recovery removes that leftover lock and the guest starts on another node."""
    e2e.fp.cluster.timing.migrate_seconds = 120.0  # the migration outlives its node
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    res = e2e.pvha("migrate", "vm:101", "node3")
    assert res.returncode == 0, res.stderr
    wait_for(lambda: e2e.truth()["guests"]["101"]["lock"] == "migrate", 20,
             what="migration running")
    e2e.ctl("power node2 off")
    conf = e2e.fp.cfs_root("node1") / "nodes" / "node2" / "qemu-server" / "101.conf"
    wait_for(lambda: "lock: migrate\n" in conf.read_text(), 10,
             what="the lock left in the config file")
    assert e2e.recover_locked_after_ack(w, "node2", 101, "migrate") != "node2"
    assert "entering error state" not in w.log()
    e2e.no_split_brain()
