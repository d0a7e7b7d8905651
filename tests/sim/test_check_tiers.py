"""The comparison tiers and the `pvha sim` CLI on self-made scenarios."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pvha.cli.app import app
from pvha.sim.check import decision_lines, first_difference, relaxed_lines
from pvha.sim.log import format_line
from pvha.sim.runner import run_scenario
from pvha.sim.scenario import load_scenario

LOG = """info      0     hardware: starting simulation
info     20    node1/crm: status change wait_for_quorum => master
info     20    node1/crm: node 'node1': state changed from 'unknown' => 'online'
info     20    node1/crm: adding new service 'vm:101' on node 'node1'
info     20    node1/crm: service 'vm:101': state changed from 'request_start' to 'started'  (node = node1)
info     21    node1/lrm: starting service vm:101
"""


def test_format_line_matches_pve_printf() -> None:
    assert format_line("warning", 5, "node1/lrm", "x") == "warn      5    node1/lrm: x"
    assert (
        format_line("email", 160, "node1/crm", "FENCE: y") == "emai    160    node1/crm: FENCE: y"
    )
    assert format_line("info", 0, "hardware", "z") == "info      0     hardware: z"


def test_decision_tier_keeps_crm_decisions_only() -> None:
    lines = decision_lines(LOG)
    assert len(lines) == 4
    assert all("/crm" in line for line in lines)


def test_relaxed_tier_ignores_times() -> None:
    shifted = LOG.replace("    20 ", "    40 ")
    assert relaxed_lines(LOG) == relaxed_lines(shifted)
    assert first_difference(LOG, shifted, "relaxed") is None
    assert first_difference(LOG, shifted, "decisions") is not None
    assert first_difference(LOG, shifted, "exact") is not None


def test_first_difference_reports_line() -> None:
    diff = first_difference(LOG, LOG + "extra\n", "exact")
    assert diff is not None and diff.startswith("line 7:")


def _scenario(tmp: Path, name: str = "sc1") -> Path:
    d = tmp / name
    d.mkdir()
    (d / "cmdlist").write_text(
        json.dumps([["power node1 on", "power node2 on", "power node3 on"], ["network node3 off"]])
    )
    (d / "hardware_status").write_text(
        json.dumps({n: {"power": "off", "network": "off"} for n in ("node1", "node2", "node3")})
    )
    (d / "service_config").write_text(
        json.dumps(
            {
                "vm:101": {"node": "node1", "state": "started"},
                "vm:103": {"node": "node3", "state": "started"},
            }
        )
    )
    (d / "manager_status").write_text("{}")
    return d


def test_failover_is_deterministic_and_recovers(tmp_path: Path) -> None:
    d = _scenario(tmp_path)
    first = run_scenario(load_scenario(d))
    assert first == run_scenario(load_scenario(d))
    assert "recover service 'vm:103' from fenced node 'node3' to node 'node2'" in first
    assert first.endswith("info    720     hardware: exit simulation - done\n")


def test_cli_run_and_check(tmp_path: Path) -> None:
    d = _scenario(tmp_path)
    runner = CliRunner()
    out = tmp_path / "run.log"
    result = runner.invoke(app, ["sim", "run", str(d), "--log", str(out)])
    assert result.exit_code == 0, result.output
    (d / "log.expect").write_text(out.read_text())
    result = runner.invoke(app, ["sim", "check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["PASS sc1", "1 passed, 0 failed"]
    (d / "log.expect").write_text(out.read_text().replace("to node 'node2'", "to node 'nodeX'"))
    result = runner.invoke(app, ["sim", "check", "--tier", "decisions", str(d)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[0].startswith("FAIL sc1: line ")
    assert result.output.splitlines()[-1] == "0 passed, 1 failed"
    result = runner.invoke(app, ["sim", "check", "--diff", str(d)])
    assert result.exit_code == 1, result.output
    assert "--- log.expect" in result.output and "+++ pvha" in result.output


def test_cli_check_rejects_unknown_tier(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sim", "check", "--tier", "nope", str(tmp_path)])
    assert result.exit_code == 2, result.output
