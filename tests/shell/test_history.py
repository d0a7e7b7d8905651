"""The fence and recovery journal stays under pmxcfs's 1 MiB file limit and keeps the
newest events when it rotates."""

from __future__ import annotations

from pathlib import Path

from pvha.shell.history import HISTORY, MAX_BYTES, History


def test_history_rotates_under_the_pmxcfs_file_limit_keeping_the_newest(tmp_path: Path) -> None:
    history = History(tmp_path)
    detail = "x" * 200
    n = 4 * MAX_BYTES // 250  # about four times what fits
    for i in range(n):
        history.append("fence", "node2", time=i, outcome="failed", detail=detail)
        assert (tmp_path / HISTORY).stat().st_size <= MAX_BYTES < 1024 * 1024
    events = history.read()
    times = [e["time"] for e in events]
    assert times == list(range(n - len(times), n))  # the newest, in order, none lost between
    assert len(times) > MAX_BYTES // 2 // 300  # about half the bound is kept


def test_a_torn_last_line_is_dropped_at_rotation(tmp_path: Path) -> None:
    history = History(tmp_path)
    history.append("fence", "node1", time=1, outcome="started")
    with (tmp_path / HISTORY).open("ab") as fh:
        fh.write(b"x" * MAX_BYTES)  # a huge torn line, as a killed writer may leave
    history.append("fence", "node1", time=2, outcome="verified off")
    assert [e["time"] for e in history.read()] == [1, 2]
    assert (tmp_path / HISTORY).stat().st_size < 1024
