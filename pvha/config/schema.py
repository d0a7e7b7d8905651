"""Value checks and per-file key schemas, as PVE's JSON schema formats define them.

Every checker takes the raw string from a file or a command line and returns the typed
value, or raises ``ValueError(reason)``; the reason texts follow PVE's where PVE has one.
A :class:`Kind` describes one file (resources.cfg, groups.cfg, rules.cfg): its section
types, their keys, and how each value is written back. :func:`validate_file` turns a
parsed :class:`~pvha.config.sectioncfg.SectionFile` into typed :class:`Entry` objects or
raises :class:`~pvha.errors.ConfigError` with file, line and reason;
:func:`validate_lenient` skips each invalid section and reports it as a fault instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pvha.config.faults import ConfigFault, skipped_message
from pvha.config.sectioncfg import Section, SectionFile, render_section
from pvha.core.model import NodePriorities
from pvha.errors import ConfigError

Checker = Callable[[str], object]

RESOURCE_STATES = ("started", "stopped", "enabled", "disabled", "ignored")
AFFINITIES = ("positive", "negative")
COMMENT_MAX = 4096

_CONFIGID = re.compile(r"^[a-z][a-z0-9_-]+$", re.IGNORECASE)
_NODE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$")
_SID = re.compile(r"^([a-z]+):([^ \t\n\r\f\v]+)$")
_VMID = re.compile(r"^[1-9][0-9]+$")
_INT = re.compile(r"^[+-]?[0-9]+$")
_PRIO = re.compile(r"^[0-9]+$")
_LIST_SEP = re.compile(r"[,; \t\n\r\f\v\0]+")
_TRUE = ("1", "on", "yes", "true")
_FALSE = ("0", "off", "no", "false")


def split_list(value: str) -> list[str]:
    """PVE's ``split_list``: items separated by commas, semicolons or whitespace."""
    return [item for item in _LIST_SEP.split(value) if item]


def check_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"type check ('boolean') failed - got '{value}'")


