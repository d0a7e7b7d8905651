"""Is this node shutting down or rebooting? Asked as pve-ha-lrm asks it: the jobs systemd
has queued (``systemctl --full list-jobs``) include ``shutdown.target`` during any
shutdown and also ``reboot.target`` during a reboot. A stop with neither queued is a
restart of the service alone (``systemctl restart``, an upgrade)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

_JOB = re.compile(r"^\s*\d+\s+(shutdown|reboot)\.target\s")

Runner = Callable[[list[str]], str]


def _systemctl(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""  # no systemd here: nothing is queued
    return done.stdout


def parse_jobs(text: str) -> tuple[bool, bool]:
    """``(shutdown, reboot)`` from ``systemctl --full list-jobs`` output."""
    targets = {m.group(1) for m in map(_JOB.match, text.splitlines()) if m}
    reboot = "reboot" in targets
    return "shutdown" in targets or reboot, reboot


def node_shutdown(run: Runner = _systemctl) -> tuple[bool, bool]:
    """``(shutdown, reboot)``: what systemd is doing to this node right now."""
    return parse_jobs(run(["systemctl", "--full", "list-jobs"]))
