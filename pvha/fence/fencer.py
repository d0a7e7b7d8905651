"""The fencing policy: prove a node is powered off through its fence devices.

Theory of operation. ``Fencer.fence(node)`` walks the node's levels (its devices from
``fence.cfg``, in declaration order) and stops at the first level that proves the node
off. Within a level every (parallel) sub-device must succeed: two power supplies both
off. One sub-device succeeds when

1. its ``off`` call returns without error, then
2. ``status`` calls, polled until a deadline, read back ``OFF``.

An attempt that fails at either step is retried (tenacity, exponential backoff) up to
``FencePolicy.attempts`` times. When every sub-device of a level reads back off, the
optional liveness probe is asked whether the node still answers (on the cluster
network, through the API…): if it does, the device lied or is wired to another machine,
so the level fails with "BMC reports off but node still answers" and the next level is
tried. A probe that raises counts as "cannot tell", which is not a proof either.

The result is ok only after a verified read-back of off for every sub-device of one
level and a probe (if any) that says the node is silent. Nothing here decides what
happens to guests; that is the manager's business, with this result as its proof.

Time: ``clock`` and ``sleep`` are injectable, so unit tests run the policy on a fake
clock; device calls get their own timeouts (the devices enforce them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from pvha.errors import FenceDeviceError, FenceTimeoutError
from pvha.fence.agent import AgentRunner, FenceAgentDevice
from pvha.fence.config import FenceConfig, FenceLevel, FenceTarget
from pvha.fence.device import PowerDevice, PowerState
from pvha.fence.redfish import AGENT_NAME as REDFISH_AGENT
from pvha.fence.redfish import RedfishDevice

log = logging.getLogger("pvha.fence")

LivenessProbe = Callable[[str], bool]
"""``probe(node)`` → True if the node still answers (it is NOT safe to recover)."""
DeviceFactory = Callable[[FenceTarget], PowerDevice]

STILL_ANSWERS = "BMC reports off but node still answers"


@dataclass(frozen=True, slots=True)
class FencePolicy:
    """Bounds of one ``fence`` call. ``call_timeout``: one device call; ``verify_timeout``:
    how long status is polled for off after an off call; ``attempts``: off+verify tries
    per sub-device; ``backoff``/``max_backoff``: first and largest wait between tries.

    One sub-device takes at most about ``attempts * (2 * call_timeout + verify_timeout +
    poll_interval) + (attempts - 1) * max_backoff``; a fence call at most that per
    sub-device of every level tried. The defaults suit real BMCs (an unreachable IPMI
    BMC makes fence_ipmilan wait 20 s on its own)."""

    call_timeout: float = 20.0
    verify_timeout: float = 30.0
    poll_interval: float = 1.0
    attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or min(self.call_timeout, self.verify_timeout) <= 0:
            raise ValueError("FencePolicy needs attempts >= 1 and positive timeouts")
        if min(self.poll_interval, self.backoff, self.max_backoff) < 0:
            raise ValueError("FencePolicy intervals cannot be negative")


@dataclass(frozen=True, slots=True)
class FenceResult:
    """Outcome of ``Fencer.fence``. ``ok`` is True only with proof: ``level`` and
    ``device`` say which level (from 1) and device proved it. ``attempts`` counts off
    attempts over all devices; ``failures`` holds one line per failed level."""

    node: str
    ok: bool
    level: int | None
    device: str | None
    detail: str
    attempts: int
    failures: tuple[str, ...] = field(default=())


def default_device_factory(runner: AgentRunner | None = None) -> DeviceFactory:
    """Devices for fence.cfg targets: ``pvha_redfish`` → native Redfish, else the agent."""
    shared = runner or AgentRunner()

    def make(target: FenceTarget) -> PowerDevice:
        if target.agent == REDFISH_AGENT:
            return RedfishDevice(target)
        return FenceAgentDevice(target, shared)

    return make


class _LevelFailed(Exception):
    """Internal: a level could not prove the node off (message is safe to show)."""


class Fencer:
    """Fences nodes with the devices of one ``fence.cfg``; see the module docstring."""

    def __init__(
        self,
        config: FenceConfig,
        *,
        device_factory: DeviceFactory | None = None,
        liveness_probe: LivenessProbe | None = None,
        policy: FencePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.device_factory = device_factory or default_device_factory()
        self.liveness_probe = liveness_probe
        self.policy = policy or FencePolicy()
        self.clock = clock
        self.sleep = sleep

    def fence(self, node: str) -> FenceResult:
        """Power ``node`` off through its levels in order; returns ok=True only once one
        level read back off on all its sub-devices and the probe found the node silent.
        Never raises for device trouble: failures end up in the result."""
        levels = self.config.levels(node)
        if not levels:
            detail = f"no fence device connected to node '{node}'"
            log.warning("fencing %s: %s", node, detail)
            return FenceResult(node, False, None, None, detail, 0)
        failures: list[str] = []
        counter = [0]
        for level in levels:
            try:
                self._fence_level(node, level, counter)
            except _LevelFailed as exc:
                line = f"level {level.level} ({level.device}): {exc}"
                log.warning("fencing %s: %s", node, line)
                failures.append(line)
                continue
            detail = f"node '{node}' is off (level {level.level}, device {level.device})"
            log.info("fencing %s: %s", node, detail)
            return FenceResult(
                node, True, level.level, level.device, detail, counter[0], tuple(failures)
            )
        detail = f"could not fence node '{node}': " + "; ".join(failures)
        return FenceResult(node, False, None, None, detail, counter[0], tuple(failures))

    def _fence_level(self, node: str, level: FenceLevel, counter: list[int]) -> None:
        for target in level.targets:
            device = self.device_factory(target)
            self._fence_device(device, counter)
        if self.liveness_probe is None:
            return
        try:
            alive = self.liveness_probe(node)
        except Exception as exc:  # noqa: BLE001 - any probe failure means "no proof"
            raise _LevelFailed(f"liveness probe failed: {type(exc).__name__}") from None
        if alive:
            raise _LevelFailed(STILL_ANSWERS)

    def _fence_device(self, device: PowerDevice, counter: list[int]) -> None:
        """Off then verified read-back, retried; raises _LevelFailed after the last try."""
        policy = self.policy

        def before(state: RetryCallState) -> None:
            counter[0] += 1
            if state.attempt_number > 1:
                log.info("fencing: retrying %s (attempt %d)", device.label, state.attempt_number)

        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(multiplier=policy.backoff, max=policy.max_backoff),
            retry=retry_if_exception_type(FenceDeviceError),
            sleep=self.sleep,
            before=before,
            reraise=True,
        )
        try:
            retrying(self._off_and_verify, device)
        except FenceDeviceError as exc:
            raise _LevelFailed(str(exc)) from None

    def _off_and_verify(self, device: PowerDevice) -> None:
        policy = self.policy
        device.power_off(policy.call_timeout)
        deadline = self.clock() + policy.verify_timeout
        last: FenceDeviceError | None = None
        while True:
            try:
                if device.power_status(policy.call_timeout) is PowerState.OFF:
                    log.info("fencing: %s reads back off", device.label)
                    return
                last = None
            except FenceDeviceError as exc:
                last = exc
            if self.clock() >= deadline:
                break
            self.sleep(policy.poll_interval)
        if last is not None:
            raise FenceDeviceError(f"{last} (while reading back power state)")
        raise FenceTimeoutError(
            f"{device.label}: still on {policy.verify_timeout:g} s after the off command"
        )
