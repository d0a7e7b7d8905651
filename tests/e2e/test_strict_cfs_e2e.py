"""``pvha watch`` and the CLI on the strict simulated cluster: every node has its own
pmxcfs mount (``STATE_DIR/nodes/NODE/pve``) whose changes reach the others after a
delay, and refuses writes without quorum. 3 nodes, 6 HA guests: node1 has vm:100 and
vm:103, node2 vm:101 and vm:104, node3 ct:102 and ct:105. Waits are bounded; nothing
here asserts on speed."""

from __future__ import annotations

import re
import threading
from typing import Any

from tests.e2e.harness import E2E, wait_for


def _watch_on(e2e: E2E, node: str, name: str) -> Any:
    """A watcher running on ``node``: its API address and its own mount."""
    root = e2e.fp.cfs_root(node)
    env = e2e.env(hosts=[e2e.fp.address(node)[0]], PVHA_CFS_ROOT=str(root),
                  PVHA_CONFIG_DIR=str(root / "pvha"))
    return e2e.watch(name, env)


def test_e2e_recovery_while_propagation_to_the_target_is_delayed(e2e: E2E) -> None:
    """The manager steals node2's configs on node1's mount; node3 receives the rename
    seconds later, so its API says the config does not exist: the start waits for it and
    is not counted as a failure."""
    assert e2e.fp.pmxcfs is not None, e2e.fp.cfs_notice
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    e2e.ctl("cfs node3 delay 4")
    e2e.ctl("power node2 off")
    w.wait_log(r"fencing node2: waiting for fence-ack", 30)
    assert e2e.pvha("fence-ack", "node2", "--yes").returncode == 0
    moved = wait_for(lambda: {v: g["node"] for v, g in e2e.truth()["guests"].items()
                              if v in ("101", "104") and g["node"] != "node2"}
                     if all(e2e.truth()["guests"][v]["node"] != "node2" for v in ("101", "104"))
                     else None, 30, what="node2's configs moved")
    assert "node3" in moved.values(), moved  # one went to the node that sees it late
    wait_for(lambda: set(e2e.service_states().values()) == {"started"}
             and len(e2e.running_via_api()) == 6, 60, what="all recovered and running")
    assert re.search(r"Configuration file 'nodes/node3/qemu-server/\d+\.conf' does not exist",
                     w.log()), "the race did not happen: the test proves nothing"
    assert "entering error state" not in w.log()
    assert all(rec.get("restart", 0) == 0 for rec in
               e2e.manager_status()["service_status"].values()), "a retry counted as a failure"
    e2e.no_split_brain()


def test_e2e_two_clis_on_two_nodes_queue_commands_concurrently(e2e: E2E) -> None:
    """CLIs on node1's and node3's mounts append to crm_commands while the manager on
    node1 reads and truncates it: every command is processed once, none lost or doubled
    (the cluster-wide HA domain lock, as PVE's cfs_lock_domain)."""
    w = e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    per_cli = 6
    failures: list[str] = []

    def queue(node: str) -> None:
        root = e2e.fp.cfs_root(node)
        env = e2e.env(hosts=[e2e.fp.address(node)[0]], PVHA_CFS_ROOT=str(root),
                      PVHA_CONFIG_DIR=str(root / "pvha"))
        for _ in range(per_cli):  # harmless: the node is not in maintenance
            res = e2e.pvha("crm-command", "node-maintenance", "disable", node, env=env)
            if res.returncode != 0:
                failures.append(res.stderr)

    threads = [threading.Thread(target=queue, args=(node,)) for node in ("node1", "node3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not failures, failures
    lines = {node: rf"clearing maintenance of node {node} requested, but it's in state online"
             for node in ("node1", "node3")}
    wait_for(lambda: all(w.count(p) >= per_cli for p in lines.values()), 30,
             what="every queued command processed")
    w.wait_log(r"manager: ", 10, after=w.count(r"manager: ") + 2)
    assert {node: w.count(p) for node, p in lines.items()} == dict.fromkeys(lines, per_cli)
    assert not (e2e.config_dir / "crm_commands").read_text().strip()


def test_e2e_a_watcher_on_a_node_that_loses_quorum_writes_nothing_and_acts_not(e2e: E2E) -> None:
    """The only watcher runs on node3 (its API, its mount). Cut off, node3 keeps its last
    view read-only: the watcher sends no action and writes nothing anywhere."""
    w = _watch_on(e2e, "node3", "on-node3")
    wait_for(e2e.all_started, 40, what="all services started")
    store = e2e.fp.pmxcfs
    assert store is not None, e2e.fp.cfs_notice
    e2e.ctl("network node3 off")
    w.wait_log(r"no quorum on node3, waiting", 30)
    written = store.version(None)  # changes made anywhere in the cluster so far
    e2e.ctl("requests reset")
    e2e.ctl("guest 100 stop")  # a quorate manager would start it again
    n = w.count(r"no quorum on node3")
    w.wait_log(r"no quorum on node3", 20, after=n + 4)
    sent = e2e.ctl("requests")
    assert sent.get("GET /cluster/status", 0) + sent.get("GET /cluster/resources", 0) > 0, sent
    assert not [k for k in sent if not k.startswith("GET ")], sent  # no start, no write
    assert store.version(None) == written, "a write succeeded on a node without quorum"
    assert e2e.truth()["guests"]["100"]["running_on"] == []
    status = e2e.ctl("status")["nodes"]["node3"]["cfs"]
    assert status["quorate"] is False
    assert w.alive()
    e2e.ctl("network node3 on")  # back: it resyncs, and acts again
    wait_for(lambda: e2e.truth()["guests"]["100"]["running_on"] == ["node1"], 60,
             what="vm:100 started again once node3 is quorate")
    e2e.no_split_brain()
