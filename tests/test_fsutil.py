"""Temp files a killed writer left behind are swept by the next write (issue 9: two of 70
``kill -9`` trials left ``.manager_status.tmp.*`` files that nothing cleaned up)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pvha.fsutil import ORPHAN_AGE, atomic_write, sweep_temp_files


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_killed_writers_temp_file_is_swept_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "manager_status"
    old = time.time() - ORPHAN_AGE - 5
    orphan = tmp_path / f".manager_status.tmp.{_dead_pid()}.deadbeef"
    fresh = tmp_path / f".manager_status.tmp.{_dead_pid()}.cafe0000"  # a write in progress
    alive = tmp_path / f".manager_status.tmp.{os.getppid()}.0badf00d"  # a live writer, old
    other = tmp_path / f".lrm.tmp.{_dead_pid()}.11111111"  # another file's
    for f in (orphan, fresh, alive, other):
        f.write_text("{torn")
    for f in (orphan, alive, other):
        os.utime(f, (old, old))
    atomic_write(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert not orphan.exists()
    assert fresh.exists() and alive.exists() and other.exists()
    assert sweep_temp_files(tmp_path / "lrm") == [other]
