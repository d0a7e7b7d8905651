"""One CRM manager round on a synthetic 64-node / 10,000-service cluster.

Usage: ``python bench/manager_round.py [--nodes 64] [--services 10000] [--repeat 7]``

Measures, in the same process and run:

* **steady** - a manage() round of a healthy cluster: every node online, every service
  ``started``, and every LRM has reported a result for the current uid of each of its
  services (as PVE's LRMs do each round), so the round consumes 10,000 results and hands
  out 10,000 new uids;
* **failover** - the round right after one node failed: the node went offline 70 s
  earlier (past the 60 s fence delay) and its agent lock is obtainable, so in this one
  round its ~156 services go ``fence`` -> ``recovery`` -> ``started`` on the other nodes,
  each placement scoring 63 candidate nodes;
* **json.loads** of an equally sized ``GET /cluster/resources`` payload (10,000 guest
  entries with PVE's fields), the cost every API-driven round pays at least once.

It prints the median (and min) milliseconds of each and the median of the per-run ratios
round / json.loads, json.loads being measured right before each round so that the load
of a shared machine weighs on both alike (target: ratio <= 3).
The environment port is an in-memory one (no IO): it hands out fresh config dicts each
round as a real port parsing resources.cfg would, and stores what the manager writes.
Nothing here is timed in tests; the figures are for reading.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pvha.core.manager import Manager
from tests.memory_env import MemoryEnv

FAILED_NODE = "node7"


def build(n_nodes: int, n_services: int) -> tuple[MemoryEnv, Manager]:
    nodes = [f"node{i}" for i in range(1, n_nodes + 1)]
    services = {
        f"vm:{100 + i}": {
            "node": nodes[i % n_nodes],
            "state": "started",
            "max_restart": 1,
            "max_relocate": 1,
        }
        for i in range(n_services)
    }
    env = MemoryEnv(nodes, services, isolate=False)
    env.running.update(services)
    env.lrm = {n: {"mode": "active", "results": {}} for n in nodes}
    return env, Manager(env, 0)


def lrm_round(env: MemoryEnv) -> None:
    """What the LRMs report between two CRM rounds: success for every current uid."""
    results: dict[str, dict[str, Any]] = {n: {} for n in env.lrm}
    for sid, sd in env.manager_status["service_status"].items():
        if sd["state"] == "started" and env.online[sd["node"]]:
            results[sd["node"]][sd["uid"]] = {"sid": sid, "state": "started", "exit_code": 0}
    for node, res in results.items():
        if env.online[node]:
            env.lrm[node] = {"mode": "active", "results": res, "state": "active"}


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def bench_steady(
    n_nodes: int, n_services: int, repeat: int, baseline: Callable[[], float]
) -> list[tuple[float, float]]:
    """(round ms, json.loads ms measured just before it) per repetition."""
    env, m = build(n_nodes, n_services)
    now = 10
    m.manage(now)  # adds every service and starts it
    lrm_round(env)
    out = []
    for i in range(repeat + 1):
        now += 10
        loads = baseline()
        ms = timed(lambda: m.manage(now))  # noqa: B023 - called at once
        lrm_round(env)
        if i:  # the first consumes the start results of the adding round
            out.append((ms, loads))
    assert all(sd["state"] == "started" for sd in m.ss.values())
    return out


def bench_failover(
    n_nodes: int, n_services: int, repeat: int, baseline: Callable[[], float]
) -> tuple[list[tuple[float, float]], int]:
    out = []
    moved = 0
    for _ in range(repeat):
        env, m = build(n_nodes, n_services)
        for now in (10, 20, 30):
            m.manage(now)
            lrm_round(env)
        env.online[FAILED_NODE] = False
        env.lrm[FAILED_NODE] = {"mode": "active", "results": {}}
        m.manage(40)  # node7 -> unknown (last seen online at 30)
        lrm_round(env)
        env.agent_locks.add(FAILED_NODE)  # its lock expired / was released
        victims = [sid for sid, sd in m.ss.items() if sd["node"] == FAILED_NODE]
        loads = baseline()
        ms = timed(lambda: m.manage(100))  # noqa: B023 - 70 s after last seen
        out.append((ms, loads))
        moved = len(victims)
        assert all(m.ss[sid]["state"] == "started" for sid in victims)
        assert all(m.ss[sid]["node"] != FAILED_NODE for sid in victims)
        assert m.ns.get_node_state(FAILED_NODE) == "unknown"
    return out, moved


def resources_payload(n_nodes: int, n_services: int) -> str:
    """``GET /api2/json/cluster/resources`` with one entry per guest, PVE's fields."""
    data = []
    for i in range(n_services):
        vmid = 100 + i
        kind = "qemu" if i % 5 else "lxc"
        data.append(
            {
                "id": f"{kind}/{vmid}",
                "type": kind,
                "node": f"node{i % n_nodes + 1}",
                "vmid": vmid,
                "name": f"guest-{vmid}.example.com",
                "status": "running",
                "maxcpu": 4,
                "maxmem": 8589934592,
                "cpu": 0.0312245117187 + i % 7 / 100,
                "mem": 4294967296 - i * 4096,
                "disk": 0 if kind == "qemu" else 2147483648 + i,
                "maxdisk": 68719476736,
                "uptime": 1234567 + i,
                "template": 0,
                "netin": 98765432109 + i,
                "netout": 12345678901 + i,
                "diskread": 5432109876 + i,
                "diskwrite": 6789012345 + i,
                "hastate": "started",
                "tags": "prod;web",
            }
        )
    return json.dumps({"data": data})


def json_baseline(payload: str) -> Callable[[], float]:
    """json.loads of the payload, best of three (measured right before each round)."""
    return lambda: min(timed(lambda: json.loads(payload)) for _ in range(3))


def report(label: str, pairs: list[tuple[float, float]]) -> str:
    rounds = [ms for ms, _ in pairs]
    ratios = [ms / loads for ms, loads in pairs]
    return (
        f"{label:<44} {statistics.median(rounds):7.1f} ms (min {min(rounds):6.1f})"
        f"  ratio {statistics.median(ratios):.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)

    payload = resources_payload(args.nodes, args.services)
    baseline = json_baseline(payload)
    steady = bench_steady(args.nodes, args.services, args.repeat, baseline)
    failover, moved = bench_failover(args.nodes, args.services, args.repeat, baseline)
    loads = [ld for _, ld in steady + failover]

    print(f"cluster: {args.nodes} nodes, {args.services} services; median of {args.repeat} runs")
    print(
        f"{'json.loads /cluster/resources (%.1f MB)' % (len(payload) / 1e6):<44}"
        f" {statistics.median(loads):7.1f} ms (min {min(loads):6.1f})"
    )
    print(report("manager round, steady state", steady))
    print(report(f"manager round, {FAILED_NODE} fenced, {moved} recovered", failover))
    print("ratio = round / json.loads measured just before it (median); target <= 3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
