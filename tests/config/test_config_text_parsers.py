"""The text parsers other layers use: PVE scenario files, typed values, errors with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvha.config import parse_groups_text, parse_resources_text, parse_rules_text
from pvha.core.model import Group, NodeAffinityRule, Resource, ResourceAffinityRule
from pvha.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _scenario_files(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def test_every_reference_groups_and_rules_file_parses(shared_dir: Path) -> None:
    scenarios = shared_dir / "pve-ha-scenarios"
    groups = _scenario_files(scenarios, "*/groups")
    rules = _scenario_files(scenarios, "*/rules_config") + _scenario_files(
        scenarios, "rules_cfgs/*.cfg"
    )
    assert len(groups) >= 3 and len(rules) >= 40, (groups, rules)
    for path in groups:
        assert parse_groups_text(path.read_text(), str(path)), path
    for path in rules:
        assert parse_rules_text(path.read_text(), str(path)), path


def test_project_scenario_files_parse() -> None:
    root = REPO / "tests" / "scenarios"
    for path in _scenario_files(root, "*/groups"):
        parse_groups_text(path.read_text(), str(path))
    for path in _scenario_files(root, "*/rules_config"):
        parse_rules_text(path.read_text(), str(path))


def test_reference_disable_quirk_and_order(shared_dir: Path) -> None:
    path = shared_dir / "pve-ha-scenarios/rules_cfgs/defaults-for-node-affinity-rules.cfg"
    rules = parse_rules_text(path.read_text(), str(path))
    assert [r.id for r in rules.values()] == [
        "node-affinity-defaults",
        "node-affinity-disabled",
        "node-affinity-disabled-explicit",
        "node-affinity-strict",
    ]
    assert [r.order for r in rules.values()] == [1, 2, 3, 4]
    assert [r.disable for r in rules.values()] == [False, True, True, False]
    assert [r.strict for r in rules.values()] == [False, False, False, True]  # type: ignore[union-attr]


def test_disable_zero_still_disables() -> None:
    text = "resource-affinity: keep-apart\n\tresources vm:101,vm:102\n\taffinity negative\n\tdisable 0\n"
    rule = parse_rules_text(text)["keep-apart"]
    assert rule == ResourceAffinityRule(
        "keep-apart", ("vm:101", "vm:102"), "negative", True, None, 1
    )


def test_groups_typed_view() -> None:
    text = "group: group2\n\tnodes node2:2,node3\n\tnofailback 1\n\tcomment two nodes\n"
    assert parse_groups_text(text) == {
        "group2": Group("group2", (("node2", 2), ("node3", 0)), False, True, "two nodes")
    }


def test_resources_typed_view_with_defaults() -> None:
    text = "vm: 100\n\tstate enabled\n\tgroup g1\n\nct: 101\n\tfailback 0\n\tmax_restart 3\n"
    assert parse_resources_text(text) == {
        "vm:100": Resource("vm:100", "started", "g1"),
        "ct:101": Resource("ct:101", failback=False, max_restart=3),
    }


def test_node_affinity_typed_view_keeps_file_order() -> None:
    text = "node-affinity: r1\n\tnodes node2:2,node1\n\tresources vm:102,vm:101\n\tstrict 1\n"
    rule = parse_rules_text(text)["r1"]
    assert rule == NodeAffinityRule(
        "r1", ("vm:102", "vm:101"), (("node2", 2), ("node1", 0)), True, False, None, 1
    )


def test_cross_references_are_not_checked_by_text_parsers() -> None:
    assert parse_resources_text("vm: 100\n\tgroup nosuchgroup\n")["vm:100"].group == "nosuchgroup"
    assert parse_rules_text("node-affinity: r1\n\tnodes nodeX\n\tresources fa:130\n")[
        "r1"
    ].resources == ("fa:130",)


@pytest.mark.parametrize(
    ("parser", "text", "line", "reason"),
    [
        (
            parse_resources_text,
            "vm: 100\n\tstate running\n",
            2,
            "does not have a value in the enumeration",
        ),
        (parse_resources_text, "vm: 1\n", 1, "invalid VMID '1'"),
        (parse_resources_text, "xx: 100\n", 1, "unsupported type 'xx'"),
        (parse_resources_text, "vm: 100\n\tmax_restart -1\n", 2, "minimum value of 0"),
        (parse_resources_text, "vm: 100\n\tmax_relocate two\n", 2, "type check ('integer') failed"),
        (parse_resources_text, "vm: 100\n\tbogus 1\n", 2, "unexpected property 'bogus'"),
        (parse_resources_text, "vm: 100\n\tfailback maybe\n", 2, "type check ('boolean') failed"),
        (
            parse_resources_text,
            "vm: 100\n\tstate started\n\tstate stopped\n",
            3,
            "duplicate property 'state'",
        ),
        (parse_resources_text, "vm: 100\n\nvm: 100\n", 3, "duplicate section 'vm:100'"),
        (parse_resources_text, "\tstate started\n", 1, "property line outside of a section"),
        (
            parse_resources_text,
            "vm: 100\n\tstate started\nct: 101\n",
            3,
            "preceded by a blank line",
        ),
        (parse_resources_text, "garbage\n", 1, "unable to parse line"),
        (parse_groups_text, "group: g1\n\trestricted 1\n", 1, "missing required property 'nodes'"),
        (parse_groups_text, "group: g1\n\tnodes node1:x\n", 2, "invalid priority 'x'"),
        (parse_groups_text, "group: g1\n\tnodes node1:-1\n", 2, "invalid priority '-1'"),
        (parse_groups_text, "group: g1\n\tnodes -bad\n", 2, "invalid node name '-bad'"),
        (parse_groups_text, "group: g1\n\tnodes n1,n1\n", 2, "listed twice"),
        (parse_groups_text, "group: 1g\n\tnodes n1\n", 1, "invalid configuration ID '1g'"),
        (
            parse_rules_text,
            "node-affinity: r1\n\tresources vm:100\n",
            1,
            "missing required property 'nodes'",
        ),
        (
            parse_rules_text,
            "resource-affinity: r1\n\tresources vm:100\n\taffinity maybe\n",
            3,
            "enumeration",
        ),
        (
            parse_rules_text,
            "node-affinity: r1\n\tresources vm100\n\tnodes n1\n",
            2,
            "valid ha resource id",
        ),
        (
            parse_rules_text,
            "node-affinity: r1\n\tresources vm:100\n\tnodes n1\n\tstrict\n\taffinity x\n",
            5,
            "unexpected",
        ),
        (parse_rules_text, "node-affinity: r1\n\tresources vm:100\n\tnodes\n", 3, "needs a value"),
    ],
)
def test_errors_name_path_line_and_reason(parser, text, line, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        parser(text, "some/file.cfg")
    err = caught.value
    assert (err.path, err.line) == ("some/file.cfg", line), str(err)
    assert reason in err.reason
    assert str(err).startswith(f"some/file.cfg:{line}: ")
