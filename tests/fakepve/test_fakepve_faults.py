"""Fault injection and the control socket."""

from __future__ import annotations

import time

import pytest
import requests
from fakepve_helpers import ctl, ticket_client, token_client, wait_for, wait_task
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


def test_injected_task_faults_fail_or_hang_the_next_task_only(fake: FakePve) -> None:
    px = token_client(fake)
    vm = px.nodes("node1").qemu(100)
    assert fake.cluster.is_running(100, "node1")  # guests come up running
    wait_task(px, "node1", vm.status.stop.post())
    ctl(fake, "guest 100 fail start")
    task = wait_task(px, "node1", vm.status.start.post())
    assert task["exitstatus"] == "start failed: QEMU exited with code 1"
    assert not fake.cluster.is_running(100, "node1")
    assert wait_task(px, "node1", vm.status.start.post())["exitstatus"] == "OK"  # one-shot
    ctl(fake, "guest 100 fail migrate")
    task = wait_task(px, "node1", vm.migrate.post(target="node2", online=1))
    assert task["exitstatus"] == "migration aborted"
    assert fake.cluster.config(100).node == "node1" and fake.cluster.is_running(100, "node1")
    ctl(fake, "guest 100 hang migrate")
    upid = vm.migrate.post(target="node2", online=1)
    time.sleep(fake.cluster.timing.migrate_seconds + 0.3)
    status = px.nodes("node1").tasks(upid).status.get()
    assert status["status"] == "running"  # never ends; the guest stays locked
    with pytest.raises(ResourceException) as err:
        vm.migrate.post(target="node3", online=1)
    assert "VM is locked (migrate)" in str(err.value)


def test_qemu_io_error_and_templates(fake: FakePve) -> None:
    px = token_client(fake)
    ct = px.nodes("node3").lxc(102)
    ctl(fake, "guest 101 io-error")
    assert px.nodes("node2").qemu(101).status.current.get()["qmpstatus"] == "io-error"
    with pytest.raises(CtlError):
        ctl(fake, "guest 102 io-error")  # a container has no QEMU state
    with pytest.raises(CtlError):
        ctl(fake, "guest 102 template")  # running
    wait_task(px, "node3", ct.status.stop.post())
    ctl(fake, "guest 102 template")  # qm template on node3: node1 sees it after the delay
    rows = wait_for(lambda: (r := {r["vmid"]: r for r in px.cluster.resources.get(type="vm")})
                    [102]["template"] == 1 and r)
    assert rows[100]["template"] == 0
    assert b"template: 1" in fake.cluster.config(102).data


def test_guests_pve_own_ha_manages(fake: FakePve) -> None:
    px = token_client(fake)
    assert px.cluster.ha.resources.get() == []
    ctl(fake, "guest 102 pve-ha started")
    ctl(fake, "guest 100 pve-ha ignored")
    assert [(r["sid"], r["state"]) for r in px.cluster.ha.resources.get()] == [
        ("vm:100", "ignored"), ("ct:102", "started")]
    assert [r["sid"] for r in px.cluster.ha.resources.get(type="ct")] == ["ct:102"]
    rows = {r["vmid"]: r for r in px.cluster.resources.get(type="vm")}
    assert rows[102]["hastate"] == "started" and "hastate" not in rows[101]
    ctl(fake, "guest 102 pve-ha off")
    assert [r["sid"] for r in px.cluster.ha.resources.get()] == ["vm:100"]


def test_bad_commands(fake: FakePve) -> None:
    for bad in ("", "power node9 off", "power node1 sideways", "fly", "drop x", "guest 999 start",
                "fail5xx 1 node1 404", "network node1", "guest 100 fail stop",
                "guest 100 hang", "guest 100 template now", "guest 999 fail start",
                "guest 100 pve-ha on", "guest 999 pve-ha started"):
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
