"""The generic section-config layer: byte-exact round trips and whole-section edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvha.config.resources import RESOURCES, resource_key
from pvha.config.rules import RULES
from pvha.config.sectioncfg import parse, render_section
from pvha.errors import ConfigError

ODD = (
    "# head\n\nvm: 100\n\t# inside\n\tstate   started  \n# after\n\n\n  \nct:  101\n\tfailback yes"
)


@pytest.mark.parametrize(
    "text", ["", "\n", ODD, "vm: 100\r\n\tstate started\r\n", "# only a comment"]
)
def test_parse_render_is_identity(text: str) -> None:
    assert parse(text, section_key=resource_key).render() == text


def test_reference_files_round_trip(shared_dir: Path) -> None:
    root = shared_dir / "pve-ha-scenarios"
    paths = (
        sorted(root.glob("*/rules_config"))
        + sorted(root.glob("*/groups"))
        + sorted(root.glob("rules_cfgs/*.cfg"))
    )
    assert paths
    for path in paths:
        text = path.read_text()
        assert parse(text, str(path)).render() == text, path


def test_sections_props_and_lines() -> None:
    parsed = parse(ODD, "f", resource_key)
    first, second = parsed.sections
    assert (first.key, first.line, [(p.key, p.value, p.line) for p in first.props]) == (
        "vm:100",
        3,
        [("state", "started", 5)],
    )
    assert (second.key, second.type, second.name, second.line) == ("ct:101", "ct", "101", 10)
    assert parsed.get("ct:101") is second and parsed.get("vm:999") is None


def test_replace_keeps_surrounding_bytes_and_trailing_comment() -> None:
    parsed = parse(ODD, "f", resource_key)
    new = parsed.replace("vm:100", RESOURCES.render("vm", "100", {"state": "stopped"}))
    assert new.render() == ODD.replace(
        "vm: 100\n\t# inside\n\tstate   started  \n", "vm: 100\n\tstate stopped\n"
    )


def test_append_separates_with_blank_line() -> None:
    assert (
        parse("vm: 100\n\tstate started").append("ct: 101\n").render()
        == "vm: 100\n\tstate started\n\nct: 101\n\n"
    )
    assert parse("").append("ct: 101\n").render() == "ct: 101\n\n"
    assert parse("vm: 100\n\n").append("ct: 101\n").render() == "vm: 100\n\nct: 101\n\n"


def test_remove_takes_the_separating_blank_line() -> None:
    text = "vm: 100\n\nct: 101\n\tstate stopped\n\nvm: 102\n\n"
    parsed = parse(text, section_key=resource_key)
    assert parsed.remove("ct:101").render() == "vm: 100\n\nvm: 102\n\n"
    assert parsed.remove("vm:102").render() == "vm: 100\n\nct: 101\n\tstate stopped\n\n"
    assert parsed.remove("vm:100").remove("ct:101").remove("vm:102").render() == ""


def test_canonical_order_comment_disable_required_optional() -> None:
    values = {
        "strict": True,
        "resources": ("vm:2", "vm:10"),
        "nodes": (("b", 0), ("a", 3)),
        "comment": "x",
        "disable": True,
    }
    assert RULES.render("node-affinity", "r", values) == (
        "node-affinity: r\n\tcomment x\n\tdisable\n\tnodes a:3,b\n\tresources vm:10,vm:2\n\tstrict 1\n"
    )


def test_render_refuses_line_breaks() -> None:
    with pytest.raises(ConfigError, match="line feed"):
        render_section("vm", "100", [("comment", "a\nb")])
