"""``pvha sim chaos`` (pvha.sim.chaos): a fixed sample finds nothing, the invariants bite,
shrinking keeps the failure, runs are deterministic."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pvha.cli.sim import sim_app
from pvha.sim import chaos_invariants as inv
from pvha.sim import hardware as sim_hardware
from pvha.sim.chaos import investigate, run_chaos, run_index, run_spec
from pvha.sim.chaos_gen import Spec, generate
from pvha.sim.chaos_invariants import (
    DEFAULT_INVARIANTS,
    DoubleRun,
    FenceProof,
    InternalError,
    StartAuthorized,
    Step,
    StrictAffinity,
    World,
)
from pvha.sim.hardware import Hardware
from pvha.sim.log import SimLog
from pvha.sim.scenario import load_scenario

SAMPLE_SEED = 20261203
SAMPLE_RUNS = 320


# ---------------------------------------------------------------------- the CI sample
def test_fixed_sample_has_no_violations() -> None:
    report = run_chaos(SAMPLE_RUNS, SAMPLE_SEED, do_shrink=False)
    lines = [f"run {f.index}: {f.violation.line()}" for f in report.findings]
    assert report.violations == 0, "\n".join(lines)
    assert report.line() == f"{SAMPLE_RUNS} runs, 0 violations"
    assert report.steps > SAMPLE_RUNS * 100  # the monitor really looked at every step


# ---------------------------------------------------------------------- generator
def test_generation_is_deterministic_and_legal() -> None:
    for i in range(60):
        a = generate(random.Random(f"5:{i}"))
        b = generate(random.Random(f"5:{i}"))
        assert a.files() == b.files()
        assert a.legal(), a.to_json()
        # the rendered files are what load_scenario reads back
        scenario = a.scenario()
        assert scenario.cmdlist == a.cmdlist
        assert sorted(scenario.hardware_status) == a.nodes


def test_written_directory_runs_like_the_spec(tmp_path: Path) -> None:
    spec = next(s for i in range(50)
                if len((s := generate(random.Random(f"9:{i}"))).nodes) >= 3)
    spec.write(tmp_path / "s")
    from pvha.sim.runner import run_scenario

    assert run_scenario(load_scenario(tmp_path / "s")) == run_scenario(spec.scenario())


def test_same_seed_same_runs() -> None:
    a = [run_index(3, i).log for i in range(4)]
    b = [run_index(3, i).log for i in range(4)]
    assert a == b
    assert len(set(a)) == 4


# ---------------------------------------------------------------------- hand-made states
def _hw(rules: str = "", fence: bool = False) -> Hardware:
    spec = Spec(name="t", nodes=["node1", "node2", "node3"],
                services={"vm:101": {"node": "node1", "state": "started"},
                          "vm:102": {"node": "node2", "state": "started"}})
    if fence:
        spec.fence = [{"name": "ipmi", "agent": "fence_ipmilan", "nodes": ["node1"]}]
        spec.datacenter = {"pvha": {"fencing": "power"}}
    scenario = spec.scenario()
    scenario.rules_text = rules
    return Hardware(scenario, SimLog())


def _ms(states: dict[str, tuple[str, str]], **node_states: str) -> dict[str, Any]:
    ns = {"node1": "online", "node2": "online", "node3": "online", **node_states}
    return {"master_node": "node2", "node_status": ns,
            "service_status": {sid: {"state": st, "node": n} for sid, (st, n) in states.items()}}


def _world(time: int = 100, running: dict[str, tuple[str, ...]] | None = None,
           config: dict[str, str] | None = None, locks: dict[str, tuple[str, int]] | None = None,
           ms: dict[str, Any] | None = None, power: dict[str, str] | None = None,
           log: Iterable[str] = ()) -> World:
    return World(
        time=time, running=running or {},
        config_node=config or {"vm:101": "node1", "vm:102": "node2"},
        locks=locks or {}, power=power or {"node1": "on", "node2": "on", "node3": "on"},
        ms=ms if ms is not None else _ms({"vm:101": ("started", "node1")}), new_log=tuple(log))


def _found(invariant: inv.Invariant, hw: Hardware, origin: str, before: World, after: World,
           unmanaged: frozenset[tuple[str, str]] = frozenset()) -> list[str]:
    return list(invariant.check(Step(hw, origin, before, after, unmanaged)))


def test_double_run_is_caught() -> None:
    hw = _hw()
    two = _world(running={"vm:101": ("node1", "node3")})
    assert _found(DoubleRun(), hw, "node3/lrm", _world(), two) == [
        "vm:101 runs on node1, node3"]
    assert _found(DoubleRun(), hw, "node3/lrm", _world(), _world(running={"vm:101": ("node1",)})
                  ) == []
    # an instance no fence protects (PVE's own behaviour, see chaos_invariants.unmanaged)
    assert _found(DoubleRun(), hw, "node3/lrm", _world(), two,
                  frozenset({("vm:101", "node1")})) == []


def test_recovery_without_a_fence_proof_is_caught() -> None:
    hw = _hw()
    placed = _world(time=100, ms=_ms({"vm:101": ("started", "node1")}))
    fenced = _world(time=120, ms=_ms({"vm:101": ("fence", "node1")}, node1="fence"),
                    locks={"ha_agent_node1_lock": ("node1", 90)})
    moved = _world(time=140, config={"vm:101": "node3", "vm:102": "node2"},
                   ms=_ms({"vm:101": ("started", "node3")}, node1="unknown"),
                   locks={"ha_agent_node1_lock": ("node1", 90)})
    check = FenceProof()
    assert _found(check, hw, "node2/crm", placed, fenced) == []
    found = _found(check, hw, "node2/crm", fenced, moved)
    assert found and "without a fence proof for node1" in found[0]


def test_taking_a_live_lock_is_caught_and_an_expired_one_is_a_proof() -> None:
    hw = _hw()
    before = _world(time=200, ms=_ms({"vm:101": ("fence", "node1")}, node1="fence"),
                    locks={"ha_agent_node1_lock": ("node1", 150)})
    early = _world(time=220, ms=before.ms, locks={"ha_agent_node1_lock": ("node2", 220)})
    found = _found(FenceProof(), hw, "node2/crm", before, early)
    assert found and "took the agent lock of node1 from node1 70 s after" in found[0]
    # expired (> 120 s) and then the move in the same step: a proper recovery
    late = _world(time=280, config={"vm:101": "node3", "vm:102": "node2"},
                  ms=_ms({"vm:101": ("started", "node3")}),
                  locks={"ha_agent_node1_lock": ("node2", 280)})
    assert _found(FenceProof(), hw, "node2/crm", before, late) == []
    # a free lock (released by a clean shutdown) is a proof too
    free = _world(time=200, ms=before.ms)
    assert _found(FenceProof(), hw, "node2/crm", free, late) == []


def test_a_recovered_guest_still_running_is_caught() -> None:
    hw = _hw()
    before = _world(time=200, running={"vm:101": ("node1",)},
                    ms=_ms({"vm:101": ("fence", "node1")}, node1="fence"))
    after = _world(time=220, running={"vm:101": ("node1",)},
                   config={"vm:101": "node3", "vm:102": "node2"},
                   ms=_ms({"vm:101": ("started", "node3")}),
                   locks={"ha_agent_node1_lock": ("node2", 220)})
    found = _found(FenceProof(), hw, "node2/crm", before, after)
    assert found == ["vm:101 recovered node1 -> node3 while it still runs on node1"]


def test_power_fencing_proves_only_a_node_that_is_off() -> None:
    hw = _hw(fence=True)
    before = _world(time=200, ms=_ms({"vm:101": ("fence", "node1")}, node1="fence"),
                    locks={"ha_agent_node1_lock": ("node1", 195)})
    on = _world(time=210, ms=before.ms, locks={"ha_agent_node1_lock": ("node2", 210)})
    assert _found(FenceProof(), hw, "node2/crm", before, on)
    off = _world(time=210, ms=before.ms, locks={"ha_agent_node1_lock": ("node2", 210)},
                 power={"node1": "off", "node2": "on", "node3": "on"})
    assert _found(FenceProof(), hw, "node2/crm", before, off) == []


def test_config_moves_by_the_guest_node_or_the_administrator_need_no_proof() -> None:
    hw = _hw()
    before = _world()
    after = _world(config={"vm:101": "node3", "vm:102": "node2"})
    assert _found(FenceProof(), hw, "node1/lrm", before, after) == []
    assert _found(FenceProof(), hw, "cmdlist", before, after) == []
    assert _found(FenceProof(), hw, "node3/lrm", before, after)  # not the guest's node
    assert _found(FenceProof(), hw, "hardware", before, after)


STRICT = "node-affinity: pin\n\tresources vm:101\n\tnodes node3\n\tstrict 1\n"


def test_start_on_a_node_a_strict_rule_forbids_is_caught() -> None:
    hw = _hw(STRICT)
    before = _world()
    after = _world(running={"vm:101": ("node1",)})
    found = _found(StrictAffinity(), hw, "node1/lrm", before, after)
    assert found and "which its strict rule forbids" in found[0]


def test_strict_rule_allows_what_pve_does() -> None:
    hw = _hw(STRICT)
    start = _world(running={"vm:101": ("node1",)})
    # no allowed node online: PVE keeps the service where it is and starts it there
    down = _world(running=start.running, ms=_ms({"vm:101": ("started", "node1")},
                                                node3="unknown"))
    assert _found(StrictAffinity(), hw, "node1/lrm", _world(), down) == []
    # the only allowed node is taken by a negative-affinity partner
    hw = _hw(STRICT + "\nresource-affinity: apart\n\tresources vm:101,vm:102\n"
                      "\taffinity negative\n")
    busy = _world(running=start.running, ms=_ms({"vm:101": ("started", "node1"),
                                                 "vm:102": ("started", "node3")}))
    assert _found(StrictAffinity(), hw, "node1/lrm", _world(), busy) == []
    # the CRM never saw the guest's node online: PVE leaves the service there until it
    # fences it, and the node's LRM starts it when the node comes up
    unseen = _world(running=start.running, ms=_ms({"vm:101": ("started", "node1")},
                                                  node1="unknown"))
    assert _found(StrictAffinity(), hw, "node1/lrm", _world(), unseen) == []
    # a dropped rule (vm:101 in two node-affinity rules) binds nothing
    hw = _hw(STRICT + "\nnode-affinity: other\n\tresources vm:101\n\tnodes node2\n")
    assert _found(StrictAffinity(), hw, "node1/lrm", _world(), start) == []


def test_start_against_the_manager_status_is_caught() -> None:
    hw = _hw()
    after = _world(running={"vm:101": ("node1",)}, ms=_ms({"vm:101": ("stopped", "node1")}))
    assert _found(StartAuthorized(), hw, "node1/lrm", _world(), after) == [
        "vm:101 started on node1 while the manager status says 'stopped' on 'node1'"]
    ok = _world(running={"vm:101": ("node1",)})
    assert _found(StartAuthorized(), hw, "node1/lrm", _world(), ok) == []


def test_internal_errors_are_caught_but_cfs_and_watchdog_errors_are_not() -> None:
    hw = _hw()
    lines = [
        "err     100    node1/crm: got unexpected error - cfs connection refused - not mounted?",
        "err     100    node1/lrm: got unexpected error - wdog expired - unable to update",
        "err     101    node2/crm: got unexpected error - 'NoneType' object is not iterable",
    ]
    after = _world(log=lines)
    assert _found(InternalError(), hw, "node2/crm", _world(), after) == [
        "got unexpected error - 'NoneType' object is not iterable"]


# ---------------------------------------------------------------------- the monitor bites
def _failover_spec() -> Spec:
    return Spec(
        name="failover", nodes=["node1", "node2", "node3"],
        services={"vm:101": {"node": "node1", "state": "started"},
                  "vm:102": {"node": "node3", "state": "started"}},
        cmdlist=[["power node1 on", "power node2 on", "power node3 on"],
                 ["network node3 off"]],
    )


def test_a_clean_failover_passes() -> None:
    result = run_spec(_failover_spec())
    assert result.violation is None
    assert "recover service 'vm:102' from fenced node 'node3'" in result.log


def test_a_broken_lock_model_is_caught_in_a_real_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # the simulated cluster filesystem lets locks expire after 30 s instead of 120 s: the
    # master takes the isolated node's lock while its watchdog has not fired yet
    monkeypatch.setattr(sim_hardware, "LOCK_TIMEOUT", 30)
    result = run_spec(_failover_spec())
    assert result.violation is not None
    assert result.violation.invariant == "fence-proof", result.violation.line()
    assert "took the agent lock of node3" in result.violation.message


def test_nondeterminism_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = iter(range(100))
    original = Hardware.__init__

    def init(self: Hardware, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.log("info", f"run {next(runs)}")  # differs between the run and its replay

    monkeypatch.setattr(Hardware, "__init__", init)
    result = run_spec(_failover_spec())
    assert result.violation is not None and result.violation.invariant == "replay"


def _old_offline_delayed(self: Any, node: str, delay: int | None = None) -> bool:
    """NodeStatus.node_is_offline_delayed before commit 2fe9951: a member in maintenance
    counted as offline with a fence delay of 0."""
    if delay is None:
        delay = self.fence_delay
    if self.get_node_state(node) == "online":
        return False
    last = self.last_online.get(node)
    if last is None:
        self.last_online[node] = self.now
        return False
    return bool((self.now - last) >= delay)


# the minimal scenario chaos shrank the maintenance bug to (2 nodes, one reboot)
MAINTENANCE_FD0 = Spec(
    name="maintenance-fence-delay-0", nodes=["node1", "node2"],
    services={"ct:102": {"node": "node1", "state": "enabled"}},
    datacenter={"ha": {"shutdown_policy": "migrate"}, "pvha": {"fence_delay": 0}},
    cmdlist=[["power node1 on", "power node2 on"], ["reboot node1"]],
)


def test_the_fixed_maintenance_bug_stays_fixed_and_would_be_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pvha.core.node_status import NodeStatus

    assert run_spec(MAINTENANCE_FD0).violation is None
    monkeypatch.setattr(NodeStatus, "node_is_offline_delayed", _old_offline_delayed)
    found = run_spec(MAINTENANCE_FD0, (DoubleRun,)).violation
    assert found is not None and found.line().startswith(
        "double-run: t=124 after node2/lrm: ct:102 runs on node1, node2"), found
    found = run_spec(MAINTENANCE_FD0).violation
    assert found is not None and found.invariant == "fence-proof", found


# disarm-ha ignore, then arm-ha while the guest's node is cut off: its LRM released its
# agent lock (and watchdog) at the disarm, PVE takes the free lock as the fence proof
DISARM_IGNORE = Spec(
    name="disarm-ignore-arm-cut-off", nodes=["node1", "node2", "node3"],
    services={"ct:102": {"node": "node1", "state": "started"}},
    cmdlist=[["power node1 on", "power node2 on", "power node3 on"],
             ["crm node3 disarm-ha ignore"], ["crm node3 arm-ha", "network node1 off"]],
)


def test_pve_runs_an_unprotected_guest_twice_and_that_is_accepted() -> None:
    result = run_spec(DISARM_IGNORE)
    assert result.violation is None, result.violation
    assert result.accepted == ("ct:102",)
    assert "recover service 'ct:102' from fenced node 'node1' to node 'node2'" in result.log
    assert "node1/lrm: HA disarm requested, releasing agent lock and watchdog" in result.log


# an ignored guest's node is cut off while its LRM restarts: with no active service the
# LRM closes its watchdog and exits (PVE's lost_agent_lock path); re-enabled, the guest is
# recovered from the node whose lock expired, though the node was never reset
IGNORED_RESTART = Spec(
    name="ignored-lrm-restart-cut-off", nodes=["node1", "node2", "node5"],
    services={"fa:500014": {"node": "node5", "state": "started"}},
    cmdlist=[["power node1 on", "power node2 on", "power node5 on"],
             ["service fa:500014 ignored"], ["network node5 off", "restart-lrm node5"],
             ["service fa:500014 disabled"]],
)


def test_pve_recovers_an_ignored_guest_whose_node_closed_its_watchdog() -> None:
    result = run_spec(IGNORED_RESTART)
    assert result.violation is None, result.violation
    assert "recover service 'fa:500014' from fenced node 'node5'" in result.log


# found by the 10,000-run bench (seed 1, run 578): a service deleted while the stack is
# disarmed is still in the manager status at arm-ha, whose round fences its cut-off node
# and recovers it; the config move fails ("no such service"), which aborted the round
DELETED_WHILE_DISARMED = Spec(
    name="deleted-while-disarmed", nodes=["node1", "node2", "node5"],
    services={"vm:101": {"node": "node1", "state": "started"}},
    rules=[{"type": "node-affinity", "id": "na0", "resources": ["vm:101"],
            "nodes": {"node1": 2, "node5": 3}, "strict": True, "disable": False}],
    cmdlist=[["power node1 on", "power node2 on"], ["power node5 on"],
             ["crm node5 disarm-ha ignore", "network node5 off"], ["service vm:101 delete"],
             ["crm node5 arm-ha"]],
)


def test_a_failed_recovery_move_does_not_abort_the_round() -> None:
    result = run_spec(DELETED_WHILE_DISARMED)
    assert result.violation is None, result.violation
    log = result.log
    assert "recovering service 'vm:101' failed: no such service 'vm:101'" in log
    # the round went on to its end and the next one dropped the stale service
    assert log.index("failed: no such service") < log.index("re-arming HA stack") < log.index(
        "removing stale service 'vm:101' (no config)")


def test_unmanaged_instances() -> None:
    lock = {"ha_agent_node1_lock": ("node1", 95)}
    start = _world(running={"vm:101": ("node1",)}, locks=lock)
    # protected: node1's LRM holds its lock and the status places the guest there
    assert inv.unmanaged(start, start, frozenset()) == frozenset()
    # the lock released while the service is frozen: unprotected from then on
    frozen = _world(time=120, running=start.running, ms=_ms({"vm:101": ("freeze", "node1")}))
    assert inv.unmanaged(start, frozen, frozenset()) == {("vm:101", "node1")}
    # released while HA placed the guest elsewhere: no excuse, stays protected
    moved = _world(time=120, running=start.running, ms=_ms({"vm:101": ("started", "node3")}))
    assert inv.unmanaged(start, moved, frozenset()) == frozenset()
    # protected again once the LRM holds its lock for it
    again = _world(time=140, running=start.running, locks={"ha_agent_node1_lock": ("node1", 140)})
    assert inv.unmanaged(frozen, again, frozenset({("vm:101", "node1")})) == frozenset()
    # the LRM closed its watchdog (its lock left to expire) while the guest is ignored
    ignored = _world(time=120, running=start.running, locks=lock, ms=_ms({}))
    armed = replace(ignored, armed=frozenset({"node1"}))
    closed = replace(ignored, time=140, armed=frozenset())
    assert inv.unmanaged(armed, closed, frozenset()) == {("vm:101", "node1")}
    # ... but not while HA counts the guest as started there
    active = replace(armed, ms=_ms({"vm:101": ("started", "node1")}))
    assert inv.unmanaged(active, replace(active, time=140, armed=frozenset()),
                         frozenset()) == frozenset()
    # a guest running before HA knows it
    unknown = _world(running={"vm:101": ("node1",)}, ms={})
    empty = _world(running={}, ms={})
    assert inv.unmanaged(empty, unknown, frozenset()) == {("vm:101", "node1")}


def test_runs_do_not_depend_on_the_hash_seed() -> None:
    import os
    import subprocess
    import sys

    code = ("import hashlib\nfrom pvha.sim.chaos import run_index\n"
            "print(hashlib.sha256(''.join(run_index(SEED, i, replay=False).log"
            " for i in range(25)).encode()).hexdigest())").replace("SEED", str(SAMPLE_SEED))
    digests = set()
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=300)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# ---------------------------------------------------------------------- shrinking
class NoGuestOnNode2:
    """An invariant broken on purpose: no guest may ever run on node2."""

    name = "no-guest-on-node2"

    def check(self, step: Step) -> Iterable[str]:
        for sid, nodes in sorted(step.after.running.items()):
            if "node2" in nodes:
                yield f"{sid} runs on node2"


BROKEN = (*DEFAULT_INVARIANTS, NoGuestOnNode2)


def test_shrinking_keeps_the_failure_and_makes_it_smaller(tmp_path: Path) -> None:
    index, result = next(
        (i, r) for i in range(200)
        if (r := run_index(41, i, BROKEN, replay=False)).violation is not None
        and r.violation.invariant == "no-guest-on-node2" and r.spec.size()[0] > 6
    )
    finding = investigate(index, result, tmp_path, 41, BROKEN)
    minimal = finding.minimal
    assert finding.minimal_violation.invariant == "no-guest-on-node2"
    assert minimal.size() < result.spec.size()
    assert minimal.size()[0] < result.spec.size()[0]  # fewer commands
    # about the least that puts a guest on node2: node2 powered on with one guest
    assert len(minimal.services) == 1
    assert sum(len(b) for b in minimal.cmdlist) <= 3
    assert finding.path is not None and finding.path.is_dir()
    written = json.loads((finding.path / "cmdlist").read_text())
    assert written == minimal.cmdlist
    assert "no-guest-on-node2" in (finding.path / "README").read_text()
    # the written directory fails again as it is loaded from disk
    again = run_spec(Spec.from_json(minimal.to_json()), BROKEN, replay=False)
    assert again.violation is not None and again.violation.invariant == "no-guest-on-node2"


# ---------------------------------------------------------------------- the command
def test_cli_reports_runs_and_violations() -> None:
    result = CliRunner().invoke(sim_app, ["chaos", "--runs", "3", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "3 runs, 0 violations"


def test_cli_writes_the_minimal_scenario_and_fails(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DoubleRun, "check", NoGuestOnNode2.check)
    index = next(i for i in range(50)
                 if run_index(2, i, (DoubleRun,), replay=False).violation is not None)
    result = CliRunner().invoke(
        sim_app, ["chaos", "--runs", str(index + 1), "--seed", "2", "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[-1].startswith(f"{index + 1} runs, ") and lines[-1].endswith(" violations")
    path = Path(lines[0].split(": ", 1)[0])
    assert path.parent == tmp_path and (path / "cmdlist").is_file()
    assert "double-run" in lines[0]
