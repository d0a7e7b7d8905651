"""The safety invariants of a fault trial, checked continuously (every ``interval`` s,
on a thread) against the fake cluster's truth and the cluster filesystem.

Continuously:

* ``split-brain``: ``fake.cluster.truth()["split_brain"]`` is empty (no guest runs on
  two nodes).
* ``lost-config`` / ``duplicate-config``: every guest's config file exists on exactly
  one node (scanned on disk; an anomaly must survive a few quick rescans, because a
  scan is not atomic against a rename in flight).
* ``unproven-move``: a config that changes node without a finished migration task of
  the fake (source node, target named in the task log) is a recovery steal; its source
  must have been proven off while it happened: a BMC power-off (the ``BmcFarm``
  is wrapped to timestamp them) or an ack record ``fence/<node>`` written by a
  ``pvha fence-ack`` the bench ran; a proof ends when the node is powered on.
* ``moved-by-corruption`` (``strict_moves``, the corrupt kind): no migration at all
  (the bench asks for none; a healthy cluster has no reason to move anything).
* ``torn-status``: ``manager_status``, ``lrm_status/*``, ``fence_state`` and the ack
  records parse as JSON objects at every read (atomic writes: never empty, never
  partial).
* ``fenced-healthy`` / ``powered-off-healthy``: no node the bench did not fail is put
  in ``fence`` state by the manager or powered off by its BMC.
* ``watcher-died``: a watcher the bench did not kill is still running.

After the faults (driven by :mod:`tests.e2e.faults_harness`): ``ha-stopped``,
``status-exit``, ``temp-file``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONF_DIRS = ("qemu-server", "lxc")
TEMP_RE = re.compile(r"(\.tmp(\.|$)|^\.#|~$)")


@dataclass
class Violation:
    category: str
    detail: str
    at: float  # seconds since the trial started
    hints: tuple[str, ...] = ()  # regexes of the watcher log lines that tell the story
    logs: list[str] = field(default_factory=list)
    corruptions: str = ""


@dataclass
class Proof:
    """``node`` proven off from ``start`` until ``end`` (None: still), ``by`` bmc|ack."""

    start: float
    by: str
    end: float | None = None


@dataclass
class Tracked:
    """A watcher process under watch; ``expected`` False once the bench kills it."""

    name: str
    watch: Any  # tests.e2e.harness.Watch
    expected: bool = True


class Monitor:
    """Run with :meth:`start`; :meth:`stop` does one last check and joins."""

    def __init__(self, fake: Any, config_dir: Path, interval: float = 0.05) -> None:
        self.fake = fake
        self.config_dir = config_dir
        self.nodes_dir = fake.cfs_root() / "nodes"
        self.interval = interval
        self.t0 = time.monotonic()
        self.failed: set[str] = set()  # nodes the bench failed (power, network)
        self.acked: set[str] = set()  # nodes the bench ran pvha fence-ack for
        self.strict_moves = False
        self.proofs: dict[str, list[Proof]] = {}
        self.power_log: list[tuple[float, str, str, str]] = []  # (t, node, on|off, by)
        self.moves: list[dict[str, Any]] = []
        self.violations: list[Violation] = []
        self.notes: Counter[str] = Counter()
        self.watchers: list[Tracked] = []
        self._keys: set[tuple[str, str]] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults-monitor", daemon=True)
        self._used_tasks: set[str] = set()
        self.vmids = sorted(fake.cluster.configs())
        self.where = {v: ns[0] for v, ns in self._scan().items() if len(ns) == 1}
        self._last_scan = self.now()
        self.checks = 0
        self._wrap_bmcs()

    def now(self) -> float:
        return time.monotonic() - self.t0

    # --- what the bench tells ----------------------------------------------------------

    def track(self, name: str, watch: Any) -> Tracked:
        with self._lock:
            t = Tracked(name, watch)
            self.watchers.append(t)
            return t

    def power_on(self, node: str) -> None:
        """The bench powers ``node`` on: its proofs end now, its fence-ack is consumed."""
        with self._lock:
            self._end_proofs(node)
            self.acked.discard(node)
            self.power_log.append((self.now(), node, "on", "bench"))

    def violate(self, category: str, key: str, detail: str, *hints: str) -> None:
        with self._lock:
            if (category, key) in self._keys:
                return
            self._keys.add((category, key))
            self.violations.append(Violation(category, detail, round(self.now(), 2), hints))

    # --- the thread --------------------------------------------------------------------

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.check()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - a monitor bug must not end the trial
                self.notes[f"monitor error: {type(exc).__name__}: {exc}"] += 1

    def check(self) -> None:
        with self._lock:
            self.checks += 1
            self._update_acks()
            truth = self.fake.cluster.truth()
            for vmid in truth["split_brain"]:
                g = truth["guests"][vmid]
                self.violate("split-brain", vmid, f"guest {vmid} runs on {g['running_on']} "
                             f"(config on {g['node']})", rf"\b{vmid}\b")
            self._check_configs(truth)
            ms = self._check_status_files()
            self._check_fencing(ms, truth)
            self._check_watchers()

    # --- configs -----------------------------------------------------------------------

    def _scan(self) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {v: [] for v in getattr(self, "vmids", [])}
        for node in sorted(os.listdir(self.nodes_dir)):
            for sub in CONF_DIRS:
                try:
                    names = os.listdir(self.nodes_dir / node / sub)
                except OSError:
                    continue
                for name in names:
                    stem, _, ext = name.partition(".")
                    if ext == "conf" and stem.isdigit():
                        found.setdefault(int(stem), []).append(node)
        return found

    def _check_configs(self, truth: dict[str, Any]) -> None:
        prev_scan, self._last_scan = self._last_scan, self.now()
        found = self._scan()
        odd = {v for v, ns in found.items() if len(ns) != 1}
        for _ in range(5):
            if not odd:
                break
            time.sleep(0.02)
            again = self._scan()
            odd = {v for v in odd if len(again.get(v, [])) != 1}
            found.update({v: ns for v, ns in again.items() if v not in odd})
        for v in sorted(odd):
            nodes = found.get(v, [])
            what = "lost-config" if not nodes else "duplicate-config"
            self.violate(what, str(v), f"guest {v}: config on {nodes or 'no node'}",
                         rf"\b{v}\b")
        for v, nodes in found.items():
            if len(nodes) != 1:
                continue
            old, new = self.where.get(v), nodes[0]
            if old is not None and old != new:
                self._classify_move(v, old, new, prev_scan, truth)
            self.where[v] = new

    def _classify_move(self, vmid: int, src: str, dst: str, since: float,
                       truth: dict[str, Any]) -> None:
        now = self.now()
        task = self._migration(vmid, src, dst)
        move = {"t": round(now, 2), "vmid": vmid, "from": src, "to": dst,
                "by": "migration" if task else "steal"}
        self.moves.append(move)
        hints = (rf"\b{vmid}\b", rf"'{src}'")
        if task:
            self.notes["migrations"] += 1
            if self.strict_moves:
                self.violate("moved-by-corruption", f"{vmid}:{src}:{dst}:{now:.1f}",
                             f"guest {vmid} migrated {src} -> {dst} ({task}) though nothing "
                             "asked for a migration", *hints)
            return
        self._update_acks()  # an ack written between our last look and the rename
        if not self._proven(src, since, now):
            power = truth["nodes"][src]["power"]
            self.violate("unproven-move", f"{vmid}:{src}:{dst}",
                         f"config of guest {vmid} moved {src} -> {dst} while {src} had no "
                         f"proof of power-off (no BMC off, no fence-ack; {src} power {power}, "
                         f"failed by the bench: {src in self.failed})", *hints)

    def _migration(self, vmid: int, src: str, dst: str) -> str | None:
        """The UPID of a finished, not yet matched migration ``src -> dst`` of ``vmid``
        (the cluster lock: a rename and its task's end happen under it)."""
        with self.fake.cluster.lock:
            for t in self.fake.cluster.tasks.all():
                if (t.type in ("qmigrate", "vzmigrate") and t.id == str(vmid) and t.node == src
                        and t.exitstatus == "OK" and t.upid not in self._used_tasks
                        and any(f"to node '{dst}'" in ln for ln in t.lines)):
                    self._used_tasks.add(t.upid)
                    return str(t.upid)
        return None

    # --- proofs of power-off ------------------------------------------------------------

    def _wrap_bmcs(self) -> None:
        farm = self.fake.bmcs
        if farm is None:
            return
        original = farm.set_power

        def set_power(node: str, on: bool) -> None:
            with self._lock:
                self.power_log.append((self.now(), node, "on" if on else "off", "bmc"))
                if on:
                    self._end_proofs(node)
                else:
                    self.proofs.setdefault(node, []).append(Proof(self.now(), "bmc"))
                    if node not in self.failed:
                        self.violate("powered-off-healthy", node,
                                     f"the BMC powered off {node}, which the bench never "
                                     "failed", rf"'{node}'", node)
            original(node, on)

        farm.set_power = set_power  # the BMC hooks look it up at call time

    def _update_acks(self) -> None:
        for node in self.acked:
            if (self.config_dir / "fence" / node).exists():
                spans = self.proofs.setdefault(node, [])
                if not any(p.end is None and p.by == "ack" for p in spans):
                    spans.append(Proof(self.now(), "ack"))

    def _end_proofs(self, node: str) -> None:
        for proof in self.proofs.get(node, []):
            if proof.end is None:
                proof.end = self.now()

    def _proven(self, node: str, since: float, now: float) -> bool:
        return any(p.start <= now and (p.end is None or p.end >= since)
                   for p in self.proofs.get(node, []))

    # --- status files --------------------------------------------------------------------

    def _status_paths(self) -> list[Path]:
        paths = [self.config_dir / "manager_status", self.config_dir / "fence_state"]
        for sub in ("lrm_status", "fence"):
            try:
                paths += [self.config_dir / sub / n for n in sorted(os.listdir(
                    self.config_dir / sub)) if not n.startswith(".")]
            except OSError:
                pass
        return paths

    def _check_status_files(self) -> dict[str, Any]:
        ms: dict[str, Any] = {}
        for path in self._status_paths():
            try:
                raw = path.read_bytes()
            except OSError:
                continue
            try:
                data = json.loads(raw)
                ok = isinstance(data, dict)
            except ValueError:
                data, ok = None, False
            rel = str(path.relative_to(self.config_dir))
            if not ok:
                self.violate("torn-status", f"{rel}:{len(raw)}", f"{rel} unparsable at a read "
                             f"({len(raw)} bytes: {raw[:120]!r})", "manager_status|lrm_status")
            elif rel == "manager_status":
                ms = data
        return ms

    # --- fencing, watchers ---------------------------------------------------------------

    def _check_fencing(self, ms: dict[str, Any], truth: dict[str, Any]) -> None:
        for node, state in (ms.get("node_status") or {}).items():
            if node in self.failed:
                continue
            if state == "fence":
                self.violate("fenced-healthy", node,
                             f"the manager put {node} in 'fence' state; it was never failed "
                             f"(power {truth['nodes'].get(node, {}).get('power')})",
                             rf"'{node}'", node)
            elif state != "online":
                self.notes[f"healthy node seen {state}"] += 1

    def _check_watchers(self) -> None:
        for t in self.watchers:
            rc = t.watch.proc.poll()
            if t.expected and rc is not None:
                t.expected = False
                self.violate("watcher-died", t.name, f"watcher {t.name} exited by itself "
                             f"(rc {rc}, log {t.watch.log_path})", "Traceback|Error|error")
