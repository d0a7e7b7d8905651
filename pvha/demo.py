"""A short demo of the pvha CLI on an example configuration (``python -m pvha.demo``).

It creates a temporary config directory, runs a few ``pvha`` commands (in this
process, through the same entry point as the ``pvha`` script), printing each command
line and its output, and exits 0 if all behaved as expected (the last one is a
deliberate error). The simulated-cluster demo replaces
this once ``pvha sim`` and ``pvha watch`` exist.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from typer.main import get_command

from pvha.cli.app import app

STEPS: list[tuple[list[str], int]] = [
    (["add", "vm:100", "--max_restart", "2"], 0),
    (["add", "ct:101", "--state", "stopped", "--comment", "web frontend"], 0),
    (["groupadd", "g1", "--nodes", "node1:2,node2", "--nofailback", "1"], 0),
    (["set", "vm:100", "--group", "g1"], 0),
    (
        [
            "rules",
            "add",
            "node-affinity",
            "r1",
            "--resources",
            "vm:100",
            "--nodes",
            "node2",
            "--strict",
            "1",
        ],
        0,
    ),
    (
        [
            "rules",
            "add",
            "resource-affinity",
            "apart",
            "--resources",
            "vm:100,ct:101",
            "--affinity",
            "negative",
        ],
        0,
    ),
    (["config"], 0),
    (["config", "--output-format", "json"], 0),
    (["groupconfig"], 0),
    (["rules", "config"], 0),
    (["migrate", "vm:100", "node2"], 0),
    (["status"], 0),
    (["add", "vm:100"], 2),
]


def _example_status(config_dir: Path) -> None:
    """A manager status as a running HA manager would leave it, so ``status`` has content."""
    now = int(time.time())
    manager = {
        "master_node": "node1",
        "timestamp": now,
        "node_status": {"node1": "online", "node2": "online"},
        "service_status": {
            "vm:100": {"state": "started", "node": "node2", "running": 1, "uid": "x"}
        },
    }
    (config_dir / "manager_status").write_text(json.dumps(manager))
    (config_dir / "lrm_status").mkdir()
    for node, state in (("node1", "wait_for_agent_lock"), ("node2", "active")):
        lrm = {"state": state, "mode": "active", "timestamp": now, "results": {}}
        (config_dir / "lrm_status" / node).write_text(json.dumps(lrm))


def cli_showcase() -> int:
    """Part 1: the ha-manager-style CLI on a temporary config directory."""
    with tempfile.TemporaryDirectory(prefix="pvha-demo-") as tmp:
        config_dir = Path(tmp)
        print(f"# pvha CLI demo; configuration directory: {config_dir}\n")
        failures = 0
        command = get_command(app)
        for args, expected in STEPS:
            if args == ["status"]:
                _example_status(config_dir)
            print(f"$ pvha {shlex.join(args)}", flush=True)
            code = command.main(
                ["--config-dir", str(config_dir), *args], prog_name="pvha", standalone_mode=False
            )
            sys.stderr.flush()
            if code != expected:
                failures += 1
                print(f"!! exit code {code}, expected {expected}")
            print()
        for name in ("resources.cfg", "groups.cfg", "rules.cfg", "crm_commands"):
            print(f"--- {name} ---\n{(config_dir / name).read_text()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
