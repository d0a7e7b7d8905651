"""``pvha import-pve`` on ``pvha sim serve``: a PVE-style HA config in the simulated
cluster's ``/etc/pve/ha`` (3 nodes; vm:100 and vm:103 on node1, vm:101 on node2, ct:102
on node3; pvha's own config empty), taken over while ``pvha watch`` runs. A monitor
samples, all along, pvha's manager status and PVE's HA resources: no guest may ever be
in both."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvha.fakepve import ha_config
from tests.e2e.harness import E2E, running_e2e, wait_for

PVE_RESOURCES = """\
vm: 100
\tgroup prefer1
\tmax_restart 2
\tstate started

vm: 101
\tcomment db
\tstate started

ct: 102
\tstate started

vm: 103
\tmax_relocate 0
\tstate started
"""
PVE_GROUPS = "group: prefer1\n\tnodes node1:2,node2\n\tnofailback 1\n"
PVE_RULES = """\
node-affinity: on-2-3
\tnodes node2,node3
\tresources vm:101

resource-affinity: apart
\taffinity negative
\tresources vm:101,vm:103
"""
SIDS = ["vm:100", "vm:101", "ct:102", "vm:103"]
PVHA_FILES = ("resources.cfg", "groups.cfg", "rules.cfg")


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    with running_e2e(tmp_path_factory, "imp", ha_guests=0) as e2e:
        ha = e2e.fp.cfs_root("node1") / "ha"
        for name, text in (("resources.cfg", PVE_RESOURCES), ("groups.cfg", PVE_GROUPS),
                           ("rules.cfg", PVE_RULES)):
            (ha / name).write_text(text)
        wait_for(lambda: len(e2e.api("node3").cluster.ha.resources.get()) == 4, 10,
                 what="PVE's HA config on every node")
        yield e2e


class Monitor:
    """Samples pvha's manager status, then PVE's HA resources (the truth of the cfs),
    in that order: a sid found in both was acted on by pvha while PVE's HA still had it
    (PVE's HA never takes a guest back, so the order gives no false alarm)."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e, self.both, self.samples = e2e, set[str](), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            managed = set(self.e2e.service_states())
            pve = set(ha_config.states(self.e2e.fp.cluster.tree, None))
            self.both |= managed & pve
            self.samples += 1

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(5)
        return self.both


def pvha_files(e2e: E2E) -> dict[str, bytes]:
    return {n: (e2e.config_dir / n).read_bytes() for n in PVHA_FILES
            if (e2e.config_dir / n).exists()}


def pve_files(e2e: E2E) -> dict[str, bytes]:
    ha = e2e.fp.cfs_root("node1") / "ha"
    return {p.name: p.read_bytes() for p in sorted(ha.iterdir())}


def pve_ha(e2e: E2E) -> tuple[list[str], list[str], list[str]]:
    """PVE's HA resources, groups and rules as its API lists them."""
    ha = e2e.api().cluster.ha
    return ([r["sid"] for r in ha.resources.get()], [g["group"] for g in ha.groups.get()],
            [r["rule"] for r in ha.rules.get()])


def rounds(e2e: E2E, n: int) -> None:
    """Wait until the manager wrote its status ``n`` more times."""
    path = Path(e2e.config_dir / "manager_status")
    seen = [path.stat().st_mtime_ns if path.exists() else 0]
    count = [0]

    def moved() -> bool:
        now = path.stat().st_mtime_ns if path.exists() else 0
        if now != seen[0]:
            seen[0] = now
            count[0] += 1
        return count[0] >= n

    wait_for(moved, 30, step=0.1, what=f"{n} manager rounds")


def test_dry_run_then_import_then_pvha_manages_and_recovers(cluster: E2E) -> None:
    e2e = cluster
    watch = e2e.watch()
    watch.wait_log(r"waiting for the manager lock", 30)  # idle: no services yet
    before = (pvha_files(e2e), pve_files(e2e))
    dry = e2e.pvha("import-pve", "--dry-run", "--output-format", "json")
    assert dry.returncode == 0, dry.stderr
    rows = {(r["kind"], r["id"]): (r["pvha"], r["pve"]) for r in json.loads(dry.stdout)}
    assert rows == {
        **{("resource", s): ("add", "remove") for s in SIDS},
        ("group", "prefer1"): ("add", "remove"), ("rule", "on-2-3"): ("add", "remove"),
        ("rule", "apart"): ("add", "remove")}
    assert "dry run: nothing written, nothing removed" in dry.stderr
    assert (pvha_files(e2e), pve_files(e2e)) == before

    monitor = Monitor(e2e)
    run = e2e.pvha("import-pve")
    assert run.returncode == 0, run.stderr
    assert pve_ha(e2e) == ([], [], [])
    cfg = e2e.pvha("config", "--output-format", "json")
    assert sorted(r["sid"] for r in json.loads(cfg.stdout)) == sorted(SIDS)
    assert (e2e.config_dir / "groups.cfg").read_text() == (
        "group: prefer1\n\tnodes node1:2,node2\n\tnofailback 1\n\n")
    assert (e2e.config_dir / "rules.cfg").read_text() == (
        "node-affinity: on-2-3\n\tnodes node2,node3\n\tresources vm:101\n\n"
        "resource-affinity: apart\n\taffinity negative\n\tresources vm:101,vm:103\n\n")
    assert "vm: 100\n\tgroup prefer1\n\tmax_restart 2\n\tstate started\n" in (
        e2e.config_dir / "resources.cfg").read_text()
    wait_for(lambda: e2e.service_states() == dict.fromkeys(SIDS, "started"), 30,
             what="pvha managing the imported guests")
    both = monitor.stop()
    assert monitor.samples > 10 and both == set()

    after = pvha_files(e2e)
    again = e2e.pvha("import-pve")
    assert again.returncode == 0 and "nothing to import" in again.stderr, again.stderr
    assert pvha_files(e2e) == after

    e2e.ctl("power node2 off")  # vm:101's node; its rule prefers node3 over node1
    watch.wait_log(r"fencing node2: waiting for fence-ack", 30)
    ack = e2e.pvha("fence-ack", "node2", "--yes")
    assert ack.returncode == 0, ack.stderr
    wait_for(lambda: e2e.running_via_api().get(101) == "node3", 40,
             what="vm:101 recovered by pvha")
    e2e.no_split_brain()


def test_a_half_done_import_is_safe_and_a_second_run_finishes_it(cluster: E2E) -> None:
    e2e = cluster
    e2e.watch().wait_log(r"waiting for the manager lock", 30)  # idle: no services yet
    e2e.ctl("guest 101 fail ha-delete")
    monitor = Monitor(e2e)
    first = e2e.pvha("import-pve")
    assert first.returncode == 1
    assert first.stderr.splitlines()[-1].startswith("pvha: error: PVE's HA still has vm:101 ")
    assert "run pvha import-pve again" in first.stderr
    rules_written = (e2e.config_dir / "rules.cfg").read_bytes()
    # PVE keeps vm:101 and, purged of vm:103, its rules; pvha manages the others only
    assert pve_ha(e2e) == (["vm:101"], [], ["on-2-3", "apart"])
    wait_for(lambda: e2e.service_states() == dict.fromkeys(["vm:100", "ct:102", "vm:103"],
                                                           "started"), 30,
             what="pvha managing the guests PVE let go")
    rounds(e2e, 3)
    assert "vm:101" not in e2e.service_states()
    assert "service 'vm:101' skipped: managed by PVE's own HA" in e2e.watchers[0].log()

    second = e2e.pvha("import-pve", "--output-format", "json")
    assert second.returncode == 0, second.stderr
    rows = {(r["kind"], r["id"]): (r["pvha"], r["pve"]) for r in json.loads(second.stdout)}
    assert rows == {("resource", "vm:101"): ("present", "removed"),
                    ("rule", "on-2-3"): ("present", "removed"),
                    ("rule", "apart"): ("present", "removed")}
    assert pve_ha(e2e) == ([], [], [])
    assert (e2e.config_dir / "rules.cfg").read_bytes() == rules_written
    wait_for(lambda: e2e.service_states().get("vm:101") == "started", 30,
             what="vm:101 taken over")
    assert monitor.stop() == set()


def test_refusals_change_nothing_and_say_why_in_one_line(cluster: E2E) -> None:
    e2e = cluster
    refused = e2e.pvha("add", "vm:103", "--max-relocate", "3")  # PVE's HA has it
    assert refused.returncode == 2 and "managed by PVE's own HA" in refused.stderr
    resources = e2e.config_dir / "resources.cfg"
    empty = resources.read_bytes()
    resources.write_text("vm: 103\n\tmax_relocate 3\n\n")  # as by hand
    before = (pvha_files(e2e), pve_files(e2e))
    conflict = e2e.pvha("import-pve")
    assert conflict.returncode == 1, conflict.stderr
    assert conflict.stderr == ("pvha: error: resource vm:103 is already in pvha's config "
                               "with other settings; remove it there or make it the same as "
                               "PVE's, then import again\n")
    assert (pvha_files(e2e), pve_files(e2e)) == before
    resources.write_bytes(empty)
    split = e2e.pvha("import-pve", "101", "--dry-run")  # a bare VMID, as PVE takes it
    assert split.returncode == 1 and split.stderr.count("\n") == 1, split.stderr
    assert "PVE's HA rule 'apart' ties vm:101 to vm:103" in split.stderr
    (e2e.fp.cfs_root("node1") / "ha" / "rules.cfg").write_text(
        PVE_RULES + "\nnode-affinity: also\n\tnodes node1\n\tresources vm:101\n")
    wait_for(lambda: len(e2e.api().cluster.ha.rules.get()) == 3, 10, what="the third rule")
    before = (pvha_files(e2e), pve_files(e2e))
    twice = e2e.pvha("import-pve", "vm:100", "vm:101", "ct:102")
    assert twice.returncode == 1 and twice.stderr.count("\n") == 1, twice.stderr
    assert "ties vm:101 to vm:103" in twice.stderr
    infeasible = e2e.pvha("import-pve", "vm:101", "vm:103", "--dry-run")
    assert infeasible.returncode == 1 and infeasible.stderr.count("\n") == 1
    assert infeasible.stderr.startswith("pvha: error: cannot import from PVE's HA: ")
    assert "already used in another node affinity rule" in infeasible.stderr
    unknown = e2e.pvha("import-pve", "vm:104")
    assert unknown.returncode == 2 and unknown.stderr == (
        "pvha: error: vm:104 is not managed by PVE's own HA\n")
    env = {k: v for k, v in e2e.env().items() if k != "PVHA_HOSTS"}
    offline = e2e.pvha("import-pve", env=env)
    assert offline.returncode == 2 and "no API configured" in offline.stderr
    assert (pvha_files(e2e), pve_files(e2e)) == before
    text = e2e.pvha("import-pve", "ct:102", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert text.stdout.split() == ["KIND", "ID", "PVHA", "PVE", "HA", "resource", "ct:102",
                                   "add", "remove"]
