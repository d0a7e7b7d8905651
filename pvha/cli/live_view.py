"""``pvha status --watch``: the status refreshed every ``--interval`` seconds, until Ctrl-C.

Theory of operation. Each refresh is one :func:`pvha.cli.status.collect` (the files plus
the live cluster view, exactly what ``pvha status`` shows) and, for the full-screen view,
one read of the history journal (:class:`pvha.shell.history.History`). Two ways to show
it, chosen once at start:

* stdout a terminal and ``--output-format text``: a full-screen view (rich's ``Live`` on
  the alternate screen, redrawn at each refresh), like ``crm_mon``. A header names the
  refresh time and carries ``ha-manager status``'s quorum and master lines (the manager
  and since when); below it the state table (every other status entry, as ``pvha
  status``'s rich table) and the latest events (``pvha history``'s rows, as many as fit),
  side by side from :data:`SIDE_BY_SIDE` columns on, stacked below it on a narrower
  terminal (decided at each redraw, so a resize is followed). An API failure is a red
  ``API: <why>`` line in the header and the view goes on refreshing; a later refresh that
  cannot read the files keeps the last state with a red ``error: <why>`` line. Ctrl-C
  leaves the alternate screen (the terminal as it was) and exits 0; so do SIGTERM and
  SIGHUP.
* otherwise (a pipe, a file, or json/yaml): plain output a log can append, no escape
  codes. Each refresh appends one block: for text a ``pvha status, every N s, <time>``
  line, a blank line, ``ha-manager status``'s lines and a blank line; for ``json`` one
  document per line (JSON Lines, each the list ``pvha status --output-format json``
  prints); for ``yaml`` one ``---``-separated document. API trouble goes to stderr, one
  line per refresh, as ``pvha status`` says it. A reader that goes away (``| head``)
  ends the watch quietly.

Bad input before the first refresh (a missing config dir, a bad settings file) is one
line on stderr and a non-zero exit, nothing drawn: the first refresh runs before the
screen is switched.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pvha import status as ha_status
from pvha.cli import render
from pvha.cli.status import STATUS_COLUMNS, Collected, collect
from pvha.config.store import Store
from pvha.errors import PvhaError

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

SIDE_BY_SIDE = 140
"""Terminal width (columns) from which the events sit beside the state table."""
HEADER_TYPES = ("quorum", "master")  # entries told in the header, not in the table
MIN_EVENTS = 3  # rows of events shown even when the terminal has no room left for them


def watch(store: Store, settings_file: str | None, fmt: str, interval: float) -> None:
    """Refresh every ``interval`` seconds until Ctrl-C, SIGTERM or SIGHUP (a closed
    terminal): each ends it as Ctrl-C does, the screen restored (module docstring)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        if fmt == "text" and sys.stdout.isatty():
            _full_screen(store, settings_file, interval)
        else:
            _appended(store, settings_file, fmt, interval)
    except KeyboardInterrupt:
        return


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _appended(store: Store, settings_file: str | None, fmt: str, interval: float) -> None:
    while True:
        got = collect(store, settings_file)
        got.tell()
        try:
            sys.stdout.write(block(got.entries, fmt, interval, time.time()))
            sys.stdout.flush()
        except BrokenPipeError:
            # nobody reads any more; point stdout at /dev/null so the exit flush is quiet
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
            return
        time.sleep(interval)


def block(entries: Sequence[render.Row], fmt: str, interval: float, now: float) -> str:
    """One refresh of the appended output, in ``fmt``."""
    if fmt == "text":
        return (f"pvha status, every {interval:g} s, {_stamp(now)}\n\n"
                + ha_status.format_status_text(entries) + "\n")
    body = render.formatted(entries, fmt, ha_status.format_status_text)
    return "---\n" + body if fmt == "yaml" else body


def _stamp(now: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))


