"""Per-node views, proxying to dead nodes, and stale guest status."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from fakepve_helpers import ctl, token_client, wait_for
from proxmoxer.core import ResourceException

from pvha.fakepve.server import FakePve


def _view(entries: list[dict[str, Any]]) -> tuple[int, dict[str, int], str]:
    cluster = next(e for e in entries if e["type"] == "cluster")
    nodes = {e["name"]: e["online"] for e in entries if e["type"] == "node"}
    local = next(e["name"] for e in entries if e["type"] == "node" and e["local"])
    return cluster["quorate"], nodes, local


def test_cluster_status_views_before_and_after_partition(fake: FakePve) -> None:
    for node in ("node1", "node3"):
        entries = token_client(fake, node).cluster.status.get()
        assert _view(entries) == (1, {"node1": 1, "node2": 1, "node3": 1}, node)
        cluster = entries[0]
        assert cluster == {"type": "cluster", "id": "cluster", "name": "pvha-sim", "nodes": 3,
                           "quorate": 1, "version": 4}
    ctl(fake, "network node3 off")
    # the cut-off node: no quorum, everybody else offline, itself online and local
    assert _view(token_client(fake, "node3").cluster.status.get()) == (
        0, {"node1": 0, "node2": 0, "node3": 1}, "node3")
    # the majority: quorate, node3 offline (its ip still listed)
    entries = token_client(fake, "node1").cluster.status.get()
    assert _view(entries) == (1, {"node1": 1, "node2": 1, "node3": 0}, "node1")
    assert next(e for e in entries if e.get("name") == "node3")["ip"] == fake.address("node3")[0]
    nodes = {n["node"]: n["status"] for n in token_client(fake, "node2").nodes.get()}
    assert nodes == {"node1": "online", "node2": "online", "node3": "offline"}
    ctl(fake, "network node3 on")
    assert _view(token_client(fake, "node3").cluster.status.get())[0] == 1


def test_minority_refuses_start_but_allows_stop(fake: FakePve) -> None:
    ctl(fake, "network node3 off")
    px = token_client(fake, "node3")
    with pytest.raises(ResourceException) as err:
        px.nodes("node3").lxc(102).status.start.post()
    assert (err.value.status_code, err.value.content) == (500, "cluster not ready - no quorum?")
    assert px.nodes("node3").lxc(102).status.stop.post().startswith("UPID:node3:")
    # and forwarding from the cut-off node to any other node fails
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").status.get()
    assert (err.value.status_code, err.value.content) == (595, "No route to host")


def test_595_for_guest_on_powered_off_node(fake: FakePve) -> None:
    px = token_client(fake, "node1")
    assert px.nodes("node2").qemu(101).status.current.get()["status"] == "running"
    ctl(fake, "power node2 off")
    with pytest.raises(ResourceException) as err:
        px.nodes("node2").qemu(101).status.current.get()
    e = err.value
    assert (e.status_code, e.content, e.errors) == (595, "No route to host", {"errors": b""})
    with pytest.raises(ResourceException) as err:
        px.nodes("node2").qemu(101).status.start.post()
    assert err.value.status_code == 595
    # the dead node's own address refuses connections
    with pytest.raises(requests.exceptions.ConnectionError):
        token_client(fake, "node2").version.get()
    # unknown node names fail the host lookup
    with pytest.raises(ResourceException) as err:
        px.nodes("node9").status.get()
    assert err.value.content.startswith("hostname lookup 'node9' failed")
    ctl(fake, "power node2 on")
    assert token_client(fake, "node2").nodes("node2").qemu(101).status.current.get()[
        "status"] == "stopped"  # a power cycle kills the guest


def test_stale_status_of_dead_nodes_guests(fake_factory: Any) -> None:
    fake = fake_factory(timing={"stale_seconds": 0.6})
    px = token_client(fake, "node1")
    ctl(fake, "power node2 off")
    res = px.cluster.resources.get(type="vm")
    g101 = next(g for g in res if g["vmid"] == 101)
    # PVE keeps the last broadcast status of a dead node's guests for a while
    assert (g101["node"], g101["status"], g101["name"]) == ("node2", "running", "vm101")
    nodes = {n["node"]: n["status"] for n in px.cluster.resources.get(type="node")}
    assert nodes["node2"] == "offline"
    time.sleep(0.7)
    g101 = next(g for g in px.cluster.resources.get(type="vm") if g["vmid"] == 101)
    assert g101["status"] == "unknown" and "name" not in g101 and "maxmem" not in g101
    assert g101["node"] == "node2"
    # other guests are live
    g100 = next(g for g in px.cluster.resources.get(type="vm") if g["vmid"] == 100)
    assert g100["status"] == "running"


def test_minority_sees_majority_guests_stale(fake: FakePve) -> None:
    ctl(fake, "network node1 off")
    ctl(fake, "guest 101 stop")  # on node2, which node1 cannot see any more
    res = token_client(fake, "node1").cluster.resources.get(type="vm")
    assert next(g for g in res if g["vmid"] == 101)["status"] == "running"  # stale
    res = token_client(fake, "node3").cluster.resources.get(type="vm")
    assert next(g for g in res if g["vmid"] == 101)["status"] == "stopped"  # fresh


def test_cluster_resources_shapes(fake: FakePve) -> None:
    res = token_client(fake).cluster.resources.get()
    kinds = {r["type"] for r in res}
    assert kinds == {"node", "qemu", "lxc", "storage"}
    ct = next(r for r in res if r["type"] == "lxc")
    assert ct["id"] == f"lxc/{ct['vmid']}" and isinstance(ct["vmid"], int)
    node = next(r for r in res if r["type"] == "node")
    assert node["cgroup-mode"] == 2 and node["status"] == "online"


def test_reboot_brings_node_back(fake: FakePve) -> None:
    ctl(fake, "reboot node3")
    with pytest.raises(requests.exceptions.ConnectionError):
        token_client(fake, "node3").version.get()

    def answers() -> bool:
        try:
            return bool(token_client(fake, "node3").version.get())
        except requests.exceptions.ConnectionError:
            return False

    wait_for(answers, timeout=5)
    assert token_client(fake, "node3").nodes("node3").status.get()["uptime"] <= 2


def test_even_split_has_no_quorum_anywhere(fake_factory: Any) -> None:
    fake = fake_factory(nodes=4, guests=0)
    ctl(fake, "partition node1,node2 node3,node4")
    for node, peers in (("node1", {"node1", "node2"}), ("node4", {"node3", "node4"})):
        quorate, online, _ = _view(token_client(fake, node).cluster.status.get())
        assert quorate == 0 and {n for n, up in online.items() if up} == peers
    with pytest.raises(ResourceException) as err:
        token_client(fake, "node1").nodes("node3").status.get()
    assert err.value.status_code == 595
    ctl(fake, "partition node1,node2,node3")  # 3 of 4: quorate; node4 alone
    assert _view(token_client(fake, "node2").cluster.status.get())[0] == 1
    assert _view(token_client(fake, "node4").cluster.status.get())[0] == 0
    ctl(fake, "partition heal")
    assert _view(token_client(fake, "node4").cluster.status.get())[0] == 1
