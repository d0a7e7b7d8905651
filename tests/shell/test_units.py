"""The systemd units in ``systemd/`` pass ``systemd-analyze verify`` (Debian's systemd
package; CI installs it, elsewhere the test skips without it) and sd_notify works."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pvha.shell.notify import notify

REPO = Path(__file__).resolve().parents[2]
UNITS = ("pvha-watch.service", "pvha-watch-once.service", "pvha-watch-once.timer",
         "pvha-agent.service")


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: CI must install Debian's systemd package")
        pytest.skip("systemd-analyze not installed")
    pvha = Path(sys.executable).with_name("pvha")
    assert pvha.exists(), "the pvha console script must be installed beside python"
    for name in UNITS:
        text = (REPO / "systemd" / name).read_text()
        # verify checks that ExecStart exists: point it at this checkout's pvha
        (tmp_path / name).write_text(text.replace("/usr/local/bin/pvha", str(pvha)))
    res = subprocess.run([tool, "verify", "--man=no", *UNITS], cwd=tmp_path, check=False,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert not [ln for ln in res.stderr.splitlines() if "pvha" in ln], res.stderr


def test_units_run_pvha_watch_with_the_documented_settings() -> None:
    service = (REPO / "systemd" / "pvha-watch.service").read_text()
    assert "ExecStart=/usr/local/bin/pvha watch\n" in service
    assert "Restart=on-failure" in service and "Type=notify" in service
    assert "WatchdogSec=" in service
    once = (REPO / "systemd" / "pvha-watch-once.service").read_text()
    assert "ExecStart=/usr/local/bin/pvha watch --once\n" in once
    assert "Type=oneshot" in once
    timer = (REPO / "systemd" / "pvha-watch-once.timer").read_text()
    assert "Unit=pvha-watch-once.service" in timer


def test_sd_notify_sends_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        assert notify("READY=1", "STATUS=manager: 3 nodes\nonline", env={"NOTIFY_SOCKET": path})
        assert sock.recv(4096) == b"READY=1\nSTATUS=manager: 3 nodes online"
    assert not notify("READY=1", env={})


def test_the_agent_unit_runs_beside_watchdog_mux() -> None:
    agent = (REPO / "systemd" / "pvha-agent.service").read_text()
    assert "ExecStart=/usr/local/bin/pvha agent\n" in agent
    assert "Wants=watchdog-mux.service" in agent and "KillSignal=SIGTERM" in agent


def test_the_agent_unit_stops_before_the_guests_the_api_and_the_watcher() -> None:
    """Units stop in the reverse order of After=: at a node shutdown the agent stops
    first, while the guests, the API and the local watcher still run, and systemd waits
    longer for it than it waits for the manager."""
    from pvha.shell.agent import SHUTDOWN_TIMEOUT

    lines = (REPO / "systemd" / "pvha-agent.service").read_text().splitlines()
    after = {u for line in lines if line.startswith("After=") for u in line[6:].split()}
    assert {"pve-guests.service", "pveproxy.service", "pvedaemon.service",
            "pve-cluster.service", "watchdog-mux.service", "pvha-watch.service"} <= after
    stop = next(line for line in lines if line.startswith("TimeoutStopSec="))
    assert stop.endswith("s") and float(stop[15:-1]) > SHUTDOWN_TIMEOUT
