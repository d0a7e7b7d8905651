"""``pvha status`` through the real adapters against the fake PVE: quorum only from the
API, an API failure is a failure, the exit status is a health check, and what a real
``pvha watch`` leaves behind (a run, a clean stop) reads as it should. No timed
assertions: waits are bounded only so a broken build cannot hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakepve_helpers import ctl, wait_for
from typer.testing import CliRunner, Result

from pvha.cli.app import app
from pvha.fakepve.server import FakePve
from pvha.status import (
    EXIT_API_FAILED,
    EXIT_NO_MANAGER,
    EXIT_NO_QUORUM,
    EXIT_OK,
    perl_localtime,
)

REPO = Path(__file__).resolve().parents[2]


class Cluster:
    """A fake PVE and the ``PVHA_*`` environment of an administrator's shell for it."""

    def __init__(self, fp: FakePve, tmp: Path) -> None:
        self.fp = fp
        self.config_dir = fp.cfs_root() / "pvha"
        settings = tmp / "empty-settings.toml"
        settings.touch()
        self.env = {
            "PVHA_HOSTS": fp.hosts[0], "PVHA_PORT": str(fp.port), "PVHA_USER": "root@pam",
            "PVHA_CA_FILE": str(fp.state / "ca.pem"), "PVHA_CFS_ROOT": str(fp.cfs_root()),
            "PVHA_CONFIG_DIR": str(self.config_dir), "PVHA_SETTINGS": str(settings),
            "PVHA_TOKEN_NAME": "pvha", "PVHA_TOKEN_SECRET_FILE": str(fp.state / "token"),
            "PVHA_ROUND_INTERVAL": "1", "PVHA_ATTEMPTS": "1", "PVHA_CONNECT_TIMEOUT": "2",
        }

    def _process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PVHA_")}
        return {**env, **self.env, "PYTHONUNBUFFERED": "1"}

    def watch_once(self) -> None:
        """One real ``pvha watch --once`` round (takes the lock, writes the status)."""
        res = subprocess.run([sys.executable, "-m", "pvha", "watch", "--once"],
                             env=self._process_env(), cwd=REPO, capture_output=True,
                             text=True, timeout=120, check=False)
        assert res.returncode == 0, res.stderr

    def status(self, *args: str, **env: str) -> Result:
        """``pvha status`` in this process, the real API adapters underneath."""
        runner = CliRunner()
        merged: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PVHA_")}
        merged.update({**self.env, **env, "COLUMNS": "200"})
        return runner.invoke(app, ["status", *args], env=merged)

    def manager_status(self) -> dict[str, Any]:
        try:
            data = json.loads((self.config_dir / "manager_status").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def edit_manager_status(self, edit: Callable[[dict[str, Any]], None]) -> None:
        ms = self.manager_status()
        edit(ms)
        (self.config_dir / "manager_status").write_text(json.dumps(ms))


@pytest.fixture
def cluster(fake_factory: Callable[..., FakePve], tmp_path: Path) -> Cluster:
    return Cluster(fake_factory(nodes=3, guests=4), tmp_path)


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    """A cluster after one real round of ``pvha watch``."""
    cluster.watch_once()
    return cluster


def test_healthy_run_exits_zero(running: Cluster) -> None:
    res = running.status()
    assert res.exit_code == EXIT_OK, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "quorum OK"
    assert lines[1].startswith("master node1 (active, ")
    assert lines[2] == "fencing armed (fence-ack only for every node)"
    assert [ln.split(" (")[0] for ln in lines[3:6]] == ["lrm node1", "lrm node2", "lrm node3"]
    assert all(", fence-ack only, " in ln for ln in lines[3:6]), lines
    assert sum(ln.startswith("service ") for ln in lines) == 4
    assert "watchdog" not in res.stdout and res.stderr == ""
    rows = {r["id"]: r for r in json.loads(running.status("--output-format", "json").stdout)}
    assert rows["quorum"]["quorate"] == 1 and rows["master"]["running"] == 1


def test_wrong_token_is_a_failure_without_a_quorum_claim(running: Cluster,
                                                         tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("00000000-0000-4000-8000-000000000000\n")
    res = running.status(PVHA_TOKEN_SECRET_FILE=str(wrong))
    assert res.exit_code == EXIT_API_FAILED, res.output
    assert "quorum OK" not in res.stdout
    assert res.stdout.splitlines()[0] == "quorum unknown (cluster API failed)"
    assert res.stdout.splitlines()[1].startswith("master node1 (active, ")  # the files' story
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "cluster API failed" in res.stderr and "401" in res.stderr
    assert "00000000-0000" not in res.output
    rows = json.loads(running.status("--output-format", "json",
                                     PVHA_TOKEN_SECRET_FILE=str(wrong)).stdout)
    assert rows[0]["quorate"] is None


def test_unreachable_api_is_a_failure(running: Cluster) -> None:
    ctl(running.fp, "power node1 off")  # the only API host given
    res = running.status()
    assert res.exit_code == EXIT_API_FAILED, res.output
    assert "quorum OK" not in res.stdout
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "cluster API failed" in res.stderr and running.fp.hosts[0] in res.stderr
    # with a second host that answers, HA is fine and the dead host is still mentioned
    both = running.status(PVHA_HOSTS=",".join(running.fp.hosts[:2]))
    assert both.exit_code == EXIT_OK, both.output
    assert both.stdout.startswith("quorum OK\n")
    assert "API host failed, another one answered" in both.stderr


def test_no_quorum_through_the_api(running: Cluster) -> None:
    ctl(running.fp, "partition node1 node2,node3")
    res = running.status()
    assert res.exit_code == EXIT_NO_QUORUM, res.output
    assert res.stdout.startswith("quorum No quorum on node 'node1'!\n"), res.stdout


def test_a_stopped_manager_is_no_manager(running: Cluster) -> None:
    stopped_at = running.manager_status()["timestamp"] + 0.5
    running.edit_manager_status(
        lambda ms: ms.setdefault("pvha", {}).update(stopped_at=stopped_at))
    res = running.status()
    assert res.exit_code == EXIT_NO_MANAGER, res.output
    lines = res.stdout.splitlines()
    assert lines[:3] == [
        "quorum OK",
        f"master node1 (no pvha manager running since {perl_localtime(stopped_at)})",
        "fencing standby (fence-ack only for every node)",
    ]
    assert all("(executor not running, fence-ack only, " in ln for ln in lines[3:6]), lines
    assert "dead?" not in res.stdout


def test_a_manager_whose_last_round_is_old_is_no_manager(running: Cluster) -> None:
    old = running.manager_status()["timestamp"] - 3600

    def age(ms: dict[str, Any]) -> None:
        ms["timestamp"] = old
        ms.get("pvha", {}).pop("stopped_at", None)

    running.edit_manager_status(age)
    res = running.status()
    assert res.exit_code == EXIT_NO_MANAGER, res.output
    assert res.stdout.splitlines()[1] == (
        f"master node1 (no pvha manager running since {perl_localtime(old)})")


@pytest.fixture
def watcher(cluster: Cluster) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "pvha", "watch"], env=cluster._process_env(),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_real_watch_then_a_clean_stop(cluster: Cluster,
                                        watcher: subprocess.Popen[bytes]) -> None:
    wait_for(lambda: cluster.manager_status().get("service_status"), 60)
    assert cluster.status().exit_code == EXIT_OK
    watcher.send_signal(signal.SIGTERM)
    assert watcher.wait(30) == 0
    res = cluster.status()
    assert res.exit_code == EXIT_NO_MANAGER, res.output
    assert res.stdout.splitlines()[1].startswith("master node1 (no pvha manager running since ")


def test_one_bad_section_is_degraded_not_down(running: Cluster) -> None:
    path = running.config_dir / "resources.cfg"
    text = path.read_text()
    assert "vm: 101\n" in text
    path.write_text(text.replace("vm: 101\n", "vm: 101\n\tmax_restart lots\n"))
    line = text.splitlines().index("vm: 101") + 2
    res = running.status()
    assert res.exit_code == EXIT_OK, res.output  # readable and running: degraded, operating
    degraded = [ln for ln in res.stdout.splitlines() if ln.startswith("HA degraded: ")]
    assert degraded == [(f"HA degraded: resources.cfg:{line}: section 'vm:101' skipped: "
                         "invalid 'max_restart': type check ('integer') failed - got 'lots'")]
    services = [ln for ln in res.stdout.splitlines() if ln.startswith("service ")]
    assert "service vm:101 (node2, config invalid)" in services
    assert len(services) == 4


def test_fence_devices_of_the_simulator_s_bmcs(fake_factory: Callable[..., FakePve],
                                               tmp_path: Path) -> None:
    cluster = Cluster(fake_factory(nodes=3, guests=2, bmc="redfish"), tmp_path)
    cluster.watch_once()
    res = cluster.status()
    assert res.exit_code == EXIT_OK, res.output
    lines = res.stdout.splitlines()
    assert lines[2] == "fencing armed (fence device redfish for every node)"
    assert all(", fence device redfish, " in ln for ln in lines[3:6]), lines
    assert "password" not in res.output
