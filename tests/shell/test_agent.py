"""The agent's steps with hand-made parts: a watchdog that records feeds, guest
processes that can refuse to die, a cluster filesystem in a directory (pmxcfs rules are
covered end to end in tests/e2e/test_agent_e2e.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from pvha.adapters.cfs import ClusterFs
from pvha.adapters.guestprocs import GuestProc
from pvha.shell.agent import Agent


class Watchdog:
    def __init__(self) -> None:
        self.feeds = 0
        self.closed: bool | None = None

    def feed(self) -> None:
        self.feeds += 1

    def dropped(self) -> bool:
        return False

    def close(self, clean: bool = True) -> None:
        self.closed = clean


class Guests:
    def __init__(self, procs: list[GuestProc], killable: bool) -> None:
        self.procs, self.killable, self.kills = procs, killable, 0

    def running(self) -> list[GuestProc]:
        return list(self.procs)

    def kill(self, proc: GuestProc) -> bool:
        self.kills += 1
        if self.killable:
            self.procs.remove(proc)
        return self.killable


def _agent(tmp_path: Path, guests: Guests) -> tuple[Agent, Watchdog, ClusterFs]:
    cfs = ClusterFs(tmp_path, pmxcfs=True)
    (tmp_path / "pvha").mkdir()
    (tmp_path / "pvha" / "resources.cfg").write_text("vm: 101\n\tstate started\n\n")
    for node in ("node1", "node2"):
        (tmp_path / "nodes" / node / "qemu-server").mkdir(parents=True)
    (tmp_path / "nodes" / "node1" / "qemu-server" / "101.conf").write_text("memory: 512\n")
    (tmp_path / "nodes" / "node2" / "qemu-server" / "102.conf").write_text("memory: 512\n")
    wd = Watchdog()
    agent = Agent(cfs, "node2", tmp_path / "wd.sock", guests=guests,  # type: ignore[arg-type]
                  connect=lambda path: wd)  # type: ignore[arg-type,return-value]
    return agent, wd, cfs


def _status(cfs: ClusterFs) -> dict[str, Any]:
    return json.loads((cfs.config_dir / "agent_status" / "node2").read_text())


def test_a_stale_copy_is_killed_before_the_first_feed(tmp_path: Path) -> None:
    stale, own = GuestProc("qemu", 101, 11), GuestProc("qemu", 102, 12)
    guests = Guests([stale, own], killable=True)
    agent, wd, cfs = _agent(tmp_path, guests)
    agent.step()
    assert guests.procs == [own] and wd.feeds == 1  # vm:102 is not HA and its config is here
    assert _status(cfs)["stale_stopped"] == ["vm:101"] and _status(cfs)["stale_running"] == []
    history = (cfs.config_dir / "history.d" / "node2.jsonl").read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in history] == ["stopped"]


def test_a_copy_that_cannot_be_killed_is_reported_once_and_blocks_its_node(
        tmp_path: Path) -> None:
    guests = Guests([GuestProc("qemu", 101, 11)], killable=False)
    agent, wd, cfs = _agent(tmp_path, guests)
    for _ in range(3):
        agent.step()
    assert guests.kills == 3 and _status(cfs)["stale_running"] == ["vm:101"]
    history = (cfs.config_dir / "history.d" / "node2.jsonl").read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in history] == ["kill failed"]
    guests.procs.clear()  # gone at last
    agent.step()
    assert _status(cfs)["stale_running"] == []
    agent.stop()
    agent._shutdown()
    assert wd.closed is True and _status(cfs)["state"] == "stopped"
    assert not (cfs.lock_dir / "pvha_agent_node2").exists()


class Manager:
    """The manager's side of a shutdown request: marks it done in the executor status
    once the agent asked (as pvha.shell.executor does), with ``errors`` guests that did
    not stop; ``None``: no manager answers."""

    def __init__(self, cfs: ClusterFs, errors: int | None) -> None:
        self.cfs, self.errors = cfs, errors
        self.seen: dict[str, Any] | None = None

    def __call__(self) -> None:
        status = _status(self.cfs)
        if status["state"] == "shutting-down" and self.errors is not None:
            self.seen = dict(status)
            self.cfs.write_executor_status("node2", {"mode": "shutdown", "pvha": {
                "shutdown_done": {"request": status["request"], "mode": "shutdown",
                                  "errors": self.errors}}})


def _shut_down(tmp_path: Path, errors: int | None, probe: tuple[bool, bool] = (True, False),
               timeout: float = 30.0) -> tuple[Agent, Watchdog, ClusterFs, Manager, int]:
    agent, wd, cfs = _agent(tmp_path, Guests([], killable=True))
    manager = Manager(cfs, errors)
    agent._probe = lambda: probe
    agent.shutdown_timeout, agent.interval = timeout, 0.05
    real_step = agent.step

    def step() -> None:  # the signal arrives once the agent is armed
        real_step()
        manager()
        agent.stop()

    agent.step = step  # type: ignore[method-assign]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "wd.sock"))
        code = agent.run()
    return agent, wd, cfs, manager, code


def test_a_node_shutdown_waits_for_the_manager_then_disarms(tmp_path: Path) -> None:
    agent, wd, cfs, manager, code = _shut_down(tmp_path, errors=0)
    assert code == 0 and manager.seen["shutdown"] == "shutdown"
    assert manager.seen["request"] == agent.request and wd.closed is True
    assert _status(cfs)["state"] == "stopped" and _status(cfs)["shutdown"] == "shutdown"
    assert not (cfs.lock_dir / "pvha_agent_node2").exists()


def test_a_guest_that_did_not_stop_leaves_the_watchdog_armed_and_the_lease_held(
        tmp_path: Path) -> None:
    _, wd, cfs, _, code = _shut_down(tmp_path, errors=1)
    assert code == 1 and wd.closed is None  # the process exits: no magic V, a reset
    assert _status(cfs)["state"] == "shutting-down"  # armed: the lease will prove it
    assert (cfs.lock_dir / "pvha_agent_node2").is_dir()


def test_without_a_manager_the_shutdown_waits_its_timeout_then_disarms(tmp_path: Path) -> None:
    _, wd, cfs, _, code = _shut_down(tmp_path, errors=None, timeout=0.3)
    assert code == 0 and wd.closed is True and _status(cfs)["state"] == "stopped"


def test_a_stop_without_a_node_shutdown_hands_nothing_over(tmp_path: Path) -> None:
    agent, wd, cfs, manager, code = _shut_down(tmp_path, errors=0, probe=(False, False))
    assert code == 0 and manager.seen is None and wd.closed is True
    assert _status(cfs)["shutdown"] is None and agent.request is None
