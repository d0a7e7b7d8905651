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
from fence_parts import require, require_agent, require_module  # noqa: E402

POLICY = FencePolicy(call_timeout=10, verify_timeout=5, poll_interval=0.2, attempts=2,
                     backoff=0.1, max_backoff=0.2)
DEAD_POLICY = FencePolicy(call_timeout=2, verify_timeout=2, poll_interval=0.2, attempts=1)


def _ipmi_parts() -> None:
    require_agent("fence_ipmilan")
    require(shutil.which("ipmitool") is not None, "ipmitool is missing (Debian package)")
    require_module("pyghmi", "pyghmi")


def _fence_cfg(fp: FakePve) -> Path:
    return fp.state / "cfs" / "pvha" / "fence.cfg"


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
