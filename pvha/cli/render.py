"""The one place that knows output formats: rich tables, plain text, JSON, YAML.

``render(rows, columns, fmt)`` writes ``rows`` (plain dicts) to stdout:

* ``json``: compact, one line; ``json-pretty``: indented, keys sorted (PVE's style);
* ``yaml``: a YAML list of mappings;
* ``text``: a rich table on a terminal, aligned plain text when piped; or, when the
  caller passes ``text=``, that function's string (used for ``ha-manager``'s own text
  layouts such as ``config`` and ``status``).

A :class:`Shape` carries PVE's standard output options (``--noborder``, ``--noheader``,
``--quiet``, as PVE's CLIFormatter reads them): the table without its border (the
aligned plain text, on a terminal too), without its header row, or nothing printed at
all, in any format. Border and header concern the table only.

:func:`formatted` is the same output as a string wherever no rich table is involved.

Diagnostics go to stderr through :func:`error` and :func:`warn`, never to stdout.

rich and PyYAML are imported where they are used: ``pvha config`` and ``pvha _complete``
run through here without Typer (``pvha.cli.fast``), and must start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

FORMATS = ("text", "json", "json-pretty", "yaml")
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: row key and header."""

    key: str
    header: str


@dataclass(frozen=True, slots=True)
class Shape:
    """PVE's standard output options: border lines and header row of the text table;
    ``quiet`` prints nothing."""

    border: bool = True
    header: bool = True
    quiet: bool = False


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def plain_table(rows: Sequence[Row], columns: Sequence[Column], header: bool = True) -> str:
    """Left-aligned columns separated by two spaces, header first (unless ``header`` is
    false); no trailing blanks."""
    table = [[c.header for c in columns]] if header else []
    table += [[_cell(r.get(c.key)) for c in columns] for r in rows]
    widths = [max((len(line[i]) for line in table), default=0) for i in range(len(columns))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() + "\n" for line in table
    )


def rich_table(rows: Sequence[Row], columns: Sequence[Column], header: bool = True) -> Table:
    """``rows`` as the rich table :func:`render` prints on a terminal; cells are plain
    text (a comment holding ``[red]`` or ``:100:`` is shown as written)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False, header_style="bold", show_header=header)
    for column in columns:
        table.add_column(Text(column.header))
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c.key))) for c in columns))
    return table


def _rich_table(
    rows: Sequence[Row], columns: Sequence[Column], out: TextIO, header: bool
) -> None:
    from rich.console import Console

    Console(file=out, emoji=False).print(rich_table(rows, columns, header))


def render(
    rows: Sequence[Row],
    columns: Sequence[Column],
    fmt: str,
    *,
    text: Callable[[Sequence[Row]], str] | None = None,
    out: TextIO | None = None,
    shape: Shape = Shape(),
) -> None:
    """Write ``rows`` to ``out`` (stdout) in ``fmt`` (one of FORMATS), shaped by ``shape``."""
    if shape.quiet:
        return
    out = out or sys.stdout
    table = text is None and fmt not in ("json", "json-pretty", "yaml")
    if table and shape.border and out.isatty():
        _rich_table(rows, columns, out, shape.header)
    else:
        out.write(formatted(rows, fmt, text or (lambda r: plain_table(r, columns, shape.header))))


def formatted(rows: Sequence[Row], fmt: str, text: Callable[[Sequence[Row]], str]) -> str:
    """``rows`` in ``fmt`` as :func:`render` writes them, ``text(rows)`` for ``text``."""
    if fmt == "json":
        return json.dumps(list(rows), separators=(",", ":")) + "\n"
    if fmt == "json-pretty":
        return json.dumps(list(rows), indent=4, sort_keys=True) + "\n"
    if fmt == "yaml":
        import yaml  # type: ignore[import-untyped]

        dumped: str = yaml.safe_dump(
            list(rows), sort_keys=False, default_flow_style=False, allow_unicode=True
        )
        return dumped
    return text(rows)


def section_text(rows: Sequence[Row], header: Callable[[Row], str], skip: Sequence[str]) -> str:
    """``ha-manager config``/``groupconfig`` layout: header line, ``\\t<key> <value>`` lines
    for the sorted keys not in ``skip``, then a blank line."""
    lines = []
    for row in rows:
        lines.append(header(row) + "\n")
        lines.extend(f"\t{k} {_cell(row[k])}\n" for k in sorted(row) if k not in skip)
        lines.append("\n")
    return "".join(lines)


def _stderr() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, soft_wrap=True, emoji=False)


def error(message: str) -> None:
    """One red line on stderr."""
    _stderr().print(f"pvha: error: {message}", style="red", markup=False)


def warn(message: str) -> None:
    _stderr().print(message, style="yellow", markup=False)


def note(message: str) -> None:
    """A diagnostic that is not data (e.g. what was queued), on stderr."""
    _stderr().print(message, markup=False)
