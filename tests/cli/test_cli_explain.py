"""``pvha explain`` on the files alone (no API): a group with priorities, a dropped rule,
an ``error`` state with its counters, and unknown or malformed sids."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Run


@pytest.fixture(autouse=True)
def _no_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("PVHA_"):
            monkeypatch.delenv(key)
    settings = tmp_path / "settings.toml"
    settings.write_text("")
    monkeypatch.setenv("PVHA_SETTINGS", str(settings))


def _setup(run: Run, cfg_dir: Path, ss: dict[str, Any]) -> None:
    for args in (("groupadd", "g1", "--nodes", "node1:2,node3:1", "--restricted", "1"),
                 ("add", "vm:100", "--group", "g1", "--max_relocate", "2"), ("add", "vm:101")):
        res = run(*args)
        assert res.exit_code == 0, res.output
    (cfg_dir / "rules.cfg").write_text(  # one resource only: PVE drops it as ineffective
        "resource-affinity: lonely\n\tresources vm:101\n\taffinity negative\n\n")
    ms = {"master_node": "node1", "timestamp": 1, "service_status": ss,
          "node_status": {"node1": "online", "node2": "online", "node3": "maintenance"}}
    (cfg_dir / "manager_status").write_text(json.dumps(ms))
    (cfg_dir / "lrm_status").mkdir()
    (cfg_dir / "lrm_status" / "node1").write_text(json.dumps(
        {"pvha": {"restart_tries": {"vm:100": 1}}}))


def test_a_grouped_guest_in_error_with_its_counters(run: Run, cfg_dir: Path) -> None:
    _setup(run, cfg_dir, {"vm:100": {"state": "error", "node": "node1",
                                     "failed_nodes": ["node3", "node1"]}})
    res = run("explain", "vm:100")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[:4] == [
        "vm:100: error on node1 (requested started)",
        ("from: the status files only (no API configured: node states as the manager last "
         "saw them)"),
        "group g1: nodes node1:2,node3:1, restricted 1, nofailback 0",
        "rule 'ha-group-g1' (node-affinity, strict: node1:2,node3:1): in force"]
    assert "restarts 1 of max_restart 1; relocations 2 of max_relocate 2 (tried: node3, " \
        "node1)" in lines
    assert ("waiting for a pvha manager: none is running (start pvha watch)") in lines
    assert ("waiting for an administrator: error state, run pvha set vm:100 --state "
            "disabled, fix it, then enable it again") in lines
    assert not any(ln.startswith("placement") for ln in lines)  # error: nothing is placed


def test_placement_names_the_group_and_the_dropped_rule(run: Run, cfg_dir: Path) -> None:
    _setup(run, cfg_dir, {"vm:100": {"state": "started", "node": "node2"},
                          "vm:101": {"state": "started", "node": "node2"}})
    doc = json.loads(run("explain", "100", "--output-format", "json").stdout)[0]
    assert doc["placement"]["chosen"] == "node1" and doc["placement"]["moves"] is True
    nodes = {n["node"]: (n["verdict"], n.get("reason"), n.get("rule")) for n in doc["nodes"]}
    assert nodes == {"node1": ("candidate", None, None),
                     "node2": ("excluded", "not-in-rule", "ha-group-g1"),
                     "node3": ("excluded", "offline", None)}  # in maintenance
    assert "waiting for the next round: it moves to node1" in run("explain", "vm:100").stdout
    other = json.loads(run("explain", "vm:101", "--output-format", "json").stdout)[0]
    assert [(r["id"], r["status"]) for r in other["rules"]] == [
        ("lonely", "dropped: rule is ineffective as there are less than two resources")]
    assert other["placement"]["chosen"] == "node2" and other["waiting_for"][1:] == []


def test_unknown_or_malformed_sids_are_one_line_and_exit_2(run: Run, cfg_dir: Path) -> None:
    _setup(run, cfg_dir, {})
    for sid, message in (("vm:999", "no such resource 'vm:999'"),
                         ("999", "unable to detect SID from VMID '999'")):
        res = run("explain", sid)
        assert res.exit_code == 2, res.output
        assert res.stdout == "" and res.stderr.startswith(f"pvha: error: {message}")
        assert res.stderr.count("\n") == 1
