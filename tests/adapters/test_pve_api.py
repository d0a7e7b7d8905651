"""PveApi: typed reads, guest actions posted (never waited for), task status, snapshot."""

from __future__ import annotations

from collections import deque

import pytest
from pve_fake import FakeTime, api_settings, upid, version

from pvha.adapters.pve_api import PveApi, parse_cluster_status, parse_upid
from pvha.adapters.pve_client import PveClient
from pvha.errors import ApiPermanentError, ApiTransientError
from pvha.ports import ClusterReads, GuestActions, GuestRef

VM100 = GuestRef("qemu", 100, "pve1")
CT102 = GuestRef("lxc", 102, "pve2")


def make(fake_time: FakeTime, **over: object) -> PveApi:
    client = PveClient(api_settings(**over), monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    return PveApi(client, clock=fake_time.time)


def test_implements_the_ports(fake_pve, fake_time):
    api = make(fake_time)
    assert isinstance(api, ClusterReads) and isinstance(api, GuestActions)


# --- reads -------------------------------------------------------------------------------------


def test_cluster_status_quorum_and_per_node_online(fake_pve, fake_time):
    st = make(fake_time).get_cluster_status()
    assert (st.cluster_name, st.quorate, st.node_count, st.config_version) == ("lab", True, 3, 4)
    assert [n.name for n in st.nodes] == ["pve1", "pve2", "pve3"]  # sorted, not hash order
    assert st.online_nodes == ("pve1", "pve2")
    assert st.local_node == "pve1"
    assert st.nodes[2].ip == "192.0.2.13"  # offline nodes keep their last ip


def test_standalone_node_has_no_cluster_entry():
    st = parse_cluster_status([{"type": "node", "name": "solo", "nodeid": 0, "online": 1,
                                "local": 1, "ip": "10.0.0.1", "level": ""}])
    assert st.standalone and st.quorate and st.local_node == "solo" and st.node_count == 1


def test_minority_view_is_not_quorate():
    st = parse_cluster_status([
        {"type": "cluster", "name": "lab", "nodes": 3, "quorate": 0, "version": 4},
        {"type": "node", "name": "pve3", "nodeid": 3, "online": 1, "local": 1},
        {"type": "node", "name": "pve1", "nodeid": 1, "online": 0, "local": 0},
    ])
    assert not st.quorate and st.online_nodes == ("pve3",)


def test_cluster_resources_guests_nodes_and_stale_status(fake_pve, fake_time):
    res = make(fake_time).get_cluster_resources()
    assert [(n.node, n.status) for n in res.nodes] == [
        ("pve1", "online"), ("pve2", "online"), ("pve3", "offline")]
    web, db, ct = res.guests
    assert (web.sid, web.node, web.status, web.status_stale) == ("vm:100", "pve1", "running", False)
    assert web.name == "web" and web.tags == ("prod", "web") and web.maxmem == 2147483648
    # pve3 is dead: its guests still show PVE's last status, flagged as stale
    assert (db.sid, db.status, db.status_stale) == ("vm:101", "running", True)
    assert (ct.sid, ct.kind, ct.status, ct.name, ct.lock) == (
        "ct:102", "lxc", "unknown", None, "backup")
    assert ct.status_stale and ct.ref == GuestRef("lxc", 102, "pve3")


def test_pve_ha_resources(fake_pve, fake_time):
    (r,) = make(fake_time).get_ha_resources()
    assert (r.sid, r.vmid, r.type, r.state, r.max_restart, r.failback) == (
        "vm:200", 200, "vm", "started", 2, False)
    assert r.max_relocate is None  # not set in resources.cfg: PVE leaves it out


def test_guest_status_current(fake_pve, fake_time):
    st = make(fake_time).guest_status(VM100)
    assert (st.status, st.qmpstatus, st.ha_managed, st.ref) == ("running", "running", False, VM100)
    assert fake_pve.paths() == ["nodes/pve1/qemu/100/status/current"]


def test_snapshot_reads_three_endpoints_from_one_host(fake_pve, fake_time):
    snap = make(fake_time).snapshot()
    assert fake_pve.paths() == ["cluster/status", "cluster/resources", "cluster/ha/resources"]
    assert snap.api_host == "pve1.test" and snap.taken_at == fake_time.now
    assert snap.status.quorate and len(snap.resources.guests) == 3
    assert snap.pve_ha_resources[0].sid == "vm:200"


def test_snapshot_is_read_again_after_a_failover_midway(fake_pve, fake_time):
    api = make(fake_time)
    fake_pve.fault("GET", "cluster/resources", (0, "", __import__("requests").exceptions
                                                .SSLError("pin mismatch")))
    snap = api.snapshot()
    assert snap.api_host == "pve2.test"
    hosts = [(c.host, c.path) for c in fake_pve.calls]
    assert hosts[-3:] == [("pve2.test", "cluster/status"), ("pve2.test", "cluster/resources"),
                          ("pve2.test", "cluster/ha/resources")]


def test_node_names_are_validated_before_building_paths(fake_pve, fake_time):
    with pytest.raises(ValueError):
        make(fake_time).get_node_status("../../access")
    assert fake_pve.calls == []


# --- actions and tasks ----------------------------------------------------------------------


def test_start_only_posts_and_the_task_is_asked_of_the_upid_node(fake_pve, fake_time):
    task = upid("pve1", "qmstart", 100, 1)
    fake_pve.tasks[task] = deque([{"status": "running"}, {"status": "stopped", "exitstatus": "OK"}])
    api = make(fake_time)
    assert api.post_start(VM100) == task
    assert fake_pve.paths() == ["nodes/pve1/qemu/100/status/start"]  # nothing waited for
    first = api.task_status(task)
    assert (first.upid, first.node, first.type, first.running, first.ok) == (
        task, "pve1", "qmstart", True, False)
    done = api.task_status(task)
    assert (done.running, done.exitstatus, done.ok) == (False, "OK", True)
    assert fake_pve.paths()[1:] == [f"nodes/pve1/tasks/{task}/status"] * 2
    assert fake_time.sleeps == []


def test_failed_task_carries_pve_exit_status(fake_pve, fake_time):
    task = upid("pve1", "qmstart", 100, 1)
    fake_pve.tasks[task] = deque([{"status": "stopped", "exitstatus": "VM 100 already running"}])
    api = make(fake_time)
    st = api.task_status(api.post_start(VM100))
    assert (st.running, st.ok, st.exitstatus) == (False, False, "VM 100 already running")


def test_warnings_count_as_success(fake_pve, fake_time):
    task = upid("pve2", "vzmigrate", 102, 1)
    fake_pve.tasks[task] = deque([{"status": "stopped", "exitstatus": "WARNINGS: 2"}])
    api = make(fake_time)
    st = api.task_status(api.post_migrate(CT102, "pve1", online=True))
    assert st.ok and st.exitstatus == "WARNINGS: 2"
    assert fake_pve.calls[0].params == {"target": "pve1", "restart": "1"}


def test_a_task_without_exit_status_ended_unexpectedly(fake_pve, fake_time):
    task = upid("pve1", "qmshutdown", 100, 1)
    fake_pve.tasks[task] = deque([{"status": "stopped"}])
    st = make(fake_time).task_status(task)
    assert (st.running, st.ok, st.exitstatus) == (False, False, "unexpected status")


def test_qemu_offline_migration_and_stop(fake_pve, fake_time):
    api = make(fake_time)
    assert parse_upid(api.post_migrate(VM100, "pve2", online=False)).type == "qmigrate"
    assert parse_upid(api.post_stop(VM100, timeout=10)).type == "qmstop"
    assert parse_upid(api.post_stop(CT102)).type == "vzstop"
    posts = [(c.path, c.params) for c in fake_pve.calls if c.method == "POST"]
    assert posts == [("nodes/pve1/qemu/100/migrate", {"target": "pve2", "online": "0"}),
                     ("nodes/pve1/qemu/100/status/stop", {"timeout": "10"}),
                     ("nodes/pve2/lxc/102/status/stop", {})]


def test_action_on_a_dead_node_is_transient(fake_pve, fake_time):
    with pytest.raises(ApiTransientError) as err:
        make(fake_time).post_start(GuestRef("qemu", 101, "pve3"))
    assert err.value.pve_message == "No route to host"


def test_upid_parsing():
    u = parse_upid("UPID:pve-nd03:0001D301:15925672:69E05EBF:qmigrate:802:admin01@pve:")
    assert (u.node, u.pid, u.type, u.id, u.user) == ("pve-nd03", 0x1D301, "qmigrate", "802",
                                                     "admin01@pve")
    assert parse_upid("UPID:n1:00000001:123456789:69E05EBF:vzdump::root@pam!pvha:").id == ""
    for bad in ("UPID:n1:1:2:3:x:y:z", "garbage", "UPID:n1:00000001:12345678:69E05EBF:t:1:u"):
        with pytest.raises(ApiPermanentError):
            parse_upid(bad)


def test_from_settings_builds_a_working_adapter(fake_pve, fake_time):
    api = PveApi.from_settings(api_settings(), monotonic=fake_time.monotonic,
                               sleep=fake_time.sleep, clock=fake_time.time)
    assert version(api)["release"] == "9.2" and api.snapshot().taken_at == fake_time.now


def test_build_real_adapters_share_one_clock(tmp_path, fake_pve, fake_time):
    from pvha.adapters import SystemClock, build_real_adapters
    from pvha.ports import Clock, ClusterFilesystem
    from pvha.settings import CfsSettings, Settings

    settings = Settings(api=api_settings(), cfs=CfsSettings(root=tmp_path))
    api, cfs, clock = build_real_adapters(settings, clock=fake_time)
    assert isinstance(cfs, ClusterFilesystem) and cfs.config_dir == tmp_path / "pvha"
    assert api.snapshot().taken_at == fake_time.now and clock is fake_time
    assert cfs.acquire_lock("x") and (tmp_path / "priv/lock/x").stat().st_mtime == fake_time.now
    assert isinstance(SystemClock(), Clock)


def test_malformed_answers_are_api_errors_not_crashes(fake_pve, fake_time):
    fake_pve.fault("GET", "cluster/resources",
                   (200, "OK", {"data": [{"type": "qemu", "node": "pve1"}]}))  # no vmid
    with pytest.raises(ApiPermanentError, match="unexpected answer.*cluster/resources"):
        make(fake_time).get_cluster_resources()
    fake_pve.fault("GET", "cluster/status", (200, "OK", {"data": {"not": "a list"}}))
    with pytest.raises(ApiPermanentError):
        make(fake_time).get_cluster_status()


# --- guest agent ping (guest health, a pvha extension) ---------------------------------------


def test_agent_ping_posts_once_and_returns_when_the_agent_answered(fake_pve, fake_time):
    assert make(fake_time).agent_ping(VM100) is None
    assert [(c.method, c.path, c.params) for c in fake_pve.calls] == [
        ("POST", "nodes/pve1/qemu/100/agent/ping", {})]


@pytest.mark.parametrize("message", ["QEMU guest agent is not running",
                                     "No QEMU guest agent configured", "VM 100 not running"])
def test_agent_ping_refusals_carry_pves_text_and_are_not_retried(fake_pve, fake_time, message):
    fake_pve.fault("POST", "nodes/pve1/qemu/100/agent/ping",
                   (500, message, {"data": None, "message": message + "\n"}))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).agent_ping(VM100)
    assert err.value.pve_message == message
    assert len(fake_pve.paths("POST")) == 1 and fake_time.sleeps == []


def test_agent_ping_answer_that_is_not_an_object_with_result_is_refused(fake_pve, fake_time):
    fake_pve.fault("POST", "nodes/pve1/qemu/100/agent/ping", (200, "OK", {"data": "pong"}))
    with pytest.raises(ApiPermanentError, match=r"agent/ping: expected an object with 'result'"):
        make(fake_time).agent_ping(VM100)


def test_agent_ping_of_a_container_is_refused_before_any_request(fake_pve, fake_time):
    with pytest.raises(ValueError, match="no QEMU guest agent"):
        make(fake_time).agent_ping(CT102)
    assert fake_pve.calls == []


def test_agent_ping_to_a_dead_node_is_transient(fake_pve, fake_time):
    with pytest.raises(ApiTransientError):
        make(fake_time).agent_ping(GuestRef("qemu", 101, "pve3"))
