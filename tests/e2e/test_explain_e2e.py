"""``pvha explain`` and ``pvha history --incidents`` on ``pvha sim serve`` with ``pvha watch``.

Three nodes, guests vm:100 and vm:103 on node1, vm:101 and vm:104 on node2, ct:102 and
ct:105 on node3, and a negative resource-affinity rule keeping vm:100, vm:101 and
ct:102 apart. node2 loses power and is acknowledged off: vm:104 is recovered, vm:101 is
blocked by the rule (its partners hold both other nodes), and ``explain`` names the
rule and the excluded nodes, through the API and from the files alone. Once the rule is
removed vm:101 is recovered too, and the incident of node2 is closed, its steps and
durations those of the journal's own events. Waits are bounded; nothing asserts on speed.
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.harness import E2E, wait_for


def _explain(e2e: E2E, sid: str, **env: str) -> dict[str, Any]:
    res = e2e.pvha("explain", sid, "--output-format", "json", env=e2e.env(**env))
    assert res.returncode == 0, res.stderr
    docs = json.loads(res.stdout)
    assert len(docs) == 1
    return dict(docs[0])


def _nodes(doc: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {n["node"]: (n.get("verdict"), n.get("reason"), n.get("detail"), n.get("rule"))
            for n in doc["nodes"]}


def _events(e2e: E2E) -> list[dict[str, Any]]:
    res = e2e.pvha("history", "--output-format", "json")
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout))


def test_explain_names_the_rule_that_blocks_a_recovery_and_history_tells_the_incident(
        e2e: E2E) -> None:
    add = e2e.pvha("rules", "add", "resource-affinity", "apart", "--resources",
                   "vm:100,vm:101,ct:102", "--affinity", "negative")
    assert add.returncode == 0, add.stderr
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    calm = _explain(e2e, "vm:101")
    assert calm["state"] == "started" and calm["node"] == "node2"
    assert calm["placement"] == {"preference": "none", "chosen": "node2", "why": "current",
                                 "moves": False, "crs": calm["placement"]["crs"]}
    assert calm["waiting_for"] == []

    e2e.ctl("power node2 off")
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    fencing = _explain(e2e, "vm:101")
    assert fencing["state"] == "fence"
    assert any(w.startswith("a proof that node2 is off: waiting for fence-ack")
               for w in fencing["waiting_for"]), fencing["waiting_for"]
    assert e2e.pvha("fence-ack", "node2", "--yes").returncode == 0
    w.wait_log(r"recovering service 'vm:101' from fenced node 'node2' failed, no recovery", 30)
    wait_for(lambda: e2e.service_states().get("vm:104") == "started", 30,
             what="vm:104 recovered")

    blocked = _explain(e2e, "vm:101")
    assert blocked["state"] == "recovery" and blocked["node"] == "node2"
    assert blocked["source"].startswith("live view from node1 (quorate)")
    assert _nodes(blocked) == {
        "node1": ("excluded", "negative", "vm:100", "apart"),
        "node2": ("excluded", "offline", "", None),
        "node3": ("excluded", "negative", "ct:102", "apart"),
    }
    assert blocked["placement"]["chosen"] is None
    assert "a node it may run on: none qualifies (see the nodes)" in blocked["waiting_for"]
    assert [(r["id"], r["status"], sorted(p["sid"] for p in r["partners"]))
            for r in blocked["rules"]] == [("apart", "in force", ["ct:102", "vm:100"])]
    text = e2e.pvha("explain", "vm:101")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "vm:101: recovery on node2 (requested started)"
    assert ("node node3 (online, online in the cluster): excluded, negative resource "
            "affinity with ct:102 (rule 'apart')") in lines
    assert "recovery to: no node qualifies" in lines
    files_only = e2e.pvha("explain", "vm:101", env={
        k: v for k, v in e2e.env().items() if k != "PVHA_HOSTS"})
    assert files_only.returncode == 0, files_only.stderr
    assert "from: the status files only (no API configured" in files_only.stdout
    assert "node node1 (online): excluded, negative resource affinity with vm:100 " \
        "(rule 'apart')" in files_only.stdout
    unknown = e2e.pvha("explain", "vm:999")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr == "pvha: error: no such resource 'vm:999'\n"

    assert e2e.pvha("rules", "remove", "apart").returncode == 0
    wait_for(lambda: e2e.all_started(), 40, what="vm:101 recovered once the rule is gone")

    def running_journaled() -> bool:
        return sum(1 for e in _events(e2e) if e["outcome"] == "running") == 2

    wait_for(running_journaled, 20, what="both recoveries journaled as running")
    events = [e for e in _events(e2e) if e["node"] == "node2"]
    res = e2e.pvha("history", "--incidents", "--output-format", "json")
    assert res.returncode == 0, res.stderr
    incidents = json.loads(res.stdout)
    assert [i["node"] for i in incidents] == ["node2"]  # the first round's nodes: none
    inc = incidents[0]
    assert inc["state"] == "closed" and inc["waiting"] == [], inc

    def at(event: str, outcome: str, sid: str | None = None) -> float:
        return float(next(e["time"] for e in events if e["event"] == event
                          and e["outcome"] == outcome and (e["sid"] or None) == sid))

    detected, fence = at("node", "offline"), at("node", "fence")
    proof = at("fence", "acknowledged, not verified")
    assert inc["detected"] == detected and inc["detected_by"] == "offline"
    assert inc["fence_started"] == fence and inc["proven"] == proof
    assert detected <= fence <= proof
    running = {g["sid"]: g for g in inc["guests"]}
    assert sorted(running) == ["vm:101", "vm:104"]
    for sid, g in running.items():
        assert g["placed"] == at("recovery", "placed", sid) >= proof
        assert g["running"] == at("recovery", "running", sid) >= g["placed"]
        assert g["proof_to_running"] == round(g["running"] - proof, 3)
    assert inc["durations"] == {
        "detection_to_fence": round(fence - detected, 3),
        "detection_to_proof": round(proof - detected, 3),
        "total": round(max(g["running"] for g in running.values()) - detected, 3)}
    steps = [s["step"] for s in inc["steps"]]
    assert steps[:3] == ["detected offline", "fencing began",
                         "proof: acknowledged (fence-ack, not verified) by root"], steps
    assert "vm:101: no recovery node" in steps and "vm:104 running on node1" in steps
    block = e2e.pvha("history", "--incidents").stdout
    assert block.startswith("incident node2, detected ") and ": closed\n" in block
    assert f"total {inc['durations']['total']:.1f} s" in block
    assert w.alive()
    e2e.no_split_brain()
