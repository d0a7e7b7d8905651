"""PVE's section-config syntax: parse it keeping every byte, and write it as PVE does.

Theory of operation
-------------------
A file is a sequence of *chunks*. A chunk is either one raw line that belongs to no
section (a blank line, a comment between sections) or a :class:`Section`, whose
``text`` holds the exact bytes of its header line and of its property lines (and of
comment lines between them). :meth:`SectionFile.render` concatenates the chunks, so
``parse(text).render() == text`` for every text that parses. Edits replace, add or
drop whole sections: an edited section is written canonically (as pve-common's
``SectionConfig::write_config`` writes it), untouched sections keep their bytes. After
each edit the new text is parsed again, so line numbers always match the text.

Syntax (pve-common ``SectionConfig.pm``):

* a line whose first non-blank character is ``#`` is a comment, wherever it is;
* a header ``<type>: <id>`` starts in column 0 (``^(\\S+):\\s*(\\S+)\\s*$``); the type is
  case-insensitive;
* property lines follow, indented: ``^\\s+(\\S+)(\\s+(.*\\S))?\\s*$``; a property without
  value is a boolean flag (``\\tdisable``);
* a blank line ends the section.

PVE only warns about malformed lines and skips them. :func:`parse` (the CLI's edits)
refuses such a file with a :class:`~pvha.errors.ConfigError` naming file, line and
reason, so a bad edit never reaches disk. :func:`parse_lenient` (the HA loop and
``pvha status``) skips each bad *block* -- a run of non-blank lines, i.e. one section --
whole, keeps its bytes as raw text, and reports one
:class:`~pvha.config.faults.ConfigFault` for it: a section is never loaded with some of
its lines dropped, because a resource missing its ``state`` line would be started.
Typed validation of keys and values lives in :mod:`pvha.config.schema`; this module
knows only the syntax.
"""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass

from pvha.config.faults import ConfigFault, skipped_message
from pvha.errors import ConfigError

# Perl's \s and \S on ASCII text; Python's would also match Unicode spaces.
_WS = r"[ \t\n\r\f\v]"
_NWS = r"[^ \t\n\r\f\v]"
_COMMENT = re.compile(rf"^{_WS}*#")
_BLANK = re.compile(rf"^{_WS}*$")
_HEADER = re.compile(rf"^({_NWS}+):{_WS}*({_NWS}+){_WS}*$")
_PROP = re.compile(rf"^{_WS}+({_NWS}+)(?:{_WS}+(.*{_NWS}))?{_WS}*$")

SectionKey = Callable[[str, str], str]
"""Maps (type, name) of a header to the id sections are unique by."""


def name_key(type_: str, name: str) -> str:
    """Section id of groups and rules: the name alone (ids are unique across types)."""
    return name


@dataclass(frozen=True, slots=True)
class Prop:
    """One property line: ``value`` is None for a bare flag line."""

    key: str
    value: str | None
    line: int


@dataclass(frozen=True, slots=True)
class Section:
    """One section: header fields, its properties in file order, and its raw text."""

    type: str
    name: str
    key: str
    line: int
    props: tuple[Prop, ...]
    text: str

    def get(self, key: str) -> Prop | None:
        for prop in self.props:
            if prop.key == key:
                return prop
        return None


