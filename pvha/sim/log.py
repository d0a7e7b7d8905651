"""PVE's simulator log format: ``sprintf("%-5s %5d %12s: %s")``, level cut to 4 chars."""

from __future__ import annotations


def format_line(level: str, time: int, origin: str, msg: str) -> str:
    msg = msg.rstrip("\n")
    return f"{level[:4]:<5} {time:>5} {origin:>12}: {msg}"


class SimLog:
    """Collects the lines of one run (in memory; the CLI writes them out)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, level: str, time: int, origin: str, msg: str) -> None:
        self.lines.append(format_line(level, time, origin, msg))

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)
