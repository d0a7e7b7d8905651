"""The guest processes running on this node, as the node itself sees them (not through
the API: a guest whose config moved to another node is invisible there).

A VM is its QEMU process: ``<run dir>/qemu-server/<vmid>.pid`` names it (PVE writes that
pidfile, run dir ``/var/run``), and its command line carries ``-id <vmid>``. A container
is found the same way under ``<run dir>/lxc/<vmid>.pid``: that is the simulated node's
layout; on PVE a container's monitor is found by ``lxc-info`` (not done yet). A pid
whose process is gone or whose command line does not name the guest is ignored (a stale
pidfile, a reused pid).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

DIRS = {"qemu": "qemu-server", "lxc": "lxc"}


@dataclass(frozen=True, slots=True)
class GuestProc:
    kind: str  # qemu | lxc
    vmid: int
    pid: int

    @property
    def sid(self) -> str:
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"


class LocalGuests:
    """Guest processes under ``run_dir`` (see the module docstring)."""

    def __init__(self, run_dir: Path | str = "/var/run") -> None:
        self.run_dir = Path(run_dir)

    def running(self) -> list[GuestProc]:
        out = []
        for kind, sub in DIRS.items():
            try:
                names = sorted(os.listdir(self.run_dir / sub))
            except OSError:
                continue
            for name in names:
                stem, _, ext = name.partition(".")
                if ext != "pid" or not stem.isdigit():
                    continue
                proc = self._proc(kind, int(stem), self.run_dir / sub / name)
                if proc is not None:
                    out.append(proc)
        return out

    @staticmethod
    def _proc(kind: str, vmid: int, pidfile: Path) -> GuestProc | None:
        try:
            pid = int(pidfile.read_text(encoding="ascii").strip())
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except (OSError, ValueError):
            return None
        words = b" ".join(argv).split()
        if b"-id" in words and words[words.index(b"-id") + 1:][:1] == [str(vmid).encode()]:
            return GuestProc(kind, vmid, pid)
        return None

    def kill(self, proc: GuestProc) -> bool:
        """SIGKILL the guest's process (a stale copy has nothing to save); True if it is
        gone or was signalled."""
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return True
