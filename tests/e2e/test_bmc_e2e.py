"""Power fencing end to end: ``pvha sim serve --bmc ipmi`` (the FakePve with one pyghmi
BMC per node, in this process), ``pvha watch`` as a subprocess that finds the
``fence.cfg`` the simulator wrote, and Debian's fence_ipmilan/ipmitool in between.

node2 hangs (network off, power stays on): the watcher powers it off through its BMC,
reads "off" back, and only then recovers node2's guests on the other nodes. With the
BMC failing nothing is recovered, and the fence is retried. Waits are bounded; nothing
asserts on speed (figures: bench/recovery.py)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import E2E, running_e2e, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fence"))
from fence_parts import require, require_agent, require_module

NODE2_GUESTS = (101, 104)


@pytest.fixture
def bmc_e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    require_agent("fence_ipmilan")
    require(shutil.which("ipmitool") is not None, "ipmitool is missing (Debian package)")
    require_module("pyghmi", "pyghmi")
    with running_e2e(tmp_path_factory, "bmc", bmc="ipmi") as harness:
        yield harness


def _env(e2e: E2E) -> dict[str, str]:
    return e2e.env(PVHA_FENCE_TIMEOUT="3")


def _moved(e2e: E2E) -> bool:
    """node2's guests run elsewhere: the fake's truth, then (node2 being off, so every
    owner answers) the API through proxmoxer."""
    guests = e2e.truth()["guests"]
    if not all(guests[str(v)]["running_on"] not in ([], ["node2"]) for v in NODE2_GUESTS):
        return False
    running = e2e.running_via_api()
    return all(v in running and running[v] != "node2" for v in NODE2_GUESTS)


def test_e2e_hung_node_fenced_by_its_bmc_then_recovered(bmc_e2e: E2E) -> None:
    e2e = bmc_e2e
    assert (e2e.config_dir / "fence.cfg").exists()
    w = e2e.watch(env=_env(e2e))
    wait_for(e2e.all_started, 40, what="all services started")
    e2e.ctl("network node2 off")  # hung: power stays on, guests keep running there
    wait_for(lambda: e2e.truth()["nodes"]["node2"]["power"] == "off", 40,
             what="node2 powered off by its BMC")
    wait_for(lambda: _moved(e2e), 40, what="node2's guests running elsewhere")
    assert e2e.fp.bmcs.events == [("node2", "off")]
    e2e.no_split_brain()
    w.wait_log(r"fencing: node 'node2' powered off by device 'ipmi' \(verified\)", 10)
    log = w.log()
    # the proof came before the recovery, in the manager's own words
    assert log.index("powered off by device 'ipmi' (verified)") < log.index(
        "recover service")
    hist = e2e.pvha("history", "--output-format", "json", env=_env(e2e))
    assert hist.returncode == 0, hist.stderr
    events = json.loads(hist.stdout)
    outcomes = [(e["event"], e["outcome"]) for e in events if e["node"] == "node2"]
    assert ("fence", "verified off") in outcomes
    assert outcomes.index(("fence", "verified off")) < outcomes.index(("recovery", "placed"))
    wait_for(lambda: sum(1 for e in json.loads(e2e.pvha(
        "history", "--output-format", "json", env=_env(e2e)).stdout)
        if e["outcome"] == "running") == 2, 20, what="recoveries journaled as running")
    status = e2e.pvha("status", env=_env(e2e))
    assert status.returncode == 0, status.stderr
    assert "fence node2: fenced (verified off at" in status.stdout, status.stdout
    assert w.stop() == 0


def test_e2e_failing_bmc_means_no_recovery_until_it_answers(bmc_e2e: E2E) -> None:
    e2e = bmc_e2e
    w = e2e.watch(env=_env(e2e))
    wait_for(e2e.all_started, 40, what="all services started")
    e2e.ctl("bmc node2 fail")
    e2e.ctl("network node2 off")
    w.wait_log(r"fencing: node 'node2' not fenced \(attempt 2\)", 60)
    truth = e2e.truth()
    assert truth["nodes"]["node2"]["power"] == "on"
    assert all(truth["guests"][str(v)]["node"] == "node2" for v in NODE2_GUESTS), truth
    assert all(truth["guests"][str(v)]["running_on"] == ["node2"] for v in NODE2_GUESTS)
    assert "recover service" not in w.log()
    status = e2e.pvha("status", env=_env(e2e))
    assert "fence node2: fence via ipmi failed (attempt" in status.stdout or \
        "fence node2: fencing via ipmi (attempt" in status.stdout, status.stdout
    e2e.ctl("bmc node2 work")
    wait_for(lambda: _moved(e2e), 90, what="node2's guests running elsewhere")
    assert e2e.truth()["nodes"]["node2"]["power"] == "off"
    e2e.no_split_brain()
    assert w.stop() == 0
