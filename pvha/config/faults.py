"""Configuration faults: a part of a config file that a lenient load skipped, and why.

PVE's section-config parser warns about a bad section and goes on with the rest of the
file; :meth:`pvha.config.store.Store.load_lenient` does the same, and each skipped
section gives one :class:`ConfigFault`. ``str(fault)`` names the place as PVE's parser
warnings do: ``resources.cfg:12: section 'vm:100' skipped: ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigFault:
    """One skipped section (or run of lines that belongs to no parsable section).

    ``file`` is the file name (``resources.cfg``), ``line`` the 1-based line of the
    section header or of the offending line, ``key`` the section's id (``vm:100``, a rule
    or a group id) when its header could be parsed, else None.
    """

    file: str
    line: int
    key: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def skipped_message(keys: Sequence[str], reason: str, lines: tuple[int, int]) -> str:
    """``section 'vm:100' skipped: <reason>`` (the reason without its own ``section
    'vm:100': `` prefix); ``lines 4-6 skipped: <reason>`` when no header parsed."""
    if keys:
        reason = reason.removeprefix(f"section '{keys[0]}': ")
        names = ", ".join(f"'{k}'" for k in keys)
        what = f"section {names}" if len(keys) == 1 else f"sections {names}"
    else:
        first, last = lines
        what = f"line {first}" if first == last else f"lines {first}-{last}"
    return f"{what} skipped: {reason}"
