"""The README demo (``python -m pvha.demo``, ``bash scripts/demo``).

Part 1 (:func:`cli_showcase`, a few seconds, in this process): ``ha-manager``'s
commands on a temporary config directory.

Part 2 (:func:`cluster_demo`, well under 2 minutes, no manual step): starts
``pvha sim serve`` (3 nodes, 6 HA guests) and ``pvha watch`` as subprocesses with short
timings, powers node2 off, waits until the manager fences it and asks for proof,
runs ``pvha fence-ack node2``, and shows node2's guests running on the other nodes,
read back through the fake cluster's API. Everything it started is stopped on the way
out, also on Ctrl-C or an error. ``--cluster-only`` skips part 1.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.main import get_command

from pvha.cli.app import app

STEPS: list[tuple[list[str], int]] = [
    (["add", "vm:100", "--max_restart", "2"], 0),
    (["add", "ct:101", "--state", "stopped", "--comment", "web frontend"], 0),
    (["groupadd", "g1", "--nodes", "node1:2,node2", "--nofailback", "1"], 0),
    (
        [
            "rules",
            "add",
            "node-affinity",
            "r1",
            "--resources",
            "vm:100",
            "--nodes",
            "node2",
            "--strict",
            "1",
        ],
        0,
    ),
    (
        [
            "rules",
            "add",
            "resource-affinity",
            "apart",
            "--resources",
            "vm:100,ct:101",
            "--affinity",
            "negative",
        ],
        0,
    ),
    (["config"], 0),
    (["config", "--output-format", "json"], 0),
    (["groupconfig"], 0),
    (["rules", "config"], 0),
    (["set", "vm:100", "--group", "g1"], 2),  # g1 would override rule r1: refused
    (["migrate", "vm:100", "node2"], 0),
    (["status"], 5),  # no API configured: quorum unknown, so not "HA operating"
    (["add", "vm:100"], 2),
]


def _example_status(config_dir: Path) -> None:
    """A manager status as a running HA manager would leave it, so ``status`` has content."""
    now = int(time.time())
    manager = {
        "master_node": "node1",
        "timestamp": now,
        "node_status": {"node1": "online", "node2": "online"},
        "service_status": {
            "vm:100": {"state": "started", "node": "node2", "running": 1, "uid": "x"}
        },
    }
    (config_dir / "manager_status").write_text(json.dumps(manager))
    (config_dir / "lrm_status").mkdir()
    for node, state in (("node1", "wait_for_agent_lock"), ("node2", "active")):
        lrm = {"state": state, "mode": "active", "timestamp": now, "results": {}}
        (config_dir / "lrm_status" / node).write_text(json.dumps(lrm))


def cli_showcase() -> int:
    """Part 1: the ha-manager-style CLI on a temporary config directory."""
    with tempfile.TemporaryDirectory(prefix="pvha-demo-") as tmp:
        config_dir = Path(tmp)
        print(f"# pvha CLI demo; configuration directory: {config_dir}\n")
        failures = 0
        command = get_command(app)
        for args, expected in STEPS:
            if args == ["status"]:
                _example_status(config_dir)
            print(f"$ pvha {shlex.join(args)}", flush=True)
            code = command.main(
                ["--config-dir", str(config_dir), *args], prog_name="pvha", standalone_mode=False
            )
            sys.stderr.flush()
            if code != expected:
                failures += 1
                print(f"!! exit code {code}, expected {expected}")
            print()
        for name in ("resources.cfg", "groups.cfg", "rules.cfg", "crm_commands"):
            print(f"--- {name} ---\n{(config_dir / name).read_text()}")
    return 1 if failures else 0


# --- part 2: a simulated cluster, the HA loop, a node failure ---------------------------------

ROUND_INTERVAL = "2"
FENCE_DELAY = "6"
WAIT = 60.0  # upper bound of every wait (the whole demo stays well under 2 minutes)


class Demo:
    """The subprocesses and the state directory of the cluster demo."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}
        self.watch_log = state / "watch.log"
        self._printed = 0

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        fh = log.open("wb")
        # same process group as the demo: whoever kills the demo's group kills these too
        proc = subprocess.Popen([sys.executable, "-m", *args], env=self.env or None,
                                stdout=fh, stderr=subprocess.STDOUT)
        fh.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def run(self, *args: str, show: bool = True) -> str:
        """Run ``pvha ARGS`` with the cluster's environment, print and return its output."""
        if show:
            print(f"$ pvha {shlex.join(args)}", flush=True)
        res = subprocess.run([sys.executable, "-m", "pvha", *args], env=self.env, check=False,
                             capture_output=True, text=True, timeout=WAIT)
        if show:
            sys.stdout.write(res.stdout + res.stderr)
            print(flush=True)
        if res.returncode != 0:
            raise RuntimeError(f"pvha {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def wait(self, what: str, check: Callable[[], Any]) -> Any:
        """Poll ``check`` (printing new watch log lines) until truthy, at most WAIT s."""
        deadline = time.monotonic() + WAIT
        while True:
            self.echo_watch()
            value = check()
            if value:
                return value
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[2:4]} exited early ({proc.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.3)

    def echo_watch(self) -> None:
        """Show the watcher's round sentences (one per round) as they come."""
        try:
            lines = self.watch_log.read_text(errors="replace").splitlines()
        except OSError:
            return
        for line in lines[self._printed:]:
            if "pvha.watch:" in line or "recover service" in line or "fencing" in line:
                print(f"  [watch] {line.split(': ', 1)[-1]}", flush=True)
        self._printed = len(lines)

    def manager_status(self) -> dict[str, Any]:
        try:
            path = Path(self.env["PVHA_CONFIG_DIR"]) / "manager_status"
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError):
            return {}

    def running(self) -> dict[str, str]:
        """sid -> node of the running guests, through the fake cluster's API (3 calls)."""
        from pvha.settings import load_settings
        from pvha.shell.live import live_view

        view = live_view(load_settings(env=self.env))
        assert view is not None
        return {sid: g.node for sid, g in view.guests.items()
                if g.status == "running" and not g.status_stale}


