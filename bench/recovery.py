"""Recovery time: from a node's failure to all its HA guests running on other nodes.

Usage: ``python bench/recovery.py [--runs 3] [--skip-real] [--only-agents]``

The failure is a hang: ``network node2 off`` (power stays on, node2's guests keep
running there, so nothing may start them elsewhere before node2 is proven off). Three
measurements, printed with the settings they use:

(a) simulator, virtual time, PVE-compatible: PVE's simulator rounds (20 s), 60 s fence
    delay, fencing by the agent lock (node2's lock expires 120 s after its last renewal,
    behind its watchdog). No ``pvha`` key in datacenter.cfg: this is PVE's behaviour.
(b) simulator, virtual time, pvha power fencing (pvha.sim.fencing): fence.cfg with one
    IPMI device per node and ``{"pvha": {"fencing": "power", "round_interval": 6,
    "detection_delay": 8, "device_latency": 0}}``: a failed node still counts as a
    member for 8 s (corosync's token timeout), the manager runs every 6 s (the
    simulator's minimum for 3 nodes: each daemon iteration costs 1 virtual second), the
    fence delay is the device default (5 s), and the BMC switches power within the
    fencing call, which reads it back at once (off then status, as the real fencer and
    fence_ipmilan do; in (c) that call takes about a second of real time, and like
    every blocking call in PVE's simulator it costs no virtual time). For comparison,
    (b2) gives the BMC 2 s to switch, so the read-back comes in the master's next round.
(c) real time on ``pvha sim serve --bmc ipmi`` (in this process: FakePve with one pyghmi
    BMC per node, ``--membership-delay 8``, 1 s guest start tasks) and ``pvha watch`` as
    a subprocess at its default settings (10 s rounds, the device's default fence delay,
    fence_ipmilan through the fence.cfg the simulator wrote). Timed with the wall clock,
    from the ``network node2 off`` command until the fake's truth shows node2's guests
    running elsewhere. Goal: <= 14 s (median of ``--runs``).
(d) the same cluster, but every migration takes 300 s: a ``pvha migrate`` of a node1 guest
    to node3 is in flight when node2 loses power; timed from the power-off until the
    manager status shows node2 in ``fence``. A round never waits on a task, so the long
    migration must not delay it. Goal: <= one round interval (10 s) + 1 s.
(e) no BMC: ``pvha sim serve --agents`` (one ``pvha agent`` per node renewing its lease
    every 5 s, watchdog-mux's real 60 s client timeout, a reset node stays off) and
    ``pvha watch`` at its defaults (10 s rounds, 60 s fence delay); ``network node2 off``
    until node2's guests run elsewhere, fenced by lease expiry (no renewal seen for
    60 + 10 + 5 s). Goal: <= 90 s (PVE: about 2 min).
(f) the same, but the failure is ``kill -9`` of node2's agent.
(e-sim) the simulator's lease mode (``{"pvha": {"fencing": "lease"}}``, pvha.sim.fencing):
    PVE's 20 s rounds and 60 s fence delay, the dead node fenced once its agent lock
    (its lease) went 75 s without renewal; virtual time.

Nothing here is asserted in tests; the figures are for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pvha.sim.runner import run_scenario
from pvha.sim.scenario import load_scenario

SERVICES = {"vm:101": "node1", "vm:102": "node2", "vm:103": "node2", "vm:104": "node3"}
FENCE_CFG = ("device ipmi fence_ipmilan username=admin password_file=/etc/pvha/bmc lanplus\n"
             + "".join(f"connect ipmi node=node{i} ip=10.0.0.{i}\n" for i in (1, 2, 3)))
POWER = {"fencing": "power", "round_interval": 6, "detection_delay": 8, "device_latency": 0}
SLOW_BMC = {**POWER, "device_latency": 2}
LEASE = {"fencing": "lease"}  # PVE's rounds and fence delay; agents' leases, no BMC


# --- (a) and (b): the simulator -----------------------------------------------------------


def _scenario(root: Path, pvha: dict[str, Any] | None) -> Path:
    d = root / ("power" if pvha else "pve")
    d.mkdir()
    nodes = {f"node{i}": {"power": "off", "network": "off"} for i in (1, 2, 3)}
    (d / "hardware_status").write_text(json.dumps(nodes))
    (d / "service_config").write_text(json.dumps(
        {sid: {"node": node, "state": "started"} for sid, node in SERVICES.items()}))
    (d / "manager_status").write_text("{}")
    (d / "cmdlist").write_text(json.dumps(
        [["power node1 on", "power node2 on", "power node3 on"], ["network node2 off"]]))
    if pvha:
        (d / "datacenter.cfg").write_text(json.dumps({"pvha": pvha}))
    if pvha and pvha["fencing"] == "power":
        (d / "fence.cfg").write_text(FENCE_CFG)
    return d


def _sim_times(log: str) -> dict[str, int]:
    """Virtual times of the failure, the milestones, and the last guest started."""
    lines = [(int(m.group(1)), m.group(2), m.group(3)) for m in
             (re.match(r"^\S+\s+(\d+)\s+(\S+): (.*)$", ln) for ln in log.splitlines()) if m]
    fail = next(t for t, o, msg in lines if msg == "execute network node2 off")
    out = {"failure": fail}
    for key, pattern in (("unknown", "node 'node2': state changed from 'online' => 'unknown'"),
                         ("fence", "node 'node2': state changed from 'unknown' => 'fence'"),
                         ("fenced", "fencing: acknowledged")):
        out[key] = next(t for t, o, msg in lines if t >= fail and msg.startswith(pattern))
    started = [next(t for t, o, msg in lines
                    if t >= fail and o.endswith("/lrm") and not o.startswith("node2")
                    and msg == f"service status {sid} started")
               for sid, node in SERVICES.items() if node == "node2"]
    out["running"] = max(started)
    return out


def simulate(pvha: dict[str, Any] | None) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        return _sim_times(run_scenario(load_scenario(_scenario(Path(tmp), pvha))))


def _sim_line(label: str, t: dict[str, int]) -> str:
    f = t["failure"]
    return (f"{label}: {t['running'] - f:>4} s  (offline noticed +{t['unknown'] - f} s, "
            f"fence +{t['fence'] - f} s, proven off +{t['fenced'] - f} s, guests running "
            f"+{t['running'] - f} s; virtual time)")


# --- (c): real time on pvha sim serve --bmc ipmi ----------------------------------------------


def _watch(state: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVHA_")}
    env.update({"PVHA_SETTINGS": str(state / "settings.toml"), "PYTHONUNBUFFERED": "1"})
    return subprocess.Popen([sys.executable, "-m", "pvha", "watch"], env=env, cwd=REPO,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], fake: Any) -> None:
    """SIGTERM the watcher (SIGKILL if it lingers), then stop the fake cluster."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    fake.stop()


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def real_run(workdir: Path) -> dict[str, float]:
    """One real-time run; seconds from the failure to node2 off and to guests running."""
    from pvha.fakepve.cluster import Timing
    from pvha.fakepve.server import FakePve

    timing = Timing(task_seconds=1.0, migrate_seconds=2.0, proxy_delay=1.0,
                    auth_fail_delay=0.0, membership_delay=8.0)
    fake = FakePve(workdir / "d", nodes=3, guests=6, timing=timing, bmc="ipmi").start()
    proc = _watch(fake.state, workdir / "watch.log")
    try:
        _wait(lambda: _steady(fake, 6), 60, "all services started")
        return _fail_node2(fake, lambda: fake.cluster.set_network("node2", False), 90)
    finally:
        _stop(proc, fake)


