"""Answers at the HTTP edge (issue 9): PVE's JSON envelope or an ApiPermanentError (never
a traceback), a size cap read with a bounded read (never the whole answer in memory), no
redirects, and failover when a host answers "I cannot serve" (502/503/504) on a read.

Against PveClient/PveApi through ``responses`` (the strict registry in ``pve_fake``)."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
from typing import Any

import pytest
from pve_fake import FakeTime, HugeBody, Raw, api_settings, version

from pvha.adapters.pve_api import PveApi
from pvha.adapters.pve_client import PveClient
from pvha.errors import ApiPermanentError, ApiTransientError
from pvha.ports import GuestRef
from pvha.settings import DEFAULT_MAX_ANSWER_BYTES

VM100 = GuestRef("qemu", 100, "pve1")
MIB = 1024 * 1024
JSON = {"Content-Type": "application/json;charset=UTF-8"}


def make(fake_time: FakeTime, **over: object) -> PveApi:
    client = PveClient(api_settings(**over), monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    return PveApi(client, clock=fake_time.time)


def raw(fake_pve: Any, method: str, path: str, body: Any, status: int = 200,
        headers: dict[str, str] | None = None) -> None:
    fake_pve.fault(method, path, (status, "OK" if status == 200 else "Err",
                                  Raw(body, {**JSON, **(headers or {})})))


# --- the envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, why", [
    (b'{"foo": 1}', 'the answer has no "data" member'),
    (b'[{"type": "cluster"}]', "the answer is a JSON list, not PVE's envelope"),
    (b'"data"', "the answer is a JSON string, not PVE's envelope"),
    (b"null", "the answer is a JSON null, not PVE's envelope"),
    (b"<html><body>502 Bad Gateway</body></html>", "the answer is not JSON"),
    (b"", "the answer is not JSON"),
    (b'{"data": "\xff\xfe"}', "the answer is not JSON"),  # not UTF-8
    (b'{"data": [1, 2', "the answer is not JSON"),  # cut short
])
def test_a_body_that_is_not_pves_envelope_is_a_permanent_error(fake_pve, fake_time, body, why):
    raw(fake_pve, "GET", "cluster/status", body)
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).get_cluster_status()
    assert str(err.value).startswith(
        f"pve1.test: unexpected answer from PVE for /cluster/status: {why}"), str(err.value)
    assert err.value.host == "pve1.test" and err.value.status == 200
    assert fake_pve.paths() == ["cluster/status"] and fake_time.sleeps == []


def test_a_non_json_200_is_never_passed_on_as_data(fake_pve, fake_time):
    """proxmoxer alone turns it into ``{"errors": b"..."}`` *data*."""
    raw(fake_pve, "GET", "version", b"<html>maintenance</html>")
    with pytest.raises(ApiPermanentError, match="/version: the answer is not JSON"):
        version(make(fake_time))


def test_an_envelope_on_a_post_is_checked_too_and_not_resent(fake_pve, fake_time):
    raw(fake_pve, "POST", "nodes/pve1/qemu/100/status/start", b'["UPID:pve1:x"]')
    with pytest.raises(ApiPermanentError, match="JSON list") as err:
        make(fake_time).post_start(VM100)
    assert err.value.request_sent is True
    assert fake_pve.paths("POST") == ["nodes/pve1/qemu/100/status/start"]


@pytest.mark.parametrize("body", [b'[1, 2]', b'"oops"', b"<html>", b'{"errors": [1]}', b""])
def test_an_error_body_of_any_shape_still_gives_pves_message(fake_pve, fake_time, body):
    fake_pve.fault("POST", "nodes/pve1/qemu/100/status/start",
                   (500, "VM 100 already running", Raw(body, JSON)))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).post_start(VM100)
    assert (err.value.status, err.value.pve_message) == (500, "VM 100 already running")
    assert err.value.errors == {}


def test_the_login_answer_is_held_to_the_same_rules(fake_pve, fake_time):
    for body in (b'[{"ticket": "x"}]', b'{"data": "PVE:ticket"}', b"<html>"):
        raw(fake_pve, "POST", "access/ticket", body)
        with pytest.raises(ApiPermanentError, match="login answer is not PVE's JSON"):
            version(make(fake_time, password_auth=True))
    raw(fake_pve, "POST", "access/ticket", b'{"data": {"ticket": 1, "CSRFPreventionToken": 2}}')
    with pytest.raises(ApiPermanentError, match="login answer without ticket"):
        version(make(fake_time, password_auth=True))
    raw(fake_pve, "POST", "access/ticket", HugeBody(8 * MIB).stream())
    with pytest.raises(ApiPermanentError, match="/access/ticket: answer larger than"):
        version(make(fake_time, password_auth=True, max_answer_bytes=MIB))


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_redirect_is_refused_not_followed(fake_pve, fake_time, status):
    fake_pve.fault("GET", "cluster/status", (status, "Moved", Raw(
        b"", {"Location": "https://elsewhere.test:8006/api2/json/cluster/status"})))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).get_cluster_status()
    assert f"HTTP {status} Moved to https://elsewhere.test" in str(err.value)
    assert [c.host for c in fake_pve.calls] == ["pve1.test"]  # nothing sent elsewhere


# --- the size cap ----------------------------------------------------------------------------


def test_the_default_cap_is_32_mib():
    assert DEFAULT_MAX_ANSWER_BYTES == 32 * MIB == api_settings().max_answer_bytes


def test_a_huge_streamed_answer_is_refused_after_at_most_the_cap(fake_pve, fake_time):
    """64 MiB without Content-Length under the default cap: reading stops at 32 MiB."""
    body = HugeBody(64 * MIB)
    raw(fake_pve, "GET", "cluster/resources", body.stream())
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).get_cluster_resources()
    assert "/cluster/resources: answer larger than max_answer_bytes (33554432)" in str(err.value)
    assert 32 * MIB < body.read_bytes <= 32 * MIB + 256 * 1024  # the cap plus a chunk or two
    assert fake_pve.paths() == ["cluster/resources"]  # not retried: it would be as big again


def test_memory_does_not_grow_with_the_answer(fake_pve, fake_time):
    """A 1 GiB answer under a 1 MiB cap: ~1 MiB is read and at most a few MiB held."""
    body = HugeBody(1024 * MIB)
    raw(fake_pve, "GET", "cluster/resources", body.stream())
    api = make(fake_time, max_answer_bytes=MIB)
    tracemalloc.start()
    try:
        with pytest.raises(ApiPermanentError, match="larger than max_answer_bytes"):
            api.get_cluster_resources()
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert body.read_bytes <= MIB + 256 * 1024
    assert peak < 8 * MIB, peak


def test_a_declared_length_over_the_cap_is_refused_unread(fake_pve, fake_time):
    body = HugeBody(4 * MIB)
    raw(fake_pve, "GET", "cluster/resources", body.stream(),
        headers={"Content-Length": str(4 * MIB)})
    with pytest.raises(ApiPermanentError, match=r"answer of 4194304 bytes is larger than "
                                                r"max_answer_bytes \(1048576\); not read"):
        make(fake_time, max_answer_bytes=MIB).get_cluster_resources()
    assert body.read_bytes == 0


def test_a_compressed_answer_is_capped_by_its_decoded_size(fake_pve, fake_time):
    """A gzip bomb: 40 KiB on the wire, 40 MiB decoded; the cap counts decoded bytes."""
    bomb = gzip.compress(b'{"data": "' + b" " * (40 * MIB) + b'"}', compresslevel=9)
    assert len(bomb) < 100 * 1024
    raw(fake_pve, "GET", "cluster/resources", io.BufferedReader(io.BytesIO(bomb)),
        headers={"Content-Encoding": "gzip", "Content-Length": str(len(bomb))})
    with pytest.raises(ApiPermanentError, match="larger than max_answer_bytes"):
        make(fake_time, max_answer_bytes=MIB).get_cluster_resources()


def test_an_answer_at_the_cap_passes_and_a_byte_more_does_not(fake_pve, fake_time):
    cap = 256 * 1024
    api = make(fake_time, max_answer_bytes=cap)
    raw(fake_pve, "GET", "version", HugeBody(cap).stream())
    assert api.client.call("GET", "version", idempotent=True).strip() == ""
    raw(fake_pve, "GET", "version", HugeBody(cap + 1).stream())
    with pytest.raises(ApiPermanentError, match="larger than max_answer_bytes"):
        api.client.call("GET", "version", idempotent=True)


def test_ten_thousand_guests_fit_the_default_cap_many_times():
    guest = {"id": "qemu/123456", "type": "qemu", "vmid": 123456, "node": "pve-node-017",
             "status": "running", "name": "web-frontend-prod-0123", "uptime": 12345678,
             "template": 0, "maxcpu": 16, "cpu": 0.0312345678901234, "maxmem": 68719476736,
             "mem": 34359738368, "memhost": 34359738368, "maxdisk": 549755813888, "disk": 0,
             "netin": 123456789012, "netout": 123456789012, "diskread": 123456789012,
             "diskwrite": 123456789012, "tags": "prod;web;tier1", "pool": "production",
             "hastate": "started", "lock": "backup"}
    size = len(json.dumps(guest, separators=(",", ":"))) * 10_000
    assert size * 5 < DEFAULT_MAX_ANSWER_BYTES


# --- failover on "this host cannot serve" --------------------------------------------------


@pytest.mark.parametrize("status, reason", [(503, "Service Unavailable"), (502, "Bad Gateway"),
                                            (504, "Gateway Timeout"),
                                            (596, "Connection timed out")])
def test_a_read_fails_over_when_the_host_cannot_serve(fake_pve, fake_time, status, reason):
    fake_pve.fault("GET", "cluster/status", (status, reason, None))
    api = make(fake_time)
    assert api.get_cluster_status().cluster_name == "lab"
    assert [c.host for c in fake_pve.calls] == ["pve1.test", "pve2.test"]
    assert api.client.current_host == "pve2.test"  # and sticks to the host that answered
    assert fake_time.sleeps == []


def test_a_snapshot_is_read_again_from_the_host_that_can_serve(fake_pve, fake_time):
    fake_pve.fault("GET", "cluster/resources", (503, "Service Unavailable", None))
    snap = make(fake_time).snapshot()
    assert snap.api_host == "pve2.test"
    assert [(c.host, c.path) for c in fake_pve.calls][-3:] == [
        ("pve2.test", "cluster/status"), ("pve2.test", "cluster/resources"),
        ("pve2.test", "cluster/ha/resources")]


def test_a_595_about_a_forwarded_node_is_no_reason_to_fail_over(fake_pve, fake_time):
    with pytest.raises(ApiTransientError):
        make(fake_time).get_node_status("pve3")
    assert {c.host for c in fake_pve.calls} == {"pve1.test"}


@pytest.mark.parametrize("status", [502, 503, 504, 596])
def test_a_write_is_never_sent_again_after_a_cannot_serve(fake_pve, fake_time, status):
    fake_pve.fault("POST", "nodes/pve1/qemu/100/status/start", (status, "busy", None))
    with pytest.raises(ApiTransientError):
        make(fake_time).post_start(VM100)
    assert [(c.host, c.method) for c in fake_pve.calls] == [("pve1.test", "POST")]


def test_every_host_busy_is_transient_after_the_retries(fake_pve, fake_time):
    fake_pve.fault("GET", "cluster/status", *[(503, "Service Unavailable", None)] * 6)
    with pytest.raises(ApiTransientError) as err:
        make(fake_time).get_cluster_status()
    assert err.value.status == 503
    assert [c.host for c in fake_pve.calls] == ["pve1.test", "pve2.test"] * 3
    assert fake_time.sleeps == [1.0, 2.0]
