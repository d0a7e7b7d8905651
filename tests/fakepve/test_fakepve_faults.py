"""Fault injection and the control socket."""

from __future__ import annotations

import time

import pytest
import requests
from fakepve_helpers import ctl, ticket_client, token_client
from proxmoxer.core import ResourceException

from pvha.fakepve.ctl import CtlError, CtlServer, send
from pvha.fakepve.server import FakePve


def test_5xx_burst_then_recovery(fake: FakePve) -> None:
    px = token_client(fake, "node2")
    ctl(fake, "fail5xx 2 node2")
    for _ in range(2):
        with pytest.raises(ResourceException) as err:
            px.version.get()
        assert err.value.status_code == 503
    assert px.version.get()["release"] == "9.2"
    assert token_client(fake, "node1").version.get()  # other nodes unaffected
    ctl(fake, "fail5xx 1 * 596")
    with pytest.raises(ResourceException) as err:
        token_client(fake, "node3").version.get()
    assert err.value.status_code == 596


def test_dropped_connection(fake: FakePve) -> None:
    px = token_client(fake)
    ctl(fake, "drop 1")
    with pytest.raises(requests.exceptions.ConnectionError):
        px.version.get()
    assert px.version.get()["version"]


def test_latency(fake: FakePve) -> None:
    px = token_client(fake, "node3")
    ctl(fake, "latency 300 node3")
    t0 = time.monotonic()
    px.version.get()
    assert time.monotonic() - t0 >= 0.3
    ctl(fake, "clear-faults")
    t0 = time.monotonic()
    px.version.get()
    assert time.monotonic() - t0 < 0.3


def test_ticket_expiry_gives_401(fake: FakePve) -> None:
    px = ticket_client(fake)
    assert px.cluster.status.get()
    ctl(fake, "expire-tickets")
    with pytest.raises(ResourceException) as err:
        px.cluster.status.get()
    assert (err.value.status_code, err.value.content) == (401, "Authentication failed!")
    assert ticket_client(fake).cluster.status.get()  # a fresh login works
    assert token_client(fake).cluster.status.get()  # tokens are not tickets


def test_requests_are_counted_by_method_and_path_template(fake: FakePve) -> None:
    ctl(fake, "requests reset")
    px = token_client(fake, "node2")
    px.version.get()
    px.nodes("node1").qemu(100).status.current.get()
    with pytest.raises(ResourceException):  # proxied, then 500 (not there): counted
        px.nodes("node3").qemu(100).status.current.get()
    with pytest.raises(ResourceException):
        px.nodes("node1").qemu(100).nonsense.get()
    counts = ctl(fake, "requests")
    assert counts == {"GET /nodes/{node}/qemu/{vmid}/status/current": 2, "GET /version": 1,
                      "GET ?": 1}, counts
    assert ctl(fake, "requests reset") == counts
    assert ctl(fake, "requests") == {}
    with pytest.raises(CtlError):
        ctl(fake, "requests clear")


def test_bad_commands(fake: FakePve) -> None:
    for bad in ("", "power node9 off", "power node1 sideways", "fly", "drop x", "guest 999 start",
                "fail5xx 1 node1 404", "network node1"):
        with pytest.raises(CtlError):
            ctl(fake, bad)


def test_ctl_socket_roundtrip(fake: FakePve) -> None:
    server = CtlServer(fake).start()
    try:
        path = fake.state / "ctl.sock"
        assert path.stat().st_mode & 0o077 == 0  # owner only
        send(fake.state, "power node2 off")
        truth = send(fake.state, "status")
        assert truth["nodes"]["node2"]["power"] == "off"
        assert truth["nodes"]["node1"]["quorate"] is True
        assert truth["guests"]["101"]["running_on"] == []
        assert truth["nodes"]["node1"]["address"] == "{}:{}".format(*fake.address("node1"))
        with pytest.raises(CtlError, match="unknown command"):
            send(fake.state, "explode")
        with pytest.raises(CtlError, match="already running"):
            CtlServer(fake)
    finally:
        server.stop()
    assert not (fake.state / "ctl.sock").exists()
    with pytest.raises(CtlError, match="no simulator"):
        send(fake.state, "status", timeout=1)
