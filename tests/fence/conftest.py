"""Fixtures for the real-part fence tests: BMC emulators on loopback, stopped after use.

The parts come from the test command (scripts/setup-env: Debian's fence-agents, pip's
pyghmi and sushy-tools). Missing parts skip with a reason, except under CI, where a
missing part is a failure: CI installs them, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fence_parts import require, require_agent, require_module

from pvha.fakepve.bmc_emulators import IpmiEmulatorProcess, RedfishEmulatorProcess


@pytest.fixture()
def ipmi_bmcs() -> Iterator[IpmiEmulatorProcess]:
    """Two fake IPMI BMCs (user admin, password 'password') on free loopback ports."""
    require_agent("fence_ipmilan")
    require(shutil.which("ipmitool") is not None, "ipmitool is missing (Debian package)")
    require_module("pyghmi", "pyghmi")
    with IpmiEmulatorProcess(count=2) as bmcs:
        yield bmcs


@pytest.fixture()
def silent_udp_port() -> Iterator[int]:
    """A loopback UDP port that is bound but never answers: a dead BMC."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture()
def silent_tcp_port() -> Iterator[int]:
    """A loopback TCP port that accepts connections (kernel backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def redfish_bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedfishEmulatorProcess]:
    """sushy-emulator (fake driver, HTTPS) with systems node1..node6, the stock random
    1-11 s power delay; every test powers off its own system."""
    require_module("sushy_tools", "sushy-tools")
    require_module("bcrypt", "bcrypt")
    require(shutil.which("openssl") is not None, "openssl is missing (Debian package)")
    workdir: Path = tmp_path_factory.mktemp("redfish")
    systems = [f"node{i}" for i in range(1, 7)]
    with RedfishEmulatorProcess(workdir, systems, power_delay=None) as bmc:
        yield bmc


@pytest.fixture()
def fence_redfish() -> None:
    """Skips (fails under CI) unless Debian's fence_redfish is installed."""
    require_agent("fence_redfish")
