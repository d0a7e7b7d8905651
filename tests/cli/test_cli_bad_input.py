"""Each class of bad input: one line on stderr, non-zero exit, files byte-identical."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETUP = [
    ["add", "vm:100", "--max_restart", "2"],
    ["add", "ct:102"],
    ["groupadd", "g1", "--nodes", "node1:2,node2"],
    ["set", "vm:100", "--group", "g1"],
    # vm:100 is in g1 (a node-affinity rule to the engine), so r1 names another resource
    ["rules", "add", "node-affinity", "r1", "--resources", "ct:102", "--nodes", "node2"],
    ["migrate", "vm:100", "node2"],
]


@pytest.fixture
def populated(run, snapshot):  # type: ignore[no-untyped-def]
    for args in SETUP:
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
    before = snapshot()
    assert set(before) == {"resources.cfg", "groups.cfg", "rules.cfg", "crm_commands"}
    return before


def _refused(result, code: int, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pvha: error: "), lines
    assert needle in lines[0], lines


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["add", "vm100"], "'vm100' does not look like a valid ha resource id"),
        (["add", "vm:1"], "invalid VMID '1'"),
        (["add", "qemu:100"], "no such resource type 'qemu'"),
        (["set", "vm:abc", "--state", "stopped"], "invalid VMID 'abc'"),
        (["migrate", "vm:x1", "node1"], "invalid VMID"),
    ],
)
def test_malformed_sid(run, snapshot, populated, args, needle) -> None:  # type: ignore[no-untyped-def]
    _refused(run(*args), 2, needle)
    assert snapshot() == populated


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["set", "vm:100", "--group", "nosuch"], "HA group 'nosuch' does not exist"),
        (["add", "vm:101", "--group", "nosuch"], "HA group 'nosuch' does not exist"),
        (["set", "vm:999", "--state", "stopped"], "no such resource 'vm:999'"),
        (["remove", "vm:999"], "cannot delete service 'vm:999', not HA managed!"),
        (["migrate", "vm:999", "node1"], "resource 'vm:999' is not HA managed"),
        (["groupset", "nosuch", "--restricted", "1"], "HA group 'nosuch' does not exist"),
        (["groupremove", "nosuch"], "HA group 'nosuch' does not exist"),
        (["groupremove", "g1"], "ha group is used by service 'vm:100'"),
        (
            ["rules", "set", "node-affinity", "nosuch", "--strict", "1"],
            "HA rule 'nosuch' does not exist",
        ),
        (["rules", "remove", "nosuch"], "HA rule 'nosuch' does not exist"),
        (
            [
                "rules",
                "add",
                "resource-affinity",
                "r2",
                "--resources",
                "vm:100,vm:101",
                "--affinity",
                "positive",
            ],
            "cannot use unmanaged resource(s) vm:101.",
        ),
    ],
)
def test_unknown_reference(run, snapshot, populated, args, needle) -> None:  # type: ignore[no-untyped-def]
    _refused(run(*args), 2, needle)
    assert snapshot() == populated


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["add", "vm:100"], "resource ID 'vm:100' already defined"),
        (["groupadd", "g1", "--nodes", "node3"], "ha group ID 'g1' already defined"),
        (
            ["rules", "add", "node-affinity", "r1", "--resources", "vm:100", "--nodes", "n1"],
            "HA rule 'r1' already defined",
        ),
    ],
)
def test_duplicate_add(run, snapshot, populated, args, needle) -> None:  # type: ignore[no-untyped-def]
    _refused(run(*args), 2, needle)
    assert snapshot() == populated


@pytest.mark.parametrize(
    "nodes", ["node1:x", "node1:", "node1:-1", "node1:1:2", "node1:1.5", ":3", "node1,node1:2"]
)
def test_bad_priority_syntax(run, snapshot, populated, nodes) -> None:  # type: ignore[no-untyped-def]
    _refused(run("groupadd", "g2", "--nodes", nodes), 2, "invalid value for 'nodes'")
    _refused(run("groupset", "g1", "--nodes", nodes), 2, "invalid value for 'nodes'")
    _refused(
        run("rules", "set", "node-affinity", "r1", "--nodes", nodes), 2, "invalid value for 'nodes'"
    )
    assert snapshot() == populated


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["add", "vm:101", "--bogus", "1"], "No such option: --bogus"),
        (["add", "vm:101", "--state", "running"], "Invalid value for '--state'"),
        (["add", "vm:101", "--max_restart", "-1"], "minimum value of 0"),
        (["add", "vm:101", "--max-relocate", "x"], "type check ('integer') failed"),
        (["set", "vm:100", "--delete", "bogus"], "no such option 'bogus'"),
        (["groupset", "g1", "--delete", "nodes"], "unable to delete required option 'nodes'"),
        (
            ["rules", "add", "resource-affinity", "r2", "--resources", "vm:100", "--nodes", "n1"],
            "option --nodes does not apply to resource-affinity rules",
        ),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["add"], "Missing argument 'SID'"),
    ],
)
def test_unknown_option_or_bad_value(run, snapshot, populated, args, needle) -> None:  # type: ignore[no-untyped-def]
    _refused(run(*args), 2, needle)
    assert snapshot() == populated


def test_malformed_config_file(run, snapshot, populated, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    (cfg_dir / "groups.cfg").write_text("group: g1\n\tnodes node1:2,node2\n\tbogus 1\n")
    before = snapshot()
    _refused(run("add", "vm:101"), 1, f"{cfg_dir / 'groups.cfg'}:3: section 'g1': invalid 'bogus'")
    _refused(run("config"), 1, "groups.cfg:3:")
    assert snapshot() == before


def test_unwritable_directory_not_a_directory(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pvha.cli.app import app

    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["--config-dir", str(blocker / "sub"), "add", "vm:100"])
    _refused(result, 1, f"cannot write to config dir {blocker / 'sub'}")
    assert blocker.read_text() == "x"


def test_unwritable_directory_permission_denied(run, snapshot, populated, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """As a non-root user sees it (EACCES creating the lock file), even when tests run as root."""
    import pvha.config.store as store_module

    real_open = os.open

    def deny(path, flags, *args):  # type: ignore[no-untyped-def]
        if str(path).endswith(store_module.LOCK_FILE):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(store_module.os, "open", deny)
    _refused(run("add", "vm:101"), 1, "cannot write to config dir")
    _refused(run("crm-command", "arm-ha"), 1, "Permission denied")
    assert snapshot() == populated


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(st.sampled_from(list("vm:ct 01\t\n#,:gr-oup_nodesxé")), max_size=60))
def test_any_file_content_gives_output_or_one_error_line(tmp_path_factory, text: str) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from pvha.cli.app import app

    cfg = tmp_path_factory.mktemp("fuzz")
    for name in ("resources.cfg", "groups.cfg", "rules.cfg"):
        (cfg / name).write_text(text)
    result = CliRunner().invoke(
        app, ["--config-dir", str(cfg), "config", "--output-format", "json"]
    )
    if result.exit_code == 0:
        assert isinstance(json.loads(result.stdout), list)
    else:
        assert result.exit_code == 1, result.output
        assert re.fullmatch(r"pvha: error: .+:\d+: .+\n", result.stderr), result.stderr
        assert "internal error" not in result.stderr
    for name in ("resources.cfg", "groups.cfg", "rules.cfg"):
        assert (cfg / name).read_text() == text
