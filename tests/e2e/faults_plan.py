"""Fault-trial schedules (``bench/faults.py``, ``tests/e2e/test_faults_sample.py``): one
plain dict per trial, a pure function of its kind and seed, so a trial is reproduced by
its ``KIND:SEED``. Timing is real when a plan runs, so outcomes may vary between runs of
one plan; the plan itself never does.

Kinds (``KINDS``):

* ``kill9``: node2 fails (``ack``: power off, then ``pvha fence-ack node2``; ``bmc``: it
  hangs, ``network node2 off``, and the watcher powers it off through its IPMI BMC);
  the watcher is ``kill -9``'d at random instants of the recovery and restarted, several
  times.
* ``pause``: two watchers with their own settings files (different API host orders)
  and a short manager-lock lifetime; SIGSTOP/SIGCONT of the master, the standby or both
  (some pauses longer than the lock lifetime), kills and restarts, node2 failing.
* ``api``: bursts of ``fail5xx``, ``drop``, ``latency`` and ``expire-tickets`` (the
  fake's control commands) during node2's recovery.
* ``corrupt``: a corrupting layer between the watcher and the fake (truncated bodies,
  dropped keys, duplicated or conflicting list entries, ``online: "yes"``, 200 without
  ``data``), sporadic plus "sticky" windows aimed at one victim node; the cluster is
  healthy, or node2 fails and is recovered.

Every plan ends the same way: faults off, every HA guest ``started`` and running, one
guest stopped behind HA's back ("probe") restarted, ``pvha status`` exiting 0.
"""

from __future__ import annotations

import random
from typing import Any

KINDS = ("kill9", "pause", "api", "corrupt")
NODES = ("node1", "node2", "node3")
GUESTS = 6  # FakePve(guests=6): node1 vm 100,103; node2 vm 101,104; node3 ct 102,105
HEALTHY_GUESTS = (100, 102, 103, 105)  # not on node2, the node that fails
CORRUPT_MODES = ("truncate", "dropkey", "dup", "dup_conflict", "online_yes", "nodata")
PAUSE_OPS = ("stop-master-long", "stop-master-short", "stop-standby-long", "kill-master",
             "kill-standby", "stop-both-long")
FAIL_STATUSES = (502, 503, 503, 504, 596, 500)
ANCHORS = {"fence": r"=> 'fence'", "recover": r"recover service", "starting": r"starting service",
           "master": r"=> master"}
"""Watcher log lines a kill or a pause may be aimed at (regexes)."""
ANCHOR_SPREAD = {"time": 4.0, "fence": 0.8, "recover": 0.1, "starting": 0.3, "master": 1.5}
FIRST_ANCHORS = ("time", "fence", "recover", "starting")
LATER_ANCHORS = ("time", "master", "recover", "starting")


def _r(x: float) -> float:
    return round(x, 2)


def trial_seeds(master: int, kinds: tuple[str, ...], trials: int) -> list[tuple[str, int]]:
    """``trials`` (kind, seed) pairs, kinds round-robin, seeds drawn from ``master``."""
    rng = random.Random(master)
    return [(kinds[i % len(kinds)], rng.randrange(1, 2**31)) for i in range(trials)]


def make_plan(kind: str, seed: int, quick: bool = False) -> dict[str, Any]:
    """The schedule of one trial. ``quick``: fewer and shorter faults (the CI sample)."""
    if kind not in KINDS:
        raise ValueError(f"unknown trial kind {kind!r} (kinds: {', '.join(KINDS)})")
    rng = random.Random(f"{kind}:{seed}")
    plan = {"kind": kind, "seed": seed, "quick": quick}
    plan.update({"kill9": _kill9, "pause": _pause, "api": _api, "corrupt": _corrupt}[kind](
        rng, quick))
    plan["probe"] = 100 + rng.randrange(GUESTS)  # stopped behind HA's back at the end
    return plan


def _failure(rng: random.Random) -> dict[str, Any]:
    variant = rng.choice(("ack", "bmc"))
    return {"variant": variant, "ack_after": _r(rng.uniform(0.0, 2.0)) if variant == "ack"
            else None}


def _guest_stop(rng: random.Random, p: float, lo: float, hi: float) -> dict[str, Any] | None:
    if rng.random() >= p:
        return None
    return {"vmid": rng.choice(HEALTHY_GUESTS), "at": _r(rng.uniform(lo, hi))}


def _anchored(rng: random.Random, anchors: tuple[str, ...]) -> dict[str, Any]:
    """When to strike: ``after`` s past the next log line of ``anchor`` in the
    watcher's log (``time``: past the previous step), so kills and pauses land inside
    the recovery's few seconds, not only around it."""
    anchor = rng.choice(anchors)
    return {"anchor": anchor, "after": _r(rng.uniform(0.0, ANCHOR_SPREAD[anchor]))}


