"""PVE's standard output options (``--noborder``, ``--noheader``, ``--quiet``,
``--human-readable``) on ``rules config``/``rules list`` as ``ha-manager`` has them, and
on pvha's own tables (``history``, ``what-if``): the exact output shapes, PVE's and the
dashed spellings, an optional value (alone means 1), and a bad value refused."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pvha.cli.common import optional_values
from pvha.cli.render import Column, Shape, render
from pvha.shell.history import History
from tests.cli.conftest import Run

HEADER = "ENABLED  STATE   RULE  TYPE               RESOURCES      COMMENT\n"
ROWS = (
    "1        in use  r1    node-affinity      vm:100,vm:101\n"
    "1        in use  r2    resource-affinity  vm:100,vm:101  apart\n"
)
NO_HEADER = (  # the columns are as wide as the rows need without the header
    "1  in use  r1  node-affinity      vm:100,vm:101\n"
    "1  in use  r2  resource-affinity  vm:100,vm:101  apart\n"
)


@pytest.fixture
def rules(run: Run) -> Run:
    for args in (
        ("add", "vm:100"),
        ("add", "vm:101"),
        ("rules", "add", "node-affinity", "r1", "--resources", "vm:100,vm:101",
         "--nodes", "node1,node2"),
        ("rules", "add", "resource-affinity", "r2", "--resources", "vm:100,vm:101",
         "--affinity", "negative", "--comment", "apart"),
    ):
        result = run(*args)
        assert result.exit_code == 0, result.output
    return run


def _ok(run: Run, *args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_rules_config_plain_table(rules: Run) -> None:
    assert _ok(rules, "rules", "config") == HEADER + ROWS


@pytest.mark.parametrize(
    "args",
    [("--noheader",), ("--noheader", "1"), ("--noheader=yes",), ("--no-header", "on"),
     ("--no-header",), ("--noheader", "TRUE")],
)
def test_noheader_drops_the_header_row(rules: Run, args: tuple[str, ...]) -> None:
    assert _ok(rules, "rules", "config", *args) == NO_HEADER


def test_noheader_0_keeps_it_and_noborder_is_the_plain_table(rules: Run) -> None:
    assert _ok(rules, "rules", "config", "--noheader", "0") == HEADER + ROWS
    assert _ok(rules, "rules", "config", "--noborder") == HEADER + ROWS
    assert _ok(rules, "rules", "config", "--no-border", "--noheader") == NO_HEADER


def test_rules_list_takes_them_too(rules: Run) -> None:
    listed = _ok(rules, "rules", "list", "--noborder", "--noheader", "--human-readable")
    assert listed.splitlines()[0].split() == ["r1", "node-affinity", "vm:100,vm:101",
                                              "node1,node2", "1"]
    assert "RULE" not in listed and len(listed.splitlines()) == 2


@pytest.mark.parametrize("fmt", ["text", "json", "yaml"])
def test_quiet_prints_nothing(rules: Run, fmt: str) -> None:
    result = rules("rules", "list", "--quiet", "--output-format", fmt)
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == "", result.output
    assert _ok(rules, "rules", "list", "--quiet", "0", "--output-format", fmt) != ""


def test_border_and_header_options_leave_json_alone(rules: Run) -> None:
    plain = _ok(rules, "rules", "list", "--output-format", "json")
    assert _ok(rules, "rules", "list", "--output-format", "json", "--noheader",
               "--noborder") == plain
    assert [r["rule"] for r in json.loads(plain)] == ["r1", "r2"]


@pytest.mark.parametrize("args", [("--noheader=maybe",), ("--quiet", "--noborder=2")])
def test_a_bad_boolean_is_one_line(rules: Run, args: tuple[str, ...]) -> None:
    result = rules("rules", "config", *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "expected a boolean" in lines[0], result.stderr


def _history(cfg_dir: Path) -> None:
    cfg_dir.mkdir(parents=True, exist_ok=True)
    journal = History(cfg_dir)
    journal.append("fence", "node2", time=1700000000.0, outcome="verified off", device="ipmi")
    journal.append("recovery", "node2", time=1700000061.5, sid="vm:100", outcome="running",
                   target="node1")


def test_history_raw_times_and_no_header(run: Run, cfg_dir: Path) -> None:
    _history(cfg_dir)
    raw = _ok(run, "history", "--human-readable", "0", "--noheader")
    assert raw == (
        "1700000000.0  fence     node2          verified off  device ipmi\n"
        "1700000061.5  recovery  node2  vm:100  running       on node1\n"
    )
    shown = _ok(run, "history", "--noheader")
    assert "1700000000" not in shown and shown.count("\n") == 2
    assert _ok(run, "history").startswith("TIME ")
    assert _ok(run, "history", "--quiet") == ""


def test_what_if_quiet_keeps_the_exit_status(run: Run, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    gib = 1024**3
    inventory.write_text(json.dumps({
        "nodes": {"node1": {"maxcpu": 8, "maxmem": 8 * gib},
                  "node2": {"maxcpu": 8, "maxmem": 8 * gib}},
        "guests": {"vm:100": {"node": "node1", "maxcpu": 2, "maxmem": 6 * gib},
                   "vm:101": {"node": "node2", "maxcpu": 2, "maxmem": 6 * gib}},
    }))
    assert run("add", "vm:100").exit_code == 0 and run("add", "vm:101").exit_code == 0
    table = run("what-if", "--fail", "node1", "--inventory", str(inventory), "--noheader")
    assert table.exit_code == 1, table.output  # vm:100 finds no room on node2
    assert not table.stdout.startswith("SID") and "vm:100" in table.stdout
    quiet = run("what-if", "--fail", "node1", "--inventory", str(inventory), "--quiet")
    assert quiet.exit_code == 1 and quiet.stdout == "" and quiet.stderr == "", quiet.output


# --- the renderer on a terminal, and the optional values ---------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


TABLE = [{"sid": "vm:100", "state": "started"}]
COLUMNS = [Column("sid", "SID"), Column("state", "STATE")]


def _on_tty(shape: Shape) -> str:
    out = _Tty()
    render(TABLE, COLUMNS, "text", out=out, shape=shape)
    return out.getvalue()


def test_terminal_table_without_border_or_header() -> None:
    boxed = _on_tty(Shape())
    assert boxed.startswith("┏") and "SID" in boxed, boxed
    assert _on_tty(Shape(border=False)) == "SID     STATE\nvm:100  started\n"
    headless = _on_tty(Shape(header=False))
    assert headless.startswith("┌") and "SID" not in headless and "vm:100" in headless
    assert _on_tty(Shape(border=False, header=False)) == "vm:100  started\n"
    assert _on_tty(Shape(quiet=True)) == ""


def test_optional_values_give_a_bare_option_its_1() -> None:
    assert optional_values(["rules", "config", "--noborder"]) == [
        "rules", "config", "--noborder=1"]
    assert optional_values(["history", "--noheader", "0", "--quiet", "--node", "n1"]) == [
        "history", "--noheader", "0", "--quiet=1", "--node", "n1"]
    assert optional_values(["what-if", "--no-header", "--fail", "n1"]) == [
        "what-if", "--no-header=1", "--fail", "n1"]
    assert optional_values(["sim", "ctl", "--", "--quiet"]) == ["sim", "ctl", "--", "--quiet"]
