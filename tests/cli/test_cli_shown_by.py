"""The issue's "Shown by" sequence, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pvha.cli.app import app
from pvha.config import parse_groups_text, parse_resources_text
from pvha.core.model import Group, Resource


def test_shown_by_sequence_via_env_var(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PVHA_CONFIG_DIR": str(tmp_path / "D")}
    steps = [
        ["add", "vm:100", "--max_restart", "2"],
        ["groupadd", "g1", "--nodes", "node1:2,node2", "--nofailback", "1"],
        ["set", "vm:100", "--group", "g1"],
    ]
    for args in steps:
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output)
        assert result.output == "", result.output
    # a rule for a resource its group already places is one the manager would drop
    rule = ["rules", "add", "node-affinity", "r1", "--resources", "vm:100", "--nodes", "node2",
            "--strict", "1"]
    result = runner.invoke(app, rule, env=env)
    assert result.exit_code == 2, result.output
    assert "conflicts with group 'g1'" in result.output

    result = runner.invoke(app, ["config", "--output-format", "json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"sid": "vm:100", "type": "vm", "group": "g1", "max_restart": 2}
    ]

    d = tmp_path / "D"
    assert (d / "resources.cfg").read_text() == "vm: 100\n\tgroup g1\n\tmax_restart 2\n\n"
    assert (d / "groups.cfg").read_text() == "group: g1\n\tnodes node1:2,node2\n\tnofailback 1\n\n"
    assert not (d / "rules.cfg").exists()
    assert parse_resources_text((d / "resources.cfg").read_text()) == {
        "vm:100": Resource("vm:100", group="g1", max_restart=2)
    }
    assert parse_groups_text((d / "groups.cfg").read_text()) == {
        "g1": Group("g1", (("node1", 2), ("node2", 0)), nofailback=True)
    }


def test_config_text_is_ha_manager_layout(run) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ["add", "vm:100", "--state", "stopped"],
        ["add", "ct:200", "--comment", "a b", "--failback", "0"],
    ):
        assert run(*args).exit_code == 0
    result = run("config")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ct:200\n\tcomment a b\n\tfailback 0\n\nvm:100\n\tstate stopped\n\n"
    result = run("config", "--type", "vm")
    assert result.stdout == "vm:100\n\tstate stopped\n\n"
