"""The fence and recovery journal stays under pmxcfs's 1 MiB file limit and keeps the
newest events when it rotates."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvha.errors import StoreError
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


def test_the_manager_and_another_node_s_agent_appending_at_once_lose_nothing(
        tmp_path: Path) -> None:
    """Through the pmxcfs-like FUSE mounts of two nodes: the manager's journal and the
    agent's own file (history.d/<node>.jsonl), written at the same time, read back merged
    by time from either node. (Both appending to one file through pmxcfs lose lines:
    each write lands where its node saw the end; tried with these mounts, 20 of 40
    events were left.)"""
    import threading
    import time

    from pvha.fakepve.pmxcfs import Pmxcfs

    cfs = Pmxcfs(("n1", "n2"), delay=0.05)
    cfs.seed("/pvha")
    try:
        mounts = {n: cfs.mount(n, tmp_path / n) for n in ("n1", "n2")}
        manager = History(mounts["n1"] / "pvha")
        agent = History(mounts["n2"] / "pvha", writer="n2")

        def write(history: History, event: str, offset: float) -> None:
            for i in range(20):
                history.append(event, "n2", time=i + offset, outcome=str(i))
                time.sleep(0.01)

        threads = [threading.Thread(target=write, args=(manager, "node", 0.0)),
                   threading.Thread(target=write, args=(agent, "stale-copy", 0.5))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected = sorted([(i + 0.0, "node") for i in range(20)]
                          + [(i + 0.5, "stale-copy") for i in range(20)])
        for node in ("n1", "n2"):
            deadline = time.monotonic() + 5
            while True:
                got = [(e["time"], e["event"]) for e in History(mounts[node] / "pvha").read()]
                if got == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert got == expected, (node, len(got))
        assert (mounts["n1"] / "pvha" / "history.d" / "n2.jsonl").is_file()
    finally:
        cfs.unmount_all()


def test_read_merges_the_journals_by_time_and_skips_what_is_not_an_event(
        tmp_path: Path) -> None:
    History(tmp_path).append("node", "node2", time=10, outcome="offline")
    History(tmp_path, writer="node2").append("stale-copy", "node2", time=5, sid="vm:101",
                                             outcome="stopped")
    History(tmp_path).append("node", "node2", time=20, outcome="online")
    agents = tmp_path / "history.d"
    (agents / "node3.jsonl").write_bytes(b'{"event": "x", "time": "soon"}\n\xff\xfe\n')
    (agents / "notes.txt").write_text('{"event": "node", "time": 1}\n')
    assert [(e["time"], e["outcome"]) for e in History(tmp_path).read()] == [
        (5, "stopped"), (10, "offline"), (20, "online")]


def test_an_unreadable_journal_is_a_store_error(tmp_path: Path) -> None:
    """`pvha history` then says it in one line (as every StoreError), no traceback."""
    agents = tmp_path / "history.d"
    agents.mkdir()
    (agents / "node2.jsonl").symlink_to(agents / "node2.jsonl")  # a loop: ELOOP on open
    with pytest.raises(StoreError, match=r"cannot read .*node2.jsonl: "):
        History(tmp_path).read()
