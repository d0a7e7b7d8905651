"""``pvha agent`` end to end on the strict simulated cluster: the agent of node2 runs as a
real subprocess on node2's pmxcfs mount and feeds node2's watchdog-mux socket (3 s
client timeout here instead of watchdog-mux's 60 s). Waits are bounded; nothing here
asserts on speed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import E2E, REPO, running_e2e, wait_for

WATCHDOG = 3.0


@pytest.fixture
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    with running_e2e(tmp_path_factory, "agent", timing={"watchdog_seconds": WATCHDOG}) as harness:
        yield harness


class AgentProc:
    def __init__(self, e2e: E2E, node: str, socket_path: Path | None = None) -> None:
        root = e2e.fp.cfs_root(node)
        self.e2e, self.node, self.root = e2e, node, root
        self.log_path = e2e.tmp / f"agent-{node}.log"
        env = e2e.env(PVHA_CFS_ROOT=str(root), PVHA_CONFIG_DIR=str(root / "pvha"))
        sock = socket_path or e2e.fp.watchdogs.muxes[node].path
        self._fh = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pvha", "agent", "--node", node, "--watchdog-socket",
             str(sock), "--interval", "0.3", "--watchdog-timeout", str(WATCHDOG)], env=env, cwd=REPO, stdout=self._fh,
            stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "pvha" / "agent_status" / self.node).read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, timeout: float = 20) -> tuple[int, str]:
        """Exit status and everything it wrote (stdout and stderr)."""
        self.proc.wait(timeout)
        self._fh.close()
        return self.proc.returncode, self.log()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def watchdog(e2e: E2E, node: str) -> dict[str, Any]:
    return dict(e2e.ctl("status")["nodes"][node]["watchdog"])


def lease(e2e: E2E, node: str, viewer: str = "node1") -> Path:
    return e2e.fp.cfs_root(viewer) / "priv" / "lock" / f"pvha_agent_{node}"


@pytest.fixture
def agents() -> Iterator[list[AgentProc]]:
    started: list[AgentProc] = []
    yield started
    for a in started:
        a.kill()


def test_agent_holds_the_lease_and_feeds_the_watchdog(e2e: E2E, agents: list[AgentProc]) -> None:
    a = AgentProc(e2e, "node2")
    agents.append(a)
    wait_for(lambda: a.status().get("state") == "active", 20, what="agent active")
    assert watchdog(e2e, "node2")["clients"] == 1
    wait_for(lease(e2e, "node2").is_dir, 5, what="the lease seen from node1")
    assert not (e2e.fp.cfs_root("node1") / "priv" / "lock" / "ha_agent_node2_lock").exists()
    time.sleep(3 * WATCHDOG)  # fed all along: no reset
    assert watchdog(e2e, "node2")["resets"] == 0 and a.proc.poll() is None


def test_an_isolated_node_stops_feeding_and_is_reset(e2e: E2E, agents: list[AgentProc]) -> None:
    a = AgentProc(e2e, "node2")
    agents.append(a)
    wait_for(lambda: a.status().get("state") == "active", 20, what="agent active")
    e2e.ctl("network node2 off")  # no quorum: node2's cfs is read-only, renewals fail
    wait_for(lambda: watchdog(e2e, "node2")["resets"] >= 1, 4 * WATCHDOG,
             what="node2 reset by its watchdog")
    code, err = a.wait()
    assert code == 1 and "no longer feeding the watchdog" in err
    assert "Traceback" not in err


def test_kill_9_of_the_agent_resets_the_node(e2e: E2E, agents: list[AgentProc]) -> None:
    a = AgentProc(e2e, "node2")
    agents.append(a)
    wait_for(lambda: a.status().get("state") == "active", 20, what="agent active")
    a.kill()
    wait_for(lambda: watchdog(e2e, "node2")["resets"] >= 1, 4 * WATCHDOG,
             what="node2 reset after kill -9 of its agent")
    assert e2e.truth()["nodes"]["node2"]["power"] == "off" or \
        watchdog(e2e, "node2")["last_reset"] is not None


def test_a_clean_stop_disarms_and_releases_the_lease(e2e: E2E, agents: list[AgentProc]) -> None:
    a = AgentProc(e2e, "node2")
    agents.append(a)
    wait_for(lambda: a.status().get("state") == "active", 20, what="agent active")
    a.proc.send_signal(signal.SIGTERM)
    code, err = a.wait()
    assert code == 0, err
    assert a.status()["state"] == "stopped"
    assert not lease(e2e, "node2", viewer="node2").exists()
    time.sleep(2 * WATCHDOG)
    assert watchdog(e2e, "node2") | {"last_reset": None} == {
        "clients": 0, "armed": False, "resets": 0, "last_reset": None,
        "socket": str(e2e.fp.watchdogs.muxes["node2"].path)}


def test_without_a_watchdog_it_refuses_to_arm_in_one_line(e2e: E2E, agents: list[AgentProc]) -> None:
    a = AgentProc(e2e, "node2", socket_path=e2e.tmp / "no-such.sock")
    agents.append(a)
    code, err = a.wait()
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("pvha: error: no watchdog: ") and \
        "refusing to arm" in err
    assert not lease(e2e, "node2", viewer="node2").exists()


def test_on_a_plain_directory_it_refuses_to_arm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVHA_")}
    env["PVHA_SETTINGS"] = str(tmp_path / "empty.toml")
    (tmp_path / "empty.toml").touch()
    sock = tmp_path / "wd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(sock))
        res = subprocess.run([sys.executable, "-m", "pvha", "agent", "--node", "node1",
                              "--watchdog-socket", str(sock), "--cfs-root", str(tmp_path)],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
                             check=False)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "is not pmxcfs" in res.stderr, res.stderr


@pytest.fixture
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """``pvha sim serve --agents``: one pvha agent per node, renewing every 0.3 s; a reset
    node stays off (reboot after 600 s)."""
    with running_e2e(tmp_path_factory, "farm", agents=True, agent_interval=0.3,
                     timing={"watchdog_seconds": WATCHDOG, "reboot_seconds": 600}) as harness:
        yield harness


def _agents_up(e2e: E2E) -> Any:
    root = e2e.fp.cfs_root("node1") / "pvha" / "agent_status"

    def active() -> bool:
        try:
            return all(json.loads((root / n).read_text())["state"] == "active"
                       for n in e2e.fp.names)
        except (OSError, ValueError, KeyError):
            return False

    wait_for(active, 30, what="every agent active")
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    assert "fencing armed (agent lease for every node)" in e2e.pvha("status").stdout
    return w


def _recovered_after_reset(e2e: E2E, node: str) -> dict[str, float]:
    """Waits until ``node``'s guests run elsewhere; when ``node`` went off and when the
    first config left it (monotonic seconds)."""
    mine = [v for v, g in e2e.truth()["guests"].items() if g["node"] == node]
    seen: dict[str, float] = {}

    def done() -> bool:
        truth = e2e.truth()
        now = time.monotonic()
        if truth["nodes"][node]["power"] == "off":
            seen.setdefault("off", now)
        if any(truth["guests"][v]["node"] != node for v in mine):
            seen.setdefault("moved", now)
        return all(truth["guests"][v]["running_on"] not in ([], [node]) for v in mine)

    wait_for(done, 90, step=0.1, what=f"{node}'s guests running elsewhere")
    return seen


def test_an_isolated_node_self_fences_and_its_guests_recover_with_no_manual_step(
        farm: E2E) -> None:
    w = _agents_up(farm)
    farm.ctl("network node2 off")
    seen = _recovered_after_reset(farm, "node2")
    assert seen["off"] < seen["moved"], seen  # never recovered before node2 was reset
    assert farm.ctl("status")["nodes"]["node2"]["watchdog"]["resets"] == 1
    assert "fenced by lease expiry" in w.log() and "fence-ack" not in farm.pvha("history").stdout
    events = json.loads(farm.pvha("history", "--output-format", "json").stdout)
    fences = [ev for ev in events if ev.get("event") == "fence" and ev.get("node") == "node2"]
    assert [ev["outcome"] for ev in fences] == ["lease expired"], events
    assert fences[0]["detail"].startswith("agent lease not renewed for "), fences
    farm.no_split_brain()


def test_kill_9_of_an_agent_resets_its_node_and_its_guests_recover(farm: E2E) -> None:
    _agents_up(farm)
    pid = farm.ctl("status")["nodes"]["node2"]["agent"]["pid"]
    os.kill(pid, signal.SIGKILL)
    seen = _recovered_after_reset(farm, "node2")
    assert seen["off"] < seen["moved"], seen
    farm.no_split_brain()


def test_a_clean_agent_stop_causes_no_reset(farm: E2E) -> None:
    _agents_up(farm)
    agent = farm.ctl("status")["nodes"]["node2"]["agent"]
    os.kill(agent["pid"], signal.SIGTERM)
    wait_for(lambda: not farm.ctl("status")["nodes"]["node2"]["agent"]["running"], 20,
             what="agent stopped")
    time.sleep(3 * WATCHDOG)
    status = farm.ctl("status")["nodes"]["node2"]
    assert status["agent"]["exit"] == 0 and status["watchdog"]["resets"] == 0
    assert status["power"] == "on"


def test_a_cleanly_stopped_agent_gives_no_proof(farm: E2E) -> None:
    w = _agents_up(farm)
    os.kill(farm.ctl("status")["nodes"]["node2"]["agent"]["pid"], signal.SIGTERM)
    wait_for(lambda: not farm.ctl("status")["nodes"]["node2"]["agent"]["running"], 20,
             what="agent stopped")
    farm.ctl("network node2 off")
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    n = w.count(r"waiting for fence-ack")
    w.wait_log(r"waiting for fence-ack", 40, after=n + 20)  # far past the lease's time
    assert "fenced by lease expiry" not in w.log()
    assert all(g["node"] != "node2" or g["running_on"] == ["node2"]
               for g in farm.truth()["guests"].values())


@pytest.fixture
def farm4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    with running_e2e(tmp_path_factory, "farm4", nodes=4, agents=True, agent_interval=0.3,
                     timing={"watchdog_seconds": WATCHDOG, "reboot_seconds": 600}) as harness:
        yield harness


def test_a_2_plus_2_partition_recovers_nothing(farm4: E2E) -> None:
    w = _agents_up(farm4)
    where = {v: g["node"] for v, g in farm4.truth()["guests"].items()}
    farm4.ctl("partition node1,node2 node3,node4")  # no side has a majority
    wait_for(lambda: all(n["watchdog"]["resets"] >= 1
                         for n in farm4.ctl("status")["nodes"].values()), 4 * WATCHDOG + 10,
             what="every node self-fenced (no quorum anywhere)")
    time.sleep(2 * WATCHDOG)
    assert {v: g["node"] for v, g in farm4.truth()["guests"].items()} == where
    assert "recover service" not in w.log()
    farm4.no_split_brain()


def test_a_node_acknowledged_by_mistake_cannot_keep_its_guests_running_after_it_rejoins(
        farm: E2E) -> None:
    """node2's agent is stopped (no lease proof), node2 is cut off but still runs its
    guests, and an administrator acknowledges it anyway: pvha recovers them elsewhere,
    so they run twice, as they would under PVE. When node2 rejoins, its agent starts and
    stops the stale copies before it arms: no guest is left running on two nodes."""
    w = _agents_up(farm)
    mine = sorted(v for v, g in farm.truth()["guests"].items() if g["node"] == "node2")
    os.kill(farm.ctl("status")["nodes"]["node2"]["agent"]["pid"], signal.SIGTERM)
    wait_for(lambda: not farm.ctl("status")["nodes"]["node2"]["agent"]["running"], 20,
             what="node2's agent stopped")
    farm.ctl("network node2 off")
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    ack = farm.pvha("fence-ack", "node2", "--yes")
    assert ack.returncode == 0, ack.stderr
    wait_for(lambda: sorted(farm.truth()["split_brain"]) == mine, 60,
             what="node2's guests running twice (the mistaken ack)")
    farm.ctl("network node2 on")
    farm.fp.agents.start("node2")  # node2 is back; its agent's unit starts again
    wait_for(lambda: farm.truth()["split_brain"] == [], 30, what="the stale copies stopped")
    guests = farm.truth()["guests"]
    assert all(len(guests[v]["running_on"]) == 1 and guests[v]["running_on"] != ["node2"]
               for v in mine), guests
    agent_log = (farm.fp.cfs_root("node2").parent / "agent.log").read_text()
    assert agent_log.count("stale copy of ") == len(mine), agent_log
    events = json.loads(farm.pvha("history", "--output-format", "json").stdout)
    stale = sorted(ev["sid"] for ev in events if ev["event"] == "stale-copy")
    assert stale == sorted(f"vm:{v}" for v in mine), events
    assert "its agent stopped stale copies of" in farm.pvha("status").stdout


def _node_guests(e2e: E2E, node: str) -> list[str]:
    return sorted(v for v, g in e2e.truth()["guests"].items() if g["node"] == node)


def _set_policy(e2e: E2E, policy: str) -> None:
    """As an administrator does it (Datacenter -> Options -> HA Settings): PVE's own
    datacenter.cfg, which the watcher reads through its mount."""
    (e2e.fp.cfs_root("node1") / "datacenter.cfg").write_text(
        f"keyboard: en-us\nha: shutdown_policy={policy}\n")


def _powered_off(e2e: E2E, node: str, timeout: float = 60) -> dict[str, Any]:
    """Waits for ``node`` to lose power; the truth at the first look after that."""
    seen: dict[str, Any] = {}

    def off() -> bool:
        truth = e2e.truth()
        if truth["nodes"][node]["power"] == "off":
            seen.update(truth)
            return True
        return False

    wait_for(off, timeout, step=0.1, what=f"{node} powered off")
    return seen


def test_a_node_shutdown_with_policy_migrate_moves_its_guests_away_before_the_power_goes(
        farm: E2E) -> None:
    _set_policy(farm, "migrate")
    w = _agents_up(farm)
    mine = _node_guests(farm, "node2")
    farm.ctl("shutdown node2")
    assert farm.ctl("status")["nodes"]["node2"]["shutting_down"] == "shutdown"
    truth = _powered_off(farm, "node2")
    for v in mine:  # already running elsewhere when node2 went off: migrated, not recovered
        g = truth["guests"][v]
        assert g["node"] != "node2" and g["running_on"] == [g["node"]], truth["guests"]
    agent_log = (farm.fp.cfs_root("node2").parent / "agent.log").read_text()
    assert "shutdown policy applied by the manager (mode 'maintenance')" in agent_log
    assert "node shutdown" in agent_log and "Traceback" not in agent_log
    status = farm.ctl("status")["nodes"]["node2"]
    assert status["watchdog"]["resets"] == 0 and status["agent"]["exit"] == 0
    time.sleep(3 * WATCHDOG)  # node2 stays off: it is in maintenance, nothing is fenced
    assert "fenc" not in farm.pvha("history").stdout.lower()
    assert "recover service" not in w.log()
    assert "node2" in w.log() and "shutdown policy applied (mode 'maintenance')" in w.log()
    farm.no_split_brain()


def test_a_node_shutdown_with_policy_conditional_stops_its_guests_and_waits_for_a_fence_ack(
        farm: E2E) -> None:
    w = _agents_up(farm)  # no datacenter.cfg: PVE's default, conditional
    mine = _node_guests(farm, "node2")
    farm.ctl("shutdown node2")
    truth = _powered_off(farm, "node2")
    assert all(truth["guests"][v]["running_on"] == [] for v in mine), truth["guests"]
    assert "shutdown policy applied (mode 'shutdown')" in w.log()
    # the agent stopped cleanly: it proves nothing, so only an acknowledgement fences
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    status = farm.pvha("status").stdout
    assert "fence-ack only (agent stopped for node shutdown)" in status, status
    assert all(farm.truth()["guests"][v]["node"] == "node2" for v in mine)
    assert farm.ctl("status")["nodes"]["node2"]["watchdog"]["resets"] == 0
    ack = farm.pvha("fence-ack", "node2", "--yes")
    assert ack.returncode == 0, ack.stderr
    wait_for(lambda: all(farm.truth()["guests"][v]["running_on"] not in ([], ["node2"])
                         for v in mine), 60, what="node2's guests recovered after the ack")
    farm.no_split_brain()


@pytest.fixture
def farm_reboot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """As ``farm``, with nodes that come back 4 s after a reset or reboot."""
    with running_e2e(tmp_path_factory, "farm-reboot", agents=True, agent_interval=0.3,
                     timing={"watchdog_seconds": WATCHDOG, "reboot_seconds": 4}) as harness:
        yield harness


def test_a_reboot_with_policy_conditional_freezes_its_guests_and_starts_them_there_again(
        farm_reboot: E2E) -> None:
    farm = farm_reboot
    w = _agents_up(farm)
    mine = _node_guests(farm, "node2")
    farm.ctl("reboot node2")
    elsewhere: list[str] = []
    stopped_before_off: list[bool] = []

    def back() -> bool:
        truth = farm.truth()
        elsewhere.extend(v for v in mine if truth["guests"][v]["node"] != "node2" or
                         truth["guests"][v]["running_on"] not in ([], ["node2"]))
        if truth["nodes"]["node2"]["power"] == "off" and not stopped_before_off:
            stopped_before_off.append(all(truth["guests"][v]["running_on"] == [] for v in mine))
        return bool(stopped_before_off) and all(
            truth["guests"][v]["running_on"] == ["node2"] for v in mine)

    wait_for(back, 90, step=0.1, what="node2 rebooted and its guests running there again")
    assert stopped_before_off == [True] and elsewhere == []
    assert "shutdown policy applied (mode 'restart')" in w.log()
    assert "recover service" not in w.log() and "fenc" not in farm.pvha("history").stdout.lower()
    assert farm.ctl("status")["nodes"]["node2"]["agent"]["starts"] == 2
    farm.no_split_brain()
