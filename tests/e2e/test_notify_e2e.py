"""Notifications end to end: ``pvha watch`` on ``pvha sim serve`` sends the events of a
fenced node, its recovered guests and its own lost and regained quorum to a webhook
receiver on loopback (apprise's ``json://``), while a second target that never answers
changes nothing. Waits are bounded; nothing here asserts on speed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import E2E, wait_for
from tests.shell.test_notifications import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_the_events_of_a_fenced_node_reach_a_webhook_with_their_fields(
        e2e: E2E, receiver: Receiver) -> None:
    urls = e2e.tmp / "notify-urls"
    urls.write_text(f"# a dead target first: it must not hold the other up\n"
                    f"json://pvha:tok3n@127.0.0.1:1/dead\n{receiver.url}\n")
    w = e2e.watch(env=e2e.env(PVHA_NOTIFY_URLS_FILE=str(urls)))
    wait_for(e2e.all_started, 40, what="all services started")
    e2e.ctl("power node2 off")
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    assert e2e.pvha("fence-ack", "node2", "--yes").returncode == 0

    def kinds() -> list[str]:
        return [e["event"] for e in receiver.events()]

    wait_for(lambda: kinds().count("recovery-running") == 2, 60,
             what="both recoveries notified as running")
    events = receiver.events()
    assert events[0]["event"] == "manager-takeover" and events[0]["node"] == "node1"
    ack = next(e for e in events if e["event"] == "fence-acknowledged")
    assert ack["node"] == "node2" and ack["severity"] == "warning"
    placed = {e["sid"]: e for e in events if e["event"] == "recovery-placed"}
    running = {e["sid"]: e for e in events if e["event"] == "recovery-running"}
    assert sorted(placed) == sorted(running) == ["vm:101", "vm:104"]
    assert {s: e["target"] for s, e in running.items()} == {"vm:101": "node1",
                                                            "vm:104": "node3"}
    assert all(e["node"] == "node2" and e["seconds"] >= 0 for e in running.values())
    assert all(p["time"] <= running[s]["time"] for s, p in placed.items())

    e2e.ctl("network node1 off")  # the watcher's own node loses quorum, then regains it
    wait_for(lambda: "quorum-lost" in kinds(), 30, what="quorum-lost notified")
    e2e.ctl("network node1 on")
    wait_for(lambda: "quorum-back" in kinds(), 30, what="quorum-back notified")
    lost = next(e for e in receiver.events() if e["event"] == "quorum-lost")
    assert lost["node"] == "node1" and lost["severity"] == "failure"
    log = w.log()
    assert "to target 1 (json) failed" in log and "tok3n" not in log
    assert w.alive()
    e2e.no_split_brain()
