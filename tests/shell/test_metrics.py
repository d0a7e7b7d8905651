"""The watcher's Prometheus metrics (pvha.shell.metrics): what history events and rounds
make of them, in prometheus-client's own exposition format, parsed back."""

from __future__ import annotations

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pvha.errors import ConfigError
from pvha.shell.metrics import Metrics, parse_listen, serve


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_history_events_count_fences_by_proof_and_time_recoveries() -> None:
    m = Metrics()
    for record in (
        {"event": "fence", "node": "n2", "outcome": "started", "device": "ipmi", "time": 1},
        {"event": "fence", "node": "n2", "outcome": "failed", "device": "ipmi", "time": 2},
        {"event": "fence", "node": "n2", "outcome": "verified off", "device": "ipmi",
         "time": 3},
        {"event": "fence", "node": "n3", "outcome": "lease expired", "time": 4},
        {"event": "fence", "node": "n1", "outcome": "acknowledged, not verified", "time": 5},
        {"event": "recovery", "node": "n2", "sid": "vm:101", "outcome": "placed", "time": 10},
        {"event": "recovery", "node": "n2", "sid": "vm:101", "outcome": "running", "time": 14},
        {"event": "recovery", "node": "n2", "sid": "vm:102", "outcome": "no recovery node",
         "time": 10},
        {"event": "stale-copy", "node": "n2", "sid": "vm:101", "outcome": "stopped", "time": 1},
    ):
        m.history(record)
    s = samples(m)
    fence = {dict(k[1])["outcome"] + "/" + dict(k[1])["proof"]: v
             for k, v in s.items() if k[0] == "pvha_fence_events_total"}
    assert fence == {"started/ipmi": 1, "failed/ipmi": 1, "verified/ipmi": 1,
                     "verified/lease": 1, "acknowledged/fence-ack": 1}
    assert s[("pvha_recoveries_total", (("outcome", "running"),))] == 1
    assert s[("pvha_recoveries_total", (("outcome", "failed"),))] == 1
    assert s[("pvha_recovery_seconds_sum", ())] == 4.0
    assert s[("pvha_recovery_seconds_count", ())] == 1


def test_a_round_exports_quorum_the_manager_and_the_states() -> None:
    m = Metrics()
    ms = {"master_node": "node1",
          "node_status": {"node1": "online", "node2": "fence", "node3": "online"},
          "service_status": {"vm:100": {"state": "started"}, "vm:101": {"state": "fence"},
                             "vm:104": {"state": "fence"}, "ct:105": {"state": "error"}}}
    m.round_done(0.2, True, True, ms)
    m.round_done(0.3, False, False, {**ms, "master_node": "node3"})
    s = samples(m)
    assert s[("pvha_quorate", ())] == 0 and s[("pvha_master", ())] == 0
    assert s[("pvha_manager", (("node", "node1"),))] == 0
    assert s[("pvha_manager", (("node", "node3"),))] == 1
    assert s[("pvha_nodes", (("state", "online"),))] == 2
    assert s[("pvha_nodes", (("state", "gone"),))] == 0  # every state, 0 included
    assert s[("pvha_services", (("state", "fence"),))] == 2
    assert s[("pvha_services", (("state", "error"),))] == 1
    assert s[("pvha_rounds_total", ())] == 2 and s[("pvha_round_seconds_count", ())] == 2
    m.api_read(0.05, ok=False)
    assert samples(m)[("pvha_api_errors_total", ())] == 1


@pytest.mark.parametrize("text, expected", [("127.0.0.1:9750", ("127.0.0.1", 9750)),
                                            ("9750", ("127.0.0.1", 9750)),
                                            ("[::1]:9750", ("::1", 9750)),
                                            (":9750", ("127.0.0.1", 9750))])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["localhost", "127.0.0.1:0", "127.0.0.1:99999", "a:b"])
def test_bad_listen_addresses_are_one_clear_error(text: str) -> None:
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_listen(text)


def test_scrapes_are_served_over_http() -> None:
    m = Metrics()
    m.round_done(0.1, True, True, {"master_node": "node1"})
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = serve(m, f"127.0.0.1:{port}")
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "pvha_master 1.0" in text and 'pvha_manager{node="node1"} 1.0' in text
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            serve(m, f"127.0.0.1:{port}")  # taken
    finally:
        server.shutdown()
