"""The README demo's cluster part runs end to end with no manual step and exits 0."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.harness import REPO


def test_demo_cluster_part_recovers_node2_guests_and_stops_everything() -> None:
    res = subprocess.run([sys.executable, "-m", "pvha.demo", "--cluster-only"], cwd=REPO,
                         capture_output=True, text=True, timeout=170, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "fencing node2: waiting for fence-ack" in out
    assert "$ pvha fence-ack node2" in out
    assert "was on node2, now runs on node" in out
    assert "# stopped pvha watch and pvha sim serve" in out
