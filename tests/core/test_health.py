"""Guest health: the pure decision (pvha.core.health) and the LRM's restart policy for an
unhealthy guest (pvha.core.executor, pvha.core.lrm) on an in-memory port."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from memory_env import MemoryEnv

from pvha.core.health import (
    GRACE_CAP,
    OK,
    STABLE_SECONDS,
    UNHEALTHY,
    WAITING,
    HealthRecord,
    HealthSpec,
    decide,
    grace_of,
)
from pvha.core.lrm import Lrm
from pvha.core.states import ExitCode

SPEC = HealthSpec(grace=10, failures=3, interval=1)
UP = HealthRecord(started_at=0)


def fold(record: HealthRecord, steps: list[tuple[int, list[bool], str | None]]):  # type: ignore[no-untyped-def]
    out = []
    for now, answers, paused in steps:
        d = decide(SPEC, record, answers, paused, now)
        record = d.record
        out.append(d)
    return out


# --- the decision --------------------------------------------------------------------------


def test_of_reads_the_keys_and_is_none_without_health_agent() -> None:
    assert HealthSpec.of({"health": "agent", "health_grace": "2", "health_failures": 2,
                          "health_interval": "1"}) == HealthSpec(2, 2, 1)
    assert HealthSpec.of({"health": "agent"}) == HealthSpec(300, 3, 30)
    assert HealthSpec.of({"max_restart": 1}) is None and HealthSpec.of(None) is None


def test_within_the_grace_nothing_counts_and_no_ping_is_asked() -> None:
    d = decide(SPEC, UP, [False] * 5, None, 9)
    assert (d.verdict, d.record.failures, d.ping) == (WAITING, 0, False)
    assert "grace of 10 s" in d.reason


def test_an_unknown_start_time_waits() -> None:
    assert decide(SPEC, HealthRecord(), [False] * 5, None, 10_000).verdict == WAITING


def test_failures_in_a_row_make_the_guest_unhealthy_once_and_start_a_new_grace() -> None:
    first, second, third = fold(UP, [(10, [True], None), (11, [False, False], None),
                                     (12, [False], None)])
    assert (first.verdict, second.verdict, second.record.failures) == (OK, WAITING, 2)
    assert third.verdict == UNHEALTHY
    assert third.reason == "guest agent did not answer 3 pings in a row"
    assert (third.record.restarts, third.record.last_restart, third.record.failures) == (1, 12, 0)
    # the next question is in the new, doubled grace: no second verdict for the same hang
    again = decide(SPEC, third.record, [False] * 3, None, 12 + 19)
    assert again.verdict == WAITING and grace_of(SPEC, third.record) == 20


def test_an_answer_between_failures_resets_the_count() -> None:
    *_, last = fold(UP, [(10, [False, False, True, False, False], None)])
    assert (last.verdict, last.record.failures) == (WAITING, 2)


def test_no_ok_before_a_first_answer_after_the_grace() -> None:
    d = decide(SPEC, UP, [False], None, 10)
    assert (d.verdict, d.ping, d.record.failures) == (WAITING, True, 1)
    assert decide(SPEC, d.record, [True], None, 11).verdict == OK


def test_paused_resets_the_failures_and_counts_nothing() -> None:
    before = decide(SPEC, UP, [True, False, False], None, 10).record
    paused = decide(SPEC, before, [False] * 10, "locked (backup)", 11)
    assert (paused.verdict, paused.record.failures, paused.ping) == (WAITING, 0, False)
    assert paused.reason == "paused: locked (backup)"
    after = decide(SPEC, paused.record, [False, False], None, 12)
    assert after.verdict == WAITING and after.record.failures == 2


@given(st.integers(1, 4000), st.integers(0, 100))
def test_backoff_doubles_per_restart_and_is_capped(grace: int, restarts: int) -> None:
    spec = HealthSpec(grace=grace)
    g = grace_of(spec, HealthRecord(restarts=restarts))
    assert g == max(grace, min(grace * 2 ** restarts, GRACE_CAP))
    assert grace <= g and (g <= GRACE_CAP or g == grace)
    assert grace_of(spec, HealthRecord(restarts=restarts + 1)) >= g


def test_restarts_are_forgotten_after_a_stable_healthy_hour() -> None:
    rec = HealthRecord(started_at=0, restarts=3, last_restart=0)
    up = grace_of(SPEC, rec)
    d = decide(SPEC, rec, [True], None, up)
    assert d.record.restarts == 3
    d = decide(SPEC, d.record, [True], None, up + STABLE_SECONDS)
    assert (d.verdict, d.record.restarts) == (OK, 0)


@given(st.lists(st.tuples(st.integers(0, 50), st.lists(st.booleans(), max_size=5),
                          st.sampled_from([None, "locked (snapshot)"])), max_size=30))
def test_unhealthy_needs_that_many_failed_answers_since_the_last_good_one(steps) -> None:  # type: ignore[no-untyped-def]
    record, now = UP, 0
    for delta, answers, paused in steps:
        now += delta
        d = decide(SPEC, record, answers, paused, now)
        if d.verdict == UNHEALTHY:
            assert paused is None and now - max(record.started_at or 0,
                                                record.last_restart or 0) >= grace_of(SPEC, record)
            last_good = max((i for i, a in enumerate(answers) if a), default=None)
            tail = (record.failures + len(answers) if last_good is None
                    else len(answers) - last_good - 1)
            assert tail >= SPEC.failures
        record = d.record


# --- the restart policy ------------------------------------------------------------------------


class HealthEnv(MemoryEnv):
    """vm:100 on node1 with a scripted health verdict."""

    def __init__(self, max_restart: int) -> None:
        super().__init__(services={"vm:100": {"type": "vm", "name": "100", "node": "node1",
                                              "state": "started", "max_restart": max_restart}})
        self.running.add("vm:100")
        self.verdict = (OK, "guest agent answers")
        self.actions: list[str] = []

    def guest_health(self, sid: str) -> tuple[str, str]:
        return self.verdict

    def start(self, sid: str) -> None:
        self.actions.append("start")
        super().start(sid)

    def shutdown(self, sid: str, timeout: Any = None) -> None:
        self.actions.append(f"stop timeout={timeout}")
        super().shutdown(sid, timeout)


def command(lrm: Lrm, uid: str) -> Any:
    """One round's ``started`` command with the manager's ``uid``; its exit code, if any."""
    lrm.service_status = {"vm:100": {"uid": uid, "node": "node1", "state": "started"}}
    lrm.queue_resource_command("vm:100", uid, "started", {})
    lrm.run_workers()
    return lrm.results.get(uid, {}).get("exit_code")


def messages(env: HealthEnv) -> list[str]:
    return [m for _, m in env.lines]


def test_unhealthy_is_a_restart_counted_against_max_restart_then_error() -> None:
    env = HealthEnv(max_restart=1)
    lrm = Lrm(env, 0)
    env.verdict = (UNHEALTHY, "guest agent did not answer 3 pings in a row")
    assert command(lrm, "u1") is None  # no result: retried as a restart
    assert lrm.restart_tries["vm:100"] == 1
    assert messages(env)[-2:] == [
        "service 'vm:100' unhealthy: guest agent did not answer 3 pings in a row",
        "restart policy: retry number 1 for service 'vm:100'"]
    env.verdict = (WAITING, "in its grace")
    assert command(lrm, "u1") == ExitCode.SUCCESS
    assert env.actions == ["stop timeout=0", "start"]  # a hard stop, then a start
    assert "restarting service vm:100 (hard stop, then start)" in messages(env)
    assert lrm.restart_tries["vm:100"] == 1  # neither the restart nor the grace resets it
    assert command(lrm, "u2") == ExitCode.SUCCESS and lrm.restart_tries["vm:100"] == 1
    env.verdict = (UNHEALTHY, "guest agent did not answer 3 pings in a row")
    assert command(lrm, "u3") == ExitCode.ERROR  # past max_restart: the manager relocates
    assert messages(env)[-1] == ("unable to recover unhealthy service vm:100 on local node "
                                 "after 1 retries")
    assert env.actions == ["stop timeout=0", "start"]


def test_an_answer_resets_the_count_and_an_unchecked_guest_is_as_before() -> None:
    env = HealthEnv(max_restart=1)
    lrm = Lrm(env, 0)
    env.verdict = (UNHEALTHY, "x")
    command(lrm, "u1")
    assert command(lrm, "u1") == ExitCode.SUCCESS and lrm.restart_tries["vm:100"] == 1
    env.verdict = (OK, "guest agent answers")
    assert command(lrm, "u2") == ExitCode.SUCCESS and lrm.restart_tries["vm:100"] == 0
    env.verdict = ("off", "")
    lrm.restart_tries["vm:100"] = 1
    assert command(lrm, "u3") == ExitCode.SUCCESS and lrm.restart_tries["vm:100"] == 0


def test_max_restart_0_relocates_at_once() -> None:
    env = HealthEnv(max_restart=0)
    env.verdict = (UNHEALTHY, "x")
    assert command(Lrm(env, 0), "u1") == ExitCode.ERROR and env.actions == []
