"""Behaviour of each command on the store, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def _ok(result):  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return result


def test_dashed_and_underscored_option_spellings(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(run("add", "vm:100", "--max_restart", "2", "--max_relocate", "3"))
    _ok(run("add", "vm:101", "--max-restart", "2", "--max-relocate", "3"))
    text = (cfg_dir / "resources.cfg").read_text()
    assert (
        text
        == "vm: 100\n\tmax_relocate 3\n\tmax_restart 2\n\nvm: 101\n\tmax_relocate 3\n\tmax_restart 2\n\n"
    )


def test_add_with_bare_vmid_and_type(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(run("add", "101", "--type", "ct", "--state", "enabled"))
    assert (cfg_dir / "resources.cfg").read_text() == "ct: 101\n\tstate enabled\n\n"


def test_set_merges_and_deletes(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(run("add", "vm:100", "--comment", "db", "--state", "started", "--failback", "0"))
    _ok(run("set", "vm:100", "--state", "stopped", "--delete", "failback"))
    assert (cfg_dir / "resources.cfg").read_text() == "vm: 100\n\tcomment db\n\tstate stopped\n\n"


def test_untouched_sections_keep_their_bytes(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    cfg_dir.mkdir()
    original = "# managed by hand\nvm: 100\n\tstate   enabled  \n\nct:101\n\tfailback yes\n"
    (cfg_dir / "resources.cfg").write_text(original)
    _ok(run("set", "ct:101", "--max_restart", "0"))
    text = (cfg_dir / "resources.cfg").read_text()
    assert (
        text
        == "# managed by hand\nvm: 100\n\tstate   enabled  \n\nct: 101\n\tfailback 1\n\tmax_restart 0\n"
    )
    _ok(run("add", "vm:102"))
    assert (cfg_dir / "resources.cfg").read_text() == text + "\nvm: 102\n\n"


def test_remove_and_delete_alias_purge_rules(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    for sid in ("vm:100", "vm:101", "vm:102"):
        _ok(run("add", sid))
    _ok(
        run(
            "rules",
            "add",
            "resource-affinity",
            "apart",
            "--resources",
            "vm:100,vm:101",
            "--affinity",
            "negative",
        )
    )
    _ok(run("rules", "add", "node-affinity", "pin", "--resources", "vm:101", "--nodes", "n1"))
    _ok(run("remove", "vm:101"))
    _ok(run("delete", "vm:102", "--purge", "0"))
    assert (cfg_dir / "resources.cfg").read_text() == "vm: 100\n\n"
    assert (
        cfg_dir / "rules.cfg"
    ).read_text() == "resource-affinity: apart\n\taffinity negative\n\tresources vm:100\n\n"


def test_group_commands(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(
        run("groupadd", "g1", "--nodes", "node2,node1:2", "--restricted", "1", "--comment", "first")
    )
    _ok(run("groupadd", "g0", "--nodes", "node3"))
    _ok(run("groupset", "g1", "--nofailback", "1", "--delete", "restricted"))
    result = _ok(run("groupconfig"))
    assert result.stdout == (
        "group: g0\n\tnodes node3\n\n"
        "group: g1\n\tcomment first\n\tnodes node2,node1:2\n\tnofailback 1\n\n"
    )
    rows = json.loads(_ok(run("groupconfig", "--output-format", "json")).stdout)
    assert rows[1] == {
        "group": "g1",
        "type": "group",
        "comment": "first",
        "nodes": "node2,node1:2",
        "nofailback": 1,
    }
    _ok(run("groupremove", "g0"))
    assert (
        cfg_dir / "groups.cfg"
    ).read_text() == "group: g1\n\tcomment first\n\tnodes node2,node1:2\n\tnofailback 1\n\n"


def test_rules_set_sorts_lists_and_disable_flag(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    for sid in ("vm:100", "vm:101"):
        _ok(run("add", sid))
    _ok(
        run(
            "rules",
            "add",
            "node-affinity",
            "r1",
            "--resources",
            "vm:101,vm:100",
            "--nodes",
            "n2:2,n1",
            "--comment",
            "c",
        )
    )
    _ok(run("rules", "set", "node-affinity", "r1", "--disable", "1"))
    assert (cfg_dir / "rules.cfg").read_text() == (
        "node-affinity: r1\n\tcomment c\n\tdisable\n\tnodes n1,n2:2\n\tresources vm:100,vm:101\n\n"
    )
    rows = json.loads(_ok(run("rules", "config", "--output-format", "json")).stdout)
    assert (rows[0]["enabled"], rows[0]["state"], rows[0]["disable"]) == (0, "disabled", 1)
    _ok(run("rules", "set", "node-affinity", "r1", "--disable", "0"))
    assert "disable" not in (cfg_dir / "rules.cfg").read_text()


def test_rules_refuse_overlapping_node_affinity(run, snapshot) -> None:  # type: ignore[no-untyped-def]
    _ok(run("add", "vm:100"))
    _ok(run("rules", "add", "node-affinity", "r1", "--resources", "vm:100", "--nodes", "n1"))
    before = snapshot()
    result = run("rules", "add", "node-affinity", "r2", "--resources", "vm:100", "--nodes", "n2")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "pvha: error: Rule 'r2' is invalid: resource 'vm:100' is already used in another"
        " node affinity rule (conflicts with rule 'r1')\n"
    )
    assert snapshot() == before


def test_rules_config_and_list_filters(run) -> None:  # type: ignore[no-untyped-def]
    for sid in ("vm:100", "vm:101", "ct:102"):
        _ok(run("add", sid))
    _ok(
        run(
            "rules",
            "add",
            "resource-affinity",
            "together",
            "--resources",
            "vm:100,vm:101",
            "--affinity",
            "positive",
        )
    )
    _ok(
        run(
            "rules",
            "add",
            "node-affinity",
            "pin",
            "--resources",
            "ct:102",
            "--nodes",
            "n1",
            "--strict",
            "1",
        )
    )
    text = _ok(run("rules", "config")).stdout.splitlines()
    assert text[0].split() == ["ENABLED", "STATE", "RULE", "TYPE", "RESOURCES", "COMMENT"]
    assert text[1].split() == ["1", "in", "use", "together", "resource-affinity", "vm:100,vm:101"]
    rows = yaml.safe_load(
        _ok(run("rules", "list", "--type", "node-affinity", "--output-format", "yaml")).stdout
    )
    assert [r["rule"] for r in rows] == ["pin"]
    assert rows[0]["strict"] == 1 and rows[0]["order"] == 2
    rows = json.loads(
        _ok(run("rules", "config", "--resource", "vm:101", "--output-format", "json-pretty")).stdout
    )
    assert [r["rule"] for r in rows] == ["together"]


def test_crm_commands_are_queued_in_pve_grammar(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(run("add", "vm:100"))
    for args in (
        ["migrate", "vm:100", "node2"],
        ["relocate", "vm:100", "node3"],
        ["crm-command", "migrate", "vm:100", "node1"],
        ["crm-command", "relocate", "vm:100", "node1"],
        ["crm-command", "stop", "vm:100", "0"],
        ["crm-command", "node-maintenance", "enable", "node1"],
        ["crm-command", "node-maintenance", "disable", "node1"],
        ["crm-command", "disarm-ha", "ignore"],
        ["crm-command", "arm-ha"],
    ):
        _ok(run(*args))
    assert (cfg_dir / "crm_commands").read_text().splitlines() == [
        "migrate vm:100 node2",
        "relocate vm:100 node3",
        "migrate vm:100 node1",
        "relocate vm:100 node1",
        "stop vm:100 0",
        "enable-node-maintenance node1",
        "disable-node-maintenance node1",
        "disarm-ha ignore",
        "arm-ha",
    ]


def test_ignored_resource_cannot_be_migrated(run, snapshot) -> None:  # type: ignore[no-untyped-def]
    _ok(run("add", "vm:100", "--state", "ignored"))
    before = snapshot()
    result = run("migrate", "vm:100", "node2")
    assert result.exit_code == 2 and "is not HA managed" in result.stderr, result.output
    assert snapshot() == before


def test_output_formats_of_config(run) -> None:  # type: ignore[no-untyped-def]
    _ok(run("add", "vm:100", "--failback", "0", "--comment", "x: y"))
    expected = [{"sid": "vm:100", "type": "vm", "comment": "x: y", "failback": 0}]
    assert json.loads(_ok(run("config", "--output-format", "json")).stdout) == expected
    pretty = _ok(run("config", "--output-format", "json-pretty")).stdout
    assert json.loads(pretty) == expected and "\n    " in pretty
    assert yaml.safe_load(_ok(run("config", "--output-format", "yaml")).stdout) == expected


def test_config_reports_missing_group_on_stderr(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    cfg_dir.mkdir()
    (cfg_dir / "resources.cfg").write_text("vm: 100\n\tgroup gone\n")
    result = _ok(run("config"))
    assert result.stdout == "vm:100\n\tgroup gone\n\n"
    assert result.stderr == "error: property 'group' - group 'gone' does not exist\n"


def test_help_and_no_args(run) -> None:  # type: ignore[no-untyped-def]
    result = _ok(run("--help"))
    for command in (
        "config",
        "add",
        "set",
        "remove",
        "migrate",
        "crm-command",
        "groupadd",
        "rules",
        "status",
        "sim",
    ):
        assert command in result.stdout
    assert "_complete" not in result.stdout
    assert _ok(run("rules")).stdout.count("Usage:") == 1


def test_dynamic_completion_reads_local_config(run) -> None:  # type: ignore[no-untyped-def]
    _ok(run("add", "vm:100"))
    _ok(run("add", "ct:101"))
    _ok(run("groupadd", "g1", "--nodes", "node1,node2:1"))
    _ok(run("rules", "add", "node-affinity", "r1", "--resources", "vm:100", "--nodes", "node3"))
    assert _ok(run("_complete", "sids")).stdout.split() == ["ct:101", "vm:100"]
    assert _ok(run("_complete", "groups")).stdout.split() == ["g1"]
    assert _ok(run("_complete", "rules")).stdout.split() == ["r1"]
    assert _ok(run("_complete", "nodes")).stdout.split() == ["node1", "node2", "node3"]


def test_rules_config_marks_conflicting_rules(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    for sid in ("vm:100", "vm:101", "ct:102"):
        _ok(run("add", sid))
    resources = "vm:100,vm:101,ct:102"
    _ok(
        run(
            "rules",
            "add",
            "resource-affinity",
            "apart",
            "--resources",
            resources,
            "--affinity",
            "negative",
        )
    )
    rows = json.loads(_ok(run("rules", "config", "--output-format", "json")).stdout)
    assert rows[0]["state"] == "ignored (conflicts)"  # no node known at all
    status = {"node_status": {"n1": "online", "n2": "online", "n3": "online"}}
    (cfg_dir / "manager_status").write_text(json.dumps(status))
    rows = json.loads(_ok(run("rules", "config", "--output-format", "json")).stdout)
    assert (rows[0]["state"], "errors" in rows[0]) == ("in use", False)
    (cfg_dir / "manager_status").write_text(
        json.dumps({"node_status": {"n1": "online", "n2": "online"}})
    )
    rows = json.loads(_ok(run("rules", "config", "--output-format", "json")).stdout)
    assert rows[0]["state"] == "ignored (conflicts)"
    assert rows[0]["errors"] == ["rule defines more resources than available nodes"]