def _fail_node2(fake: Any, fail: Any, bound: float) -> dict[str, float]:
    """Run ``fail()``; seconds until node2 is off and until its guests run elsewhere."""
    mine = [v for v, c in fake.cluster.configs().items() if c.node == "node2"]

    def moved() -> bool:
        truth = fake.cluster.truth()["guests"]
        return all(truth[str(v)]["running_on"] not in ([], ["node2"]) for v in mine)

    t0 = time.monotonic()
    fail()
    _wait(lambda: not fake.cluster.nodes["node2"].power, bound, "node2 off")
    off = time.monotonic() - t0
    _wait(moved, 2 * bound, "node2's guests running elsewhere")
    return {"off": off, "running": time.monotonic() - t0}


def _manager_status(fake: Any) -> dict[str, Any]:
    try:
        return json.loads((fake.cfs_root() / "pvha/manager_status").read_text())
    except (OSError, ValueError):
        return {}


def _steady(fake: Any, count: int) -> bool:
    ss = _manager_status(fake).get("service_status") or {}
    return len(ss) == count and {sd.get("state") for sd in ss.values()} == {"started"}


def migration_run(workdir: Path) -> float:
    """(d): seconds from node2's power-off to its fence state, a 300 s migration running."""
    from pvha.fakepve.cluster import Timing
    from pvha.fakepve.server import FakePve

    timing = Timing(task_seconds=1.0, migrate_seconds=300.0, proxy_delay=1.0,
                    auth_fail_delay=0.0, membership_delay=8.0)
    fake = FakePve(workdir / "d", nodes=3, guests=6, timing=timing, bmc="ipmi").start()
    proc = _watch(fake.state, workdir / "watch.log")
    try:
        _wait(lambda: _steady(fake, 6), 60, "all services started")
        vmid = min(v for v, c in fake.cluster.configs().items() if c.node == "node1")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PVHA_")}
        env["PVHA_SETTINGS"] = str(fake.state / "settings.toml")
        env["PVHA_CONFIG_DIR"] = str(fake.cfs_root() / "pvha")
        subprocess.run([sys.executable, "-m", "pvha", "migrate", f"vm:{vmid}", "node3"],
                       env=env, cwd=REPO, check=True, capture_output=True)
        _wait(lambda: fake.cluster.rt(vmid).lock == "migrate", 60, "the migration running")
        t0 = time.monotonic()
        fake.cluster.set_power("node2", False)
        _wait(lambda: (_manager_status(fake).get("node_status") or {}).get("node2") == "fence",
              120, "node2 in fence state")
        return time.monotonic() - t0
    finally:
        _stop(proc, fake)