def _kill9(rng: random.Random, quick: bool) -> dict[str, Any]:
    plan = _failure(rng)
    count = 2 if quick else rng.randint(2, 4)
    plan["lock_lifetime"] = 4
    plan["kills"] = [{**_anchored(rng, FIRST_ANCHORS if i == 0 else LATER_ANCHORS),
                      "restart_after": _r(rng.uniform(0.0, 1.5))} for i in range(count)]
    plan["guest_stop"] = _guest_stop(rng, 0.5, 0.0, 4.0)
    plan["power_on_end"] = rng.random() < 0.5
    return plan


def _pause(rng: random.Random, quick: bool) -> dict[str, Any]:
    plan = _failure(rng)
    life = 4 if quick else 6
    plan["lock_lifetime"] = life
    plan["fail_before"] = rng.randint(0, 1)
    events = []
    for i in range(2 if quick else rng.randint(3, 5)):
        op = rng.choice(PAUSE_OPS)
        long_pause = life + rng.uniform(1.0, 4.0)
        when = _anchored(rng, FIRST_ANCHORS) if i == plan["fail_before"] else {
            "anchor": "time", "after": _r(rng.uniform(0.3, 3.0))}
        events.append({
            "op": op, **when,
            "pause": _r(long_pause if op.endswith("-long") else rng.uniform(0.5, 0.6 * life)),
            "restart_after": _r(rng.uniform(0.0, 2.0)),
            "guest_stop": _guest_stop(rng, 0.6, 0.0, long_pause),
            "resume_order": rng.choice(("ab", "ba")),
        })
    if not any(e["op"] == "stop-master-long" for e in events):
        e = events[rng.randrange(len(events))]
        e["op"], e["pause"] = "stop-master-long", _r(life + rng.uniform(1.0, 4.0))
    plan["events"] = events
    return plan


def _burst(rng: random.Random) -> dict[str, Any]:
    node = "*" if rng.random() < 0.5 else rng.choice(NODES)
    what = rng.choice(("fail5xx", "fail5xx", "drop", "latency", "expire-tickets"))
    burst: dict[str, Any] = {"at": _r(rng.uniform(0.0, 8.0))}
    if what == "fail5xx":
        burst["cmd"] = f"fail5xx {rng.randint(2, 15)} {node} {rng.choice(FAIL_STATUSES)}"
    elif what == "drop":
        burst["cmd"] = f"drop {rng.randint(1, 6)} {node}"
    elif what == "latency":
        burst["cmd"] = f"latency {rng.randint(100, 2500)} {node}"
        burst["undo"] = f"latency 0 {node}"
        burst["duration"] = _r(rng.uniform(1.0, 4.0))
    else:
        burst["cmd"] = "expire-tickets"
    return burst


def _api(rng: random.Random, quick: bool) -> dict[str, Any]:
    plan = _failure(rng)
    plan["ticket"] = rng.random() < 0.5
    plan["bursts"] = sorted((_burst(rng) for _ in range(3 if quick else rng.randint(3, 6))),
                            key=lambda b: b["at"])
    plan["guest_stop"] = _guest_stop(rng, 0.5, 0.0, 6.0)
    return plan


def _corrupt(rng: random.Random, quick: bool) -> dict[str, Any]:
    variant = rng.choice(("healthy", "healthy", "ack", "bmc"))
    plan: dict[str, Any] = {
        "variant": variant,
        "ack_after": _r(rng.uniform(0.0, 2.0)) if variant == "ack" else None,
        "with_bmc": variant == "bmc" or (variant == "healthy" and rng.random() < 0.5),
        "rate": _r(rng.uniform(0.05, 0.3)),
        "fail_at": _r(rng.uniform(0.0, 4.0)),
    }
    span = 6.0 if quick else 12.0
    plan["windows"] = sorted(({
        "at": _r(rng.uniform(0.0, span)), "length": _r(rng.uniform(2.0, 7.0)),
        "mode": rng.choice(CORRUPT_MODES), "victim": rng.choice(NODES),
        "path": rng.choice(("/cluster/status", "/cluster/resources", "*")),
    } for _ in range(1 if quick else rng.randint(1, 3))), key=lambda w: w["at"])
    for w in plan["windows"]:
        if w["mode"] == "online_yes" and w["path"] == "/cluster/resources":
            w["path"] = "/cluster/status"  # no "online" key in /cluster/resources
    end = max(w["at"] + w["length"] for w in plan["windows"])
    plan["phase"] = _r(max(end, span * 0.8))
    plan["rng_seed"] = rng.randrange(2**31)  # the proxy's per-request choices
    return plan
