"""End-to-end harness: ``pvha sim serve``'s FakePve in this process (fast timings, real
HTTPS on loopback), ``pvha watch`` as real subprocesses talking to it through proxmoxer,
and bounded waits. Every subprocess is killed at teardown, whatever happens."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from pvha.fakepve.cluster import Timing
from pvha.fakepve.ctl import execute
from pvha.fakepve.server import FakePve

FAST = {"task_seconds": 0.2, "migrate_seconds": 0.3, "proxy_delay": 0.2,
        "stale_seconds": 300.0, "auth_fail_delay": 0.0, "reboot_seconds": 0.5}
ROUND = "1"
FENCE_DELAY = "3"
REPO = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], Any], timeout: float = 30.0, step: float = 0.2,
             what: str = "condition") -> Any:
    """Poll ``check`` until truthy; AssertionError after ``timeout`` s (never a timing
    assertion: the bound is only there so a broken build cannot hang CI)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(step)


class Watch:
    """One ``pvha watch`` subprocess with its log file."""

    def __init__(self, env: dict[str, str], log: Path, args: tuple[str, ...] = ()) -> None:
        self.log_path = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pvha", "watch", *args], env=env, cwd=REPO,
            stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def wait_log(self, pattern: str, timeout: float = 30.0, after: int = 0) -> None:
        wait_for(lambda: self.count(pattern) > after, timeout, what=f"log line {pattern!r}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout`` s."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)


class E2E:
    """A running fake cluster plus the watchers a test starts."""

    def __init__(self, fp: FakePve, tmp: Path) -> None:
        self.fp = fp
        self.tmp = tmp
        self.watchers: list[Watch] = []
        self.config_dir = fp.cfs_root() / "pvha"

    def env(self, *, hosts: list[str] | None = None, ticket: bool = False,
            **extra: str) -> dict[str, str]:
        """The environment of ``DIR/env`` (token auth), or ticket auth, + short timings."""
        fp = self.fp
        env = {k: v for k, v in os.environ.items() if not k.startswith("PVHA_")}
        settings = self.tmp / "empty-settings.toml"
        settings.touch()
        env.update({
            "PVHA_HOSTS": ",".join(hosts or fp.hosts), "PVHA_PORT": str(fp.port),
            "PVHA_USER": "root@pam", "PVHA_CA_FILE": str(fp.state / "ca.pem"),
            "PVHA_CFS_ROOT": str(fp.cfs_root()), "PVHA_CONFIG_DIR": str(self.config_dir),
            "PVHA_SETTINGS": str(settings), "PVHA_ROUND_INTERVAL": ROUND,
            "PVHA_FENCE_DELAY": FENCE_DELAY, "PVHA_ATTEMPTS": "2",
            "PVHA_CONNECT_TIMEOUT": "2", "PVHA_TASK_TIMEOUT": "20", "PYTHONUNBUFFERED": "1",
        })
        if ticket:
            env["PVHA_PASSWORD_FILE"] = str(fp.state / "password")
        else:
            env["PVHA_TOKEN_NAME"] = "pvha"
            env["PVHA_TOKEN_SECRET_FILE"] = str(fp.state / "token")
        env.update(extra)
        return env

    def watch(self, name: str = "watch", env: dict[str, str] | None = None,
              args: tuple[str, ...] = ()) -> Watch:
        w = Watch(env or self.env(), self.tmp / f"{name}.log", args)
        self.watchers.append(w)
        return w

    def pvha(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pvha", *args], env=env or self.env(),
                              cwd=REPO, check=False, capture_output=True, text=True, timeout=60)

    def ctl(self, command: str) -> Any:
        return execute(self.fp, command)

    def truth(self) -> dict[str, Any]:
        return self.fp.cluster.truth()

    def api(self, node: str = "node1") -> ProxmoxAPI:
        secret = (self.fp.state / "token").read_text().strip()
        ip, port = self.fp.address(node)
        return ProxmoxAPI(f"{ip}:{port}", user="root@pam", token_name="pvha",
                          token_value=secret, verify_ssl=str(self.fp.state / "ca.pem"),
                          timeout=10)

    def running_via_api(self, node: str = "node1") -> dict[int, str]:
        """vmid -> node of every guest that runs, as ``/cluster/resources`` plus the
        owner's ``status/current`` tell it through real proxmoxer over HTTPS."""
        api = self.api(node)
        out = {}
        for r in api.cluster.resources.get(type="vm"):
            owner = r["node"]
            if self.truth()["nodes"][owner]["power"] != "on":
                continue
            try:
                cur = api.nodes(owner).__getattr__(r["type"])(r["vmid"]).status.current.get()
            except ResourceException as err:
                if "does not exist" in str(err):  # moved, not yet seen by the owner's mount
                    continue
                raise
            if cur["status"] == "running":
                out[int(r["vmid"])] = owner
        return out

    def manager_status(self) -> dict[str, Any]:
        import json

        try:
            return json.loads((self.config_dir / "manager_status").read_text())
        except (OSError, ValueError):
            return {}

    def service_states(self) -> dict[str, str]:
        return {sid: sd.get("state") for sid, sd in
                (self.manager_status().get("service_status") or {}).items()}

    def all_started(self) -> bool:
        states = self.service_states()
        return bool(states) and set(states.values()) == {"started"} and \
            len(self.running_via_api()) == len(states)

    def no_split_brain(self) -> None:
        assert self.truth()["split_brain"] == [], self.truth()

    def recover_locked_after_ack(self, w: Watch, node: str, vmid: int, lock: str) -> str:
        """``node`` is off with guest ``vmid`` locked ``lock`` in its config: ack the
        node, wait for the recovery to drop the leftover lock and for the guest to run
        elsewhere; returns where it runs."""
        w.wait_log(rf"fencing {node}: waiting for fence-ack", 30)
        ack = self.pvha("fence-ack", node, "--yes")
        assert ack.returncode == 0, ack.stderr
        w.wait_log(rf"removed leftover lock '{lock}' from recovered service 'vm:{vmid}' to "
                   r"allow its start", 40)
        wait_for(lambda: vmid in self.running_via_api(), 40, what=f"vm:{vmid} running")
        assert self.truth()["guests"][str(vmid)]["lock"] is None
        return self.running_via_api()[vmid]


@contextlib.contextmanager
def running_e2e(tmp_path_factory: pytest.TempPathFactory, name: str,
                timing: dict[str, Any] | None = None, nodes: int = 3,
                **fake: Any) -> Iterator[E2E]:
    """A started FakePve (3 nodes, 6 guests, fast timings with ``timing`` on top, ``fake``
    options) and its harness; every watcher and the fake are stopped on the way out."""
    state = tmp_path_factory.mktemp(name)  # short path: the ctl socket has ~100 bytes
    fp = FakePve(state / "d", nodes=nodes, guests=2 * nodes,
                 timing=Timing(**{**FAST, **(timing or {})}), **fake).start()
    harness = E2E(fp, state)
    try:
        yield harness
    finally:
        for w in harness.watchers:
            w.kill()
        fp.stop()


@pytest.fixture
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    with running_e2e(tmp_path_factory, "e2e") as harness:
        yield harness
