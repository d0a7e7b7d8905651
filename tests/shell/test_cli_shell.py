"""CLI commands of the shell: ``fence-ack``, ``add`` refusing PVE-HA guests, live
``status``, ``watch --once``; the cluster is a FakeApi view patched in for the API."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pvha.cli.app import app
from pvha.shell import live
from pvha.shell.loop import Watcher
from pvha.shell.snapshot import view_of
from tests.shell.fakes import FakeApi, make_cluster, new_cfs


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    api, cfs, _clock = make_cluster(tmp_path)
    api.add_guest(100, "node1", running=True)
    api.add_guest(101, "node2", running=True)
    api.pve_ha = {"vm:101"}
    monkeypatch.setattr(live, "live_view", lambda settings: view_of(api.snapshot()))
    monkeypatch.setattr(live, "api_for", lambda settings: api)
    monkeypatch.setenv("PVHA_CONFIG_DIR", str(cfs.config_dir))
    monkeypatch.delenv("PVHA_SETTINGS", raising=False)
    return api


def run(*args: str) -> object:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "120"})


def test_add_refuses_a_guest_pve_ha_manages(api: FakeApi) -> None:
    res = run("add", "vm:101")
    assert res.exit_code == 2, res.output
    assert "managed by PVE's own HA" in res.output
    res = run("add", "vm:100")
    assert res.exit_code == 0, res.output


def test_add_without_an_api_configured_does_not_ask(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PVHA_HOSTS", "PVHA_SETTINGS"):
        monkeypatch.delenv(var, raising=False)
    res = CliRunner().invoke(app, ["--config-dir", str(tmp_path), "add", "vm:100"])
    assert res.exit_code == 0, res.output


def test_fence_ack_refuses_an_online_node_and_records_an_offline_one(api: FakeApi) -> None:
    res = run("fence-ack", "node2", "--yes")
    assert res.exit_code == 2, res.output
    assert "online" in res.output
    api.power["node2"] = False
    res = run("fence-ack", "node2")  # not a terminal: no confirmation, no record
    assert res.exit_code == 2 and "can corrupt their disks; confirm with --yes" in res.output
    assert not (api.root / "pvha" / "fence" / "node2").exists()
    res = run("fence-ack", "node2", "--yes")
    assert res.exit_code == 0, res.output
    assert "acknowledged, not verified" in res.output
    record = json.loads((api.root / "pvha" / "fence" / "node2").read_text())
    assert record["node"] == "node2" and record["acked_at"] > 0
    assert run("fence-ack", "node9", "--yes").exit_code == 2


def test_fence_ack_refuses_a_node_that_still_answers_or_an_unknown_state(
        api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.power["node2"] = False
    monkeypatch.setattr(api, "node_status", lambda node: None)  # it answers after all
    res = run("fence-ack", "node2", "--yes")
    assert res.exit_code == 2 and "still answers its API" in res.output, res.output
    monkeypatch.setattr(live, "api_for", lambda settings: None)
    res = run("fence-ack", "node2", "--yes")
    assert res.exit_code == 2 and "no API configured" in res.output, res.output
    assert res.output.count("\n") == 1
    assert not (api.root / "pvha" / "fence").exists()


def test_fence_ack_refuses_while_an_armed_agent_renews_its_lease(
        api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVHA_CFS_ROOT", str(api.root))
    api.power["node2"] = False
    lease = api.root / "priv" / "lock" / "pvha_agent_node2"
    lease.mkdir(parents=True)
    status = api.root / "pvha" / "agent_status" / "node2"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"state": "active", "fence_after": 70, "interval": 5}))
    res = run("fence-ack", "node2", "--yes")
    assert res.exit_code == 2 and "has an armed agent" in res.output, res.output
    old = time.time() - 200  # its watchdog has reset it long ago: the ack is allowed
    os.utime(lease, (old, old))
    assert run("fence-ack", "node2", "--yes").exit_code == 0


def test_fence_ack_creates_nothing_outside_the_configured_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "etc" / "pve" / "pvha"
    monkeypatch.setenv("PVHA_CONFIG_DIR", str(missing))
    monkeypatch.delenv("PVHA_SETTINGS", raising=False)
    res = run("fence-ack", "node2", "--yes")
    assert res.exit_code == 2 and "no pvha configuration at" in res.output, res.output
    assert not (tmp_path / "etc").exists()


def test_status_shows_the_live_quorum_and_exits_as_a_health_check(api: FakeApi) -> None:
    res = run("status", "--output-format", "json")
    assert res.exit_code == 3, res.output  # quorate, but no manager has run yet
    entries = json.loads(res.output)
    assert entries[0] == {"id": "quorum", "type": "quorum", "node": "node1", "status": "OK",
                          "quorate": 1}
    assert run("add", "vm:100").exit_code == 0
    api.clock.now = time.time()  # status compares the manager's timestamp with real time
    Watcher(api, new_cfs(api), api.clock).safe_round()
    res = run("status")
    assert res.exit_code == 0, res.output
    assert "master node1 (active, " in res.output
    api.quorate_override = False
    res = run("status")
    assert res.output.startswith("quorum No quorum on node 'node1'!\n"), res.output
    assert res.exit_code == 4, res.output
