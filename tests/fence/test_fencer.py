"""The fencing policy on fake devices and a fake clock (no real time passes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pvha.errors import FenceDeviceError, FenceTimeoutError
from pvha.fence.config import FenceTarget, parse_fence_config
from pvha.fence.device import PowerState
from pvha.fence.fencer import STILL_ANSWERS, FencePolicy, Fencer

CFG = parse_fence_config(
    "device ipmi fence_ipmilan ip=127.0.0.1 password=hunter2\n"
    "device psu:1 fence_apc ip=10.0.0.1\n"
    "device psu:2 fence_apc ip=10.0.0.2\n"
    "connect ipmi node=node1 ipport=1\n"
    "connect psu:1 node=node1 plug=1\n"
    "connect psu:2 node=node1 plug=1\n"
    "connect psu:1 node=node2 plug=2\n"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Script:
    """How a fake device behaves: off fails this many times, status reads on N times."""

    off_failures: int = 0
    off_raises: type[Exception] = FenceDeviceError
    on_reads_after_off: int = 0
    status_error: bool = False
    never_off: bool = False
    calls: list[str] = field(default_factory=list)


class FakeDevice:
    def __init__(self, target: FenceTarget, script: Script) -> None:
        self.target, self.script, self.is_off = target, script, False
        self.reads_left = script.on_reads_after_off

    @property
    def label(self) -> str:
        return self.target.label

    def power_off(self, timeout: float) -> None:
        self.script.calls.append(f"off {self.label}")
        if self.script.off_failures > 0:
            self.script.off_failures -= 1
            raise self.script.off_raises(f"{self.label}: off failed")
        self.is_off = not self.script.never_off

    def power_status(self, timeout: float) -> PowerState:
        self.script.calls.append(f"status {self.label}")
        if self.script.status_error:
            raise FenceDeviceError(f"{self.label}: status failed")
        if self.is_off and self.reads_left <= 0:
            return PowerState.OFF
        self.reads_left -= 1
        return PowerState.ON


def make_fencer(
    scripts: dict[str, Script], probe=None, **policy: float
) -> tuple[Fencer, FakeClock]:
    clock = FakeClock()
    defaults = {
        "call_timeout": 5,
        "verify_timeout": 10,
        "poll_interval": 1,
        "attempts": 2,
        "backoff": 1,
    }
    defaults.update(policy)
    fencer = Fencer(
        CFG,
        device_factory=lambda t: FakeDevice(t, scripts[t.label]),
        liveness_probe=probe,
        policy=FencePolicy(**defaults),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
    )
    return fencer, clock


def test_first_level_verified_off() -> None:
    ipmi = Script(on_reads_after_off=2)
    fencer, clock = make_fencer({"ipmi:1": ipmi})
    result = fencer.fence("node1")
    assert (result.ok, result.level, result.device, result.attempts) == (True, 1, "ipmi", 1)
    assert ipmi.calls == ["off ipmi:1"] + ["status ipmi:1"] * 3
    assert clock.sleeps == [1, 1]


def test_retry_with_backoff_then_success() -> None:
    ipmi = Script(off_failures=1)
    fencer, clock = make_fencer({"ipmi:1": ipmi})
    result = fencer.fence("node1")
    assert result.ok and result.attempts == 2
    assert ipmi.calls == ["off ipmi:1", "off ipmi:1", "status ipmi:1"]
    assert clock.sleeps == [1]


def test_level1_fails_level2_parallel_devices_succeed() -> None:
    ipmi, psu1, psu2 = Script(off_failures=9), Script(), Script()
    fencer, _ = make_fencer({"ipmi:1": ipmi, "psu:1": psu1, "psu:2": psu2})
    result = fencer.fence("node1")
    assert (result.ok, result.level, result.device) == (True, 2, "psu")
    assert psu1.calls and psu2.calls
    assert result.failures and result.failures[0].startswith("level 1 (ipmi): ipmi:1: off failed")


def test_parallel_level_fails_if_one_subdevice_fails() -> None:
    ipmi, psu1, psu2 = Script(off_failures=9), Script(), Script(never_off=True)
    fencer, clock = make_fencer({"ipmi:1": ipmi, "psu:1": psu1, "psu:2": psu2})
    result = fencer.fence("node1")
    assert not result.ok and result.level is None
    assert "psu:2: still on 10 s after the off command" in result.detail
    assert clock.now < 100  # bounded: 2 attempts x (10 s poll) + backoff


def test_all_levels_fail_never_ok() -> None:
    scripts = {
        "ipmi:1": Script(status_error=True),
        "psu:1": Script(off_failures=9, off_raises=FenceTimeoutError),
        "psu:2": Script(),
    }
    fencer, _ = make_fencer(scripts)
    result = fencer.fence("node1")
    assert not result.ok and len(result.failures) == 2
    assert "status failed (while reading back power state)" in result.failures[0]
    assert scripts["psu:2"].calls == []  # psu:1 failed first: the level stops there


def test_bmc_off_but_node_answers_is_not_fenced() -> None:
    probed: list[str] = []

    def probe(node: str) -> bool:
        probed.append(node)
        return True

    fencer, _ = make_fencer({"ipmi:1": Script(), "psu:1": Script(), "psu:2": Script()}, probe)
    result = fencer.fence("node1")
    assert not result.ok
    assert all(STILL_ANSWERS in f for f in result.failures) and probed == ["node1", "node1"]


def test_probe_error_is_no_proof_and_silent_probe_is() -> None:
    def broken(node: str) -> bool:
        raise OSError("network down")

    fencer, _ = make_fencer({"psu:1": Script()}, broken)
    assert not fencer.fence("node2").ok
    fencer, _ = make_fencer({"psu:1": Script()}, lambda node: False)
    assert fencer.fence("node2").ok


def test_node_without_devices() -> None:
    fencer, _ = make_fencer({})
    result = fencer.fence("node7")
    assert not result.ok and "no fence device" in result.detail and result.attempts == 0


def test_secrets_not_in_results() -> None:
    fencer, _ = make_fencer(
        {"ipmi:1": Script(off_failures=9), "psu:1": Script(off_failures=9), "psu:2": Script()}
    )
    result = fencer.fence("node1")
    assert "hunter2" not in repr(result) and "hunter2" not in repr(CFG.levels("node1"))


def test_policy_rejects_nonsense() -> None:
    for bad in ({"attempts": 0}, {"call_timeout": 0}, {"poll_interval": -1}):
        with pytest.raises(ValueError):
            FencePolicy(**bad)  # type: ignore[arg-type]