def _serve_args(state: Path) -> list[str]:
    from pvha.cli.sim import sim_app

    names = {c.name for c in sim_app.registered_commands}
    base = ["pvha", "sim", "serve"] if "serve" in names else ["pvha.cli.sim_serve", "serve"]
    return [*base, "--state-dir", str(state), "--nodes", "3", "--guests", "6",
            "--task-seconds", "0.5", "--migrate-seconds", "1", "--proxy-delay", "0.5",
            "--auth-fail-delay", "0"]


def _read_env(path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def cluster_demo() -> int:
    """Part 2 (see module docstring). Returns 0 when node2's guests ran elsewhere."""
    with tempfile.TemporaryDirectory(prefix="pvha-demo-") as tmp:
        demo = Demo(Path(tmp))
        try:
            return _cluster_steps(demo)
        finally:
            demo.stop_all()
            print("# stopped pvha watch and pvha sim serve", flush=True)


def _cluster_steps(demo: Demo) -> int:
    state = demo.state / "sim"
    print(f"# part 2: a simulated 3-node cluster; state directory {state}", flush=True)
    demo.spawn(_serve_args(state), demo.state / "serve.log")
    demo.wait("pvha sim serve", lambda: (state / "env").exists())
    demo.env = _read_env(state / "env")
    root = demo.env.get("PVHA_CFS_ROOT", "")
    print(f"# each node has its own pmxcfs mount ({state}/nodes/NODE/pve, like /etc/pve); "
          f"pvha uses node1's: PVHA_CFS_ROOT={root}" if root.endswith("/nodes/node1/pve") else
          f"# no FUSE here: every node shares the plain directory {root}", flush=True)
    demo.env.update(PVHA_ROUND_INTERVAL=ROUND_INTERVAL, PVHA_FENCE_DELAY=FENCE_DELAY,
                    PYTHONUNBUFFERED="1")
    print(f"$ . {state / 'env'}; pvha watch &   "
          f"# rounds every {ROUND_INTERVAL} s, fence delay {FENCE_DELAY} s", flush=True)
    demo.spawn(["pvha", "watch"], demo.watch_log)
    demo.wait("all services started", lambda: _all_started(demo))
    demo.run("status")
    before = demo.running()
    victims = sorted(sid for sid, node in before.items() if node == "node2")
    print(f'$ pvha sim ctl --state-dir {state} "power node2 off"   # guests: '
          f"{', '.join(victims)}", flush=True)
    demo.run("sim", "ctl", "--state-dir", str(state), "power", "node2", "off", show=False) \
        if _has_ctl() else _ctl_fallback(demo, state)
    demo.wait("node2 in fence state",
              lambda: (demo.manager_status().get("node_status") or {}).get("node2") == "fence")
    demo.run("status")
    demo.run("fence-ack", "node2", "--yes")
    after = demo.wait("node2's guests running on other nodes",
                      lambda: _recovered(demo.running(), victims))
    demo.wait("the manager to see them run", lambda: all(
        ((demo.manager_status().get("service_status") or {}).get(sid) or {}).get("running")
        for sid in victims))
    demo.echo_watch()
    demo.run("status")
    for sid in victims:
        print(f"# {sid}: was on node2, now runs on {after[sid]} (seen through the API)")
    return 0


def _has_ctl() -> bool:
    from pvha.cli.sim import sim_app

    return "ctl" in {c.name for c in sim_app.registered_commands}


def _ctl_fallback(demo: Demo, state: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pvha.cli.sim_serve", "ctl", "--state-dir",
                          str(state), "power node2 off"], env=demo.env, capture_output=True,
                         check=False,
                         text=True, timeout=WAIT)
    if res.returncode != 0:
        raise RuntimeError(f"pvha sim ctl failed: {res.stderr.strip()}")


def _all_started(demo: Demo) -> bool:
    ss = demo.manager_status().get("service_status") or {}
    return bool(ss) and all(sd.get("state") == "started" for sd in ss.values()) \
        and len(demo.running()) == len(ss)


def _recovered(running: dict[str, str], victims: list[str]) -> dict[str, str] | None:
    ok = all(running.get(sid) not in (None, "node2") for sid in victims)
    return running if ok else None


def main(argv: list[str] | None = None) -> int:
    """Both parts; exit code 0 when both behaved as expected."""
    args = sys.argv[1:] if argv is None else argv
    code = 0 if "--cluster-only" in args else cli_showcase()
    try:
        return code or cluster_demo()
    except KeyboardInterrupt:
        print("# interrupted", flush=True)
        return 130
    except Exception as err:  # noqa: BLE001 - the demo reports and exits non-zero
        print(f"!! demo failed: {err}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
