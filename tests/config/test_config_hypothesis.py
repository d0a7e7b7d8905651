"""Property tests: generated configs round-trip byte for byte; any text parses or fails cleanly."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvha.config import parse_groups_text, parse_resources_text, parse_rules_text
from pvha.config.groups import GROUP_TYPE, GROUPS
from pvha.config.resources import RESOURCES, resource_key
from pvha.config.rules import NODE_AFFINITY, RESOURCE_AFFINITY, RULES
from pvha.config.schema import Kind, validate_file
from pvha.config.sectioncfg import SectionFile, name_key, parse
from pvha.errors import ConfigError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.from_regex(r"[a-z][a-z0-9_-]{1,10}", fullmatch=True)
nodes = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
vmids = st.integers(10, 99999).map(str)
sids = st.tuples(st.sampled_from(["vm", "ct"]), vmids).map(":".join)
comments = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\x85"),
    min_size=1,
    max_size=20,
)
bools = st.booleans()
node_lists = st.lists(
    st.tuples(nodes, st.integers(0, 1000)), min_size=1, max_size=4, unique_by=lambda t: t[0]
).map(tuple)
sid_lists = st.lists(sids, min_size=1, max_size=4, unique=True).map(tuple)


def _optional(**strategies: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({}, optional=strategies)


resource_values = _optional(
    state=st.sampled_from(["started", "stopped", "enabled", "disabled", "ignored"]),
    group=ids,
    failback=bools,
    max_restart=st.integers(0, 100),
    max_relocate=st.integers(0, 100),
    comment=comments,
)
group_values = st.builds(
    lambda n, o: {"nodes": n, **o},
    node_lists,
    _optional(restricted=bools, nofailback=bools, comment=comments),
)
node_rule_values = st.builds(
    lambda r, n, o: {"resources": tuple(sorted(r)), "nodes": tuple(sorted(n)), **o},
    sid_lists,
    node_lists,
    _optional(strict=bools, disable=st.just(True), comment=comments),
)
res_rule_values = st.builds(
    lambda r, a, o: {"resources": tuple(sorted(r)), "affinity": a, **o},
    sid_lists,
    st.sampled_from(["positive", "negative"]),
    _optional(disable=st.just(True), comment=comments),
)


def _canonical(kind: Kind, sections: list[tuple[str, str, dict[str, object]]]) -> str:
    return "".join(kind.render(t, n, v) + "\n" for t, n, v in sections)


def _assert_round_trip(kind: Kind, key, sections) -> None:  # type: ignore[no-untyped-def]
    text = _canonical(kind, sections)
    parsed = parse(text, "gen", key)
    assert parsed.render() == text
    entries = validate_file(kind, parsed)
    assert [(e.type, e.name, dict(e.values)) for e in entries.values()] == sections
    assert _canonical(kind, [(e.type, e.name, dict(e.values)) for e in entries.values()]) == text
    rebuilt = SectionFile("gen", (), key)
    for t, n, v in sections:
        rebuilt = rebuilt.append(kind.render(t, n, v))
    assert rebuilt.render() == text


@SETTINGS
@given(
    st.lists(
        st.tuples(st.sampled_from(["vm", "ct"]), vmids, resource_values),
        max_size=5,
        unique_by=lambda s: s[:2],
    )
)
def test_resources_round_trip(sections) -> None:  # type: ignore[no-untyped-def]
    _assert_round_trip(RESOURCES, resource_key, list(sections))


@SETTINGS
@given(
    st.lists(
        st.tuples(st.just(GROUP_TYPE), ids, group_values), max_size=5, unique_by=lambda s: s[1]
    )
)
def test_groups_round_trip(sections) -> None:  # type: ignore[no-untyped-def]
    _assert_round_trip(GROUPS, name_key, list(sections))


rule_sections = st.one_of(
    st.tuples(st.just(NODE_AFFINITY), ids, node_rule_values),
    st.tuples(st.just(RESOURCE_AFFINITY), ids, res_rule_values),
)


@SETTINGS
@given(st.lists(rule_sections, max_size=5, unique_by=lambda s: s[1]))
def test_rules_round_trip(sections) -> None:  # type: ignore[no-untyped-def]
    _assert_round_trip(RULES, name_key, list(sections))


FRAGMENTS = [
    "vm: 100",
    "ct:101",
    "group: g1",
    "node-affinity: r1",
    "resource-affinity: r2",
    "bogus: x",
    "vm: 1",
    "\tstate started",
    "\tstate",
    "\tnodes n1:2,n2",
    "\tnodes n1:x",
    "\tresources vm:100,ct:101",
    "\tresources vm100",
    "\taffinity positive",
    "\tdisable",
    "\tdisable 0",
    "\tstrict 1",
    "\tmax_restart -1",
    "\tfailback yes",
    "\tcomment hi there",
    "\tgroup g1",
    "# c",
    "",
    "  ",
    "x",
    ":",
    "\t",
    " \tkey value  ",
    "vm: 100 200",
]
texts = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("\n".join),
    st.text(st.sampled_from(list("vm:ct 0123456789\t\n#,;:-_abz\r\x00é")), max_size=80),
    st.text(max_size=60),
)


@SETTINGS
@given(texts)
def test_fuzz_parses_or_raises_config_error_with_line(text: str) -> None:
    for parser in (parse_resources_text, parse_groups_text, parse_rules_text):
        try:
            parser(text, "fuzz.cfg")
        except ConfigError as err:
            assert err.path == "fuzz.cfg"
            assert err.line is not None and 1 <= err.line <= text.count("\n") + 1, (err, text)
    if _parses(text):
        assert parse(text).render() == text


def _parses(text: str) -> bool:
    try:
        parse(text)
    except ConfigError:
        return False
    return True
