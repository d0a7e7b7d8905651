"""PveApi on PVE's own HA config: groups and rules read and shape-checked, resources and
groups deleted (the calls ``pvha import-pve`` makes)."""

from __future__ import annotations

import pytest
from pve_fake import FakeTime, api_settings

from pvha.adapters.pve_api import PveApi
from pvha.adapters.pve_client import PveClient
from pvha.errors import ApiPermanentError
from pvha.ports import PveHaSection


def make(fake_time: FakeTime) -> PveApi:
    client = PveClient(api_settings(), monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    return PveApi(client, clock=fake_time.time)


def test_groups_and_rules_keep_every_option_as_a_string(fake_pve, fake_time):
    fake_pve.fault("GET", "cluster/ha/groups", (200, "OK", {"data": [
        {"group": "g1", "type": "group", "nodes": "pve1:2,pve2", "restricted": 1,
         "digest": "abc"}]}))
    fake_pve.fault("GET", "cluster/ha/rules", (200, "OK", {"data": [
        {"rule": "keep", "type": "node-affinity", "nodes": "pve1", "resources": "vm:100",
         "strict": "1", "order": 1, "digest": "abc", "errors": {}, "weight": "3"}]}))
    api = make(fake_time)
    assert api.get_ha_groups() == (PveHaSection("group", "g1", (
        ("nodes", "pve1:2,pve2"), ("restricted", "1"))),)
    assert api.get_ha_rules() == (PveHaSection("node-affinity", "keep", (
        ("nodes", "pve1"), ("resources", "vm:100"), ("strict", "1"), ("weight", "3"))),)


def test_a_pve8_server_has_no_rules(fake_pve, fake_time):
    assert make(fake_time).get_ha_rules() == ()  # the test server answers 501 for the path
    assert fake_pve.paths() == ["cluster/ha/rules"]


@pytest.mark.parametrize("path, entry, field", [
    ("cluster/ha/groups", {"group": "1x", "nodes": "pve1"}, "'group' is '1x'"),
    ("cluster/ha/groups", {"group": "g1", "type": "rule"}, "group 'g1': 'type' is 'rule'"),
    ("cluster/ha/groups", {"group": "g1", "nodes": ["pve1"]}, "group 'g1': 'nodes' is"),
    ("cluster/ha/rules", {"rule": "r1"}, "rule 'r1': 'type' is missing"),
    ("cluster/ha/rules", {"rule": "r1", "type": "node-affinity", "strict": None},
     "rule 'r1': 'strict' is missing, expected a string or an integer"),
])
def test_shapes_pve_would_not_send_are_refused(fake_pve, fake_time, path, entry, field):
    fake_pve.fault("GET", path, (200, "OK", {"data": [entry]}))
    api = make(fake_time)
    with pytest.raises(ApiPermanentError, match="unexpected answer from PVE for /" + path):
        api.get_ha_groups() if path.endswith("groups") else api.get_ha_rules()
    twice = {"group": "g1", "nodes": "pve1"}
    fake_pve.fault("GET", "cluster/ha/groups", (200, "OK", {"data": [twice, twice]}))
    with pytest.raises(ApiPermanentError, match="group 'g1' is listed twice"):
        api.get_ha_groups()


def test_deletes_go_to_the_resource_and_group_paths(fake_pve, fake_time):
    fake_pve.fault("DELETE", "cluster/ha/resources/vm:100", (200, "OK", {"data": None}))
    fake_pve.fault("DELETE", "cluster/ha/groups/g1", (200, "OK", {"data": None}))
    gone = "cannot delete service 'ct:101', not HA managed!"
    fake_pve.fault("DELETE", "cluster/ha/resources/ct:101", (500, gone, {"data": None}))
    api = make(fake_time)
    api.delete_ha_resource("vm:100")
    api.delete_ha_group("g1")
    with pytest.raises(ApiPermanentError, match="not HA managed"):
        api.delete_ha_resource("ct:101")
    assert fake_pve.paths("DELETE") == ["cluster/ha/resources/vm:100", "cluster/ha/groups/g1",
                                        "cluster/ha/resources/ct:101"]  # not retried
    for bad in ("vm:100/../x", "100", "vm:0"):
        with pytest.raises(ValueError):
            api.delete_ha_resource(bad)
    with pytest.raises(ValueError):
        api.delete_ha_group("g1/x")
