"""A ``pvha`` subprocess on a pseudo-terminal of a fixed size, for full-screen output.

The child gets the pty's slave as stdin, stdout and stderr and as its controlling
terminal (a new session, then ``TIOCSCTTY``), so rich sees a terminal of the size set
with ``TIOCSWINSZ`` and a ``\\x03`` written to the master is a real Ctrl-C (SIGINT from
the line discipline). A thread collects everything the child writes. No terminal
emulator is at hand, so the byte stream is read as rich's alternate-screen ``Live``
writes it: every redraw starts with cursor-home (``\\x1b[H``) and its lines are separated
by newlines; :meth:`Terminal.frames` cuts the stream there and strips the escapes.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import threading

from tests.e2e.harness import REPO, wait_for

ALT_SCREEN_ON = b"\x1b[?1049h"
ALT_SCREEN_OFF = b"\x1b[?1049l"
HOME = b"\x1b[H"
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]")
# the child takes the pty (its stdin, a new session's first terminal) as its controlling one
_CTTY = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
         "os.execv(sys.executable, [sys.executable, '-m', 'pvha', *sys.argv[1:]])")


def plain(data: bytes) -> str:
    """``data`` without escape sequences, as text."""
    return ESCAPES.sub(b"", data).decode("utf-8", errors="replace")


class Terminal:
    """``python -m pvha ARGS`` on a ``columns`` x ``rows`` pseudo-terminal."""

    def __init__(self, args: list[str], env: dict[str, str], columns: int, rows: int) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen([sys.executable, "-c", _CTTY, *args], env=env, cwd=REPO,
                                     stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True)
        os.close(slave)
        self.master = master
        self._data = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the last slave
                return
            if not chunk:
                return
            with self._lock:
                self._data += chunk

    def output(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    def frames(self) -> list[list[str]]:
        """Each complete redraw (the last one may still be arriving) as its lines, without
        the blanks that pad them to the screen's width."""
        parts = self.output().split(HOME)[1:]
        return [[ln.rstrip() for ln in plain(p).replace("\r", "").split("\n")]
                for p in parts[:-1]]

    def wait_frame(self, check: str | list[str], timeout: float = 40.0,
                   after: int = 0) -> list[str]:
        """The first redraw past the first ``after`` whose text holds every string of
        ``check``."""
        wanted = [check] if isinstance(check, str) else check

        def found() -> list[str] | None:
            for lines in self.frames()[after:]:
                text = "\n".join(lines)
                if all(w in text for w in wanted):
                    return lines
            return None

        return wait_for(found, timeout, what=f"a redraw showing {wanted}") or []

    def exit_code(self) -> int:
        """The exit status once the child ended by itself (bounded wait) and all it
        wrote is read."""
        code = self.proc.wait(30)
        self._reader.join(10)
        return code

    def ctrl_c(self) -> int:
        """Type Ctrl-C; the exit status."""
        os.write(self.master, b"\x03")
        return self.exit_code()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
