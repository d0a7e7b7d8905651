"""Guest health records survive the watcher (``health_state``, pvha.shell.health): a
restarted watcher, a takeover and a series of ``pvha watch --once`` runs judge a guest as
one continuous watcher would. The pings go to a stand-in API whose agent answers, fails
as PVE does (``QEMU guest agent is not running``) or answers late; the records are the
core's."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from pvha.core.health import OK, UNHEALTHY, WAITING, HealthSpec
from pvha.errors import ApiPermanentError
from pvha.ports import Guest, GuestRef
from pvha.shell.health import FORGET_AFTER, HEALTH_STATE, SAVE_EVERY, HealthMonitor

SPEC = HealthSpec(grace=10, failures=2, interval=5)
REF = GuestRef("qemu", 100, "node1")
T0 = 1_000_000.0


class Agent:
    """``agent_ping`` of the API: answers, or fails after ``delay`` s."""

    def __init__(self) -> None:
        self.answers = True
        self.delay = 0.0
        self.pings = 0
        self.gate = threading.Event()
        self.gate.set()

    def agent_ping(self, ref: GuestRef) -> None:
        self.pings += 1
        self.gate.wait(10)
        if not self.answers:
            raise ApiPermanentError("QEMU guest agent is not running", status=500)


def running(uptime: int) -> Guest:
    return Guest(100, "qemu", "node1", "running", False, uptime=uptime)


def ask(monitor: HealthMonitor, at: float) -> str:
    """One round's question about vm:100, which started at T0; waits for its ping."""
    verdict = monitor.verdict("vm:100", REF, SPEC, running(int(at - T0)), at).verdict
    monitor.settle(5)
    return verdict


def run_once(config_dir: Path, agent: Agent, at: float) -> str:
    """One ``pvha watch --once`` run: a new process, one question, settle, save."""
    monitor = HealthMonitor(agent, config_dir)
    verdict = ask(monitor, at)
    monitor.save(at, force=True)
    monitor.close()
    return verdict


def test_once_runs_count_failures_in_a_row_across_runs(tmp_path: Path) -> None:
    agent = Agent()
    assert run_once(tmp_path, agent, T0 + 5) == WAITING  # in its grace: not pinged
    assert agent.pings == 0
    assert run_once(tmp_path, agent, T0 + 11) == WAITING  # pinged; answer in the next run
    assert run_once(tmp_path, agent, T0 + 17) == OK
    agent.answers = False
    assert run_once(tmp_path, agent, T0 + 18) == OK  # interval 5 s: no ping yet
    assert agent.pings == 2
    assert run_once(tmp_path, agent, T0 + 23) == OK  # the first failure is in flight
    assert run_once(tmp_path, agent, T0 + 29) == WAITING  # one failed; a second posted
    assert run_once(tmp_path, agent, T0 + 35) == UNHEALTHY  # two in a row, across runs
    saved = json.loads((tmp_path / HEALTH_STATE).read_text())
    assert saved["vm:100"]["record"]["restarts"] == 1
    assert saved["vm:100"]["record"]["last_restart"] == int(T0 + 35)
    # the restart's new grace (doubled by backoff) holds in the next run too
    assert run_once(tmp_path, agent, T0 + 40) == WAITING


def test_without_the_file_every_run_would_start_afresh(tmp_path: Path) -> None:
    """The same runs with the records in memory only never reach a verdict: what the
    file is for."""
    agent = Agent()
    agent.answers = False
    verdicts = [run_once(None, agent, T0 + t) for t in (11, 17, 23, 29, 35)]  # type: ignore[arg-type]
    assert UNHEALTHY not in verdicts and not (tmp_path / HEALTH_STATE).exists()


def test_settle_waits_for_a_late_answer_and_is_bounded(tmp_path: Path) -> None:
    agent = Agent()
    agent.gate.clear()  # the agent hangs
    monitor = HealthMonitor(agent, tmp_path)
    monitor.verdict("vm:100", REF, SPEC, running(20), T0 + 20)
    monitor.settle(0.2)  # gives up: the answer would come too late for this run
    monitor.save(T0 + 20, force=True)
    assert json.loads((tmp_path / HEALTH_STATE).read_text())["vm:100"]["answers"] == []
    agent.answers = False
    agent.gate.set()
    monitor.settle(5)
    monitor.save(T0 + 21, force=True)
    assert json.loads((tmp_path / HEALTH_STATE).read_text())["vm:100"]["answers"] == [False]
    monitor.close()


