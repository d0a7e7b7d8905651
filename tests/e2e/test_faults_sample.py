"""A fixed sample of ``bench/faults.py``'s fault trials (quick plans, a few of each kind:
kill -9 during a recovery, two watchers paused past the lock lifetime, API fault
bursts, a corrupting proxy), each asserting 0 safety violations; and a control that
the invariant monitor does catch each kind of violation it claims to, so a 0 means
something. The whole file runs in about two and a half minutes. The figures, over
100+ trials, are the bench's (``python bench/faults.py``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvha.fakepve.cluster import Timing
from pvha.fakepve.server import FakePve
from tests.e2e.faults_harness import run_trial
from tests.e2e.faults_monitor import Monitor
from tests.e2e.harness import E2E, FAST, wait_for

# (kind, seed): both failure variants (fence-ack, BMC) for each kind; kills aimed at the
# fence / recovery / start lines; pauses of the master and of both during a recovery;
# latency and 5xx bursts with ticket auth; online "yes", conflicting duplicates and a
# node entry without "online" aimed at one node for longer than the fence delay
SAMPLE = [("kill9", 3), ("kill9", 4), ("kill9", 6), ("pause", 3), ("pause", 11),
          ("api", 5), ("api", 10), ("corrupt", 2), ("corrupt", 7), ("corrupt", 11)]


@pytest.fixture(scope="module")
def trials_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")  # short: the fake's ctl socket path is bounded


@pytest.mark.parametrize(("kind", "seed"), SAMPLE, ids=[f"{k}:{s}" for k, s in SAMPLE])
def test_fault_trial_has_no_violation(trials_root: Path, kind: str, seed: int) -> None:
    r = run_trial(kind, seed, trials_root, quick=True)
    assert r.error is None, f"{r.error} (replay: {r.replay}; kept: {r.dir})"
    assert r.violations == [], "\n".join(
        [f"replay: {r.replay}; kept: {r.dir}"]
        + [f"{v.category} at +{v.at} s: {v.detail} {v.corruptions}\n  " + "\n  ".join(v.logs)
           for v in r.violations])


@pytest.fixture
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePve]:
    state = tmp_path_factory.mktemp("control")
    fp = FakePve(state / "d", nodes=3, guests=6, timing=Timing(**FAST), bmc="ipmi").start()
    try:
        yield fp
    finally:
        fp.stop()


def test_the_monitor_catches_each_violation(fake: FakePve) -> None:
    """Negative control: what a broken watcher would do, done by hand."""
    e2e = E2E(fake, fake.state.parent)
    mon = Monitor(fake, e2e.config_dir).start()
    nodes = fake.cfs_root() / "nodes"
    try:
        with fake.cluster.lock:  # a guest running twice
            fake.cluster.rt(100).running.add("node3")
        wait_for(lambda: mon.violations, 5, 0.02, "split brain seen")
        with fake.cluster.lock:
            fake.cluster.rt(100).running.discard("node3")
        # a steal from a healthy node, then from node2 proven off by its BMC (fine), then
        # from node2 again after it came back (not fine)
        os.rename(nodes / "node1/qemu-server/103.conf", nodes / "node3/qemu-server/103.conf")
        mon.failed.add("node2")
        fake.bmcs.set_power("node2", False)
        time.sleep(0.2)
        os.rename(nodes / "node2/qemu-server/101.conf", nodes / "node1/qemu-server/101.conf")
        time.sleep(0.2)
        e2e.ctl("power node2 on")
        mon.power_on("node2")
        time.sleep(0.2)
        os.rename(nodes / "node2/qemu-server/104.conf", nodes / "node1/qemu-server/104.conf")
        # a legitimate migration through the API, which the corrupt kind forbids
        mon.strict_moves = True
        e2e.api().nodes("node3").lxc(105).migrate.post(target="node1", restart=1)
        wait_for(lambda: any(m["by"] == "migration" for m in mon.moves), 10, 0.05, "migration")
        # a config lost for a while, one duplicated
        lost = nodes / "node3/lxc/102.conf"
        data = lost.read_bytes()
        lost.unlink()
        time.sleep(0.4)
        lost.write_bytes(data)
        (nodes / "node3/qemu-server/100.conf").write_bytes(
            (nodes / "node1/qemu-server/100.conf").read_bytes())
        time.sleep(0.4)
        os.unlink(nodes / "node3/qemu-server/100.conf")
        # a torn manager status naming a healthy node in fence; an empty lrm status
        (e2e.config_dir / "manager_status").write_text('{"node_status": {"node1": "fen')
        time.sleep(0.2)
        (e2e.config_dir / "manager_status").write_text('{"node_status": {"node3": "fence"}}')
        (e2e.config_dir / "lrm_status").mkdir(exist_ok=True)
        (e2e.config_dir / "lrm_status" / "node1").write_text("")
        time.sleep(0.2)
        fake.bmcs.set_power("node3", False)  # a healthy node powered off
    finally:
        mon.stop()
    seen = sorted((v.category, v.detail.split(" ")[3] if v.category == "unproven-move"
                   else "") for v in mon.violations)
    assert seen == sorted([
        ("split-brain", ""), ("unproven-move", "103"), ("unproven-move", "104"),
        ("moved-by-corruption", ""), ("lost-config", ""), ("duplicate-config", ""),
        ("torn-status", ""), ("torn-status", ""), ("fenced-healthy", ""),
        ("powered-off-healthy", ""),
    ]), [(v.category, v.detail) for v in mon.violations]
    assert [m["by"] for m in mon.moves if m["vmid"] == 101] == ["steal"]  # proven: no violation
