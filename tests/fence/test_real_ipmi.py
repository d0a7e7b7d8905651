"""fence_ipmilan (Debian's fence-agents) against pyghmi BMC emulators on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pvha.fakepve.bmc_emulators import IpmiEmulatorProcess
from pvha.fence.agent import FenceAgentDevice
from pvha.fence.config import parse_fence_config
from pvha.fence.device import PowerState
from pvha.fence.fencer import STILL_ANSWERS, FencePolicy, Fencer

# Bounded real time: a dead BMC costs attempts x call_timeout (fence_ipmilan alone would
# wait 20 s per call), the read-back polls at most verify_timeout.
POLICY = FencePolicy(
    call_timeout=10, verify_timeout=10, poll_interval=0.3, attempts=2, backoff=0.2, max_backoff=0.5
)
# Where a BMC is dead: a short call timeout keeps the test short (a live fence_ipmilan
# call takes about 0.1 s, so 3 s is still a wide margin for the live level).
DEAD_POLICY = FencePolicy(
    call_timeout=3, verify_timeout=10, poll_interval=0.3, attempts=2, backoff=0.2, max_backoff=0.5
)
WRONG = "Wr0ng-Passw0rd-9d1"


def ipmi_device(
    name: str, port: int, password: str = "password", *, pwfile: Path | None = None
) -> str:
    secret = f"password_file={pwfile}" if pwfile else f'password="{password}"'
    return (
        f"device {name} fence_ipmilan ip=127.0.0.1 ipport={port} username=admin {secret} "
        "lanplus power_wait=0 action=reboot\n"
    )


def powered_off(bmcs: IpmiEmulatorProcess, port: int) -> bool:
    return any(e.get("event") == "power_off" and e.get("port") == port for e in bmcs.events)


def test_off_then_status_reads_back_off(ipmi_bmcs: IpmiEmulatorProcess, tmp_path: Path) -> None:
    pwfile = tmp_path / "bmc.pw"
    pwfile.write_text("password\n")
    port = ipmi_bmcs.ports[0]
    config = parse_fence_config(
        ipmi_device("ipmi1", port, pwfile=pwfile) + "connect ipmi1 node=node1\n"
    )
    result = Fencer(config, policy=POLICY).fence("node1")
    assert result.ok, result.detail
    assert (result.level, result.device) == (1, "ipmi1")
    device = FenceAgentDevice(config.levels("node1")[0].targets[0])
    assert device.power_status(10) is PowerState.OFF
    assert powered_off(ipmi_bmcs, port)
    assert not powered_off(ipmi_bmcs, ipmi_bmcs.ports[1])


def test_wrong_password_fails_and_never_leaks(
    ipmi_bmcs: IpmiEmulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = ipmi_bmcs.ports[0]
    config = parse_fence_config(ipmi_device("ipmi1", port, WRONG) + "connect ipmi1 node=node1\n")
    result = Fencer(config, policy=POLICY).fence("node1")
    assert not result.ok and result.level is None
    assert result.attempts == POLICY.attempts
    assert "fence_ipmilan off failed (exit 1)" in result.detail
    for text in (result.detail, repr(result), caplog.text, *result.failures):
        assert WRONG not in text
    assert not powered_off(ipmi_bmcs, port)


def test_dead_bmc_times_out(silent_udp_port: int) -> None:
    config = parse_fence_config(
        ipmi_device("ipmi1", silent_udp_port) + "connect ipmi1 node=node1\n"
    )
    result = Fencer(config, policy=DEAD_POLICY).fence("node1")
    assert not result.ok
    assert "fence_ipmilan off gave no answer within 3 s" in result.detail
    assert result.attempts == DEAD_POLICY.attempts


def test_level1_bmc_stops_answering_level2_fences(ipmi_bmcs: IpmiEmulatorProcess) -> None:
    first, second = ipmi_bmcs.ports
    config = parse_fence_config(
        ipmi_device("bmc_a", first)
        + ipmi_device("bmc_b", second)
        + "connect bmc_a node=node1\nconnect bmc_b node=node1\n"
    )
    assert FenceAgentDevice(config.levels("node1")[0].targets[0]).power_status(10) is PowerState.ON
    ipmi_bmcs.pause()  # every BMC of the process freezes; level 2 is in another process
    try:
        with IpmiEmulatorProcess(count=1) as other:
            config = parse_fence_config(
                ipmi_device("bmc_a", first)
                + ipmi_device("bmc_b", other.ports[0])
                + "connect bmc_a node=node1\nconnect bmc_b node=node1\n"
            )
            result = Fencer(config, policy=DEAD_POLICY).fence("node1")
            assert result.ok, result.detail
            assert (result.level, result.device) == (2, "bmc_b")
            assert "gave no answer within 3 s" in result.failures[0]
            assert powered_off(other, other.ports[0])
    finally:
        ipmi_bmcs.resume()


def test_bmc_says_off_but_node_still_answers(ipmi_bmcs: IpmiEmulatorProcess) -> None:
    # The fake BMC's power switch is not wired to the node: the probe still reaches it.
    port = ipmi_bmcs.ports[0]
    config = parse_fence_config(ipmi_device("ipmi1", port) + "connect ipmi1 node=node1\n")
    result = Fencer(config, policy=POLICY, liveness_probe=lambda node: True).fence("node1")
    assert not result.ok
    assert STILL_ANSWERS in result.detail
    assert powered_off(ipmi_bmcs, port)


def test_all_levels_fail_no_recovery(ipmi_bmcs: IpmiEmulatorProcess, silent_udp_port: int) -> None:
    config = parse_fence_config(
        ipmi_device("bad_pw", ipmi_bmcs.ports[0], WRONG)
        + ipmi_device("dead", silent_udp_port)
        + "connect bad_pw node=node1\nconnect dead node=node1\n"
    )
    result = Fencer(config, policy=DEAD_POLICY).fence("node1")
    assert not result.ok and result.level is None and result.device is None
    assert [f.split(":")[0] for f in result.failures] == ["level 1 (bad_pw)", "level 2 (dead)"]
