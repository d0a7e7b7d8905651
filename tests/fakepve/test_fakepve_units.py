"""Unit tests of the pure pieces: tickets over time, UPIDs and logs, quorum arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvha.fakepve.auth import Auth, AuthFailure
from pvha.fakepve.cluster import Cluster, Node, Timing, parse_conf
from pvha.fakepve.tasks import UPID_RE, TaskTable


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_ticket_lifetime_renewal_and_csrf() -> None:
    clock = Clock()
    auth = Auth(clock)
    auth.add_user("root@pam", "pw")
    first = auth.login("root@pam", "pw")
    headers = {"cookie": f"PVEAuthCookie={first['ticket']}",
               "csrfpreventiontoken": first["CSRFPreventionToken"]}
    assert auth.authenticate("POST", headers).user == "root@pam"
    clock.now += 3600
    renewed = auth.login("root@pam", first["ticket"])  # the ticket as password
    clock.now += 3600 + 301  # first ticket: past 2 h + grace; renewed one still fine
    with pytest.raises(AuthFailure, match="Authentication failed!"):
        auth.verify_ticket(first["ticket"])
    assert auth.verify_ticket(renewed["ticket"]) == "root@pam"
    with pytest.raises(AuthFailure):
        auth.login("root@pam", first["ticket"])  # an expired ticket cannot be renewed
    with pytest.raises(AuthFailure, match="authentication failure"):
        auth.login("root@pam", "nope")
    forged = renewed["ticket"].rsplit("::", 1)[0] + "::AAAA"
    with pytest.raises(AuthFailure):
        auth.verify_ticket(forged)


def test_token_header_forms() -> None:
    auth = Auth()
    auth.add_token("root@pam", "pvha", "5ecret-uuid")
    for header in ("PVEAPIToken=root@pam!pvha=5ecret-uuid", "PVEAPIToken root@pam!pvha=5ecret-uuid"):
        ident = auth.authenticate("POST", {"authorization": header})
        assert (ident.user, ident.tokenid, ident.full) == ("root@pam", "pvha", "root@pam!pvha")
    with pytest.raises(AuthFailure):
        auth.authenticate("GET", {"authorization": "PVEAPIToken=root@pam!pvha=wrong"})


def test_upids_and_logs() -> None:
    table = TaskTable()
    task = table.new("node1", 1000.0, "qmstart", "100", "root@pam!pvha", 1234.5)
    assert UPID_RE.match(task.upid) and task.upid.endswith(":qmstart:100:root@pam!pvha:")
    assert task.log_page(0, 50) == ([{"n": 1, "t": "no content"}], 1)
    task.finish("first line\nsecond line\n", 1300.0)
    assert task.exitstatus == "first line second line"
    assert task.status()["tokenid"] == "pvha" and task.status()["user"] == "root@pam"
    other = table.new("node2", 1000.0, "qmstop", "101", "root@pam", 1300.0)
    table.crash_node("node2", 1310.0)
    assert other.status()["exitstatus"] == "unexpected status" and other.lines == []


def test_quorum_arithmetic(tmp_path: Path) -> None:
    nodes = [Node(f"n{i}", i, f"127.0.0.{i}", 0.0) for i in (1, 2)]
    c = Cluster(tmp_path, nodes, Timing())
    assert c.quorate("n1")
    c.set_network("n2", False)  # two nodes without a qdevice: either failure kills quorum
    assert not c.quorate("n1") and not c.quorate("n2")
    assert not c.reachable("n1", "n2") and c.reachable("n2", "n2")


def test_parse_conf_ignores_snapshots() -> None:
    text = "name: web\nmemory: 2048\n\n[snap1]\nname: old\n"
    assert parse_conf(text) == {"name": "web", "memory": "2048"}
