"""Helpers for the fake PVE tests: a started simulator on loopback with fast timings
(stopped at the end of each test, whatever happens), proxmoxer clients for a node, and
bounded waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI

from pvha.fakepve.cluster import Timing
from pvha.fakepve.ctl import execute
from pvha.fakepve.server import FakePve

FAST = {"task_seconds": 0.15, "migrate_seconds": 0.25, "proxy_delay": 0.05,
        "stale_seconds": 300.0, "auth_fail_delay": 0.0, "reboot_seconds": 0.3}


def start_fake(state: Path, **kw: Any) -> FakePve:
    timing = Timing(**{**FAST, **kw.pop("timing", {})})
    return FakePve(state, timing=timing, **kw).start()


@pytest.fixture
def fake_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., FakePve]]:
    """Start simulators (short state dir paths: unix sockets allow ~100 bytes)."""
    started: list[FakePve] = []

    def make(**kw: Any) -> FakePve:
        fp = start_fake(tmp_path_factory.mktemp("fp"), **kw)
        started.append(fp)
        return fp

    yield make
    for fp in started:
        fp.stop()


@pytest.fixture
def fake(fake_factory: Callable[..., FakePve]) -> FakePve:
    return fake_factory()


def token_client(fp: FakePve, node: str = "node1", **kw: Any) -> ProxmoxAPI:
    secret = (fp.state / "token").read_text().strip()
    ip, port = fp.address(node)
    return ProxmoxAPI(f"{ip}:{port}", user="root@pam", token_name="pvha", token_value=secret,
                      verify_ssl=str(fp.state / "ca.pem"), timeout=10, **kw)


def ticket_client(fp: FakePve, node: str = "node1") -> ProxmoxAPI:
    password = (fp.state / "password").read_text().strip()
    ip, port = fp.address(node)
    return ProxmoxAPI(f"{ip}:{port}", user="root@pam", password=password,
                      verify_ssl=str(fp.state / "ca.pem"), timeout=10)


def url(fp: FakePve, node: str, path: str) -> str:
    ip, port = fp.address(node)
    return f"https://{ip}:{port}/api2/json/{path.lstrip('/')}"


def ctl(fp: FakePve, command: str) -> Any:
    return execute(fp, command)


def wait_for(check: Callable[[], Any], timeout: float = 5.0, step: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def wait_task(px: ProxmoxAPI, node: str, upid: str, timeout: float = 5.0) -> dict[str, Any]:
    """The final status of a task (bounded)."""

    def stopped() -> dict[str, Any] | None:
        status: dict[str, Any] = px.nodes(node).tasks(upid).status.get()
        return status if status["status"] == "stopped" else None

    return wait_for(stopped, timeout)
