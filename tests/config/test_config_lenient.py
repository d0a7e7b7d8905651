"""``Store.load_lenient``: a bad section is skipped with one fault, the rest loads unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvha.config.faults import ConfigFault
from pvha.config.groups import GROUPS
from pvha.config.resources import RESOURCES, resource_key
from pvha.config.rules import RULES
from pvha.config.schema import validate_file, validate_lenient
from pvha.config.sectioncfg import name_key, parse, parse_lenient
from pvha.config.store import Store
from pvha.errors import ConfigError, StoreError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RESOURCES_TEXT = (
    "vm: 100\n"  # 1
    "\tstate started\n"  # 2
    "\n"  # 3
    "vm: 101\n"  # 4
    "\tstate bogus\n"  # 5
    "\tmax_restart 2\n"  # 6
    "\n"  # 7
    "# a comment\n"  # 8
    "ct: 102\n"  # 9
    "\tmax_relocate 3\n"  # 10
    "\n"  # 11
)


def _store(tmp_path: Path, **files: str) -> Store:
    for name, text in files.items():
        (tmp_path / f"{name}.cfg").write_text(text)
    return Store(tmp_path)


def test_a_bad_value_skips_its_section_only(tmp_path: Path) -> None:
    store = _store(tmp_path, resources=RESOURCES_TEXT)
    snapshot, faults = store.load_lenient()
    assert list(snapshot.resources.entries) == ["vm:100", "ct:102"]
    assert snapshot.ha_config().resources["ct:102"].max_relocate == 3
    assert faults == [ConfigFault(
        "resources.cfg", 5, "vm:101",
        "section 'vm:101' skipped: invalid 'state': value 'bogus' does not have a value in "
        "the enumeration 'started, stopped, enabled, disabled, ignored'")]
    assert str(faults[0]).startswith("resources.cfg:5: section 'vm:101' skipped: ")
    # the bytes stay, the skipped section is no section of the file
    assert snapshot.resources.file.render() == RESOURCES_TEXT
    assert [s.key for s in snapshot.resources.file.sections] == ["vm:100", "ct:102"]
    with pytest.raises(ConfigError, match="resources.cfg:5: section 'vm:101'"):
        store.load()  # the strict load is unchanged


@pytest.mark.parametrize(
    ("bad", "line", "key", "reason"),
    [
        ("vm: 101\n\tstate started\n\tstate stopped\n", 6, "vm:101",
         "section 'vm:101' skipped: duplicate property 'state'"),
        ("vm: 101\n\tfoo bar\n", 5, "vm:101",
         "section 'vm:101' skipped: invalid 'foo': unexpected property 'foo'"),
        ("vm 101\n\tstate started\n", 4, None,
         "lines 4-5 skipped: unable to parse line: 'vm 101'"),
        ("\tstate started\n", 4, None,
         "line 4 skipped: property line outside of a section: '\\tstate started'"),
        ("vm: 1\n", 4, "vm:1", "section 'vm:1' skipped: invalid VMID '1'"),
        ("qm: 101\n", 4, "qm:101", "section 'qm:101' skipped: unsupported type 'qm'"),
        ("vm: 100\n\tstate stopped\n", 4, "vm:100",
         "section 'vm:100' skipped: duplicate section 'vm:100' (first defined at line 1)"),
        ("vm: 101\nvm: 103\n\tstate stopped\n", 5, "vm:101",
         ("sections 'vm:101', 'vm:103' skipped: section header must be preceded by a "
          "blank line: 'vm: 103'")),
    ],
)
def test_each_kind_of_bad_section(tmp_path: Path, bad: str, line: int, key: str | None,
                                  reason: str) -> None:
    text = "vm: 100\n\tstate started\n\n" + bad + "\nct: 102\n\tstate stopped\n"
    snapshot, faults = _store(tmp_path, resources=text).load_lenient()
    assert faults == [ConfigFault("resources.cfg", line, key, reason)]
    assert list(snapshot.resources.entries) == ["vm:100", "ct:102"]
    assert snapshot.resources.file.render() == text


def test_first_definition_wins_even_when_it_is_bad(tmp_path: Path) -> None:
    text = "vm: 100\n\tstate bogus\n\nvm: 100\n\tstate stopped\n"
    snapshot, faults = _store(tmp_path, resources=text).load_lenient()
    assert snapshot.resources.entries == {}
    assert [(f.line, f.key) for f in faults] == [(2, "vm:100"), (4, "vm:100")]


def test_faults_of_every_file_in_order(tmp_path: Path) -> None:
    store = _store(
        tmp_path,
        resources="vm: 100\n\tstate nope\n",
        groups="group: g1\n\tnodes n1\n\ngroup: g2\n",
        rules="node-affinity: r1\n\tresources vm:100\n\tnodes n1\n\n"
              "resource-affinity: r2\n\tresources vm:100,vm:101\n",
    )
    snapshot, faults = store.load_lenient()
    assert [(f.file, f.line, f.key) for f in faults] == [
        ("resources.cfg", 2, "vm:100"), ("groups.cfg", 4, "g2"), ("rules.cfg", 5, "r2")]
    assert "missing required property 'affinity'" in faults[2].message
    cfg = snapshot.ha_config()
    assert list(cfg.groups) == ["g1"] and list(cfg.rules) == ["r1"] and cfg.resources == {}


def test_a_good_dir_loads_as_the_strict_load_does(tmp_path: Path) -> None:
    store = _store(tmp_path, resources=RESOURCES_TEXT.replace("bogus", "stopped"),
                   rules="node-affinity: r1\n\tresources vm:100\n\tnodes n1:2,n2\n")
    snapshot, faults = store.load_lenient()
    assert faults == []
    assert snapshot == store.load()


def test_a_missing_dir_is_empty_and_an_unreadable_file_still_raises(tmp_path: Path) -> None:
    snapshot, faults = Store(tmp_path / "nope").load_lenient()
    assert faults == [] and snapshot.ha_config().resources == {}
    (tmp_path / "resources.cfg").write_bytes(b"vm: 100\n\tcomment \xff\n")
    with pytest.raises(StoreError, match="cannot read"):
        Store(tmp_path).load_lenient()
    if os.geteuid() != 0:  # root reads a 000 file anyway
        (tmp_path / "resources.cfg").write_text("vm: 100\n")
        (tmp_path / "resources.cfg").chmod(0)
        with pytest.raises(StoreError):
            Store(tmp_path).load_lenient()


def test_require_dir(tmp_path: Path) -> None:
    Store(tmp_path).require_dir()
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nope").require_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="not a directory"):
        Store(tmp_path / "file").require_dir()


def test_an_edit_of_a_lenient_snapshot_is_refused(tmp_path: Path) -> None:
    snapshot, _ = _store(tmp_path, resources=RESOURCES_TEXT).load_lenient()
    edited = snapshot.resources.file.remove("vm:100")  # re-parsed strictly
    with pytest.raises(ConfigError):
        snapshot.resources.with_file(edited)


# --- property: one corrupted section, every other section unchanged ----------------------

vmids = st.integers(10, 9999)
resource_values = st.fixed_dictionaries({}, optional={
    "state": st.sampled_from(["started", "stopped", "disabled", "ignored"]),
    "max_restart": st.integers(0, 9),
    "comment": st.from_regex(r"[a-z][a-z ]{0,10}[a-z]", fullmatch=True),
})
sections = st.lists(
    st.tuples(st.sampled_from(["vm", "ct"]), vmids, resource_values),
    min_size=1, max_size=8, unique_by=lambda s: s[1],
)
CORRUPTIONS = [
    lambda s: s.replace("\n", "\n\tstate bogus\n", 1),  # bad value
    lambda s: s.replace("\n", "\n\tno_such_key 1\n", 1),  # unknown key
    lambda s: s.replace(": ", " ", 1),  # bad header
    lambda s: s.replace("\n", "\n\tmax_restart -1\n", 1),  # value out of range
    lambda s: s + "garbage line\n",  # a line that is no property
    lambda s: s.replace("\n", "\n\tmax_relocate 1\n\tmax_relocate 2\n", 1),  # duplicate key
]


@SETTINGS
@given(sections, st.data())
def test_one_corrupted_section_leaves_the_others_unchanged(sections, data) -> None:  # type: ignore[no-untyped-def]
    texts = [RESOURCES.render(t, str(v), values) for t, v, values in sections]
    bad = data.draw(st.integers(0, len(texts) - 1), label="corrupted section")
    corrupt = data.draw(st.sampled_from(CORRUPTIONS), label="corruption")
    broken = list(texts)
    broken[bad] = corrupt(texts[bad])
    text = "\n".join(broken) + "\n"
    parsed, faults = parse_lenient(text, "resources.cfg", resource_key, "resources.cfg")
    parsed, entries, invalid = validate_lenient(RESOURCES, parsed)
    faults += invalid
    assert len(faults) == 1, faults
    header_line = 1 + sum(t.count("\n") + 1 for t in broken[:bad])
    last_line = header_line + broken[bad].count("\n") - 1
    assert header_line <= faults[0].line <= last_line
    expected_key = None if corrupt is CORRUPTIONS[2] else f"{sections[bad][0]}:{sections[bad][1]}"
    assert faults[0].key == expected_key
    good = "\n".join(t for i, t in enumerate(texts) if i != bad)
    expected = validate_file(RESOURCES, parse(good + ("\n" if good else ""), "x", resource_key))
    assert {k: dict(e.values) for k, e in entries.items()} == {
        k: dict(e.values) for k, e in expected.items()}
    assert list(entries) == list(expected)
    assert parsed.render() == text


@SETTINGS
@given(st.text(st.sampled_from("vmct: \t\n#0123456789abdefgilnoprstu_-,"), max_size=200))
def test_any_text_loads_leniently_without_error(text: str) -> None:
    for kind, key in ((RESOURCES, resource_key), (GROUPS, name_key), (RULES, name_key)):
        parsed, faults = parse_lenient(text, kind.file, key, kind.file)
        assert parsed.render() == text
        parsed, entries, invalid = validate_lenient(kind, parsed)
        assert parsed.render() == text
        assert set(entries) == {s.key for s in parsed.sections}
        for fault in faults + invalid:
            assert fault.file == kind.file and 1 <= fault.line <= text.count("\n") + 1
        try:
            strict = validate_file(kind, parse(text, kind.file, key))
        except ConfigError:
            assert faults + invalid
        else:
            assert not faults + invalid and list(strict) == list(entries)