def agents_run(workdir: Path, failure: str) -> dict[str, float]:
    """(e)/(f): no BMC, ``pvha sim serve --agents`` with watchdog-mux's real 60 s timeout,
    agents renewing every 5 s, pvha watch at its defaults (10 s rounds, 60 s fence delay).
    ``failure``: ``network`` (node2 cut off) or ``kill9`` (node2's agent killed). Seconds
    from the failure to node2's watchdog reset and to its guests running elsewhere."""
    from pvha.fakepve.cluster import Timing
    from pvha.fakepve.server import FakePve

    timing = Timing(task_seconds=1.0, migrate_seconds=2.0, proxy_delay=1.0,
                    auth_fail_delay=0.0, membership_delay=8.0, watchdog_seconds=60.0,
                    reboot_seconds=600.0)
    fake = FakePve(workdir / "d", nodes=3, guests=6, timing=timing, agents=True).start()
    proc = _watch(fake.state, workdir / "watch.log")
    try:
        _wait(lambda: _steady(fake, 6), 60, "all services started")
        _wait(lambda: all(fake.watchdogs.muxes[n].state()["armed"] for n in fake.names), 60,
              "every agent armed")

        def fail() -> None:
            if failure == "network":
                fake.cluster.set_network("node2", False)
            else:
                os.kill(fake.agents.describe("node2")["pid"], signal.SIGKILL)

        return _fail_node2(fake, fail, 120)
    finally:
        _stop(proc, fake)


def _agents_line(label: str, runs: list[dict[str, float]]) -> str:
    total, off = [r["running"] for r in runs], [r["off"] for r in runs]
    return (f"{label}: median {statistics.median(total):.1f} s (min {min(total):.1f}, max "
            f"{max(total):.1f}, {len(runs)} runs; node2 reset by its watchdog after median "
            f"{statistics.median(off):.1f} s; goal <= 90 s, PVE about 2 min)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="real-time runs for (c)")
    parser.add_argument("--skip-real", action="store_true", help="only (a) and (b)")
    parser.add_argument("--only-agents", action="store_true", help="only (e) and (f)")
    args = parser.parse_args()
    if args.only_agents:
        print(_sim_line("(e-sim) simulator, no BMC, pvha agents' leases (20 s rounds, 60 s "
                        "fence delay)", simulate(LEASE)))
        return _agents(args.runs)
    print("failure: 'network node2 off' (node2 hangs, power on); 3 nodes, node2 runs "
          "vm:102 and vm:103 (sim) / vm:101 and vm:104 (real)")
    print(_sim_line("(a) simulator, PVE-compatible (20 s rounds, 60 s fence delay, "
                    "agent-lock fencing)        ", simulate(None)))
    print(_sim_line("(b) simulator, pvha power fencing (6 s rounds, 8 s detection, 5 s "
                    "fence delay, BMC at once)", simulate(POWER)))
    print(_sim_line("(b2) same, with a BMC that switches 2 s after the off command      ",
                    simulate(SLOW_BMC)))
    print(_sim_line("(e-sim) simulator, no BMC, pvha agents' leases (20 s rounds, 60 s "
                    "fence delay)", simulate(LEASE)))
    if args.skip_real:
        return 0
    if shutil.which("fence_ipmilan", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        print("(c) skipped: fence_ipmilan is missing (Debian package fence-agents)")
        return 1
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="pvha-bench-") as tmp:
            runs.append(real_run(Path(tmp)))
    total = [r["running"] for r in runs]
    off = [r["off"] for r in runs]
    print(f"(c) real time, pvha sim serve --bmc ipmi --membership-delay 8 + pvha watch at its "
          f"defaults (fence_ipmilan): median {statistics.median(total):.1f} s "
          f"(min {min(total):.1f}, max {max(total):.1f}, {len(runs)} runs; node2 powered off "
          f"after median {statistics.median(off):.1f} s; goal <= 14 s)")
    fenced = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="pvha-bench-") as tmp:
            fenced.append(migration_run(Path(tmp)))
    print(f"(d) power loss of node2 while a 300 s migration runs node1 -> node3, same setup: "
          f"power-off to fence state median {statistics.median(fenced):.1f} s (min "
          f"{min(fenced):.1f}, max {max(fenced):.1f}, {len(fenced)} runs; goal <= 11 s: one "
          f"round interval + 1 s; 8 s of it are the membership delay)")
    return _agents(args.runs)


def _agents(count: int) -> int:
    for label, failure in (
            (("(e) no BMC, pvha sim serve --agents (watchdog-mux's 60 s), 'network node2 "
              "off', failure to guests running elsewhere"), "network"),
            ("(f) same, kill -9 of node2's agent", "kill9")):
        runs = []
        for _ in range(count):
            with tempfile.TemporaryDirectory(prefix="pvha-bench-") as tmp:
                runs.append(agents_run(Path(tmp), failure))
        print(_agents_line(label, runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
