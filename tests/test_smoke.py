"""One real process: ``python -m pvha --help`` starts, lists the commands, exits 0."""

from __future__ import annotations

import subprocess
import sys


def test_python_m_pvha_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pvha", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for command in ("config", "add", "groupadd", "crm-command", "rules", "status"):
        assert command in result.stdout
    assert result.stderr == ""