@dataclass(frozen=True, slots=True)
class SectionFile:
    """A parsed file: chunks in order. Immutable; edits return a new, re-parsed file."""

    path: str
    chunks: tuple[str | Section, ...]
    section_key: SectionKey = name_key

    @property
    def sections(self) -> tuple[Section, ...]:
        return tuple(c for c in self.chunks if isinstance(c, Section))

    def get(self, key: str) -> Section | None:
        for section in self.sections:
            if section.key == key:
                return section
        return None

    def render(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.chunks)

    def replace(self, key: str, section_text: str) -> SectionFile:
        """Swap the section ``key`` for ``section_text`` (a canonical section, see render_section)."""
        chunks = [
            section_text if isinstance(c, Section) and c.key == key else c for c in self.chunks
        ]
        return self._reparse(chunks)

    def append(self, section_text: str) -> SectionFile:
        """Add a section at the end, separated by a blank line and followed by one (PVE's layout)."""
        text = self.render()
        if text and not text.endswith("\n"):
            text += "\n"
        if text and not text.endswith("\n\n"):
            text += "\n"
        return parse(text + section_text + "\n", self.path, self.section_key)

    def remove(self, key: str) -> SectionFile:
        """Drop section ``key`` and the blank line that separated it from what follows."""
        chunks: list[str | Section] = []
        skip_blank = False
        for chunk in self.chunks:
            if isinstance(chunk, Section) and chunk.key == key:
                skip_blank = True
                continue
            if skip_blank and isinstance(chunk, str) and _BLANK.match(chunk):
                skip_blank = False
                continue
            skip_blank = False
            chunks.append(chunk)
        return self._reparse(chunks)

    def as_raw(self, keys: Iterable[str]) -> SectionFile:
        """The same text with sections ``keys`` demoted to raw chunks (a lenient load
        drops sections that fail validation this way; render() is unchanged)."""
        drop = set(keys)
        chunks = tuple(
            c.text if isinstance(c, Section) and c.key in drop else c for c in self.chunks
        )
        return SectionFile(self.path, chunks, self.section_key)

    def _reparse(self, chunks: Iterable[str | Section]) -> SectionFile:
        text = "".join(c if isinstance(c, str) else c.text for c in chunks)
        return parse(text, self.path, self.section_key)


