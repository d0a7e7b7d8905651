"""``pvha status``: the pure entry builder (semantics 7.2) and the command on status files."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from pvha.core.model import HAConfig, Resource
from pvha.status import Quorum, format_status_text, perl_localtime, status_entries, verbose_state

NOW = 1_000_000.0


def _t(ts: float) -> str:
    return f"T{int(NOW - ts)}"


def _config(*resources: Resource) -> HAConfig:
    return HAConfig(resources={r.sid: r for r in resources})


MANAGER = {
    "master_node": "node1",
    "timestamp": NOW - 5,
    "node_status": {"node2": "online", "node1": "online", "node3": "maintenance"},
    "service_status": {
        "vm:101": {"state": "started", "node": "node1", "running": 1, "uid": "a"},
        "vm:102": {"state": "started", "node": "node2", "uid": "b"},
        "vm:103": {"state": "stopped", "node": "node2", "uid": "c"},
        "vm:104": {"state": "error", "node": "node1", "uid": "d"},
    },
}
LRM = {
    "node1": {"state": "active", "mode": "active", "timestamp": NOW - 3},
    "node2": {"state": "wait_for_agent_lock", "mode": "active", "timestamp": NOW - 40},
    "node3": {"state": "maintenance", "mode": "maintenance", "timestamp": NOW - 1},
}
CONFIG = _config(
    Resource("vm:101"),
    Resource("vm:102", state="stopped"),
    Resource("vm:103"),
    Resource("vm:104", state="disabled"),
    Resource("vm:105"),
    Resource("vm:106", state="ignored"),
)


def test_status_lines_like_ha_manager() -> None:
    entries = status_entries(
        MANAGER, LRM, CONFIG, now=NOW, quorum=Quorum("node1", True), fmt_time=_t
    )
    assert format_status_text(entries) == (
        "quorum OK\n"
        "master node1 (active, T5)\n"
        "fencing armed (CRM watchdog active)\n"
        "lrm node1 (active, watchdog active, T3)\n"
        "lrm node2 (old timestamp - dead?, watchdog standby, T40)\n"
        "lrm node3 (maintenance mode, watchdog active, T1)\n"
        "service vm:101 (node1, started)\n"
        "service vm:102 (node2, starting)\n"
        "service vm:103 (node2, starting)\n"
        "service vm:104 (node1, clearing error flag)\n"
        "service vm:105 (---, queued)\n"
        "service vm:106 (---, ignored)\n"
    )
    service = next(e for e in entries if e["id"] == "service:vm:104")
    assert service["crm_state"] == "error" and service["request_state"] == "disabled"


def test_no_quorum_stale_master_and_unreadable_lrm() -> None:
    manager = {**MANAGER, "timestamp": NOW - 100, "service_status": {}}
    entries = status_entries(
        manager, {}, _config(), now=NOW, quorum=Quorum("node9", False), fmt_time=_t
    )
    lines = format_status_text(entries).splitlines()
    assert lines[:3] == [
        "quorum No quorum on node 'node9'!",
        "master node1 (old timestamp - dead?, T100)",
        "fencing standby (CRM watchdog standby)",
    ]
    assert lines[3] == "lrm node1 (unable to read lrm status)"


def test_idle_master_and_disarmed_stack() -> None:
    manager = {
        "master_node": "node1",
        "timestamp": NOW - 50,
        "node_status": {},
        "disarm": {"mode": "ignore", "state": "disarmed"},
        "service_status": {"vm:101": {"state": "started", "node": "node1", "running": 1}},
    }
    entries = status_entries(
        manager, {}, _config(), now=NOW, quorum=Quorum("n", True), fmt_time=_t, crs_mode="static"
    )
    assert format_status_text(entries).splitlines()[1:] == [
        "master node1 (idle, T50) - disarmed, resource mode: ignore - static load CRS",
        "fencing disarmed, resource mode: ignore (CRM watchdog released)",
        "service vm:101 (node1, ignore)",
    ]


def test_unknown_quorum_rule() -> None:
    fresh = status_entries(MANAGER, LRM, CONFIG, now=NOW, fmt_time=_t)
    assert format_status_text(fresh).splitlines()[0] == "quorum OK"
    stale = status_entries({**MANAGER, "timestamp": NOW - 31}, LRM, CONFIG, now=NOW, fmt_time=_t)
    assert format_status_text(stale).splitlines()[0] == "master node1 (old timestamp - dead?, T31)"
    assert (
        status_entries({}, {}, _config(Resource("vm:100")), now=NOW)[0]["status"]
        == "vm:100 (---, queued)"
    )


def test_verbose_state_rules() -> None:
    res = Resource("vm:1", state="stopped")
    assert verbose_state(None, None, None, True) == "deleting"
    assert verbose_state(None, Resource("vm:1", state="ignored"), None, True) == "ignored"
    assert verbose_state({"state": "started"}, res, None, True) == "not found"
    assert verbose_state({"state": "started", "running": 1}, res, "n1", True) == "stopping"
    assert (
        verbose_state({"state": "started"}, res, "n1", True) == "starting"
    )  # running flag overrides
    assert (
        verbose_state({"state": "stopped"}, Resource("vm:1", state="disabled"), "n1", True)
        == "disabled"
    )
    assert verbose_state({"state": "migrate"}, res, "n1", True) == "migrate"


def test_guest_nodes_give_not_found_and_config_node() -> None:
    entries = status_entries(
        {},
        {},
        _config(Resource("vm:100"), Resource("vm:101")),
        now=NOW,
        guest_nodes={"vm:100": "node2"},
    )
    assert [e["status"] for e in entries] == ["vm:100 (node2, queued)", "vm:101 (---, not found)"]


def test_perl_localtime_shape() -> None:
    assert re.fullmatch(
        r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \d{4}", perl_localtime(1775152693)
    )


def test_status_command_reads_status_files(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:101").exit_code == 0
    now = time.time()
    manager = {
        "master_node": "node1",
        "timestamp": now,
        "node_status": {"node1": "online"},
        "service_status": {"vm:101": {"state": "started", "node": "node1", "running": 1}},
    }
    (cfg_dir / "manager_status").write_text(json.dumps(manager))
    (cfg_dir / "lrm_status").mkdir()
    (cfg_dir / "lrm_status" / "node1").write_text(
        json.dumps({"state": "active", "mode": "active", "timestamp": now})
    )
    result = run("status")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "quorum OK"
    assert re.fullmatch(r"master node1 \(active, .+\)", lines[1])
    assert lines[2] == "fencing armed (CRM watchdog active)"
    assert re.fullmatch(r"lrm node1 \(active, watchdog active, .+\)", lines[3])
    assert lines[4:] == ["service vm:101 (node1, started)"]
    rows = json.loads(run("status", "--output-format", "json").stdout)
    assert [r["id"] for r in rows] == ["quorum", "master", "fencing", "lrm:node1", "service:vm:101"]
    verbose = run("status", "--verbose").stdout
    assert 'full cluster state:\n{\n   "lrm_status" : {' in verbose


def test_status_without_manager_status(run) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:100").exit_code == 0
    result = run("status")
    assert result.exit_code == 0, result.output
    assert result.stdout == "service vm:100 (---, queued)\n"


def test_status_with_corrupt_manager_status(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    cfg_dir.mkdir()
    (cfg_dir / "manager_status").write_text("{not json")
    result = run("status")
    assert result.exit_code == 1 and "invalid JSON" in result.stderr, result.output
