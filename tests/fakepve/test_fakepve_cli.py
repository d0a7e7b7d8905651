"""`pvha sim serve` as a process (signals, files, output) and `pvha sim ctl` via Typer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from fakepve_helpers import token_client
from typer.testing import CliRunner

from pvha.cli.sim_serve import register


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("cli")
    argv = [sys.executable, "-m", "pvha.cli.sim_serve", "serve", "--state-dir", str(state),
            "--guests", "3", "--ha-guests", "2", "--task-seconds", "0.1",
            "--auth-fail-delay", "0", "--proxy-delay", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (state / "ctl.sock").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "sim serve did not come up"
            time.sleep(0.05)
        yield state, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_serve_and_ctl(served) -> None:  # type: ignore[no-untyped-def]
    state, proc = served
    runner = CliRunner()
    result = runner.invoke(_app(), ["ctl", "--state-dir", str(state), "status"])
    assert result.exit_code == 0, result.output
    truth = json.loads(result.stdout)
    assert sorted(truth["nodes"]) == ["node1", "node2", "node3"]
    assert sorted(truth["guests"]) == ["100", "101", "102"]
    text = (state / "nodes/node1/pve/pvha/resources.cfg").read_text()
    assert "vm: 100" in text and "vm: 101" in text and "102" not in text
    env_before = (state / "env").read_text()
    second = subprocess.run([sys.executable, "-m", "pvha.cli.sim_serve", "serve",
                             "--state-dir", str(state)], capture_output=True, text=True,
                            timeout=30, check=False)
    assert second.returncode == 1 and "already running" in second.stderr
    assert (state / "env").read_text() == env_before  # the running one's env is untouched
    result = runner.invoke(_app(), ["ctl", "--state-dir", str(state), "power node2 off"])
    assert result.exit_code == 0
    result = runner.invoke(_app(), ["ctl", "--state-dir", str(state), "power", "node9", "off"])
    assert result.exit_code == 1 and "no such node 'node9'" in result.stderr
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert not (state / "ctl.sock").exists()
    assert "env file" in err and str(state / "env") in err and "node3: https://" in err
    assert "cfs: one pmxcfs mount per node at" in err and "max threads" not in err
    secret = (state / "token").read_text().strip()
    assert secret not in err and (state / "password").read_text().strip() not in err


def test_state_dir_is_reused(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A second start on the same state dir keeps the CA, the token and moved configs."""
    from fakepve_helpers import start_fake

    state, proc = served
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=15)
    ca = (state / "ca.pem").read_bytes()
    token = (state / "token").read_text()
    # stopped: the tree is saved in DIR/cfs (pmxcfs's config.db) and loaded from there
    (state / "cfs/nodes/node1/qemu-server/100.conf").rename(
        state / "cfs/nodes/node3/qemu-server/100.conf")
    fp = start_fake(state)
    try:
        assert (state / "ca.pem").read_bytes() == ca and (state / "token").read_text() == token
        res = token_client(fp).cluster.resources.get(type="vm")
        assert next(g for g in res if g["vmid"] == 100)["node"] == "node3"
    finally:
        fp.stop()


def test_ctl_without_server(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["ctl", "--state-dir", str(tmp_path), "status"])
    assert result.exit_code == 1 and result.stderr.startswith("error: no simulator")
    assert len(result.stderr.strip().splitlines()) == 1
