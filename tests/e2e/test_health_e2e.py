"""Guest health end to end: ``pvha watch`` pings the QEMU guest agent of vm:100 (it has
``health agent`` with grace 2 s, 1 s between pings, 2 failures in a row) on the fake PVE
of ``pvha sim serve`` (vm:100 runs on node1; every other guest has no health check), and
restarts it under the restart policy when the agent hangs. Waits are bounded; nothing
here asserts on speed."""

from __future__ import annotations

import json

from tests.e2e.harness import E2E, Watch, wait_for

UNHEALTHY = r"service 'vm:100' unhealthy: guest agent did not answer 2 pings in a row"
RETRY = r"restart policy: retry number 1 for service 'vm:100'"


def watch_with_health(e2e: E2E, *extra: str) -> Watch:
    res = e2e.pvha("set", "vm:100", "--health", "agent", "--health-grace", "2",
                   "--health_interval", "1", "--health-failures", "2", *extra)
    assert res.returncode == 0, res.stderr
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    wait_for(lambda: pings(e2e, 100) >= 2, 30, what="vm 100 pinged")
    return w


def pings(e2e: E2E, vmid: int) -> int:
    return int(e2e.truth()["guests"][str(vmid)]["pings"])


def vm100_tasks(e2e: E2E) -> list[str]:
    """Types of vm 100's tasks, oldest first."""
    with e2e.fp.cluster.lock:
        return [t.type for t in reversed(e2e.fp.cluster.tasks.all()) if t.id == "100"]


def test_a_hung_agent_leads_to_a_hard_stop_and_start_and_the_agent_answers_again(
        e2e: E2E) -> None:
    w = watch_with_health(e2e)
    before = vm100_tasks(e2e)
    e2e.ctl("guest 100 agent hung")
    w.wait_log(UNHEALTHY, 40)
    w.wait_log(RETRY, 10)
    w.wait_log(r"restarting service vm:100 \(hard stop, then start\)", 10)
    wait_for(lambda: vm100_tasks(e2e)[len(before):][:2] == ["qmstop", "qmstart"], 30,
             what="a stop, then a start of vm 100")
    wait_for(lambda: e2e.running_via_api().get(100) == "node1", 30, what="vm 100 running")
    assert e2e.truth()["guests"]["100"]["agent"] == "ok"  # a fresh boot: its agent answers
    answered = pings(e2e, 100)
    wait_for(lambda: pings(e2e, 100) > answered + 2, 30, what="vm 100 pinged again")
    assert w.count(UNHEALTHY) == 1 and e2e.service_states()["vm:100"] == "started"
    # only the guest with `health agent` is ever pinged
    assert [pings(e2e, v) for v in (101, 103, 104)] == [0, 0, 0]
    # the journal (and so the notifications) has it, and no incident comes of it
    history = e2e.pvha("history", "--output-format", "json")
    health = [e for e in json.loads(history.stdout) if e["event"] == "health"]
    assert [(e["node"], e["sid"], e["outcome"]) for e in health] == \
        [("node1", "vm:100", "unhealthy")]
    assert "did not answer 2 pings in a row" in health[0]["detail"]
    assert json.loads(e2e.pvha("history", "--incidents", "--output-format",
                               "json").stdout) == []
    assert w.stop() == 0


def test_a_locked_guest_is_not_judged_and_is_restarted_once_the_lock_goes(e2e: E2E) -> None:
    w = watch_with_health(e2e)
    e2e.ctl("guest 100 lock backup")
    assert e2e.truth()["guests"]["100"]["lock"] == "backup"
    e2e.ctl("guest 100 agent hung")
    rounds = w.count(r"manager: 3 nodes online")
    w.wait_log(r"manager: 3 nodes online", 40, after=rounds + 8)  # well past 2 failed pings
    assert w.count(UNHEALTHY) == 0, w.log()
    assert "qmstop" not in vm100_tasks(e2e)
    assert e2e.running_via_api().get(100) == "node1"
    e2e.ctl("guest 100 unlock")
    w.wait_log(UNHEALTHY, 40)
    wait_for(lambda: vm100_tasks(e2e)[-2:] == ["qmstop", "qmstart"], 30,
             what="a stop, then a start of vm 100")
    assert w.stop() == 0


def test_a_broken_agent_is_restarted_max_restart_times_then_relocated(e2e: E2E) -> None:
    w = watch_with_health(e2e, "--max-restart", "1")
    e2e.ctl("guest 100 agent broken")
    w.wait_log(RETRY, 40)
    w.wait_log(r"unable to recover unhealthy service vm:100 on local node after 1 retries",
               40)
    wait_for(lambda: e2e.running_via_api().get(100) not in (None, "node1"), 40,
             what="vm 100 relocated and running on another node")
    assert vm100_tasks(e2e).count("qmstop") >= 1
    assert w.stop() == 0


def test_watch_once_runs_from_a_timer_judge_health_as_one_watcher_would(e2e: E2E) -> None:
    """No continuous watcher: `pvha watch --once` again and again, as a systemd timer runs
    it. The records and the answers of each run's pings are in health_state, so the
    failures in a row add up across runs and lead to the same restart."""
    res = e2e.pvha("set", "vm:100", "--health", "agent", "--health-grace", "2",
                   "--health_interval", "1", "--health-failures", "2")
    assert res.returncode == 0, res.stderr

    def once() -> str:
        run = e2e.pvha("watch", "--once")
        assert run.returncode == 0, run.stderr
        return run.stderr

    for _ in range(30):
        once()
        if e2e.all_started() and pings(e2e, 100) >= 2:
            break
    assert pings(e2e, 100) >= 2, "vm 100 was never pinged by the --once runs"
    before = vm100_tasks(e2e)
    e2e.ctl("guest 100 agent hung")
    logs = ""
    for _ in range(30):
        logs += once()
        if "qmstart" in vm100_tasks(e2e)[len(before):]:
            break
    assert len([line for line in logs.splitlines() if "unhealthy" in line]) == 1, logs
    assert vm100_tasks(e2e)[len(before):][:2] == ["qmstop", "qmstart"], vm100_tasks(e2e)
    state = json.loads((e2e.config_dir / "health_state").read_text())
    assert state["vm:100"]["record"]["restarts"] == 1
    history = json.loads(e2e.pvha("history", "--output-format", "json").stdout)
    assert [e["sid"] for e in history if e["event"] == "health"] == ["vm:100"]
