"""Start order end to end on ``pvha sim serve`` (3 nodes; node1 has vm:100 and vm:103,
node2 vm:101 and vm:104): after node2's power loss and the fence-ack, vm:101 waits for
vm:104 (priority 5) to run before its start is posted; a guest restarted with its
``after`` dependency waits for it; a dependency whose start never ends holds the other
start for ``order_wait`` seconds only, and ``pvha explain`` says what it waits for. Nothing here asserts on speed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import E2E, running_e2e, wait_for


@pytest.fixture
def slow_starts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    # a start task takes 2 s: a start posted without waiting would overlap the other's
    with running_e2e(tmp_path_factory, "order", {"task_seconds": 2.0}) as harness:
        yield harness


def _when(log: str, line: str) -> float:
    """The time of the first log line holding ``line`` (seconds of the day)."""
    for entry in log.splitlines():
        if line in entry:
            clock = entry.split()[1]
            hours, minutes, seconds = clock.replace(",", ".").split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    raise AssertionError(f"{line!r} not in the log")


def _after_ran(log: str, first: str, then: str) -> None:
    """``then``'s start was posted after ``first``'s 2 s start task had ended (executors
    of different nodes run side by side, so their lines may come in either order)."""
    assert _when(log, f"starting service {then}") >= _when(log, f"starting service {first}") + 2


def test_e2e_recovery_and_restarts_follow_priority_and_after(slow_starts: E2E) -> None:
    e2e = slow_starts
    for args in (("set", "vm:104", "--priority", "5"), ("set", "vm:100", "--after", "vm:103")):
        res = e2e.pvha(*args)
        assert res.returncode == 0, res.stderr
    w = e2e.watch(env=e2e.env(PVHA_ORDER_WAIT="10"))
    wait_for(e2e.all_started, 60, what="all services started")
    start = len(w.log())

    e2e.ctl("power node2 off")
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    assert e2e.pvha("fence-ack", "node2", "--yes").returncode == 0
    wait_for(lambda: {101, 104} <= set(e2e.running_via_api()), 60,
             what="node2's guests running elsewhere")
    log = w.log()[start:]
    assert "service 'vm:101' waits for 'vm:104' (priority 5) to run first" in log
    _after_ran(log, "vm:104", "vm:101")
    assert "starting it anyway" not in log

    # both guests of node1 stop outside HA: the LRM restarts vm:103 first
    start = len(w.log())
    e2e.ctl("guest 100 stop")
    e2e.ctl("guest 103 stop")
    wait_for(lambda: {100, 103} <= set(e2e.running_via_api()), 60, what="node1's guests back")
    log = w.log()[start:]
    assert "service 'vm:100' waits for 'vm:103' (after) to run first" in log
    _after_ran(log, "vm:103", "vm:100")

    # vm:103's next start never ends: vm:100 starts once order_wait (10 s) has passed;
    # meanwhile explain says what it waits for
    start, waits = len(w.log()), w.count(r"service 'vm:100' waits for 'vm:103'")
    e2e.ctl("guest 103 hang start")
    e2e.ctl("guest 100 stop")
    e2e.ctl("guest 103 stop")
    w.wait_log(r"service 'vm:100' waits for 'vm:103'", 30, after=waits)
    explained = e2e.pvha("explain", "vm:100")
    assert explained.returncode == 0, explained.stderr
    assert "start order: priority 0, after vm:103" in explained.stdout
    assert "waiting for vm:103 to run first (start order: priority 0, after vm:103)" \
        in explained.stdout, explained.stdout
    wait_for(lambda: 100 in e2e.running_via_api(), 60, what="vm:100 started anyway")
    log = w.log()[start:]
    assert "service 'vm:100' waits for 'vm:103' (after) to run first" in log
    assert "service 'vm:100': waited" in log and "starting it anyway" in log
    assert 103 not in e2e.running_via_api()
    e2e.no_split_brain()
