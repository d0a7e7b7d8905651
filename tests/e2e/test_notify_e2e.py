"""Notifications and metrics end to end. Notifications: ``pvha watch`` on ``pvha sim serve`` sends the events of a
fenced node, its recovered guests and its own lost and regained quorum to a webhook
receiver on loopback (apprise's ``json://``), while a second target that never answers
changes nothing. Metrics: the watcher's Prometheus endpoint, scraped over HTTP and parsed
with prometheus-client's own parser. Waits are bounded; nothing here asserts on speed."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_metrics_endpoint_tells_quorum_states_fences_and_recoveries(e2e: E2E) -> None:
    port = _free_port()
    w = e2e.watch(args=("--metrics-listen", f"127.0.0.1:{port}"))
    wait_for(e2e.all_started, 40, what="all services started")

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    wait_for(lambda: scrape().get(("pvha_services", (("state", "started"),))) == 6, 20,
             what="six started services in the metrics")
    m = scrape()
    assert m[("pvha_quorate", ())] == 1 and m[("pvha_master", ())] == 1
    assert m[("pvha_manager", (("node", "node1"),))] == 1
    assert m[("pvha_nodes", (("state", "online"),))] == 3
    assert m[("pvha_round_seconds_count", ())] >= 1 and m[("pvha_api_errors_total", ())] == 0
    e2e.ctl("power node2 off")
    wait_for(lambda: scrape().get(("pvha_nodes", (("state", "fence"),))) == 1, 30,
             what="node2 in fence in the metrics")
    assert e2e.pvha("fence-ack", "node2", "--yes").returncode == 0
    wait_for(lambda: scrape().get(("pvha_recoveries_total", (("outcome", "running"),))) == 2,
             60, what="two recoveries running in the metrics")
    m = scrape()
    assert m[("pvha_fence_events_total", (("outcome", "acknowledged"),
                                          ("proof", "fence-ack")))] == 1
    assert m[("pvha_recovery_seconds_count", ())] == 2
    assert "Traceback" not in w.log()


def test_a_bad_metrics_address_is_one_line_and_nothing_runs(e2e: E2E) -> None:
    res = e2e.pvha("watch", "--once", "--metrics-listen", "nowhere")
    assert res.returncode != 0 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "expected HOST:PORT" in res.stderr, res.stderr
