"""The manager's view of agent leases (pvha.shell.lease): what counts as a renewal, when
a lease proves a node dead, and what never does. On a plain directory with a hand clock;
the same rules run end to end in tests/e2e/test_agent_e2e.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pvha.adapters.cfs import ClusterFs
from pvha.shell.lease import MARGIN, Leases


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(tmp_path: Path, state: str = "active", fence_after: float = 70.0) -> tuple[Leases, Clock, Path]:
    cfs = ClusterFs(tmp_path, pmxcfs=False)
    lease = cfs.lock_dir / "pvha_agent_node2"
    lease.mkdir(parents=True)
    os.utime(lease, (0, 100))
    status = cfs.config_dir / "agent_status" / "node2"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"state": state, "fence_after": fence_after}))
    clock = Clock()
    leases = Leases(cfs, clock)
    leases.observe(["node2"])
    return leases, clock, lease


def test_no_renewal_for_longer_than_the_watchdog_plus_margin_proves_it(tmp_path: Path) -> None:
    leases, clock, lease = setup(tmp_path)
    assert leases.armed("node2") and leases.left("node2") == 70 + MARGIN
    clock.now += 60
    os.utime(lease, (0, 160))  # a renewal: the clock starts again
    leases.observe(["node2"])
    clock.now += 70 + MARGIN
    leases.observe(["node2"])
    assert leases.expired("node2") is None  # exactly the bound: not yet
    clock.now += 0.5
    assert leases.expired("node2") == 70 + MARGIN + 0.5


def test_a_watcher_counts_from_its_first_look(tmp_path: Path) -> None:
    leases, clock, lease = setup(tmp_path)
    os.utime(lease, (0, 50))  # an mtime long ago says nothing about when it was seen
    clock.now += 10
    fresh = Leases(leases.cfs, clock)
    fresh.observe(["node2"])
    assert fresh.silent_for("node2") == 0


def test_no_proof_without_an_armed_agent(tmp_path: Path) -> None:
    for state in ("stopped", "waiting"):
        leases, clock, _ = setup(tmp_path / state, state=state)
        clock.now += 1000
        assert not leases.armed("node2") and leases.expired("node2") is None
    leases, clock, lease = setup(tmp_path / "released")
    lease.rmdir()  # released by a clean stop
    leases.observe(["node2"])
    clock.now += 1000
    assert leases.expired("node2") is None
    leases = Leases(ClusterFs(tmp_path / "nothing", pmxcfs=False), Clock())
    leases.observe(["node2"])
    assert leases.expired("node2") is None and leases.left("node2") is None


def test_a_stale_copy_the_agent_could_not_stop_blocks_its_node(tmp_path: Path) -> None:
    leases, _clock, _ = setup(tmp_path)
    assert leases.blocked() == frozenset()
    status = leases.cfs.config_dir / "agent_status" / "node2"
    status.write_text(json.dumps({"state": "active", "fence_after": 70,
                                  "stale_running": ["vm:101"]}))
    leases.observe(["node2"])
    assert leases.blocked() == {"node2"}
    status.write_text(json.dumps({"state": "active", "fence_after": 70, "stale_running": []}))
    leases.observe(["node2"])
    assert leases.blocked() == frozenset()
