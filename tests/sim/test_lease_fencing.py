"""The simulator's lease mode (``{"pvha": {"fencing": "lease"}}``, pvha.sim.fencing): a
cut-off node is fenced once its lease (agent lock) has gone 75 s without renewal, after
its watchdog reset it, and earlier than PVE's 120 s lock expiry."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pvha.sim.fencing import LEASE_FENCE_AFTER
from pvha.sim.runner import run_scenario
from pvha.sim.scenario import load_scenario

FAIL = [["network node2 off"]]


def _run(tmp_path: Path, pvha: dict[str, str] | None,
         events: list[list[str]] = FAIL) -> list[tuple[int, str, str]]:
    d = tmp_path / ("lease" if pvha else "pve")
    d.mkdir()
    (d / "hardware_status").write_text(json.dumps(
        {f"node{i}": {"power": "off", "network": "off"} for i in (1, 2, 3)}))
    (d / "service_config").write_text(json.dumps(
        {"vm:101": {"node": "node1", "state": "started"},
         "vm:102": {"node": "node2", "state": "started"}}))
    (d / "manager_status").write_text("{}")
    (d / "cmdlist").write_text(json.dumps(
        [["power node1 on", "power node2 on", "power node3 on"], *events]))
    if pvha:
        (d / "datacenter.cfg").write_text(json.dumps({"pvha": pvha}))
    log = run_scenario(load_scenario(d))
    return [(int(m.group(1)), m.group(2), m.group(3)) for m in
            (re.match(r"^\S+\s+(\d+)\s+(\S+): (.*)$", ln) for ln in log.splitlines()) if m]


def _started(lines: list[tuple[int, str, str]], after: int) -> int:
    return next(t for t, origin, msg in lines if t > after and msg == "service status vm:102 "
                "started" and not origin.startswith("node2"))


def _at(lines: list[tuple[int, str, str]], text: str) -> int:
    return next(t for t, _o, msg in lines if msg.startswith(text))


def test_lease_expiry_fences_after_the_watchdog_reset_and_before_pve(tmp_path: Path) -> None:
    lease = _run(tmp_path, {"fencing": "lease"})
    failure = _at(lease, "execute network node2 off")
    reset = _at(lease, "execute power node2 off")  # node2's watchdog, 60 s unfed
    fenced = _at(lease, "fencing: node 'node2' fenced by lease expiry")
    silent = int(re.search(r"not renewed for (\d+) s", next(
        msg for _t, _o, msg in lease if "fenced by lease expiry" in msg)).group(1))
    started = _started(lease, failure)
    assert failure < reset < fenced <= started and silent > LEASE_FENCE_AFTER
    pve = _run(tmp_path, None)
    assert not [msg for _t, _o, msg in pve if "lease expiry" in msg]
    assert started < _started(pve, failure)  # PVE waits for the 120 s lock expiry


def test_a_clean_shutdown_proves_nothing_and_waits_for_a_fence_ack(tmp_path: Path) -> None:
    """Conditional policy, node2 shut down: its LRM stops vm:102 and releases its lock.
    PVE takes the released lock at once; pvha (a cleanly stopped agent) waits for an
    administrator's fence-ack, and recovers only after it."""
    events = [["shutdown node2"], *[[]] * 12, ["fence-ack node2"]]
    lease = _run(tmp_path, {"fencing": "lease"}, events)
    pve = _run(tmp_path, None, events[:-1])  # PVE's simulator has no fence-ack
    assert _at(lease, "shutdown LRM, stop all services") == _at(pve, "shutdown LRM, stop all")
    waiting = _at(lease, "fencing: node 'node2' has no armed agent lease: waiting for fence-ack")
    acked = _at(lease, "fencing: node 'node2' acknowledged by fence-ack (not verified)")
    assert waiting < acked and _started(lease, 0) > acked
    assert _started(pve, 0) < acked  # PVE did not wait
    assert not [msg for _t, _o, msg in lease if "lease expiry" in msg]