def test_saves_are_spaced_and_only_when_something_changed(tmp_path: Path) -> None:
    agent = Agent()
    monitor = HealthMonitor(agent, tmp_path)
    path = tmp_path / HEALTH_STATE
    monitor.save(T0)  # nothing asked in this tenure: the file is left as it is
    assert not path.exists()
    ask(monitor, T0 + 11)
    monitor.save(T0 + 11)
    first = path.read_text()
    ask(monitor, T0 + 12)
    monitor.save(T0 + 12)  # changed, but within SAVE_EVERY
    assert path.read_text() == first
    monitor.save(T0 + 11 + SAVE_EVERY)
    assert path.read_text() != first
    path.unlink()
    monitor.save(T0 + 100 + SAVE_EVERY)  # nothing changed since: no write
    assert not path.exists()


def test_a_new_tenure_reads_the_file_again(tmp_path: Path) -> None:
    mine, theirs = HealthMonitor(Agent(), tmp_path), HealthMonitor(Agent(), tmp_path)
    ask(mine, T0 + 11)
    mine.save(T0 + 11, force=True)
    theirs.reset()  # another watcher takes the lock: it goes on from the file
    ask(theirs, T0 + 17)
    theirs.save(T0 + 17, force=True)
    record = json.loads((tmp_path / HEALTH_STATE).read_text())["vm:100"]["record"]
    assert record["healthy_since"] == int(T0 + 17)  # the answer of mine's ping


def test_records_of_guests_no_longer_asked_about_are_dropped(tmp_path: Path) -> None:
    monitor = HealthMonitor(Agent(), tmp_path)
    ask(monitor, T0 + 11)
    monitor.save(T0 + 11, force=True)
    assert "vm:100" in json.loads((tmp_path / HEALTH_STATE).read_text())
    saved = json.loads((tmp_path / HEALTH_STATE).read_text())
    assert set(saved["vm:100"]) == {"record", "answers", "last_ping"}  # no per-round churn
    later = HealthMonitor(Agent(), tmp_path)  # a new watcher reads it back at T0 + 500
    later.started("vm:101", T0 + 500)  # not a checked guest: only loads the file
    later.save(T0 + 500 + FORGET_AFTER, force=True)  # kept: an hour since it was read
    assert "vm:100" in json.loads((tmp_path / HEALTH_STATE).read_text())
    later.save(T0 + 501 + FORGET_AFTER, force=True)
    assert json.loads((tmp_path / HEALTH_STATE).read_text()) == {}
    monitor.save(T0 + 12 + FORGET_AFTER, force=True)
    assert json.loads((tmp_path / HEALTH_STATE).read_text()) == {}


RECORD = ('"record": {"started_at": %s, "failures": 0, "restarts": 0, "last_restart": null, '
          '"healthy_since": null}')


@pytest.mark.parametrize("text", [
    "{not json", "[]", '{"vm:100": {"record": {}}}',
    '{"vm:100": {' + RECORD % '"x"' + ', "answers": [], "last_ping": null}}',
    '{"vm:100": {' + RECORD % "1" + ', "answers": [1], "last_ping": null}}',
    '{"vm:100": {' + RECORD % "1" + ', "answers": [], "last_ping": "soon"}}',
])
def test_a_damaged_file_is_a_fresh_start_with_one_warning(
        tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / HEALTH_STATE).write_text(text)
    monitor = HealthMonitor(Agent(), tmp_path)
    with caplog.at_level(logging.WARNING, "pvha.health"):
        verdict = monitor.verdict("vm:100", REF, SPEC, running(1), T0 + 1).verdict
    assert verdict == WAITING  # a new grace: never a restart from a damaged file
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "every checked guest starts a new grace" in warnings[0]
    monitor.save(T0 + 1, force=True)
    assert set(json.loads((tmp_path / HEALTH_STATE).read_text())) == {"vm:100"}
