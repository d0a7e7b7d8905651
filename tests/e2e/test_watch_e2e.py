"""``pvha watch`` end to end: real subprocesses, real proxmoxer over HTTPS, against the
fake PVE of ``pvha sim serve`` (3 nodes, 6 HA guests: node1 has vm:100 and vm:103,
node2 vm:101 and vm:104, node3 ct:102 and ct:105). Short timings: 1 s rounds, 3 s
fence delay. Waits are bounded; nothing here asserts on speed."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import E2E, wait_for

NODE2_GUESTS = (101, 104)


def steady(e2e: E2E, name: str = "watch"):  # type: ignore[no-untyped-def]
    w = e2e.watch(name)
    wait_for(e2e.all_started, 40, what="all services started")
    return w


def test_e2e_safety_rule1_power_loss_recovers_only_after_fence_ack(e2e: E2E) -> None:
    w = steady(e2e)
    e2e.ctl("power node2 off")
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    # well past the fence delay: still nothing moved, nothing runs twice
    rounds = w.count(r"waiting for fence-ack")
    w.wait_log(r"waiting for fence-ack", 20, after=rounds + 3)
    truth = e2e.truth()
    assert all(truth["guests"][str(v)]["node"] == "node2" for v in NODE2_GUESTS), truth
    assert all(truth["guests"][str(v)]["running_on"] == [] for v in NODE2_GUESTS)
    ack = e2e.pvha("fence-ack", "node2", "--yes")
    assert ack.returncode == 0, ack.stderr
    wait_for(lambda: all(v in e2e.running_via_api() for v in NODE2_GUESTS), 40,
             what="node2's guests running elsewhere")
    running = e2e.running_via_api()
    # basic scheduler: fewest services first, ties by node name
    assert {v: running[v] for v in NODE2_GUESTS} == {101: "node1", 104: "node3"}
    assert len(running) == 6
    e2e.no_split_brain()
    assert w.stop() == 0
    assert "watcher stopped" in w.log()


def test_e2e_fence_ack_refused_for_an_online_node(e2e: E2E) -> None:
    res = e2e.pvha("fence-ack", "node2", "--yes")
    assert res.returncode != 0
    assert "online" in res.stderr
    assert not (e2e.config_dir / "fence" / "node2").exists()


def test_e2e_minority_partition_no_recovery_until_fenced(e2e: E2E) -> None:
    w = steady(e2e)
    e2e.ctl("network node2 off")  # node2 isolated: it keeps running its guests
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    n = w.count(r"waiting for fence-ack")
    w.wait_log(r"waiting for fence-ack", 20, after=n + 3)
    truth = e2e.truth()
    for v in NODE2_GUESTS:
        assert truth["guests"][str(v)]["node"] == "node2"
        assert truth["guests"][str(v)]["running_on"] == ["node2"]
    e2e.no_split_brain()
    # the administrator powers node2 off and says so: now recovery happens
    e2e.ctl("power node2 off")
    assert e2e.pvha("fence-ack", "node2", "--yes").returncode == 0
    wait_for(lambda: all(v in e2e.running_via_api() for v in NODE2_GUESTS), 40,
             what="recovery after the fence-ack")
    e2e.no_split_brain()


def test_e2e_safety_rule2_manager_on_minority_node_does_nothing(e2e: E2E) -> None:
    env = e2e.env(hosts=[e2e.fp.address("node3")[0]])
    w = e2e.watch("minority", env)
    wait_for(e2e.all_started, 40, what="all services started")
    e2e.ctl("network node3 off")  # the node the manager talks to is now a minority
    w.wait_log(r"no quorum on node3, waiting", 30)
    before = e2e.manager_status().get("timestamp")
    e2e.ctl("guest 100 stop")  # a quorate manager would start it again
    n = w.count(r"no quorum on node3")
    w.wait_log(r"no quorum on node3", 20, after=n + 3)
    assert e2e.truth()["guests"]["100"]["running_on"] == []
    assert e2e.manager_status().get("timestamp") == before
    assert "starting service vm:100" not in w.log()
    assert w.alive()


def test_e2e_api_faults_loop_survives_and_converges(e2e: E2E) -> None:
    w = e2e.watch("faults", e2e.env(ticket=True))
    wait_for(e2e.all_started, 40, what="all services started")
    for fault in ("fail5xx 12", "drop 4", "latency 300", "expire-tickets"):
        e2e.ctl(fault)
    e2e.ctl("guest 103 stop")
    time.sleep(3)  # let the faults hit a few rounds (no assertion on time)
    e2e.ctl("fail5xx 6 * 500")
    time.sleep(2)
    e2e.ctl("clear-faults")
    e2e.ctl("expire-tickets")
    wait_for(lambda: 103 in e2e.running_via_api(), 40, what="vm:103 restarted")
    assert w.alive(), w.log()
    assert "cannot read the cluster through the API" in w.log()  # the faults did bite
    assert "Traceback" not in w.log()
    n = w.count(r"manager: 3 nodes online")
    w.wait_log(r"manager: 3 nodes online, 6 services, 6 started", 20, after=n)
    e2e.no_split_brain()


def test_e2e_two_watchers_exactly_one_acts(e2e: E2E) -> None:
    a = e2e.watch("a")
    b = e2e.watch("b")
    wait_for(e2e.all_started, 40, what="all services started")
    wait_for(lambda: "standby: another watcher" in a.log() + b.log(), 20,
             what="one watcher on standby")
    active, standby = (a, b) if "=> master" in a.log() else (b, a)
    assert "=> master" not in standby.log()
    e2e.ctl("guest 100 stop")
    wait_for(lambda: 100 in e2e.running_via_api(), 30, what="vm:100 restarted")
    assert active.count(r"starting service vm:100") == 1
    assert standby.count(r"starting service") == 0
    # the active one stops cleanly: the standby takes over at once and acts
    assert active.stop() == 0
    standby.wait_log(r"=> master", 30)
    e2e.ctl("guest 101 stop")
    wait_for(lambda: 101 in e2e.running_via_api(), 30, what="vm:101 restarted by the other")
    assert standby.count(r"starting service vm:101") == 1


@pytest.mark.parametrize("kill_after", [0.0, 0.4, 1.5])
def test_e2e_safety_rule4_kill9_then_restart_resumes(e2e: E2E, kill_after: float) -> None:
    env = e2e.env(PVHA_LOCK_LIFETIME="4")
    e2e.fp.pmxcfs.lock_timeout = 4.0  # pmxcfs enforces the lifetime: the same as pvha's
    w = e2e.watch("first", env)
    wait_for(e2e.all_started, 40, what="all services started")
    e2e.ctl("power node2 off")
    assert e2e.pvha("fence-ack", "node2", "--yes").returncode == 0
    w.wait_log(r"fencing node2: acknowledged|recover service", 30)
    time.sleep(kill_after)
    w.kill()  # SIGKILL at some point of the recovery
    w2 = e2e.watch("second", env)
    w2.wait_log(r"=> master", 30)  # it waited for the dead one's lock to expire
    w2.wait_log(r"manager: 2 nodes online", 30)
    wait_for(lambda: all(v in e2e.running_via_api() for v in NODE2_GUESTS), 40,
             what="recovery completed by the restarted watcher")
    wait_for(e2e.all_started, 30, what="all services started")
    running = e2e.running_via_api()
    assert len(running) == 6 and {running[v] for v in NODE2_GUESTS} <= {"node1", "node3"}
    # nothing done twice: one start task per recovered guest, none refused
    starts = [t for t in e2e.fp.cluster.tasks.all() if t.type in ("qmstart", "vzstart")]
    assert sorted(t.id for t in starts) == ["101", "104"], [t.upid for t in starts]
    assert w2.count(r"failed:") == 0, w2.log()
    e2e.no_split_brain()
    assert w2.stop() == 0


def test_e2e_live_status_json_shows_quorum_master_nodes_and_services(e2e: E2E) -> None:
    import json

    steady(e2e)
    wait_for(lambda: all(sd.get("running") for sd in
                         (e2e.manager_status().get("service_status") or {}).values()),
             30, what="the manager to see every guest run")
    res = e2e.pvha("status", "--output-format", "json")
    assert res.returncode == 0, res.stderr
    entries = {e["id"]: e for e in json.loads(res.stdout)}
    assert entries["quorum"]["quorate"] == 1 and entries["quorum"]["node"] == "node1"
    assert entries["master"]["node"] == "node1"
    assert {f"lrm:node{i}" for i in (1, 2, 3)} <= set(entries)
    assert entries["service:vm:101"]["node"] == "node2"
    assert entries["service:vm:101"]["state"] == "started"


def test_e2e_overlapping_once_runs_never_collide(e2e: E2E) -> None:
    import subprocess
    import sys

    from tests.e2e.harness import REPO

    e2e.ctl("guest 100 stop")
    e2e.ctl("guest 101 stop")
    procs = [subprocess.Popen([sys.executable, "-m", "pvha", "watch", "--once"],
                              env=e2e.env(), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    masters = [o for o in outs if "=> master" in o]
    assert len(masters) >= 1
    starts = [t for t in e2e.fp.cluster.tasks.all() if t.type == "qmstart"]
    assert sorted(t.id for t in starts) == ["100", "101"], outs  # each started once
    assert not (e2e.config_dir.parent / "priv" / "lock" / "pvha_manager_lock").exists()


def test_e2e_watcher_reaches_the_majority_through_another_host(e2e: E2E) -> None:
    """The first API host is cut off (minority): the watcher (on node2, with its mount)
    does not act on that host's view but continues through a host of the quorate majority
    (safety rule 2 holds, HA goes on)."""
    hosts = [e2e.fp.address(n)[0] for n in ("node1", "node2", "node3")]
    root = e2e.fp.cfs_root("node2")
    w = e2e.watch("majority", e2e.env(hosts=hosts, PVHA_CFS_ROOT=str(root),
                                      PVHA_CONFIG_DIR=str(root / "pvha")))
    wait_for(e2e.all_started, 40, what="all services started")
    cut = len(w.log())
    e2e.ctl("network node1 off")
    n = w.count(r"manager: 2 nodes online")
    w.wait_log(r"manager: 2 nodes online", 30, after=n)
    guests = e2e.truth()["guests"]
    vmid = next(v for v, g in sorted(guests.items()) if g["running_on"] == ["node2"])
    e2e.ctl(f"guest {vmid} stop")  # on a majority node: a quorate manager starts it again
    wait_for(lambda: e2e.truth()["guests"][vmid]["running_on"] == ["node2"], 40,
             what=f"guest {vmid} restarted on node2")
    assert "no quorum on node1, waiting" not in w.log()[cut:], w.log()[cut:]
    assert w.alive(), w.log()
    e2e.no_split_brain()


def test_e2e_a_guest_pve_own_ha_manages_is_refused(e2e: E2E) -> None:
    assert e2e.pvha("remove", "vm:104").returncode == 0
    e2e.ctl("guest 104 pve-ha started")
    res = e2e.pvha("add", "vm:104")
    assert res.returncode != 0
    assert res.stderr.strip().endswith(
        "vm:104 is managed by PVE's own HA (ha-manager); remove it there first (two HA "
        "managers on one guest is a split brain)"), res.stderr
    assert "vm: 104" not in (e2e.config_dir / "resources.cfg").read_text()
    e2e.ctl("guest 104 pve-ha off")
    assert e2e.pvha("add", "vm:104").returncode == 0


def test_e2e_a_guest_locked_by_a_backup_on_a_failed_node_is_recovered_without_its_lock(
        e2e: E2E) -> None:
    """As PVE (semantics: recovery removes leftover `backup` locks): node2 dies during a
    backup of vm:101, whose config then keeps `lock: backup`. After the proof, pvha drops
    the lock from the recovered config and starts the guest on another node. (The lock
    is in the config file, as PVE keeps it; a lock only in the fake's memory would make
    that start fail.)"""
    w = steady(e2e)
    e2e.ctl("guest 101 lock backup")
    conf = e2e.fp.cfs_root("node2") / "nodes" / "node2" / "qemu-server" / "101.conf"
    assert "lock: backup\n" in conf.read_text()
    e2e.ctl("power node2 off")
    node = e2e.recover_locked_after_ack(w, "node2", 101, "backup")
    moved = e2e.fp.cfs_root(node) / "nodes" / node / "qemu-server" / "101.conf"
    assert node != "node2" and "lock:" not in moved.read_text()
    e2e.no_split_brain()
    assert w.stop() == 0
