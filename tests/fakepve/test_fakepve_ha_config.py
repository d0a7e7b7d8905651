"""PVE's own HA config in the fake (``pvha.fakepve.ha_config``): served from
``/etc/pve/ha/*.cfg`` of the answering node's pmxcfs view, deleted as PVE's API does."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakepve_helpers import ctl, token_client, wait_for
from proxmoxer.core import ResourceException

from pvha.fakepve.server import FakePve

RESOURCES = "vm: 100\n\tgroup g1\n\tmax_restart 2\n\nvm: 101\n\tstate stopped\n\nct: 102\n"
GROUPS = "group: g1\n\tnodes node1:2,node2\n\trestricted 1\n\ngroup: spare\n\tnodes node3\n"
RULES = ("node-affinity: keep\n\tnodes node2\n\tresources vm:101\n\tstrict 1\n\n"
         "resource-affinity: pair\n\taffinity positive\n\tdisable\n"
         "\tresources vm:100,vm:101\n")


def seed(fake: FakePve) -> Path:
    ha = fake.cfs_root("node1") / "ha"
    (ha / "resources.cfg").write_text(RESOURCES)
    (ha / "groups.cfg").write_text(GROUPS)
    (ha / "rules.cfg").write_text(RULES)
    return ha


def test_the_files_are_what_the_api_lists(fake: FakePve) -> None:
    seed(fake)
    ha = token_client(fake).cluster.ha
    res = ha.resources.get()
    assert [{k: v for k, v in r.items() if k != "digest"} for r in res] == [
        {"sid": "vm:100", "type": "vm", "group": "g1", "max_restart": "2"},
        {"sid": "vm:101", "type": "vm", "state": "stopped"},
        {"sid": "ct:102", "type": "ct"}]
    assert len({r["digest"] for r in res}) == 1 and len(res[0]["digest"]) == 40
    assert [r["sid"] for r in ha.resources.get(type="ct")] == ["ct:102"]
    assert [(g["group"], g["type"], g["nodes"], g.get("restricted")) for g in ha.groups.get()
            ] == [("g1", "group", "node1:2,node2", "1"), ("spare", "group", "node3", None)]
    rules = ha.rules.get()
    assert [(r["rule"], r["type"], r["order"], r["resources"]) for r in rules] == [
        ("keep", "node-affinity", 1, "vm:101"), ("pair", "resource-affinity", 2,
                                                 "vm:100,vm:101")]
    assert rules[1]["disable"] == "1" and rules[0]["strict"] == "1"
    assert [r["rule"] for r in ha.rules.get(resource="vm:100")] == ["pair"]
    assert [r["rule"] for r in ha.rules.get(type="node-affinity")] == ["keep"]
    # pvestatd's view in the resource list, and every node reads its own copy
    rows = {r["vmid"]: r for r in token_client(fake).cluster.resources.get(type="vm")}
    assert rows[100]["hastate"] == "started" and rows[101]["hastate"] == "stopped"
    assert "hastate" not in rows[103]
    wait_for(lambda: len(token_client(fake, "node3").cluster.ha.rules.get()) == 2)


def test_deleting_a_resource_purges_it_from_rules(fake: FakePve) -> None:
    ha_dir = seed(fake)
    px = token_client(fake)
    px.cluster.ha.resources("vm:101").delete()
    assert [r["sid"] for r in px.cluster.ha.resources.get()] == ["vm:100", "ct:102"]
    assert (ha_dir / "rules.cfg").read_text() == (  # 'keep' lost its only resource
        "resource-affinity: pair\n\taffinity positive\n\tdisable\n\tresources vm:100\n")
    with pytest.raises(ResourceException, match="cannot delete service 'vm:101', not HA "
                                                "managed!") as err:
        px.cluster.ha.resources("vm:101").delete()
    assert err.value.status_code == 500
    px.cluster.ha.resources("102").delete(purge=0)  # a bare VMID, typed from the guests
    assert [r["sid"] for r in px.cluster.ha.resources.get()] == ["vm:100"]
    with pytest.raises(ResourceException) as bad:
        px.cluster.ha.resources("vm:100").delete(purge="yes")
    assert bad.value.status_code == 400 and "boolean" in str(bad.value.errors)
    with pytest.raises(ResourceException, match="VM/CT 999 does not exist"):
        px.cluster.ha.resources("999").delete()
    with pytest.raises(ResourceException) as bad_sid:
        px.cluster.ha.resources("vm 100").delete()
    assert bad_sid.value.status_code == 400


def test_a_group_in_use_is_not_deleted(fake: FakePve) -> None:
    ha_dir = seed(fake)
    px = token_client(fake)
    with pytest.raises(ResourceException, match="ha group is used by service 'vm:100'"):
        px.cluster.ha.groups("g1").delete()
    px.cluster.ha.groups("spare").delete()
    assert [g["group"] for g in px.cluster.ha.groups.get()] == ["g1"]
    assert (ha_dir / "groups.cfg").read_text() == "group: g1\n\tnodes node1:2,node2\n" \
                                                  "\trestricted 1\n\n"
    with pytest.raises(ResourceException) as bad:
        px.cluster.ha.groups("1x").delete()
    assert bad.value.status_code == 400


def test_without_quorum_nothing_is_deleted(fake: FakePve) -> None:
    ha_dir = seed(fake)
    ctl(fake, "network node1 off")
    with pytest.raises(ResourceException, match="delete resource failed: cfs-lock "
                                                "'domain-ha' error: no quorum!"):
        token_client(fake).cluster.ha.resources("vm:100").delete()
    assert (ha_dir / "resources.cfg").read_text() == RESOURCES


def test_sim_ctl_pve_ha_edits_resources_cfg(fake: FakePve) -> None:
    ha_dir = seed(fake)
    ctl(fake, "guest 100 pve-ha disabled")
    ctl(fake, "guest 103 pve-ha started")
    ctl(fake, "guest 102 pve-ha off")
    assert (ha_dir / "resources.cfg").read_text() == (
        "vm: 100\n\tstate disabled\n\tgroup g1\n\tmax_restart 2\n\nvm: 101\n"
        "\tstate stopped\n\nvm: 103\n\tstate started\n\n")


def test_an_injected_delete_failure_is_one_shot(fake: FakePve) -> None:
    seed(fake)
    px = token_client(fake)
    ctl(fake, "guest 100 fail ha-delete")
    with pytest.raises(ResourceException, match="delete resource failed: close") as err:
        px.cluster.ha.resources("vm:100").delete()
    assert err.value.status_code == 500
    assert "vm:100" in [r["sid"] for r in px.cluster.ha.resources.get()]
    px.cluster.ha.resources("vm:100").delete()
    assert [r["sid"] for r in px.cluster.ha.resources.get()] == ["vm:101", "ct:102"]
