"""The renderer: the only place that knows tables, JSON and YAML."""

from __future__ import annotations

import io
import json

import yaml

from pvha.cli.render import Column, render, section_text

ROWS = [{"sid": "vm:100", "state": "started", "max_restart": 2}, {"sid": "ct:1000", "state": None}]
COLUMNS = [Column("sid", "SID"), Column("state", "STATE"), Column("max_restart", "MAX_RESTART")]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _render(fmt: str, out: io.StringIO | None = None) -> str:
    out = out or io.StringIO()
    render(ROWS, COLUMNS, fmt, out=out)
    return out.getvalue()


def test_plain_aligned_text_when_piped() -> None:
    assert _render("text") == "SID      STATE    MAX_RESTART\nvm:100   started  2\nct:1000\n"


def test_rich_table_on_a_terminal() -> None:
    text = _render("text", _Tty())
    assert text.startswith("┏") and "\x1b[1m" in text, text  # box drawing and a bold header
    assert "│ vm:100  │ started │ 2           │" in text, text


def test_json_yaml_formats() -> None:
    assert _render("json") == json.dumps(ROWS, separators=(",", ":")) + "\n"
    pretty = _render("json-pretty")
    assert json.loads(pretty) == ROWS and pretty.index('"max_restart"') < pretty.index('"sid"')
    assert yaml.safe_load(_render("yaml")) == ROWS


def test_text_callback_wins_for_text_only() -> None:
    out = io.StringIO()
    render(ROWS, COLUMNS, "text", text=lambda rows: f"{len(rows)} rows\n", out=out)
    assert out.getvalue() == "2 rows\n"
    out = io.StringIO()
    render(ROWS, COLUMNS, "json", text=lambda rows: "never", out=out)
    assert json.loads(out.getvalue()) == ROWS


def test_section_text_layout() -> None:
    rows = [{"sid": "vm:100", "type": "vm", "state": "stopped", "comment": "x"}]
    assert section_text(rows, lambda r: str(r["sid"]), skip=("sid", "type")) == (
        "vm:100\n\tcomment x\n\tstate stopped\n\n"
    )


def test_cells_and_errors_are_plain_text_never_markup_or_emoji(capsys) -> None:  # type: ignore[no-untyped-def]
    from pvha.cli.render import error

    out = _Tty()
    render([{"sid": "vm:100:", "state": "[red]db[/red] :smile:"}], COLUMNS[:2], "text", out=out)
    assert "vm:100:" in out.getvalue() and "[red]db[/red] :smile:" in out.getvalue()
    error('guest vm:100: "maxmem" is missing [bold]')
    assert capsys.readouterr().err == 'pvha: error: guest vm:100: "maxmem" is missing [bold]\n'
