"""Power fencing in the watcher (pvha.shell.power), the journal (pvha.shell.history) and
the fence delay default (pvha.shell.loop.resolve_fence_delay): unit tests with a fake Fencer."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from pvha.fence.config import parse_fence_config
from pvha.fence.fencer import FenceResult
from pvha.shell.history import History, Recorder
from pvha.shell.loop import describe_fence
from pvha.shell.power import DEVICE_FENCE_DELAY, PowerFencing, read_fence_state

CFG = parse_fence_config("device ipmi fence_ipmilan username=admin\n"
                         "connect ipmi node=node2 ip=127.0.0.1\n")


class FakeFencer:
    """fence() blocks until the test releases it, then returns the queued result."""

    def __init__(self) -> None:
        self.results: list[bool] = []
        self.gate = threading.Event()
        self.calls = 0

    def fence(self, node: str) -> FenceResult:
        self.calls += 1
        assert self.gate.wait(10)
        self.gate.clear()
        ok = self.results.pop(0)
        return FenceResult(node, ok, 1 if ok else None, "ipmi" if ok else None,
                           "off" if ok else "no answer", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _wait_done(pf: PowerFencing, node: str) -> None:
    job = pf.jobs[node]
    assert job.future is not None
    job.future.result(timeout=10)


def _setup(tmp_path: Path) -> tuple[PowerFencing, FakeFencer, Clock, set[str]]:
    online: set[str] = set()
    fencer, clock = FakeFencer(), Clock()
    pf = PowerFencing(CFG, tmp_path, History(tmp_path), lambda n: n in online, clock,
                      fencer=fencer)  # type: ignore[arg-type]
    return pf, fencer, clock, online


def test_never_fenced_before_verified_and_retried_with_backoff(tmp_path: Path) -> None:
    pf, fencer, clock, _online = _setup(tmp_path)
    try:
        assert pf.has_device("node2") and not pf.has_device("node1")
        assert not pf.step("node2")  # attempt 1 starts
        assert not pf.step("node2")  # still running
        assert read_fence_state(tmp_path)["node2"]["state"] == "fencing"
        fencer.results.append(False)
        fencer.gate.set()
        _wait_done(pf, "node2")
        assert not pf.step("node2")  # failed: no proof
        state = read_fence_state(tmp_path)["node2"]
        assert (state["state"], state["attempt"]) == ("failed", 1)
        assert "retry in 5 s" in describe_fence("node2", pf.state(), True, clock.now)
        assert not pf.step("node2") and fencer.calls == 1  # backoff
        clock.now += 5
        assert not pf.step("node2") and fencer.calls == 2  # attempt 2
        fencer.results.append(True)
        fencer.gate.set()
        _wait_done(pf, "node2")
        assert pf.step("node2")
        assert "fenced (verified off at" in describe_fence("node2", pf.state(), True, 0)
        outcomes = [e["outcome"] for e in History(tmp_path).read()]
        assert outcomes == ["started", "failed", "started", "verified off"]
    finally:
        pf.close()


def test_proof_is_refused_while_the_node_is_online(tmp_path: Path) -> None:
    pf, fencer, clock, online = _setup(tmp_path)
    try:
        pf.step("node2")
        fencer.results.append(True)
        online.add("node2")  # answers again: a device "off" proves nothing now
        fencer.gate.set()
        _wait_done(pf, "node2")
        assert not pf.step("node2")
        assert "node2" not in pf.fenced
        online.discard("node2")
        clock.now += 5
        pf.step("node2")
        fencer.results.append(True)
        fencer.gate.set()
        _wait_done(pf, "node2")
        assert pf.step("node2")
        pf.node_back("node2")
        assert read_fence_state(tmp_path) == {}
    finally:
        pf.close()


def test_describe_without_device() -> None:
    assert describe_fence("node3", {}, False, 0) == "waiting for fence-ack"


def test_history_skips_torn_lines_and_recorder(tmp_path: Path) -> None:
    h = History(tmp_path)
    rec = Recorder(h, lambda: 5.0)
    rec(None, "recover service 'vm:101' from fenced node 'node2' to node 'node1'")
    rec("node1", "service status vm:999 started")  # not a recovery
    rec("node1", "service status vm:101 started")
    rec(None, "recovering service 'vm:104' from fenced node 'node2' failed, no recovery "
              "node found")
    with h.path.open("a") as fh:
        fh.write('{"event": "fence", "ti')  # torn by a crash
    events = h.read()
    assert [(e["sid"], e["outcome"]) for e in events] == [
        ("vm:101", "placed"), ("vm:101", "running"), ("vm:104", "no recovery node")]


@pytest.mark.parametrize("flag, env, toml, fence_cfg, expected", [
    (None, {}, "", False, 60),
    (None, {}, "", True, DEVICE_FENCE_DELAY),
    (30, {}, "", True, 30),
    (None, {"PVHA_FENCE_DELAY": "45"}, "", True, 45),
    (None, {}, "[watch]\nfence_delay = 60\n", True, 60),
])
def test_fence_delay_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: Any,
                             env: dict[str, str], toml: str, fence_cfg: bool,
                             expected: int) -> None:
    from pvha.settings import load_settings
    from pvha.shell.loop import resolve_fence_delay

    monkeypatch.delenv("PVHA_FENCE_DELAY", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(toml)
    settings = load_settings({"fence_delay": flag}, path=settings_file)
    assert resolve_fence_delay(settings.watch.fence_delay, fence_cfg) == expected


def test_history_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pvha.cli.app import app

    h = History(tmp_path)
    h.append("fence", "node2", time=0, outcome="verified off", device="ipmi", attempt=1)
    h.append("recovery", "node2", time=1, sid="vm:101", outcome="placed", target="node1")
    runner = CliRunner()
    res = runner.invoke(app, ["history", "--config-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["TIME", "EVENT", "NODE", "SID", "OUTCOME", "DETAIL"]
    assert "verified off" in lines[1] and "device ipmi; attempt 1" in lines[1]
    res = runner.invoke(app, ["history", "--config-dir", str(tmp_path), "--node", "node2",
                              "--limit", "1", "--output-format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["sid"], r["outcome"], r["detail"]) for r in rows] == [
        ("vm:101", "placed", "on node1")]


def test_restarted_watcher_keeps_unreturned_proofs(tmp_path: Path) -> None:
    pf, fencer, _clock, _online = _setup(tmp_path)
    pf.step("node2")
    fencer.results.append(True)
    fencer.gate.set()
    _wait_done(pf, "node2")
    assert pf.step("node2")
    pf.close()
    again, _f, _c, _o = _setup(tmp_path)
    try:
        assert "node2" in again.fenced  # the config steal may still happen
        again.step("node2")  # a new fencing drops the old proof first
        assert "node2" not in again.fenced
    finally:
        _f.results.append(False)
        _f.gate.set()
        again.close()