def _full_screen(store: Store, settings_file: str | None, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live

    frames = Frames(store, settings_file, interval)
    first = next(frames)  # bad input fails here, before the screen is switched
    with Live(first, console=Console(emoji=False), screen=True, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(next(frames), refresh=True)


class Frames(Iterator["Frame"]):
    """One :class:`Frame` per ``next()``: a fresh refresh, or, when the files cannot be
    read any more, the last good state with the error (the first refresh raises it)."""

    def __init__(self, store: Store, settings_file: str | None, interval: float) -> None:
        self.store = store
        self.settings_file = settings_file
        self.interval = interval
        self.last: Frame | None = None

    def __next__(self) -> Frame:
        from pvha.cli.history import rows
        from pvha.shell.history import History

        now = time.time()
        try:
            got = collect(self.store, self.settings_file)
            events = rows(History(self.store.dir).read())
        except PvhaError as err:
            if self.last is None:
                raise
            self.last = Frame(self.last.got, self.last.events, now, self.interval, str(err))
            return self.last
        self.last = Frame(got, events, now, self.interval)
        return self.last


@dataclass(frozen=True, slots=True)
class Frame:
    """One refresh of the full-screen view; rich renders it at the console's size."""

    got: Collected
    events: list[dict[str, Any]]  # pvha history's rows, oldest first
    at: float  # when it was read (epoch seconds)
    interval: float
    error: str | None = None  # this refresh could not read the files: the last state shown

    def header(self) -> list[Any]:
        from rich.text import Text

        lines = [Text(f"pvha status, every {self.interval:g} s (Ctrl-C to quit), refreshed "
                      f"{_stamp(self.at)}", style="bold")]
        quorate = self.got.quorum.quorate
        for entry in self.got.entries:
            if entry["type"] in HEADER_TYPES:
                good = quorate if entry["type"] == "quorum" else \
                    entry.get("running") or entry.get("manager_state") == "idle"
                lines.append(Text(ha_status.format_status_text([entry]).rstrip("\n"),
                                  style="green" if good else "red"))
        api = self.got.api
        if api.error is not None:
            lines.append(Text(f"API: {api.error}", style="bold red"))
        lines.extend(Text(f"API host failed, another one answered: {w}", style="yellow")
                     for w in api.warnings)
        if self.error is not None:
            lines.append(Text(f"error: {self.error} (showing the last state read)",
                              style="bold red"))
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        header = self.header()
        state_rows = [e for e in self.got.entries if e["type"] not in HEADER_TYPES]
        state = Panel(render.rich_table(state_rows, STATUS_COLUMNS), title="state",
                      title_align="left")
        width = options.max_width
        wide = width >= SIDE_BY_SIDE
        room = (options.height or console.height) - len(header) - 1
        if wide:
            width = (width - 1) // 2  # two equal columns, one blank between them
        else:
            room -= len(console.render_lines(state, options.update(width=width, height=None)))
        events = self.events_panel(console, options.update(width=width, height=None), room)
        yield Group(*header)
        yield ""
        if wide:
            grid = Table.grid(expand=True, padding=(0, 1))
            grid.add_column(ratio=1)
            grid.add_column(ratio=1)
            grid.add_row(state, events)
            yield grid
        else:
            yield state
            yield events

    def events_panel(self, console: Console, options: ConsoleOptions, room: int) -> Any:
        """The newest events whose panel fits in ``room`` lines (a row may wrap), at least
        :data:`MIN_EVENTS` of them: a full screen crops the oldest, never the newest."""
        from rich.panel import Panel

        from pvha.cli.history import COLUMNS

        shown = self.events[-max(MIN_EVENTS, room):]
        while True:
            title = f"latest events ({len(shown)} of {len(self.events)}, pvha history)"
            body: Any = render.rich_table(shown, COLUMNS) if shown else \
                "no fence or recovery events yet"
            panel = Panel(body, title=title, title_align="left")
            if len(shown) <= MIN_EVENTS or len(console.render_lines(panel, options)) <= room:
                return panel
            shown = shown[1:]
