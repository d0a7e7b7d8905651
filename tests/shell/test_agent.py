"""The agent's steps with hand-made parts: a watchdog that records feeds, guest
processes that can refuse to die, a cluster filesystem in a directory (pmxcfs rules are
covered end to end in tests/e2e/test_agent_e2e.py)."""

from __future__ import annotations

import json
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
    history = (cfs.config_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in history] == ["stopped"]


def test_a_copy_that_cannot_be_killed_is_reported_once_and_blocks_its_node(
        tmp_path: Path) -> None:
    guests = Guests([GuestProc("qemu", 101, 11)], killable=False)
    agent, wd, cfs = _agent(tmp_path, guests)
    for _ in range(3):
        agent.step()
    assert guests.kills == 3 and _status(cfs)["stale_running"] == ["vm:101"]
    history = (cfs.config_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in history] == ["kill failed"]
    guests.procs.clear()  # gone at last
    agent.step()
    assert _status(cfs)["stale_running"] == []
    agent.stop()
    agent._shutdown()
    assert wd.closed is True and _status(cfs)["state"] == "stopped"
    assert not (cfs.lock_dir / "pvha_agent_node2").exists()
