"""In-process BMC emulator with pluggable power hooks (what a simulator wires to its
nodes), driven by the real fence_ipmilan."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fence_parts import require, require_agent, require_module

from pvha.fakepve.bmc_emulators import MemoryPower, PowerHooks, close_bmc, make_bmc, serve_bmcs
from pvha.fence.agent import FenceAgentDevice
from pvha.fence.config import parse_fence_config
from pvha.fence.device import PowerState


@pytest.fixture()
def serving() -> Iterator[threading.Event]:
    require_agent("fence_ipmilan")
    require_module("pyghmi", "pyghmi")
    stop = threading.Event()
    thread = threading.Thread(target=serve_bmcs, args=(stop, 0.2), daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(timeout=5)
    require(not thread.is_alive(), "the BMC event loop did not stop")


def test_power_hooks_see_the_fence_agent(serving: threading.Event) -> None:
    power = MemoryPower("on")
    calls: list[str] = []

    def off() -> None:
        calls.append("off")
        power.state = "off"

    hooks = PowerHooks(get=lambda: power.state, on=power.hooks().on, off=off)
    events: list[tuple[str, int]] = []
    bmc = make_bmc("admin", "pw-inproc", hooks=hooks, on_event=lambda e, p: events.append((e, p)))
    try:
        config = parse_fence_config(
            f"device b fence_ipmilan ip=127.0.0.1 ipport={bmc.port} username=admin "
            "password=pw-inproc lanplus power_wait=0\nconnect b node=n1\n"
        )
        device = FenceAgentDevice(config.levels("n1")[0].targets[0])
        assert device.power_status(20) is PowerState.ON
        device.power_off(20)
        assert device.power_status(20) is PowerState.OFF
        assert calls == ["off"] and power.state == "off"
        assert events == [("power_off", bmc.port)]
    finally:
        close_bmc(bmc)