def check_int_min(minimum: int, maximum: int | None = None) -> Checker:
    def check(value: str) -> int:
        if not _INT.match(value):
            raise ValueError(f"type check ('integer') failed - got '{value}'")
        number = int(value)
        if number < minimum:
            raise ValueError(f"value must have a minimum value of {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"value must have a maximum value of {maximum}")
        return number

    return check


def check_enum(*allowed: str) -> Checker:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(
                f"value '{value}' does not have a value in the enumeration '{', '.join(allowed)}'"
            )
        return value

    return check


def check_comment(value: str) -> str:
    if len(value) > COMMENT_MAX:
        raise ValueError(f"value may only be {COMMENT_MAX} characters long")
    if "\n" in value or "\r" in value:
        raise ValueError("value must not contain a line break")
    return value


def check_configid(value: str) -> str:
    """Group and rule ids: a letter, then letters, digits, ``-`` or ``_``; 2 chars at least."""
    if not _CONFIGID.match(value):
        raise ValueError(f"invalid configuration ID '{value}'")
    return value


def check_node_name(value: str) -> str:
    if not _NODE.match(value):
        raise ValueError(f"invalid node name '{value}'")
    return value


def check_vmid(value: str) -> str:
    if not _VMID.match(value):
        raise ValueError(f"invalid VMID '{value}'")
    return value


def check_sid(value: str, types: tuple[str, ...] = ("vm", "ct")) -> str:
    """A resource id ``<type>:<vmid>``; returns it unchanged."""
    match = _SID.match(value)
    if match is None:
        raise ValueError(f"'{value}' does not look like a valid ha resource id")
    if match.group(1) not in types:
        raise ValueError(f"no such resource type '{match.group(1)}' in '{value}'")
    check_vmid(match.group(2))
    return value


def check_node_list(value: str) -> NodePriorities:
    """``node1:2,node2`` -> (("node1", 2), ("node2", 0)), in the given order."""
    result: list[tuple[str, int]] = []
    for item in split_list(value):
        node, sep, prio = item.partition(":")
        check_node_name(node)
        if sep and not _PRIO.match(prio):
            raise ValueError(
                f"invalid priority '{prio}' for node '{node}' (expected <node>[:<integer >= 0>])"
            )
        if any(node == seen for seen, _ in result):
            raise ValueError(f"node '{node}' is listed twice")
        result.append((node, int(prio) if sep else 0))
    if not result:
        raise ValueError("no nodes specified")
    return tuple(result)


def check_sid_list(types: tuple[str, ...]) -> Checker:
    def check(value: str) -> tuple[str, ...]:
        result: list[str] = []
        for item in split_list(value):
            check_sid(item, types)
            if item in result:
                raise ValueError(f"resource '{item}' is listed twice")
            result.append(item)
        if not result:
            raise ValueError("no resources specified")
        return tuple(result)

    return check


def format_bool(value: object) -> str:
    return "1" if value else "0"


def format_node_list(value: object, sort: bool = False) -> str:
    nodes = sorted(value) if sort else list(value)  # type: ignore[call-overload]
    return ",".join(f"{node}:{prio}" if prio else node for node, prio in nodes)


@dataclass(frozen=True, slots=True)
class Key:
    """One property: checker, whether required, whether a boolean, and its writer."""

    check: Checker
    required: bool = False
    boolean: bool = False
    fmt: Callable[[object], str] = str


BOOL = Key(check_bool, boolean=True, fmt=format_bool)
COMMENT = Key(check_comment)


@dataclass(frozen=True, slots=True)
class Entry:
    """One validated section: ``values`` holds typed values of the keys present in the file."""

    type: str
    name: str
    key: str
    line: int
    values: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Kind:
    """The schema of one file: section types with their keys, and how headers are checked."""

    file: str
    types: Mapping[str, Mapping[str, Key]]
    check_name: Callable[[str, str], None]
    section_key: Callable[[str, str], str]

    def ordered(self, type_: str, values: Mapping[str, object]) -> list[tuple[str, str | None]]:
        """Props in PVE's write order: comment, a true ``disable`` flag, required, optional.

        A false ``disable`` is not written: PVE treats the key's mere presence as disabled.
        """
        keys = self.types[type_]
        out: list[tuple[str, str | None]] = []
        if values.get("comment"):
            out.append(("comment", keys["comment"].fmt(values["comment"])))
        if values.get("disable"):
            out.append(("disable", None))
        rest = sorted(k for k in values if k not in ("comment", "disable"))
        for required in (True, False):
            for k in rest:
                if keys[k].required == required and values[k] is not None and values[k] != "":
                    out.append((k, keys[k].fmt(values[k])))
        return out

    def render(self, type_: str, name: str, values: Mapping[str, object]) -> str:
        return render_section(type_, name, self.ordered(type_, values))

    def check_value(self, type_: str, key: str, raw: str | None) -> object:
        """Typed value of ``key`` for a section of ``type_``; ValueError if unknown or invalid."""
        spec = self.types[type_].get(key)
        if spec is None:
            raise ValueError(f"unexpected property '{key}'")
        if raw is None:
            if not spec.boolean:
                raise ValueError(f"property '{key}' needs a value")
            return True
        return spec.check(raw)


def validate_section(kind: Kind, section: Section, path: str) -> Entry:
    """Typed entry for one section; ConfigError at the offending line."""
    if section.type not in kind.types:
        raise ConfigError(
            f"section '{section.key}': unsupported type '{section.type}'", path, section.line
        )
    try:
        kind.check_name(section.type, section.name)
    except ValueError as err:
        raise ConfigError(f"section '{section.key}': {err}", path, section.line) from None
    values: dict[str, object] = {}
    for prop in section.props:
        try:
            values[prop.key] = kind.check_value(section.type, prop.key, prop.value)
        except ValueError as err:
            raise ConfigError(
                f"section '{section.key}': invalid '{prop.key}': {err}", path, prop.line
            ) from None
    for key, spec in kind.types[section.type].items():
        if spec.required and key not in values:
            raise ConfigError(
                f"section '{section.key}': missing required property '{key}'", path, section.line
            )
    return Entry(section.type, section.name, section.key, section.line, values)


def validate_file(kind: Kind, parsed: SectionFile) -> dict[str, Entry]:
    """All entries of a parsed file, in file order; ConfigError on the first bad one."""
    return {s.key: validate_section(kind, s, parsed.path) for s in parsed.sections}


def validate_lenient(
    kind: Kind, parsed: SectionFile
) -> tuple[SectionFile, dict[str, Entry], list[ConfigFault]]:
    """Entries of the valid sections; each invalid one is skipped with one fault (named
    after ``kind.file``) and demoted to raw text in the returned file, so the file's
    sections and the entries stay the same set."""
    entries: dict[str, Entry] = {}
    faults: list[ConfigFault] = []
    for section in parsed.sections:
        try:
            entries[section.key] = validate_section(kind, section, parsed.path)
        except ConfigError as err:
            line = err.line or section.line
            span = (section.line, section.line)
            message = skipped_message([section.key], err.reason, span)
            faults.append(ConfigFault(kind.file, line, section.key, message))
    bad = [f.key for f in faults if f.key is not None]
    return (parsed.as_raw(bad) if bad else parsed), entries, faults
