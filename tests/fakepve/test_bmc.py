"""``pvha sim serve --bmc ipmi|redfish``: one BMC per simulated node, wired to its power.

Real parts: fence_ipmilan (Debian fence-agents) and ipmitool against the in-process
pyghmi BMCs; pvha's native Redfish backend against the in-process Redfish service.
Missing parts skip with a reason, and fail under CI (which installs them).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fakepve_helpers import ctl

from pvha.fakepve.server import FakePve
from pvha.fence.config import load_fence_config
from pvha.fence.fencer import FencePolicy, Fencer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fence"))
from fence_parts import require, require_agent, require_module

POLICY = FencePolicy(call_timeout=10, verify_timeout=5, poll_interval=0.2, attempts=2,
                     backoff=0.1, max_backoff=0.2)
DEAD_POLICY = FencePolicy(call_timeout=2, verify_timeout=2, poll_interval=0.2, attempts=1)


def _ipmi_parts() -> None:
    require_agent("fence_ipmilan")
    require(shutil.which("ipmitool") is not None, "ipmitool is missing (Debian package)")
    require_module("pyghmi", "pyghmi")


def _fence_cfg(fp: FakePve) -> Path:
    return fp.cfs_root() / "pvha" / "fence.cfg"


def _node2_guests(fp: FakePve) -> list[str]:
    truth = ctl(fp, "status")
    return [v for v, g in truth["guests"].items() if g["node"] == "node2"]


@pytest.mark.parametrize("kind", ["ipmi", "redfish"])
def test_bmc_powers_hung_node_off(kind: str, fake_factory: Callable[..., FakePve]) -> None:
    if kind == "ipmi":
        _ipmi_parts()
    fp = fake_factory(bmc=kind)
    cfg_path = _fence_cfg(fp)
    text = cfg_path.read_text()
    password = (fp.state / "bmc-password").read_text().strip()
    assert password and password not in text and "password_file=" in text
    assert stat.S_IMODE(os.stat(fp.state / "bmc-password").st_mode) == 0o600
    ctl(fp, "network node2 off")  # hung: no network, power stays on
    guests = _node2_guests(fp)
    assert guests and all(ctl(fp, "status")["guests"][g]["running_on"] == ["node2"]
                          for g in guests)
    result = Fencer(load_fence_config(cfg_path), policy=POLICY).fence("node2")
    assert result.ok, result.detail
    truth = ctl(fp, "status")
    assert truth["nodes"]["node2"]["power"] == "off"
    assert all(truth["guests"][g]["running_on"] == [] for g in guests)
    assert truth["nodes"]["node1"]["power"] == "on"
    assert fp.bmcs.events == [("node2", "off")]


@pytest.mark.parametrize("kind", ["ipmi", "redfish"])
def test_failed_bmc_proves_nothing(kind: str, fake_factory: Callable[..., FakePve]) -> None:
    if kind == "ipmi":
        _ipmi_parts()
    fp = fake_factory(bmc=kind)
    ctl(fp, "bmc node2 fail")
    ctl(fp, "network node2 off")
    fencer = Fencer(load_fence_config(_fence_cfg(fp)), policy=DEAD_POLICY)
    result = fencer.fence("node2")
    assert not result.ok
    assert ctl(fp, "status")["nodes"]["node2"]["power"] == "on"
    assert ctl(fp, "status")["bmc"]["failed"] == ["node2"]
    ctl(fp, "bmc node2 work")
    assert Fencer(load_fence_config(_fence_cfg(fp)), policy=POLICY).fence("node2").ok
    assert ctl(fp, "status")["nodes"]["node2"]["power"] == "off"


def test_stale_fence_cfg_removed_without_bmc(tmp_path: Path) -> None:
    from fakepve_helpers import start_fake

    state = tmp_path / "s"
    fp = start_fake(state, bmc="redfish")
    try:
        assert _fence_cfg(fp).exists()
    finally:
        fp.stop()
    fp = start_fake(state)
    try:
        assert not _fence_cfg(fp).exists()
        with pytest.raises(Exception, match="--bmc"):
            ctl(fp, "bmc node2 fail")
    finally:
        fp.stop()


def test_membership_delay_models_the_token_timeout(
        fake_factory: Callable[..., FakePve]) -> None:
    from fakepve_helpers import wait_for

    fp = fake_factory(timing={"membership_delay": 0.5})
    ctl(fp, "network node2 off")
    assert "node2" in fp.cluster.members("node1")  # not noticed yet
    assert not fp.cluster.reachable("node1", "node2")  # though nothing reaches it
    wait_for(lambda: "node2" not in fp.cluster.members("node1"), 5)
    assert fp.cluster.members("node2") == {"node2"}
    ctl(fp, "network node2 on")
    assert "node2" in fp.cluster.members("node1")


def test_sim_serve_cli_with_ipmi_bmcs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``pvha sim serve --bmc ipmi`` as a process: BMCs announced, fence.cfg written, a
    hung node powered off through fence_ipmilan, clean exit on SIGTERM."""
    import signal
    import subprocess
    import time

    from pvha.fakepve.ctl import send

    _ipmi_parts()
    state = tmp_path_factory.mktemp("cli")
    argv = [sys.executable, "-m", "pvha.cli.sim_serve", "serve", "--state-dir", str(state),
            "--guests", "3", "--bmc", "ipmi", "--auth-fail-delay", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (state / "ctl.sock").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "sim serve did not come up"
            time.sleep(0.05)
        assert send(state, "status")["bmc"]["kind"] == "ipmi"
        send(state, "network node2 off")
        config = load_fence_config(state / "nodes/node1/pve/pvha/fence.cfg")
        assert Fencer(config, policy=POLICY).fence("node2").ok
        assert send(state, "status")["nodes"]["node2"]["power"] == "off"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "node2 BMC (ipmi): 127.0.0.1:" in err
        assert (state / "bmc-password").read_text().strip() not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
