"""``view_of``: one consistent view or none (issue 9). A node or VMID listed twice, or a
guest on a node that is not a member, refuses the snapshot (ApiPermanentError): the core
never sees two answers for one guest, and the watch loop skips the round."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pvha.config import ops
from pvha.config.store import Store
from pvha.errors import ApiPermanentError
from pvha.ports import (
    ClusterNode,
    ClusterResources,
    ClusterSnapshot,
    ClusterStatus,
    Guest,
    NodeResource,
)
from pvha.shell.loop import Watcher
from pvha.shell.snapshot import take_view, view_of
from tests.shell.fakes import FakeApi, make_cluster

NODES = ("node1", "node2", "node3")


def snap(guests: list[Guest], nodes: tuple[str, ...] = NODES) -> ClusterSnapshot:
    status = ClusterStatus("c", True, 1, len(nodes), tuple(
        ClusterNode(n, i + 1, True, i == 0) for i, n in enumerate(nodes)))
    res = ClusterResources(tuple(NodeResource(n, "online") for n in dict.fromkeys(nodes)),
                           tuple(guests))
    return ClusterSnapshot(status, res, (), "192.0.2.11", 1000.0)


def vm(vmid: int, node: str, status: str = "running", kind: str = "qemu",
       template: bool = False) -> Guest:
    return Guest(vmid, kind, node, status, False, template=template)  # type: ignore[arg-type]


def test_a_clean_snapshot_gives_its_view():
    view = view_of(snap([vm(100, "node2"), vm(101, "node3", kind="lxc"),
                         vm(900, "node1", "stopped", template=True)]))
    assert sorted(view.guests) == ["ct:101", "vm:100"] and view.quorate
    assert view.members == NODES and view.local_node == "node1"


@pytest.mark.parametrize("guests, why", [
    # the bug: the last duplicate won, so a running guest read as stopped elsewhere
    ([vm(100, "node2"), vm(100, "node3", "stopped")], "lists VMID 100 twice"),
    ([vm(100, "node2"), vm(100, "node2")], "lists VMID 100 twice"),
    ([vm(100, "node2"), vm(100, "node2", kind="lxc")], "lists VMID 100 twice"),
    ([vm(100, "node2", template=True), vm(100, "node2")], "lists VMID 100 twice"),
    ([vm(100, "node9")], "guest vm:100 is on 'node9', which is not a cluster member"),
])
def test_duplicates_and_strangers_refuse_the_snapshot(guests, why):
    with pytest.raises(ApiPermanentError) as err:
        view_of(snap(guests))
    assert str(err.value).startswith("192.0.2.11: snapshot refused: /cluster/resources")
    assert why in str(err.value), str(err.value)
    assert err.value.host == "192.0.2.11"


def test_a_node_listed_twice_refuses_the_snapshot():
    with pytest.raises(ApiPermanentError, match="/cluster/status lists node 'node2' twice"):
        view_of(snap([vm(100, "node1")], nodes=("node1", "node2", "node2")))


class _Api:
    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self._snap = snapshot

    def snapshot(self) -> ClusterSnapshot:
        return self._snap


def test_take_view_raises_the_refusal():
    with pytest.raises(ApiPermanentError, match="twice"):
        take_view(_Api(snap([vm(100, "node2"), vm(100, "node3", "stopped")])))


def test_the_watch_loop_skips_a_refused_snapshot_and_touches_nothing(tmp_path: Path):
    """A duplicate ``stopped`` copy of a running guest: without the refusal the manager
    would restart it elsewhere or push it into error; with it the round is skipped."""
    api, cfs, _clock = make_cluster(tmp_path)
    store = Store(cfs.config_dir)
    for vmid, node in ((100, "node2"), (101, "node3")):
        api.add_guest(vmid, node, running=True)
        ops.add_resource(store, f"vm:{vmid}", {})
    w = Watcher(api, cfs, api.clock, fence_delay=60, round_interval=10)
    for _ in range(3):
        w.safe_round()
        api.clock.sleep(10)
    before = _states(cfs)
    assert before == {"vm:100": "started", "vm:101": "started"}
    actions = list(api.actions)

    real = FakeApi.snapshot

    def duplicated(self: FakeApi) -> ClusterSnapshot:
        s = real(self)
        extra = dataclasses.replace(s.resources.guests[0], node="node3", status="stopped")
        return dataclasses.replace(s, resources=dataclasses.replace(
            s.resources, guests=(*s.resources.guests, extra)))

    api.snapshot = duplicated.__get__(api)  # type: ignore[method-assign]
    sentences = []
    for _ in range(4):
        sentences.append(w.safe_round())
        api.clock.sleep(10)
    assert all(s.startswith("cannot read the cluster through the API (node1: snapshot "
                            "refused: /cluster/resources lists VMID 100 twice)")
               for s in sentences), sentences
    assert api.actions == actions and _states(cfs) == before
    assert not w.ok


def _states(cfs: Any) -> dict[str, str]:
    ms = json.loads((cfs.config_dir / "manager_status").read_text())
    return {sid: sd["state"] for sid, sd in ms["service_status"].items()}
