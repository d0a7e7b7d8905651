"""Answers by shape (issue 9, the API edge): what PVE would not send is refused with one
ApiPermanentError naming the answer and the field, never read as "offline" and never a
traceback; what real PVE sends (keys left out, standalone, other entry types) passes.

Against the adapter through ``responses`` (the strict registry in ``pve_fake``)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pve_fake import (
    CLUSTER_RESOURCES,
    CLUSTER_STATUS,
    HA_RESOURCES,
    FakeTime,
    api_settings,
    upid,
)

from pvha.adapters.pve_api import PveApi, parse_cluster_resources, parse_cluster_status
from pvha.adapters.pve_client import PveClient
from pvha.errors import ApiPermanentError
from pvha.ports import GuestRef

VM100 = GuestRef("qemu", 100, "pve1")


def make(fake_time: FakeTime, **over: object) -> PveApi:
    client = PveClient(api_settings(**over), monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    return PveApi(client, clock=fake_time.time)


def status_with(change: Any) -> list[dict[str, Any]]:
    """CLUSTER_STATUS with ``change(entries)`` applied (entries by name, cluster = "")."""
    items = copy.deepcopy(CLUSTER_STATUS)
    change({i.get("name", ""): i for i in items}, items)
    return items


def resources_with(change: Any) -> list[dict[str, Any]]:
    items = copy.deepcopy(CLUSTER_RESOURCES)
    change({i["id"]: i for i in items}, items)
    return items


def refused(fake_pve: Any, fake_time: FakeTime, path: str, data: Any) -> ApiPermanentError:
    """Serve ``data`` once for GET ``path`` and take a snapshot; return the refusal."""
    fake_pve.fault("GET", path, (200, "OK", {"data": data}))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).snapshot()
    assert err.value.host == "pve1.test"
    return err.value


# --- /cluster/status ---------------------------------------------------------------------


def _drop_online(by: dict, items: list) -> None:
    del by["pve2"]["online"]


def _online_yes(by: dict, items: list) -> None:
    by["pve2"]["online"] = "yes"


def _online_string_1(by: dict, items: list) -> None:
    by["pve2"]["online"] = "1"


def _online_2(by: dict, items: list) -> None:
    by["pve2"]["online"] = 2


def _online_null(by: dict, items: list) -> None:
    by["pve2"]["online"] = None


def _no_local(by: dict, items: list) -> None:
    del by["pve2"]["local"]


@pytest.mark.parametrize("change, field", [
    (_drop_online, "node 'pve2': 'online' is missing, expected 0 or 1"),
    (_online_yes, "node 'pve2': 'online' is 'yes' (a string), expected 0 or 1"),
    (_online_string_1, "node 'pve2': 'online' is '1' (a string), expected 0 or 1"),
    (_online_2, "node 'pve2': 'online' is 2 (a number), expected 0 or 1"),
    (_online_null, "node 'pve2': 'online' is missing"),
    (_no_local, "node 'pve2': 'local' is missing"),
])
def test_a_node_without_a_valid_online_is_unknown_not_offline(fake_pve, fake_time, change,
                                                               field):
    err = refused(fake_pve, fake_time, "cluster/status", status_with(change))
    assert str(err).startswith(
        f"pve1.test: unexpected answer from PVE for /cluster/status: {field}"), str(err)
    assert err.request_sent is True
    assert fake_pve.paths() == ["cluster/status"]  # refused at once: no retry, no failover
    assert fake_time.sleeps == []


def _duplicate_node(by: dict, items: list) -> None:
    items.append(dict(by["pve3"], online=1))


def _two_local(by: dict, items: list) -> None:
    by["pve2"]["local"] = 1


def _no_local_at_all(by: dict, items: list) -> None:
    by["pve1"]["local"] = 0


def _no_cluster_entry(by: dict, items: list) -> None:
    items.remove(by[""] if "" in by else by["lab"])


def _quorate_yes(by: dict, items: list) -> None:
    by["lab"]["quorate"] = "yes"


def _quorate_missing(by: dict, items: list) -> None:
    del by["lab"]["quorate"]


def _bad_name(by: dict, items: list) -> None:
    by["pve3"]["name"] = "../pve3"


def _name_number(by: dict, items: list) -> None:
    by["pve3"]["name"] = 3


def _entry_not_object(by: dict, items: list) -> None:
    items.append("node/pve4")


def _type_missing(by: dict, items: list) -> None:
    del by["pve3"]["type"]


def _two_clusters(by: dict, items: list) -> None:
    items.append(dict(by["lab"]))


def _nodeid_string(by: dict, items: list) -> None:
    by["pve3"]["nodeid"] = "3"


@pytest.mark.parametrize("change, field", [
    (_duplicate_node, "node 'pve3' is listed twice"),
    (_two_local, "2 node entries have 'local': 1, expected exactly one"),
    (_no_local_at_all, "0 node entries have 'local': 1, expected exactly one"),
    (_no_cluster_entry, "no cluster entry but 3 node entries"),
    (_quorate_yes, "cluster entry: 'quorate' is 'yes' (a string), expected 0 or 1"),
    (_quorate_missing, "cluster entry: 'quorate' is missing, expected 0 or 1"),
    (_bad_name, "entry 3 (type node): 'name' is '../pve3' (a string), expected a node name"),
    (_name_number, "entry 3 (type node): 'name' is 3 (a number), expected a node name"),
    (_entry_not_object, "entry 4: expected an object, got a string"),
    (_type_missing, "entry 3: 'type' is missing, expected a string"),
    (_two_clusters, "entry 4: a second cluster entry"),
    (_nodeid_string, "node 'pve3': 'nodeid' is '3' (a string), expected an integer"),
])
def test_cluster_status_shapes_pve_never_sends_are_refused(fake_pve, fake_time, change, field):
    err = refused(fake_pve, fake_time, "cluster/status", status_with(change))
    assert "/cluster/status: " in str(err) and field in str(err), str(err)


@pytest.mark.parametrize("data, field", [
    ({"not": "a list"}, "expected a list, got an object"),
    (None, "no node entry"),
    ([], "no node entry"),
    ("x", "expected a list, got a string"),
])
def test_cluster_status_that_is_not_a_list_of_entries(fake_pve, fake_time, data, field):
    err = refused(fake_pve, fake_time, "cluster/status", data)
    assert f"/cluster/status: {field}" in str(err), str(err)


def test_a_missing_node_entry_is_refused_not_read_as_offline(fake_pve, fake_time):
    data = [i for i in CLUSTER_STATUS if i.get("name") != "pve2"]
    err = refused(fake_pve, fake_time, "cluster/status", data)
    assert str(err) == ("pve1.test: inconsistent answers from PVE: node 'pve2' is in "
                        "/cluster/resources but not in /cluster/status")


def test_a_node_only_in_cluster_status_is_refused(fake_pve, fake_time):
    data = resources_with(lambda by, items: items.remove(by["node/pve2"]))
    err = refused(fake_pve, fake_time, "cluster/resources", data)
    assert "node 'pve2' is in /cluster/status but not in /cluster/resources" in str(err)


def test_a_guest_on_a_node_that_is_not_a_member_is_refused(fake_pve, fake_time):
    data = resources_with(lambda by, items: by["qemu/100"].update(node="pve9"))
    err = refused(fake_pve, fake_time, "cluster/resources", data)
    assert str(err) == ("pve1.test: inconsistent answers from PVE: /cluster/resources: guest "
                        "qemu/100: 'node' is 'pve9', which is not a cluster member")


def test_pve_booleans_may_be_json_true_false():
    items = copy.deepcopy(CLUSTER_STATUS)
    for i in items:
        for key in ("online", "local", "quorate"):
            if key in i:
                i[key] = bool(i[key])
    st = parse_cluster_status(items)
    assert st.quorate and st.online_nodes == ("pve1", "pve2") and st.local_node == "pve1"


def test_shapes_real_pve_sends_pass():
    # an offline node keeps its ip; ip may also be null; nodeid/level/id are optional
    st = parse_cluster_status([
        {"type": "cluster", "id": "cluster", "name": "lab", "nodes": 2, "quorate": 1,
         "version": 4},
        {"type": "node", "name": "pve1", "online": 1, "local": 1},
        {"type": "node", "name": "pve2", "nodeid": 2, "online": 0, "local": 0, "ip": None,
         "level": None},
    ])
    assert st.online_nodes == ("pve1",) and st.nodes[1].ip is None
    solo = parse_cluster_status([{"type": "node", "name": "solo", "nodeid": 0, "online": 1,
                                  "local": 1, "ip": "10.0.0.1", "level": ""}])
    assert solo.standalone and solo.quorate
    res = parse_cluster_resources([
        # a node without RRD data: no figures at all
        {"id": "node/pve1", "type": "node", "node": "pve1", "status": "unknown"},
        {"id": "node/pve2", "type": "node", "node": "pve2", "status": "online", "maxcpu": 8,
         "maxmem": 34359738368.0, "cpu": 0, "mem": 1, "uptime": 5, "cgroup-mode": 2,
         "hastate": "online", "host-arch": "x86_64", "level": ""},
        # a guest without fresh RRD data: status unknown, no name, no figures
        {"id": "lxc/101", "type": "lxc", "vmid": 101, "node": "pve1", "status": "unknown",
         "lock": "backup", "hastate": "started"},
        # a paused VM; a numeric name and tags; figures as floats
        {"id": "qemu/100", "type": "qemu", "vmid": 100, "node": "pve2", "status": "paused",
         "name": 1234, "tags": 2024, "template": 0, "maxcpu": 0.5, "maxmem": 1.0e9,
         "cpu": 0.01, "mem": 5e8, "uptime": 3, "pool": "p1", "memhost": 1},
        {"id": "storage/pve1/local", "type": "storage", "node": "pve1", "status": "unknown"},
        {"id": "/pool/p1", "type": "pool", "pool": "p1"},
        {"id": "sdn/pve1/zone", "type": "sdn", "node": "pve1"},
        {"id": "network/pve1/vmbr0", "type": "network", "node": "pve1"},
        {"id": "future/x", "type": "something-newer", "node": 7},
    ])
    assert [g.sid for g in res.guests] == ["vm:100", "ct:101"]
    vm, ct = res.guests
    assert (vm.name, vm.tags, vm.maxmem, vm.mem, vm.status_stale) == (
        "1234", ("2024",), 1_000_000_000, 500_000_000, False)
    assert (ct.name, ct.status, ct.status_stale, ct.lock) == (None, "unknown", True, "backup")


def test_the_fake_registry_answers_pass_as_they_are(fake_pve, fake_time):
    snap = make(fake_time).snapshot()
    assert [g.sid for g in snap.resources.guests] == ["vm:100", "vm:101", "ct:102"]


# --- /cluster/resources ------------------------------------------------------------------


def _dup_guest(by: dict, items: list) -> None:
    items.append(dict(by["qemu/100"], status="stopped"))


def _dup_vmid_other_kind(by: dict, items: list) -> None:
    items.append({"id": "lxc/100", "type": "lxc", "vmid": 100, "node": "pve2",
                  "status": "stopped"})


def _dup_node(by: dict, items: list) -> None:
    items.append(dict(by["node/pve3"], status="online"))


def _vmid_string(by: dict, items: list) -> None:
    by["qemu/100"]["vmid"] = "100"


def _vmid_bool(by: dict, items: list) -> None:
    by["qemu/100"]["vmid"] = True


def _vmid_missing(by: dict, items: list) -> None:
    del by["qemu/100"]["vmid"]


def _status_missing(by: dict, items: list) -> None:
    del by["qemu/100"]["status"]


def _template_yes(by: dict, items: list) -> None:
    by["qemu/100"]["template"] = "yes"


def _mem_string(by: dict, items: list) -> None:
    by["qemu/100"]["mem"] = "lots"


def _lock_number(by: dict, items: list) -> None:
    by["qemu/100"]["lock"] = 1


def _node_status_missing(by: dict, items: list) -> None:
    del by["node/pve2"]["status"]


def _guest_node_missing(by: dict, items: list) -> None:
    del by["qemu/101"]["node"]


@pytest.mark.parametrize("change, field", [
    (_dup_guest, "guest qemu/100: VMID 100 is listed twice"),
    (_dup_vmid_other_kind, "guest lxc/100: VMID 100 is listed twice"),
    (_dup_node, "node 'pve3' is listed twice"),
    (_vmid_string, "entry 3 (type qemu): 'vmid' is '100' (a string), expected a VMID"),
    (_vmid_bool, "entry 3 (type qemu): 'vmid' is True (a boolean), expected a VMID"),
    (_vmid_missing, "entry 3 (type qemu): 'vmid' is missing, expected a VMID"),
    (_status_missing, "guest qemu/100: 'status' is missing, expected a string"),
    (_template_yes, "guest qemu/100: 'template' is 'yes' (a string), expected 0 or 1"),
    (_mem_string, "guest qemu/100: 'mem' is 'lots' (a string), expected a number"),
    (_lock_number, "guest qemu/100: 'lock' is 1 (a number), expected a string"),
    (_node_status_missing, "node 'pve2': 'status' is missing, expected a string"),
    (_guest_node_missing, "guest qemu/101: 'node' is missing, expected a node name"),
])
def test_cluster_resources_shapes_pve_never_sends_are_refused(fake_pve, fake_time, change,
                                                               field):
    err = refused(fake_pve, fake_time, "cluster/resources", resources_with(change))
    assert str(err).startswith(
        f"pve1.test: unexpected answer from PVE for /cluster/resources: {field}"), str(err)


# --- /cluster/ha/resources -----------------------------------------------------------------


@pytest.mark.parametrize("entry, field", [
    ({"sid": "vm:abc", "type": "vm"}, "entry 1: 'sid' is 'vm:abc' (a string), expected vm:"),
    ({"sid": 100}, "entry 1: 'sid' is 100 (a number), expected vm:<vmid> or ct:<vmid>"),
    ({"type": "vm"}, "entry 1: 'sid' is missing"),
    ({"sid": "vm:200"}, "resource 'vm:200' is listed twice"),
    ({"sid": "ct:300", "type": "vm"}, "resource 'ct:300': 'type' is 'vm' (a string)"),
    ({"sid": "vm:300", "max_restart": [1]}, "resource 'vm:300': 'max_restart' is [1]"),
    ({"sid": "vm:300", "failback": "yes"}, "resource 'vm:300': 'failback' is 'yes'"),
    ({"sid": "vm:300", "state": 1}, "resource 'vm:300': 'state' is 1 (a number)"),
])
def test_pve_ha_resources_shapes_are_checked(fake_pve, fake_time, entry, field):
    err = refused(fake_pve, fake_time, "cluster/ha/resources", [*HA_RESOURCES, entry])
    assert "/cluster/ha/resources: " + field in str(err), str(err)


def test_pve_ha_options_from_section_config_may_be_digit_strings(fake_pve, fake_time):
    fake_pve.fault("GET", "cluster/ha/resources", (200, "OK", {"data": [
        {"sid": "ct:300", "type": "ct", "max_restart": "2", "max_relocate": 0,
         "failback": "0", "comment": 42, "digest": "d"}]}))
    (r,) = make(fake_time).get_ha_resources()
    assert (r.sid, r.type, r.max_restart, r.max_relocate, r.failback, r.comment) == (
        "ct:300", "ct", 2, 0, False, "42")


# --- task status, guest status -------------------------------------------------------------


TASK = upid("pve1", "qmstart", 100, 1)


@pytest.mark.parametrize("answer, field", [
    ({"exitstatus": "OK"}, "task: 'status' is missing, expected a string"),
    ({"status": "done"}, "task: 'status' is 'done' (a string), expected 'running' or"),
    ({"status": 1}, "task: 'status' is 1 (a number), expected a string"),
    ({"status": "stopped", "exitstatus": 0}, "task: 'exitstatus' is 0 (a number)"),
    ({"status": "stopped", "upid": upid("pve1", "qmstop", 100, 7)}, "task: 'upid' is"),
    ([{"status": "stopped"}], "expected an object, got a list"),
])
def test_task_status_shapes_are_checked(fake_pve, fake_time, answer, field):
    fake_pve.fault("GET", f"nodes/pve1/tasks/{TASK}/status", (200, "OK", {"data": answer}))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).task_status(TASK)
    assert f"/nodes/pve1/tasks/{TASK}/status: {field}" in str(err.value), str(err.value)


def test_a_task_answer_with_its_own_upid_passes(fake_pve, fake_time):
    fake_pve.fault("GET", f"nodes/pve1/tasks/{TASK}/status", (200, "OK", {"data": {
        "status": "stopped", "exitstatus": "OK", "upid": TASK, "node": "pve1", "pid": 1,
        "pstart": 2, "starttime": 3, "type": "qmstart", "id": "100", "user": "pvha@pve",
        "tokenid": "ha"}}))
    assert make(fake_time).task_status(TASK).ok


@pytest.mark.parametrize("answer, field", [
    ({"qmpstatus": "running"}, "guest qemu/100: 'status' is missing, expected a string"),
    ({"status": "running", "vmid": 101}, "guest qemu/100: 'vmid' is 101 (a number)"),
    ({"status": "running", "ha": {"managed": "yes"}}, "guest qemu/100, ha: 'managed' is"),
    ({"status": "running", "ha": "managed"}, "guest qemu/100: 'ha' is 'managed'"),
    ({"status": "running", "uptime": "50"}, "guest qemu/100: 'uptime' is '50' (a string)"),
    (["running"], "expected an object, got a list"),
    (None, "expected an object, got a null"),
])
def test_guest_status_shapes_are_checked(fake_pve, fake_time, answer, field):
    path = "nodes/pve1/qemu/100/status/current"
    fake_pve.fault("GET", path, (200, "OK", {"data": answer}))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).guest_status(VM100)
    assert f"/{path}: {field}" in str(err.value), str(err.value)


def test_guest_status_as_pve_sends_it(fake_pve, fake_time):
    path = "nodes/pve1/qemu/100/status/current"
    fake_pve.fault("GET", path, (200, "OK", {"data": {
        "vmid": 100, "status": "running", "qmpstatus": "paused", "name": "web", "uptime": 9,
        "ha": {"managed": 1, "state": "started"}, "agent": 1, "pid": 1234}}))
    st = make(fake_time).guest_status(VM100)
    assert (st.status, st.qmpstatus, st.ha_managed, st.ha_state) == (
        "running", "paused", True, "started")


# --- UPIDs from guest actions ----------------------------------------------------------------


@pytest.mark.parametrize("answer, field", [
    ("garbage", "not a PVE task id: 'garbage'"),
    (12345, "expected a task id (UPID), got 12345 (a number)"),
    (None, "expected a task id (UPID), got None (a null)"),
    ({"upid": TASK}, "expected a task id (UPID), got {'upid':"),
    (TASK + "\n", "not a PVE task id"),
    (" " + TASK, "not a PVE task id"),
    (TASK[:-1], "not a PVE task id"),  # no trailing colon
    (upid("pve2", "qmstart", 100, 1), "the task id names node 'pve2', not 'pve1'"),
])
def test_a_garbage_upid_from_a_post_is_permanent_and_not_resent(fake_pve, fake_time, answer,
                                                                 field):
    fake_pve.fault("POST", "nodes/pve1/qemu/100/status/start", (200, "OK", {"data": answer}))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).post_start(VM100)
    assert ("pve1.test: unexpected answer from PVE for /nodes/pve1/qemu/100/status/start: "
            + field) in str(err.value), str(err.value)
    assert err.value.request_sent is True
    assert fake_pve.paths("POST") == ["nodes/pve1/qemu/100/status/start"]


@pytest.mark.parametrize("action", ["stop", "shutdown", "migrate", "lxc_migrate"])
def test_every_action_checks_its_upid(fake_pve, fake_time, action):
    api = make(fake_time)
    calls = {
        "stop": ("nodes/pve1/qemu/100/status/stop", lambda: api.post_stop(VM100)),
        "shutdown": ("nodes/pve1/qemu/100/status/shutdown", lambda: api.post_shutdown(VM100)),
        "migrate": ("nodes/pve1/qemu/100/migrate",
                    lambda: api.post_migrate(VM100, "pve2", online=True)),
        "lxc_migrate": ("nodes/pve2/lxc/102/migrate",
                        lambda: api.post_migrate(GuestRef("lxc", 102, "pve2"), "pve1", True)),
    }
    path, call = calls[action]
    fake_pve.fault("POST", path, (200, "OK", {"data": "UPID:pve1:garbage"}))
    with pytest.raises(ApiPermanentError, match="not a PVE task id"):
        call()


def test_a_stored_garbage_upid_is_permanent_without_a_request(fake_pve, fake_time):
    with pytest.raises(ApiPermanentError, match="not a PVE task id"):
        make(fake_time).task_status("UPID:pve1:../../x")
    assert fake_pve.calls == []


def test_an_answer_is_never_a_traceback_for_any_json(fake_pve, fake_time):
    """Whatever JSON value comes as ``data``, every read is an ApiPermanentError or a
    value, never another exception."""
    api = make(fake_time)
    reads = [api.get_cluster_status, api.get_cluster_resources, api.get_ha_resources,
             lambda: api.guest_status(VM100), lambda: api.task_status(TASK),
             lambda: api.node_status("pve1")]
    paths = ["cluster/status", "cluster/resources", "cluster/ha/resources",
             "nodes/pve1/qemu/100/status/current", f"nodes/pve1/tasks/{TASK}/status",
             "nodes/pve1/status"]
    values = [1, "x", True, [], {}, [1], [None], [[]], {"a": [1]}, [{"type": None}],
              [{"type": "node", "name": "pve1"}], [{"type": "qemu"}], {"memory": 1},
              {"loadavg": 5}, json.loads('{"status": {"x": 1}}')]
    for read, path in zip(reads, paths, strict=True):
        for value in values:
            fake_pve.fault("GET", path, (200, "OK", {"data": value}))
            try:
                read()
            except ApiPermanentError:
                pass
