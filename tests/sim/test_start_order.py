"""Start order (pvha.core.start_order) in the simulator: ``priority`` and ``after`` order
the starts after a node failure and at the first start; a dependency that never runs
holds its dependant for ``ORDER_WAIT`` seconds only; unset keys leave PVE's order."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pvha.core.start_order import ORDER_WAIT
from pvha.sim.runner import run_scenario
from pvha.sim.scenario import load_scenario

Line = tuple[int, str, str]


def _run(tmp_path: Path, services: dict[str, dict[str, Any]],
         events: list[list[str]]) -> list[Line]:
    d = tmp_path / "scenario"
    d.mkdir()
    (d / "hardware_status").write_text(json.dumps(
        {f"node{i}": {"power": "off", "network": "off"} for i in (1, 2, 3)}))
    (d / "service_config").write_text(json.dumps(services))
    (d / "manager_status").write_text("{}")
    (d / "cmdlist").write_text(json.dumps(
        [["power node1 on", "power node2 on", "power node3 on"], *events]))
    log = run_scenario(load_scenario(d))
    return [(int(m.group(1)), m.group(2), m.group(3)) for m in
            (re.match(r"^\S+\s+(\d+)\s+(\S+): (.*)$", ln) for ln in log.splitlines()) if m]


def _started(lines: list[Line], sid: str, after: int = 0) -> tuple[int, int]:
    """(time, log position) of the first ``service status SID started`` after ``after``."""
    return next((t, i) for i, (t, _o, msg) in enumerate(lines)
                if t > after and msg == f"service status {sid} started")


def _at(lines: list[Line], text: str) -> int:
    return next(t for t, _o, msg in lines if msg.startswith(text))


def test_recovery_runs_higher_priority_and_after_dependencies_first(tmp_path: Path) -> None:
    # fa:120 fails its first two starts: the lower priorities wait until it runs
    lines = _run(tmp_path, {
        "vm:101": {"node": "node1", "state": "started"},
        "vm:102": {"node": "node1", "state": "started", "after": "vm:104"},
        "fa:120": {"node": "node1", "state": "started", "priority": 5, "max_restart": 3},
        "vm:104": {"node": "node1", "state": "started", "priority": 1},
        "vm:105": {"node": "node2", "state": "started"},
    }, [["power node1 off"]])
    failed = _at(lines, "execute power node1 off")
    recovered = _at(lines, "recover service")
    assert recovered > failed
    first = _started(lines, "fa:120", recovered)
    second = _started(lines, "vm:104", recovered)
    last = [_started(lines, sid, recovered) for sid in ("vm:101", "vm:102")]
    assert first < second < min(last)
    assert _started(lines, "vm:102", recovered) > second
    assert first[0] > recovered  # its failed starts kept the others waiting
    waits = {msg for t, _o, msg in lines if t > recovered and " waits for " in msg}
    assert "service 'vm:101' waits for 'fa:120' (priority 5) to run first" in waits
    assert not [msg for _t, _o, msg in lines if "starting it anyway" in msg]


def test_a_dependency_that_never_runs_holds_the_start_for_the_bound_only(
        tmp_path: Path) -> None:
    # vm:104 is locked: each start fails, and 30 local retries keep it in 'started'
    lines = _run(tmp_path, {
        "vm:102": {"node": "node1", "state": "started", "after": "vm:104"},
        "vm:104": {"node": "node2", "state": "started", "lock": "backup",
                   "max_restart": 30},
    }, [])
    waited = _at(lines, "service 'vm:102' waits for 'vm:104' (after) to run first")
    anyway = _at(lines, "service 'vm:102': waited")
    started = _started(lines, "vm:102")[0]
    assert ORDER_WAIT <= anyway - waited <= ORDER_WAIT + 20
    assert anyway <= started <= anyway + 1
    assert not [m for _t, _o, m in lines if m == "service status vm:104 started"]


def test_without_priority_or_after_nothing_waits(tmp_path: Path) -> None:
    services = {f"vm:{100 + i}": {"node": "node1", "state": "started"} for i in range(4)}
    services["fa:120"] = {"node": "node1", "state": "started", "max_restart": 3}
    lines = _run(tmp_path, services, [["power node1 off"]])
    assert not [m for _t, _o, m in lines if " waits for " in m]
    recovered = _at(lines, "recover service")
    # PVE's order: sid order in the manager, and the failing guest delays no one
    recoveries = [m.split("'")[1] for t, _o, m in lines
                  if t == recovered and m.startswith("recover service")]
    assert recoveries == sorted(recoveries)
    assert max(_started(lines, s, recovered)[0] for s in services if s != "fa:120") \
        < _started(lines, "fa:120", recovered)[0]
