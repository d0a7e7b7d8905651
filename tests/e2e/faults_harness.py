"""Fault trials against the real loop (``bench/faults.py``, ``tests/e2e/test_faults_sample.py``).

One trial = one plan of :mod:`tests.e2e.faults_plan` run on a fresh ``FakePve`` in this
process (3 nodes, 6 HA guests, the fast timings of :mod:`tests.e2e.harness`: 1 s rounds,
3 s fence delay) with ``pvha watch`` as real subprocesses, while
:class:`~tests.e2e.faults_monitor.Monitor` checks the safety invariants every 50 ms.
After the faults: every HA guest ``started`` and running within ``bound`` s, a guest
stopped behind HA's back restarted within ``bound`` s ("HA never silently stops"),
``pvha status`` exiting 0, the watchers stopped with SIGTERM, and no temp file left
anywhere under the cluster filesystem.

:func:`run_trial` returns a :class:`TrialResult`; the trial directory (watcher logs,
``trial.json`` with the plan, the timeline of what the bench did, the moves, power
events and corruptions seen) is kept when something went wrong, or with ``keep``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pvha.fakepve.cluster import Timing
from pvha.fakepve.server import FakePve
from tests.e2e.faults_monitor import TEMP_RE, Monitor, Tracked, Violation
from tests.e2e.faults_plan import ANCHORS, make_plan
from tests.e2e.faults_proxy import Corrupter
from tests.e2e.harness import E2E, FAST, Watch, wait_for

STEADY_TIMEOUT = 40.0
DEFAULT_BOUND = 60.0
ACK_TIMEOUT = 60.0
PINNED = ("split-brain", "unproven-move", "moved-by-corruption", "fenced-healthy",
          "powered-off-healthy", "torn-status", "lost-config", "duplicate-config")
"""Violations seen at an instant (the others are told at the end of a trial)."""
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


@dataclass
class TrialResult:
    kind: str
    seed: int
    plan: dict[str, Any]
    violations: list[Violation]
    notes: Counter[str]
    duration: float
    dir: Path
    kept: bool
    logs: list[str]
    error: str | None = None
    corruptions: dict[str, int] = field(default_factory=dict)

    @property
    def replay(self) -> str:
        return f"python bench/faults.py --replay {self.kind}:{self.seed}" + (
            " --quick" if self.plan.get("quick") else "")


def run_trial(kind: str, seed: int, root: Path, *, quick: bool = False,
              bound: float = DEFAULT_BOUND, keep: bool = False) -> TrialResult:
    """Run the plan ``kind:seed`` under ``root`` (a directory per trial)."""
    return Trial(make_plan(kind, seed, quick), root, bound).run(keep)


class Trial:
    def __init__(self, plan: dict[str, Any], root: Path, bound: float) -> None:
        self.plan, self.kind, self.seed = plan, plan["kind"], plan["seed"]
        self.dir = Path(root) / f"{self.kind}-{self.seed}"
        self.bound = bound
        self.timeline: list[tuple[float, str]] = []
        self.threads: list[threading.Thread] = []
        self.slots: dict[str, Tracked] = {}
        self.envs: dict[str, dict[str, str]] = {}
        self.generation: Counter[str] = Counter()
        self.watches: list[Watch] = []
        self.killed: set[int] = set()
        self.corrupter: Corrupter | None = None
        self.wall0 = time.time()

    # --- the run ---------------------------------------------------------------------

    def run(self, keep: bool) -> TrialResult:
        started = time.monotonic()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        bmc = self.plan.get("variant") == "bmc" or bool(self.plan.get("with_bmc"))
        error = None
        try:
            # pmxcfs enforces the lock lifetime: the fake's matches the watchers' setting
            timing = Timing(**FAST, cfs_lock_seconds=float(self.plan.get("lock_lifetime", 120)))
            self.fp = FakePve(self.dir / "d", nodes=3, guests=6, timing=timing,
                              bmc="ipmi" if bmc else None).start()
            self.e2e = E2E(self.fp, self.dir)
            self.mon = Monitor(self.fp, self.e2e.config_dir).start()
            self.wall0 = time.time() - self.mon.now()
            getattr(self, "_" + self.kind)()
            self._finish()
        except Exception as exc:  # noqa: BLE001 - a bench failure is reported, not raised
            error = f"{type(exc).__name__}: {exc}"
            (self.dir / "error.txt").write_text(traceback.format_exc())
        finally:
            self._teardown()
        return self._result(time.monotonic() - started, error, keep)

    def _result(self, duration: float, error: str | None, keep: bool) -> TrialResult:
        mon = getattr(self, "mon", None)
        violations = mon.violations if mon else []
        logs = [str(w.log_path) for w in self.watches]
        for v in violations:
            v.logs = self._log_lines(v)
            if self.corrupter is not None:
                self._classify(v)
        corruptions = dict(self.corrupter.counts) if self.corrupter else {}
        kept = keep or bool(violations) or error is not None
        record = {"plan": self.plan, "timeline": self.timeline, "error": error,
                  "violations": [asdict(v) for v in violations],
                  "notes": dict(mon.notes) if mon else {}, "moves": mon.moves if mon else [],
                  "power": mon.power_log if mon else [], "corruptions": corruptions,
                  "corruption_records": self.corrupter.records[:2000] if self.corrupter else [],
                  "logs": logs, "duration": round(duration, 1)}
        if kept:
            (self.dir / "trial.json").write_text(json.dumps(record, indent=1, default=str))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return TrialResult(self.kind, self.seed, self.plan, violations,
                           mon.notes if mon else Counter(), duration, self.dir, kept, logs,
                           error, corruptions)

    # --- small steps -----------------------------------------------------------------

    def say(self, text: str) -> None:
        self.timeline.append((round(self.mon.now(), 2), text))

    def ctl(self, command: str) -> None:
        self.say(f"ctl {command}")
        self.e2e.ctl(command)

    def later(self, delay: float, what: str, fn: Callable[[], None]) -> None:
        def run() -> None:
            time.sleep(delay)
            try:
                fn()
            except Exception as exc:  # noqa: BLE001
                self.say(f"{what} failed: {type(exc).__name__}: {exc}")
                self.mon.notes[f"bench step failed: {what}"] += 1

        thread = threading.Thread(target=run, name=f"later-{what}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def start_watch(self, slot: str) -> Tracked:
        self.generation[slot] += 1
        name = f"{slot}{self.generation[slot]}"
        w = Watch(self.envs[slot], self.dir / f"watch-{name}.log")
        self.watches.append(w)
        self.e2e.watchers.append(w)
        self.slots[slot] = self.mon.track(name, w)
        self.say(f"start watcher {name} (pid {w.proc.pid})")
        return self.slots[slot]

    def kill(self, slot: str) -> None:
        t = self.slots[slot]
        t.expected = False
        self.say(f"kill -9 watcher {t.name}")
        self.killed.add(t.watch.proc.pid)
        t.watch.kill()

    def pause(self, slots: list[str], seconds: float, order: str) -> None:
        for slot in slots:
            self.say(f"SIGSTOP watcher {self.slots[slot].name}")
            _group(self.slots[slot].watch, signal.SIGSTOP)
        time.sleep(seconds)
        for slot in sorted(slots, reverse=order == "ba"):
            self.say(f"SIGCONT watcher {self.slots[slot].name}")
            _group(self.slots[slot].watch, signal.SIGCONT)

    def fail_node2(self, variant: str) -> None:
        self.mon.failed.add("node2")
        self.ctl("power node2 off" if variant == "ack" else "network node2 off")

    def ack_later(self, delay: float, env: dict[str, str]) -> None:
        """``pvha fence-ack node2`` after ``delay`` s, again until its record exists
        (the API faults may hit its own check)."""
        def ack() -> None:
            self.mon.acked.add("node2")
            deadline = time.monotonic() + ACK_TIMEOUT
            while time.monotonic() < deadline:
                res = self.e2e.pvha("fence-ack", "node2", "--yes", env=env)
                self.say(f"pvha fence-ack node2: rc {res.returncode}")
                if (self.e2e.config_dir / "fence" / "node2").exists():
                    return
                time.sleep(0.5)
            raise RuntimeError("fence-ack never recorded")

        self.later(delay, "fence-ack", ack)

    def guest_stop_later(self, spec: dict[str, Any] | None) -> None:
        if spec:
            self.later(spec["at"], "guest stop", lambda: self.ctl(f"guest {spec['vmid']} stop"))

    def strike(self, spec: dict[str, Any], slots: list[str], timeout: float = 8.0) -> str | None:
        """Wait for the moment ``spec`` aims at: ``after`` s past the next log line of
        its anchor in one of ``slots``' logs (the slot whose log had it is returned), or
        past now for the ``time`` anchor. An anchor not seen in ``timeout`` s strikes
        then (the recovery may be over)."""
        anchor, after = spec["anchor"], spec["after"]
        if anchor == "time":
            time.sleep(after)
            return None
        rx = re.compile(ANCHORS[anchor])
        offsets = {slot: _size(self.slots[slot].watch.log_path) for slot in slots}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for slot in slots:
                path = self.slots[slot].watch.log_path
                with contextlib.suppress(OSError), path.open("rb") as fh:
                    fh.seek(offsets[slot])
                    if rx.search(fh.read().decode(errors="replace")):
                        self.say(f"anchor '{anchor}' in {self.slots[slot].name}'s log, "
                                 f"striking {after} s later")
                        time.sleep(after)
                        return slot
            time.sleep(0.005)
        self.say(f"anchor '{anchor}' not seen within {timeout:g} s")
        self.mon.notes[f"anchor '{anchor}' not seen (recovery over before the strike)"] += 1
        return None

    def join(self) -> None:
        for thread in self.threads:
            thread.join(ACK_TIMEOUT + 5)
        self.threads.clear()

    # --- convergence -----------------------------------------------------------------

    def _not_converged(self) -> list[str]:
        """Why HA is not (yet) where it should be: every guest ``started`` in the
        manager status, running exactly on its config's node, that node powered on."""
        truth = self.fp.cluster.truth()
        ss = self.e2e.manager_status().get("service_status") or {}
        out = []
        for vmid, g in truth["guests"].items():
            sid = ("vm:" if g["kind"] == "qemu" else "ct:") + vmid
            st = ss.get(sid) or {}
            if (st.get("state") != "started" or st.get("node") != g["node"]
                    or g["running_on"] != [g["node"]]
                    or truth["nodes"][g["node"]]["power"] != "on"):
                out.append(f"{sid}: state {st.get('state')} on {st.get('node')}, config on "
                           f"{g['node']}, running on {g['running_on']}")
        return out

    def steady(self) -> None:
        wait_for(lambda: not self._not_converged(), STEADY_TIMEOUT,
                 what="all services started before the faults")
        self.say("steady: all services started")

    def converge(self, what: str) -> bool:
        try:
            wait_for(lambda: not self._not_converged(), self.bound, what=what)
        except AssertionError:
            self.mon.violate("ha-stopped", what, f"HA did not get every guest started and "
                             f"running within {self.bound:g} s {what}: "
                             + "; ".join(self._not_converged()), "manager:|error|failed")
            return False
        self.say(f"converged {what}")
        return True

    # --- the kinds -------------------------------------------------------------------

    def _kill9(self) -> None:
        p = self.plan
        env = self.envs["w"] = self.e2e.env(PVHA_LOCK_LIFETIME=str(p["lock_lifetime"]),
                                            PVHA_FENCE_TIMEOUT="3")
        self.start_watch("w")
        self.steady()
        self.fail_node2(p["variant"])
        if p["variant"] == "ack":
            self.ack_later(p["ack_after"], env)
        self.guest_stop_later(p["guest_stop"])
        for k in p["kills"]:
            self.strike(k, ["w"])
            self.kill("w")
            time.sleep(k["restart_after"])
            self.start_watch("w")
        if p["power_on_end"]:
            self.join()
            if self.converge("after the kills, before node2 is powered on again"):
                self.ctl("power node2 on")
                self.mon.power_on("node2")

    def _pause(self) -> None:
        p = self.plan
        self.envs["A"] = self._settings_env("A", p["lock_lifetime"], ("node1", "node2", "node3"))
        self.envs["B"] = self._settings_env("B", p["lock_lifetime"], ("node3", "node1", "node2"))
        self.start_watch("A")
        self.start_watch("B")
        self.steady()
        for i, ev in enumerate(p["events"]):
            if i == p["fail_before"]:
                self.fail_node2(p["variant"])
                if p["variant"] == "ack":
                    self.ack_later(p["ack_after"], self.envs["A"])
            master = self.strike(ev, ["A", "B"]) or self._master()
            standby = "B" if master == "A" else "A"
            op = ev["op"]
            self.say(f"event {op} (master {self.slots[master].name})")
            if op.startswith("stop-"):
                self.guest_stop_later(ev["guest_stop"])
                who = {"master": [master], "standby": [standby], "both": ["A", "B"]}[
                    op.split("-")[1]]
                self.pause(who, ev["pause"], ev["resume_order"])
            else:
                slot = master if op == "kill-master" else standby
                self.kill(slot)
                self.guest_stop_later(ev["guest_stop"])
                time.sleep(ev["restart_after"])
                self.start_watch(slot)

    def _master(self) -> str:
        """The slot of the active manager: A answers as node1, B as node3."""
        node = self.e2e.manager_status().get("master_node")
        return "B" if node == "node3" else "A"

    def _api(self) -> None:
        p = self.plan
        env = self.envs["w"] = self.e2e.env(ticket=p["ticket"], PVHA_FENCE_TIMEOUT="3")
        self.start_watch("w")
        self.steady()
        t_fail = self.mon.now()
        self.fail_node2(p["variant"])
        if p["variant"] == "ack":
            self.ack_later(p["ack_after"], env)
        self.guest_stop_later(p["guest_stop"])
        end = 0.0
        for b in p["bursts"]:
            time.sleep(max(0.0, t_fail + b["at"] - self.mon.now()))
            self.ctl(b["cmd"])
            if "undo" in b:
                self.later(b["duration"], "undo", functools.partial(self.ctl, b["undo"]))
            end = max(end, b["at"] + b.get("duration", 0.0))
        time.sleep(max(0.0, t_fail + end + 1.0 - self.mon.now()))
        self.join()
        self.ctl("clear-faults")

    def _corrupt(self) -> None:
        p = self.plan
        env = self.envs["w"] = self.e2e.env(PVHA_FENCE_TIMEOUT="3")
        self.corrupter = Corrupter(self.fp, p["rng_seed"], clock=self.mon.now)
        self.mon.strict_moves = True
        self.start_watch("w")
        self.steady()
        self.say(f"corruption on: rate {p['rate']}")
        self.corrupter.set_rate(p["rate"])
        if p["variant"] != "healthy":
            self.later(p["fail_at"], "fail node2", lambda: self.fail_node2(p["variant"]))
            if p["variant"] == "ack":
                self.ack_later(p["fail_at"] + p["ack_after"] + 0.05, env)
        for w in p["windows"]:
            self.later(w["at"], "open", functools.partial(self._window, w, True))
            self.later(w["at"] + w["length"], "close", functools.partial(self._window, w, False))
        time.sleep(p["phase"])
        self.corrupter.off()
        self.say("corruption off")

    def _window(self, w: dict[str, Any], open_: bool) -> None:
        assert self.corrupter is not None
        self.say(f"window {'open' if open_ else 'closed'}: {w['mode']} on {w['path']} "
                 f"aimed at {w['victim']}")
        (self.corrupter.open_window if open_ else self.corrupter.close_window)(w)

    def _settings_env(self, slot: str, lifetime: float, order: tuple[str, ...]) -> dict[str, str]:
        """A watcher's own settings file for the same cluster (its API hosts in its own
        order), and an environment that names only that file."""
        fp = self.fp
        hosts = ", ".join(f'"{fp.address(n)[0]}"' for n in order)
        path = self.dir / f"settings-{slot}.toml"
        path.write_text(
            f'[api]\nhosts = [{hosts}]\nport = {fp.port}\nuser = "root@pam"\n'
            f'token_name = "pvha"\ntoken_secret_file = "{fp.state / "token"}"\n'
            f'ca_file = "{fp.state / "ca.pem"}"\nconnect_timeout = 2\nattempts = 2\n'
            f'task_timeout = 20\n\n[cfs]\nroot = "{fp.cfs_root()}"\n\n[watch]\n'
            f"round_interval = 1\nfence_delay = 3\nfence_timeout = 3\n"
            f"lock_lifetime = {lifetime}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PVHA_")}
        env.update({"PVHA_SETTINGS": str(path), "PYTHONUNBUFFERED": "1"})
        return env

    # --- the end of every trial ----------------------------------------------------------

    def _finish(self) -> None:
        self.join()
        if self.corrupter is not None:
            self.corrupter.off()
        self.ctl("clear-faults")
        for slot, t in list(self.slots.items()):
            _group(t.watch, signal.SIGCONT)
            if not t.watch.alive():
                self.start_watch(slot)
        if self.converge("after the faults ended"):
            probe = self.plan["probe"]
            self.ctl(f"guest {probe} stop")
            self.converge(f"after guest {probe} was stopped behind HA's back")
        self._status_exit()
        for t in self.slots.values():
            t.expected = False
            rc = t.watch.stop()
            if rc != 0:
                self.mon.notes[f"watcher exit status {rc} on SIGTERM"] += 1
            self.say(f"watcher {t.name} stopped (rc {rc})")
        self._leftovers()
        self.mon.stop()

    def _status_exit(self) -> None:
        env = dict(next(iter(self.envs.values())))
        res = None
        for _ in range(3):
            res = self.e2e.pvha("status", env=env)
            if res.returncode == 0:
                self.say("pvha status: rc 0")
                return
            if "PVHA_CFS_ROOT" not in env and "does not exist" in res.stderr:
                # the CLI's config dir follows $PVHA_CFS_ROOT, not the settings file's
                # [cfs] root that pvha watch uses: a finding of its own, told once
                self.mon.notes["pvha status ignores the settings file's [cfs] root "
                               "(looked for /etc/pvha)"] += 1
                env["PVHA_CFS_ROOT"] = str(self.fp.cfs_root())
                continue
            time.sleep(1.0)
        assert res is not None
        self.mon.violate("status-exit", "status", f"pvha status exited {res.returncode}: "
                         + " | ".join((res.stdout + res.stderr).strip().splitlines()[-4:]))

    def _leftovers(self) -> None:
        """Temp files under the cluster filesystem once every watcher stopped. pvha
        sweeps a dead writer's temp file at the next write of the same file, once it is
        older than ``pvha.fsutil.ORPHAN_AGE`` (60 s), longer than a trial: so a temp file
        found is aged past that and one ``pvha watch --once`` round runs; one that
        survives it is a violation (it would stay forever), one swept is a note. Lock
        directories left after the watchers stopped are notes."""
        cfs = self.fp.cfs_root()
        temps = self._temp_files(cfs)
        if temps:
            old = time.time() - 3600
            for path in temps:  # pmxcfs refuses an mtime that goes back: age it in the store
                if self.fp.pmxcfs is not None:
                    self.fp.pmxcfs.backdate("/" + os.path.relpath(path, cfs), 3600)
                with contextlib.suppress(OSError):
                    os.utime(path, (old, old))
            res = self.e2e.pvha("watch", "--once", env=next(iter(self.envs.values())))
            self.say(f"{len(temps)} temp files left; aged 1 h, pvha watch --once: rc "
                     f"{res.returncode}")
        for path in temps:
            rel = os.path.relpath(path, cfs)
            m = re.search(r"\.tmp\.(\d+)\.", path.name)
            pid = int(m.group(1)) if m else None
            writer = next((f"watcher {t.name}, log {t.watch.log_path.name}"
                           for t in self.mon.watchers if t.watch.proc.pid == pid), "not a watcher")
            killed = ", killed with -9 by the bench" if pid in self.killed else ""
            if path.exists():
                self.mon.violate("temp-file", rel, f"{rel} left behind (writer pid {pid}: "
                                 f"{writer}{killed}), still there after it was aged past the "
                                 "sweep age and a pvha watch --once round ran")
            else:
                self.mon.notes["temp file of a killed writer left, swept by a later write "
                               "once old enough"] += 1
        with contextlib.suppress(OSError):
            for name in os.listdir(cfs / "priv" / "lock"):
                self.mon.notes[f"lock dir left after the watchers stopped: {name}"] += 1

    @staticmethod
    def _temp_files(cfs: Path) -> list[Path]:
        return [Path(dirpath) / name for dirpath, dirs, files in os.walk(cfs)
                for name in dirs + files if TEMP_RE.search(name)]

    def _teardown(self) -> None:
        if self.corrupter is not None:
            self.corrupter.uninstall()
        for w in self.watches:
            _group(w, signal.SIGKILL)
            with contextlib.suppress(Exception):
                w.kill()
            with contextlib.suppress(Exception):
                w._fh.close()
        mon = getattr(self, "mon", None)
        if mon is not None and mon._thread.is_alive():
            mon._stop.set()
            mon._thread.join(5)
        if hasattr(self, "fp"):
            self.fp.stop()

    # --- reporting -------------------------------------------------------------------

    def _log_lines(self, v: Violation, limit: int = 16) -> list[str]:
        """The watcher log lines matching the violation's hints, around its time."""
        if not v.hints:
            return []
        pattern = re.compile("|".join(v.hints))
        wall = self.wall0 + v.at
        near, every = [], []
        for w in self.watches:
            try:
                text = w.log_path.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if not pattern.search(line):
                    continue
                every.append(f"{w.log_path.name}: {line}")
                m = _STAMP.match(line)
                if m:
                    t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + \
                        int(m.group(2)) / 1000
                    if wall - 15 <= t <= wall + 0.5:
                        near.append(every[-1])
        return (near or every)[-limit:]

    def _classify(self, v: Violation) -> None:
        """Corrupt kind: what the watcher was shown before the violation."""
        assert self.corrupter is not None
        start = v.at - 12 if v.category in PINNED else 0.0
        recs = [r for r in self.corrupter.records if start <= r[0] <= v.at + 0.5]
        seen = Counter((mode, path, victim) for _t, mode, path, victim in recs)
        v.corruptions = ", ".join(
            f"{mode} x{n} on {path}" + (f" aimed at {victim}" if victim else "")
            for (mode, path, victim), n in seen.most_common(6))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _group(w: Any, sig: int) -> None:
    """Signal a watcher's whole process group (it and its fence agents)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(w.proc.pid, sig)
