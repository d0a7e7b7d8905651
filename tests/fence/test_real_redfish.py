"""Redfish fencing against sushy-emulator's fake driver: fence_redfish (Debian's
fence-agents) and pvha's native backend. The emulator applies power changes after a
random 1-11 s, so everything here polls with a deadline and asserts no timing."""

from __future__ import annotations

import logging

import pytest

from pvha.fakepve.bmc_emulators import RedfishEmulatorProcess
from pvha.fence.config import FenceConfig, parse_fence_config
from pvha.fence.device import PowerState
from pvha.fence.fencer import FencePolicy, Fencer
from pvha.fence.redfish import RedfishDevice

POLICY = FencePolicy(
    call_timeout=30, verify_timeout=30, poll_interval=0.5, attempts=2, backoff=0.2, max_backoff=0.5
)
WRONG = "N0t-The-Redfish-Pw"


def one_device(
    agent: str, port: int, uri: str, extra: str, password: str = "password"
) -> FenceConfig:
    return parse_fence_config(
        f"device rf {agent} ip=127.0.0.1 ipport={port} username=admin password={password} "
        f"{extra}\nconnect rf node=nodeX systems_uri={uri}\n"
    )


@pytest.mark.usefixtures("fence_redfish")
def test_fence_redfish_agent_verified_off(redfish_bmc: RedfishEmulatorProcess) -> None:
    config = one_device(
        "fence_redfish", redfish_bmc.port, redfish_bmc.system_uri("node1"), "ssl_insecure"
    )
    result = Fencer(config, policy=POLICY).fence("nodeX")
    assert result.ok, result.detail
    assert redfish_bmc.power_state("node1") == "Off"
    assert redfish_bmc.power_state("node2") == "On"


def test_native_backend_verified_off(redfish_bmc: RedfishEmulatorProcess) -> None:
    config = one_device(
        "pvha_redfish",
        redfish_bmc.port,
        redfish_bmc.system_uri("node3"),
        f"ssl_ca={redfish_bmc.ca}",
    )
    device = RedfishDevice(config.levels("nodeX")[0].targets[0])
    assert device.power_status(10) is PowerState.ON
    result = Fencer(config, policy=POLICY).fence("nodeX")
    assert result.ok, result.detail
    assert (result.level, result.device) == (1, "rf")
    assert redfish_bmc.power_state("node3") == "Off"
    device.power_off(10)  # already off: nothing to do, no error
    assert device.power_status(10) is PowerState.OFF


def test_native_wrong_password(
    redfish_bmc: RedfishEmulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = one_device(
        "pvha_redfish",
        redfish_bmc.port,
        redfish_bmc.system_uri("node4"),
        f"ssl_ca={redfish_bmc.ca}",
        WRONG,
    )
    result = Fencer(config, policy=POLICY).fence("nodeX")
    assert not result.ok and "authentication failed (HTTP 401)" in result.detail
    assert WRONG not in result.detail + repr(result) + caplog.text
    assert redfish_bmc.power_state("node4") == "On"


@pytest.mark.usefixtures("fence_redfish")
def test_fence_redfish_wrong_password(
    redfish_bmc: RedfishEmulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = one_device(
        "fence_redfish", redfish_bmc.port, redfish_bmc.system_uri("node4"), "ssl_insecure", WRONG
    )
    result = Fencer(config, policy=POLICY).fence("nodeX")
    assert not result.ok and "fence_redfish off failed" in result.detail
    assert WRONG not in result.detail + repr(result) + caplog.text
    assert redfish_bmc.power_state("node4") == "On"


def test_native_verifies_tls_by_default(redfish_bmc: RedfishEmulatorProcess) -> None:
    config = one_device("pvha_redfish", redfish_bmc.port, redfish_bmc.system_uri("node5"), "")
    result = Fencer(config, policy=POLICY).fence("nodeX")
    assert not result.ok and "TLS verification failed" in result.detail
    assert redfish_bmc.power_state("node5") == "On"


def test_native_dead_bmc_times_out(
    silent_tcp_port: int, redfish_bmc: RedfishEmulatorProcess
) -> None:
    config = one_device(
        "pvha_redfish", silent_tcp_port, "/redfish/v1/Systems/1", f"ssl_ca={redfish_bmc.ca}"
    )
    policy = FencePolicy(
        call_timeout=2, verify_timeout=5, poll_interval=0.5, attempts=2, backoff=0.2
    )
    result = Fencer(config, policy=policy).fence("nodeX")
    assert not result.ok and "gave no answer within 2 s" in result.detail
    assert result.attempts == 2
