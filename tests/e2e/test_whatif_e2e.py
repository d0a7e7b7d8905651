"""``pvha what-if`` and ``pvha check`` on ``pvha sim serve`` (3 nodes of 32 GiB, two HA
guests each): the inventory is read through the API, the engine decides, and room is
counted as static CRS counts memory."""

from __future__ import annotations

import json
import re

from tests.e2e.harness import E2E, wait_for


def _size_guests(e2e: E2E, mib: int) -> None:
    """Every guest gets ``mib`` of memory, written in its config as ``qm set`` would."""
    root = e2e.fp.cfs_root("node1")
    for conf in sorted(root.glob("nodes/*/*/*.conf")):
        conf.write_text(re.sub(r"(?m)^memory: \d+$", f"memory: {mib}", conf.read_text()))

    wait_for(lambda: all(f"memory: {mib}" in c.read_text()
                         for c in e2e.fp.cfs_root("node3").glob("nodes/*/*/*.conf")), 10,
             what="the sizes seen by every node")


def test_a_cluster_that_cannot_absorb_a_node_is_told_so(e2e: E2E) -> None:
    _size_guests(e2e, 12 * 1024)  # two guests of 12 GiB per 32 GiB node: 8 GiB free each
    res = e2e.pvha("what-if", "--fail", "node2", "--output-format", "json")
    assert res.returncode == 1, res.stderr
    rows = {r["sid"]: r for r in json.loads(res.stdout)}
    assert {s for s, r in rows.items() if r["from"] == "node2"} == {"vm:101", "vm:104"}
    moved = [rows[s] for s in ("vm:101", "vm:104")]
    assert all(r["to"] in ("node1", "node3") and not r["room"] for r in moved), moved
    assert all(r["note"].startswith("no room: needs 12.0 GiB, 8.0 GiB free on ") for r in moved)
    assert all(r["to"] == r["from"] and r["room"] for s, r in rows.items()
               if r["from"] != "node2")
    text = e2e.pvha("what-if", "--fail", "node2")
    assert text.returncode == 1 and "vm:101" in text.stdout and "no room" in text.stdout
    check = e2e.pvha("check")
    assert check.returncode == 1
    assert [ln.split(" leaves")[0] for ln in check.stdout.splitlines()] == [
        "losing node1", "losing node2", "losing node3"]
    assert e2e.truth()["split_brain"] == [] and not (
        e2e.fp.cfs_root("node1") / "pvha" / "manager_status").exists()  # nothing acted


def test_a_cluster_with_room_passes_the_check(e2e: E2E) -> None:
    _size_guests(e2e, 2 * 1024)
    check = e2e.pvha("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == "ok: the loss of any 1 node leaves every HA guest placed\n"
    res = e2e.pvha("what-if", "--fail", "node1,node2", "--output-format", "json")
    rows = json.loads(res.stdout)  # node3 alone has no quorum: nothing is recovered
    assert res.returncode == 1 and {r["to"] for r in rows} == {"node3", None}
    assert {r["note"] for r in rows if r["to"] is None} == {"no quorum: 1 of 3 nodes left"}
    bad = e2e.pvha("what-if", "--fail", "node9")
    assert bad.returncode == 2 and bad.stderr.startswith("pvha: error: no node node9")


def test_node_maintenance_warns_or_with_strict_refuses_without_room(e2e: E2E) -> None:
    _size_guests(e2e, 12 * 1024)
    commands = e2e.fp.cfs_root("node1") / "pvha" / "crm_commands"
    strict = e2e.pvha("crm-command", "node-maintenance", "enable", "node2", "--strict")
    assert strict.returncode == 2 and not commands.exists()
    assert strict.stderr.count("\n") == 1 and "cannot take node2's guests: vm:101" in strict.stderr
    loose = e2e.pvha("crm-command", "node-maintenance", "enable", "node2")
    assert loose.returncode == 0, loose.stderr
    assert [ln.split(" (")[0] for ln in loose.stderr.splitlines()] == [
        "warning: vm:101", "warning: vm:104"]
    assert commands.read_text() == "enable-node-maintenance node2\n"


def test_node_maintenance_with_room_says_nothing(e2e: E2E) -> None:
    _size_guests(e2e, 2 * 1024)
    res = e2e.pvha("crm-command", "node-maintenance", "enable", "node2", "--strict")
    assert res.returncode == 0 and res.stderr == "", res.stderr