def render_section(type_: str, name: str, props: Iterable[tuple[str, str | None]]) -> str:
    """Canonical text of one section; ``(key, None)`` is written as a bare flag line.

    Props must already be in the order to write (see ``schema.Kind.ordered``). Raises
    ConfigError if a value would break the line structure.
    """
    lines = [f"{type_}: {name}\n"]
    for key, value in props:
        if value is not None and ("\n" in value or "\r" in value):
            raise ConfigError(f"property '{key}' contains a line feed")
        lines.append(f"\t{key}\n" if value is None else f"\t{key} {value}\n")
    return "".join(lines)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based number, line with its newline) pairs; only '\\n' ends a line, as in Perl."""
    parts = text.split("\n")
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if last and part == "":
            return
        yield index + 1, part if last else part + "\n"


class _Open:
    """A section being read: its lines so far and comments not yet known to be inside it."""

    def __init__(self, type_: str, name: str, key: str, line: int, raw: str) -> None:
        self.type, self.name, self.key, self.line = type_, name, key, line
        self.raw = [raw]
        self.props: list[Prop] = []
        self.pending: list[str] = []

    def add(self, prop: Prop, raw: str) -> None:
        self.raw.extend(self.pending)
        self.pending = []
        self.raw.append(raw)
        self.props.append(prop)

    def close(self) -> list[str | Section]:
        # Comments after the last property stay outside, so replacing the section keeps them.
        section = Section(
            self.type, self.name, self.key, self.line, tuple(self.props), "".join(self.raw)
        )
        return [section, *self.pending]


def parse(text: str, path: str = "<config>", section_key: SectionKey = name_key) -> SectionFile:
    """Parse section-config ``text``; raise ConfigError(path, line) on any syntax error.

    Errors: a line that is neither comment, blank, header nor property; a property
    outside a section; a header not preceded by a blank line (PVE would swallow it into
    the previous section); a key twice in one section; a section id twice in the file.
    """
    chunks: list[str | Section] = []
    _parse_lines(_lines(text), path, section_key, {}, chunks)
    return SectionFile(path, tuple(chunks), section_key)


def parse_lenient(
    text: str, path: str = "<config>", section_key: SectionKey = name_key, file: str = ""
) -> tuple[SectionFile, list[ConfigFault]]:
    """Parse ``text`` skipping every block that :func:`parse` would refuse.

    A block is a run of non-blank lines (a blank line ends a section, so a block is one
    section with its comments). A bad block stays in the file as raw lines (``render()``
    still returns ``text``) and gives one fault named after ``file`` (default: ``path``)
    at the offending line. A block whose id was already seen, in a good or a bad block,
    is skipped as a duplicate: the first definition wins. For a text that parses,
    the result equals ``parse(text, ...)`` and no fault is reported.
    """
    chunks: list[str | Section] = []
    seen: dict[str, int] = {}
    faults: list[ConfigFault] = []
    for block in _blocks(text):
        out: list[str | Section] = []
        trial: ChainMap[str, int] = ChainMap({}, seen)
        try:
            _parse_lines(block, path, section_key, trial, out)
        except ConfigError as err:
            keys = _header_keys(block, section_key)
            for key, line in keys:
                seen.setdefault(key, line)
            lines = (block[0][0], block[-1][0])
            message = skipped_message([k for k, _ in keys], err.reason, lines)
            first_key = keys[0][0] if keys else None
            faults.append(ConfigFault(file or path, err.line or lines[0], first_key, message))
            chunks.extend(raw for _, raw in block)
            continue
        seen.update(trial.maps[0])
        chunks.extend(out)
    return SectionFile(path, tuple(chunks), section_key), faults


def _blocks(text: str) -> Iterator[list[tuple[int, str]]]:
    """Runs of non-blank lines; each blank line is a block of its own."""
    block: list[tuple[int, str]] = []
    for lineno, raw in _lines(text):
        if _BLANK.match(raw.removesuffix("\n")):
            if block:
                yield block
                block = []
            yield [(lineno, raw)]
        else:
            block.append((lineno, raw))
    if block:
        yield block


def _header_keys(block: list[tuple[int, str]], section_key: SectionKey) -> list[tuple[str, int]]:
    """(id, line) of every parsable section header in ``block``."""
    found = []
    for lineno, raw in block:
        header = _HEADER.match(raw.removesuffix("\n"))
        if header is not None and not _COMMENT.match(raw):
            found.append((section_key(header.group(1).lower(), header.group(2)), lineno))
    return found


def _parse_lines(
    lines: Iterable[tuple[int, str]],
    path: str,
    section_key: SectionKey,
    seen: MutableMapping[str, int],
    chunks: list[str | Section],
) -> None:
    """The syntax of :func:`parse` over numbered lines, appending to ``chunks``."""
    current: _Open | None = None
    for lineno, raw in lines:
        body = raw.removesuffix("\n")
        if _COMMENT.match(body):
            (current.pending if current else chunks).append(raw)
            continue
        if _BLANK.match(body):
            if current:
                chunks.extend(current.close())
                current = None
            chunks.append(raw)
            continue
        header = _HEADER.match(body)
        if current is None:
            if header is None:
                reason = (
                    "property line outside of a section"
                    if _PROP.match(body)
                    else "unable to parse line"
                )
                raise ConfigError(f"{reason}: {body!r}", path, lineno)
            current = _open_section(header, raw, lineno, path, section_key, seen)
            continue
        prop = _PROP.match(body)
        if prop is None:
            reason = (
                "section header must be preceded by a blank line"
                if header
                else "unable to parse line"
            )
            raise ConfigError(f"{reason}: {body!r}", path, lineno)
        key, value = prop.group(1), prop.group(2)
        if any(p.key == key for p in current.props):
            raise ConfigError(f"section '{current.key}': duplicate property '{key}'", path, lineno)
        current.add(Prop(key, value, lineno), raw)
    if current:
        chunks.extend(current.close())


def _open_section(
    header: re.Match[str],
    raw: str,
    lineno: int,
    path: str,
    section_key: SectionKey,
    seen: MutableMapping[str, int],
) -> _Open:
    type_, name = header.group(1).lower(), header.group(2)
    key = section_key(type_, name)
    if key in seen:
        raise ConfigError(
            f"duplicate section '{key}' (first defined at line {seen[key]})", path, lineno
        )
    seen[key] = lineno
    return _Open(type_, name, key, lineno, raw)
