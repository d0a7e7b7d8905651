"""Issue 9 end to end: pvha's real adapters over HTTPS against ``pvha sim serve``'s
FakePve, with answers corrupted by wrapping the fake's request handler in the test.

The fault that started it: a ``/cluster/status`` entry for node2 without ``online`` (or
with ``online: "yes"``, or no entry at all) was read as "node2 offline", and with a fence
device (fence delay 0) the real watch loop powered node2 off through its BMC. Now the
snapshot is refused, the loop skips the round and logs why, and nothing is fenced."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pvha.adapters import build_real_adapters
from pvha.adapters.pve_api import PveApi
from pvha.errors import ApiPermanentError
from pvha.fakepve.server import FakePve
from pvha.fakepve.wire import Reply
from pvha.settings import Settings, load_settings
from pvha.shell.loop import Watcher


def settings_of(fp: FakePve, **env: str) -> Settings:
    values = {}
    for line in (fp.state / "env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = shlex.split(value)[0]
    return load_settings(env={**values, **env})


Corrupt = Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]


def corrupt_answers(fp: FakePve, path: str, change: Corrupt) -> Callable[[], None]:
    """Every node's 200 answer to ``GET path`` goes through ``change(node, data)``.
    Returns the function that undoes it."""
    handle = fp.api.handle

    def wrapped(node: str, method: str, p: str, params: Any, headers: Any) -> Reply:
        reply = handle(node, method, p, params, headers)
        if method == "GET" and p == path and reply.status == 200:
            body = json.loads(reply.body)
            body["data"] = change(node, body["data"])
            reply = Reply(200, "OK", json.dumps(body).encode(), dict(reply.headers))
        return reply

    fp.api.handle = wrapped  # type: ignore[method-assign]
    return lambda: setattr(fp.api, "handle", handle)


def _node2_online_missing(node: str, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for e in data:
        if e.get("name") == "node2":
            del e["online"]
    return data


def _node2_online_yes(node: str, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for e in data:
        if e.get("name") == "node2":
            e["online"] = "yes"
    return data


def _node2_missing(node: str, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in data if e.get("name") != "node2"]


@pytest.fixture
def fenced_cluster(fake_factory: Callable[..., FakePve]) -> Iterator[tuple[FakePve, Watcher]]:
    """A FakePve with a Redfish BMC per node (so the watch loop fences at once: fence
    delay 0) and the real watch loop on the real adapters, in this process."""
    fp = fake_factory(bmc="redfish")
    settings = settings_of(fp, PVHA_ATTEMPTS="1", PVHA_CONNECT_TIMEOUT="2")
    api, cfs, clock = build_real_adapters(settings)
    w = Watcher(api, cfs, clock, round_interval=0.5, fence_timeout=3)
    assert w.power is not None and w.fence_delay == 0  # a fence device: no waiting
    try:
        yield fp, w
    finally:
        w.release()
        w.executors.close()
        w.power.close()


def _states(fp: FakePve) -> dict[str, str]:
    try:
        ms = json.loads((fp.cfs_root() / "pvha" / "manager_status").read_text())
    except (OSError, ValueError):
        return {}
    return {sid: sd["state"] for sid, sd in (ms.get("service_status") or {}).items()}


def _rounds_until(w: Watcher, done: Callable[[], bool], limit: float = 20.0) -> list[str]:
    out, deadline = [], time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, out[-3:]
        out.append(w.safe_round())
        time.sleep(0.1)
    return out


@pytest.mark.parametrize("change", [_node2_online_missing, _node2_online_yes, _node2_missing])
def test_a_corrupted_cluster_status_skips_rounds_and_never_fences(
        fenced_cluster: tuple[FakePve, Watcher], change: Corrupt) -> None:
    fp, w = fenced_cluster
    _rounds_until(w, lambda: len(_states(fp)) == 4 and set(_states(fp).values()) == {"started"})
    assert w.crm is not None and w.crm.state == "master"
    before = {v: g["running_on"] for v, g in fp.cluster.truth()["guests"].items()}

    undo = corrupt_answers(fp, "/cluster/status", change)
    sentences = []
    deadline = time.monotonic() + 3.0  # far longer than fencing takes with fence delay 0
    while time.monotonic() < deadline:
        sentences.append(w.safe_round())
        time.sleep(0.2)
    undo()

    assert len(sentences) >= 5
    for s in sentences:
        assert s.startswith("cannot read the cluster through the API ("), s
        assert "node 'node2'" in s and "/cluster/status" in s, s
    assert not w.ok
    truth = fp.cluster.truth()
    assert fp.bmcs.events == []  # no BMC was ever asked to power anything off
    assert {n: truth["nodes"][n]["power"] for n in fp.names} == dict.fromkeys(fp.names, "on")
    assert {v: g["running_on"] for v, g in truth["guests"].items()} == before
    assert set(_states(fp).values()) == {"started"}  # nothing went to fence or recovery
    assert truth["split_brain"] == []

    after = w.safe_round()  # the answers are PVE's again: the loop goes on as before
    assert not after.startswith("cannot read"), after
    assert w.ok and fp.bmcs.events == []


def test_a_refused_status_names_the_answer_and_the_field(fake: FakePve) -> None:
    corrupt_answers(fake, "/cluster/status", _node2_online_yes)
    api = PveApi.from_settings(settings_of(fake).api)
    with pytest.raises(ApiPermanentError) as err:
        api.snapshot()
    assert str(err.value) == (
        f"{fake.hosts[0]}: unexpected answer from PVE for /cluster/status: node 'node2': "
        "'online' is 'yes' (a string), expected 0 or 1")


def test_a_duplicate_guest_refuses_the_snapshot(fake: FakePve) -> None:
    corrupt_answers(fake, "/cluster/resources", lambda node, data: data + [
        dict(next(e for e in data if e.get("vmid") == 100), status="stopped")])
    api = PveApi.from_settings(settings_of(fake).api)
    with pytest.raises(ApiPermanentError, match="guest qemu/100: VMID 100 is listed twice"):
        api.snapshot()


def test_503_on_the_first_host_fails_over_for_reads(fake: FakePve) -> None:
    api = PveApi.from_settings(settings_of(fake, PVHA_ATTEMPTS="1").api)
    fake.faults.add_fail(1, "node1", 503)
    snap = api.snapshot()
    assert snap.api_host == fake.hosts[1] and snap.status.local_node == "node2"
    assert fake.faults.take_fail("node1") is None  # the one 503 was served


def test_a_huge_answer_over_https_is_refused(fake: FakePve) -> None:
    """The fake gzips answers over 1 KiB: the cap counts decoded bytes."""
    settings = settings_of(fake, PVHA_MAX_ANSWER_BYTES=str(1 << 20))
    api = PveApi.from_settings(settings.api)
    corrupt_answers(fake, "/cluster/resources",
                    lambda node, data: data + [{"type": "pad", "x": "y" * (4 << 20)}])
    with pytest.raises(ApiPermanentError, match="/cluster/resources: answer larger than "
                                                r"max_answer_bytes \(1048576\)"):
        api.get_cluster_resources()
    assert api.get_cluster_status().quorate  # the connection pool still works


def test_a_body_that_is_not_the_envelope_over_https(fake: FakePve) -> None:
    handle = fake.api.handle

    def listed(node: str, method: str, p: str, params: Any, headers: Any) -> Reply:
        reply = handle(node, method, p, params, headers)
        if p == "/cluster/status":
            return Reply(200, "OK", json.dumps(json.loads(reply.body)["data"]).encode(),
                         dict(reply.headers))
        return reply

    fake.api.handle = listed  # type: ignore[method-assign]
    api = PveApi.from_settings(settings_of(fake).api)
    with pytest.raises(ApiPermanentError, match=r"/cluster/status: the answer is a JSON list"):
        api.get_cluster_status()
