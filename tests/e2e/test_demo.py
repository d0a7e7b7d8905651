"""The README demo's cluster part runs end to end with no manual step and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.e2e.harness import REPO


def test_demo_cluster_part_recovers_node2_guests_and_stops_everything() -> None:
    # own process group: on a timeout the demo and everything it started are killed
    proc = subprocess.Popen([sys.executable, "-m", "pvha.demo", "--cluster-only"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=170)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, out
    assert "fencing node2: waiting for fence-ack" in out
    assert "$ pvha fence-ack node2" in out
    assert "was on node2, now runs on node" in out
    assert "# each node has its own pmxcfs mount" in out  # the strict cluster, not a dir
    assert "# stopped pvha watch and pvha sim serve" in out
    assert not _leftovers(), "the demo left processes behind"


def _leftovers() -> list[str]:
    try:
        out = subprocess.run(["pgrep", "-f", "pvha-demo-"], capture_output=True, text=True,
                             check=False, timeout=10).stdout
    except OSError:
        return []
    return out.split()
