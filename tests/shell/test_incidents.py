"""Incident grouping (pvha.incidents) on hand-built journals, the Recorder's node events,
and ``pvha history --incidents`` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from pvha import incidents
from pvha.cli.app import app
from pvha.shell.history import History, Recorder


def ev(t: float, event: str, node: str, outcome: str, **extra: Any) -> dict[str, Any]:
    return {"time": t, "event": event, "node": node, "outcome": outcome, **extra}


def test_two_nodes_failing_overlapping_make_two_incidents_with_their_durations() -> None:
    journal = [
        ev(10, "node", "node2", "offline"), ev(12, "node", "node3", "offline"),
        ev(13, "node", "node2", "fence"), ev(14, "node", "node3", "fence"),
        ev(14, "fence", "node3", "started", device="ipmi", attempt=1),
        ev(20, "fence", "node2", "acknowledged, not verified", by="root"),
        ev(20, "recovery", "node2", "placed", sid="vm:101", target="node1"),
        ev(22, "fence", "node3", "verified off", device="ipmi", attempt=1),
        ev(22, "recovery", "node3", "placed", sid="vm:102", target="node1"),
        ev(23, "recovery", "node2", "running", sid="vm:101", target="node1"),
        ev(25.5, "recovery", "node3", "running", sid="vm:102", target="node1"),
    ]
    found = incidents.group(journal)
    assert [i.node for i in found] == ["node2", "node3"]
    two, three = (i.to_json() for i in found)
    assert two["state"] == "closed" and two["waiting"] == []
    assert two["detected"] == 10 and two["detected_by"] == "offline"
    assert two["proof"] == "acknowledged, not verified" and two["proven"] == 20
    assert two["durations"] == {"detection_to_fence": 3, "detection_to_proof": 10,
                                "total": 13}
    assert two["guests"] == [{"sid": "vm:101", "target": "node1", "placed": 20,
                              "running": 23, "no_recovery_node": None,
                              "proof_to_running": 3}]
    assert [s["step"] for s in two["steps"]] == [
        "detected offline", "fencing began",
        "proof: acknowledged (fence-ack, not verified) by root",
        "vm:101 placed on node1", "vm:101 running on node1"]
    assert three["attempts"] == 1 and three["proof"] == "verified off"
    assert three["durations"] == {"detection_to_fence": 2, "detection_to_proof": 10,
                                  "total": 13.5}
    assert three["guests"][0]["proof_to_running"] == 3.5


def test_an_open_incident_says_what_it_waits_for() -> None:
    no_proof = incidents.group([ev(1, "node", "node2", "offline"),
                                ev(4, "node", "node2", "fence")])
    assert [(i.state(), i.waiting()) for i in no_proof] == [("open", ["a fence proof"])]
    assert no_proof[0].durations() == {"detection_to_fence": 3, "detection_to_proof": None,
                                       "total": None}
    not_running = incidents.group([
        ev(1, "node", "node2", "offline"), ev(4, "node", "node2", "fence"),
        ev(5, "fence", "node2", "acknowledged, not verified"),
        ev(5, "recovery", "node2", "placed", sid="vm:101", target="node1"),
        ev(5, "recovery", "node2", "placed", sid="vm:104", target="node3"),
        ev(7, "recovery", "node2", "running", sid="vm:104", target="node3"),
        ev(5, "recovery", "node2", "no recovery node", sid="vm:107"),
        ev(6, "recovery", "node2", "no recovery node", sid="vm:107"),
    ])
    inc = not_running[0]
    assert inc.state() == "open" and inc.durations()["total"] is None
    assert inc.waiting() == ["vm:101 to run on node1", "a recovery node for vm:107"]
    assert inc.guests["vm:107"].no_node_rounds == 2
    assert sum("vm:107" in text for _t, text in inc.steps) == 1  # repeats collapse


def test_a_failed_fence_and_its_retry_are_one_incident() -> None:
    found = incidents.group([
        ev(5, "node", "node2", "fence"),
        ev(5, "fence", "node2", "started", device="ipmi", attempt=1),
        ev(10, "fence", "node2", "failed", device="ipmi", attempt=1, detail="timeout"),
        ev(15, "fence", "node2", "started", device="ipmi", attempt=2),
        ev(17, "fence", "node2", "verified off", device="ipmi", attempt=2),
    ])
    assert len(found) == 1
    inc = found[0]
    assert inc.attempts == 2 and inc.proof == "verified off" and inc.proven == 17
    assert inc.detected_by == "fence" and inc.state() == "closed"
    assert [text for _t, text in inc.steps] == [
        "fencing began", "power-off via ipmi started (attempt 1)",
        "power-off via ipmi failed (attempt 1): timeout",
        "power-off via ipmi started (attempt 2)", "proof: verified off by ipmi"]
    assert inc.durations() == {"detection_to_fence": 0, "detection_to_proof": 12, "total": 12}


def test_journals_without_detection_events_and_repeated_failures() -> None:
    found = incidents.group([
        ev(0, "node", "node2", "online"),  # a manager's first round: no incident
        ev(5, "fence", "node2", "started", device="ipmi", attempt=1),  # an old journal
        ev(8, "fence", "node2", "verified off", device="ipmi", attempt=1),
        ev(30, "node", "node2", "online"),
        ev(50, "node", "node2", "offline"),  # fails again: a second incident
        ev(53, "node", "node2", "fence"),
        ev(60, "node", "node2", "online"),  # back before a proof: cancelled
        ev(70, "node", "node3", "offline"),
    ])
    assert [(i.node, i.detected, i.detected_by, i.state()) for i in found] == [
        ("node2", 5, "fence started", "closed"), ("node2", 50, "offline", "cancelled"),
        ("node3", 70, "offline", "open")]
    assert found[0].steps[-1] == (30, "back online") and found[1].waiting() == []


def test_incident_text_has_a_timeline_and_durations() -> None:
    found = incidents.group([
        ev(100, "node", "node2", "offline"), ev(103, "node", "node2", "fence"),
        ev(104, "fence", "node2", "verified off", device="ipmi", attempt=1),
        ev(104, "recovery", "node2", "placed", sid="vm:101", target="node1"),
        ev(106, "recovery", "node2", "running", sid="vm:101", target="node1"),
        ev(200, "node", "node3", "offline"),
    ])
    out = incidents.text(found, lambda t: f"T{t:g}", lambda t: f"t{t:g}")
    assert out == (
        "incident node2, detected T100: closed\n"
        "  t100  +0.0 s  detected offline\n"
        "  t103  +3.0 s  fencing began\n"
        "  t104  +4.0 s  proof: verified off by ipmi\n"
        "  t104  +4.0 s  vm:101 placed on node1\n"
        "  t106  +6.0 s  vm:101 running on node1\n"
        "  detection to fencing 3.0 s; detection to proof 4.0 s; proof to vm:101 running "
        "2.0 s; total 6.0 s\n"
        "\n"
        "incident node3, detected T200: open, waiting for a fence proof\n"
        "  t200  +0.0 s  detected offline\n")


def test_the_recorder_journals_the_managers_node_state_changes(tmp_path: Path) -> None:
    history = History(tmp_path)
    now = [1.0]
    rec = Recorder(history, lambda: now[0])
    for line in ("node 'node1': state changed from 'unknown' => 'online'",
                 "node 'node2': state changed from 'online' => 'unknown'",
                 "node 'node2': state changed from 'unknown' => 'fence'",
                 "node 'node2': state changed from 'fence' => 'unknown'",  # fenced
                 "node 'node3': state changed from 'online' => 'maintenance'",
                 "node 'node3': state changed from 'maintenance' => 'unknown'",
                 "node 'node2': state changed from 'unknown' => 'online'"):
        rec(None, line)
        now[0] += 1
    rec("node1", "node 'node4': state changed from 'online' => 'unknown'")  # not the manager
    # node1 coming online at the first round is no event; node2's return after its failure is
    assert [(e["node"], e["outcome"], e["time"]) for e in history.read()] == [
        ("node2", "offline", 2.0), ("node2", "fence", 3.0),
        ("node3", "offline", 6.0), ("node2", "online", 7.0)]
    assert {e["event"] for e in history.read()} == {"node"}
    # a restarted watcher still records the return of a node journaled as failed
    again = Recorder(history, lambda: 9.0)
    again(None, "node 'node1': state changed from 'unknown' => 'online'")
    again(None, "node 'node3': state changed from 'unknown' => 'online'")
    assert [(e["node"], e["outcome"]) for e in history.read()][-1] == ("node3", "online")
    assert len(history.read()) == 5


def test_history_incidents_command(tmp_path: Path) -> None:
    h = History(tmp_path)
    h.append("node", "node2", time=10, outcome="offline")
    h.append("fence", "node2", time=12, outcome="acknowledged, not verified")
    h.append("recovery", "node2", time=12, sid="vm:101", outcome="placed", target="node1")
    h.append("node", "node3", time=20, outcome="offline")
    runner = CliRunner()
    base = ["history", "--config-dir", str(tmp_path)]
    res = runner.invoke(app, [*base, "--incidents", "--output-format", "json"])
    assert res.exit_code == 0, res.output
    docs = json.loads(res.output)
    assert [(d["node"], d["state"], d["waiting"]) for d in docs] == [
        ("node2", "open", ["vm:101 to run on node1"]), ("node3", "open", ["a fence proof"])]
    res = runner.invoke(app, [*base, "--incidents", "--node", "node2"])
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert first.startswith("incident node2, detected ") and "node3" not in res.output
    assert first.endswith(": open, waiting for vm:101 to run on node1")
    assert "detection to proof 2.0 s" in res.output
    res = runner.invoke(app, [*base, "--incidents", "--limit", "1", "--output-format", "json"])
    assert [d["node"] for d in json.loads(res.output)] == ["node3"]
    flat = runner.invoke(app, [*base, "--output-format", "json"])  # the events, as before
    assert [(r["event"], r["outcome"]) for r in json.loads(flat.output)] == [
        ("node", "offline"), ("fence", "acknowledged, not verified"), ("recovery", "placed"),
        ("node", "offline")]
    empty = runner.invoke(app, ["history", "--config-dir", str(tmp_path / "none"),
                                "--incidents"])
    assert empty.exit_code == 0 and empty.stdout == ""
