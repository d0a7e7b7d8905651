"""The guest processes running on this node, as the node itself sees them (not through
the API: a guest whose config moved to another node is invisible there).

A VM is its QEMU process: ``<run dir>/qemu-server/<vmid>.pid`` names it (PVE writes that
pidfile, run dir ``/var/run``), and its command line carries ``-id <vmid>``. A pid whose
process is gone or whose command line does not name the guest is ignored (a stale
pidfile, a reused pid).

A container on PVE (7 and later, cgroup v2) is its cgroup ``<cgroup root>/lxc/<vmid>``
(the payload, with lxc's ``ns`` sub-cgroup inside) and ``lxc.monitor/<vmid>`` (its
monitor): it runs while ``cgroup.events`` says ``populated 1``, and it is killed whole by
writing ``1`` to ``cgroup.kill`` (kernel 5.14 and later), every process of it at once,
however many it forked. The simulated nodes have no cgroups: there a container is found
like a VM, under ``<run dir>/lxc/<vmid>.pid``.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

DIRS = {"qemu": "qemu-server", "lxc": "lxc"}
CGROUP_ROOT = Path("/sys/fs/cgroup")
KILL_WAIT = 5.0
"""Seconds a killed container's cgroups may take to empty before the kill counts as
failed."""


@dataclass(frozen=True, slots=True)
class GuestProc:
    kind: str  # qemu | lxc
    vmid: int
    pid: int
    cgroups: tuple[Path, ...] = ()  # a container's cgroups (killed whole), else by pid

    @property
    def sid(self) -> str:
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"


class LocalGuests:
    """Guest processes under ``run_dir`` (see the module docstring)."""

    def __init__(self, run_dir: Path | str = "/var/run",
                 cgroup_root: Path | str = CGROUP_ROOT) -> None:
        self.run_dir = Path(run_dir)
        self.cgroup_root = Path(cgroup_root)

    def running(self) -> list[GuestProc]:
        out = self._pidfiles()
        seen = {(p.kind, p.vmid) for p in out}
        out += [p for p in self._containers() if (p.kind, p.vmid) not in seen]
        return out

    def _containers(self) -> list[GuestProc]:
        try:
            names = sorted(os.listdir(self.cgroup_root / "lxc"), key=_vmid_order)
        except OSError:
            return []
        out = []
        for name in names:
            if not name.isdigit():
                continue
            groups = tuple(g for g in (self.cgroup_root / "lxc" / name,
                                       self.cgroup_root / "lxc.monitor" / name) if g.is_dir())
            pid = next((p for g in groups for p in _procs(g)), None)
            if pid is not None:
                out.append(GuestProc("lxc", int(name), pid, groups))
        return out

    def _pidfiles(self) -> list[GuestProc]:
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
        """SIGKILL the guest (a stale copy has nothing to save): a container's cgroups
        whole, else its process. True when it is gone or was signalled."""
        if proc.cgroups:
            return _kill_cgroups(proc.cgroups)
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return True


def _vmid_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (0, name)


def _populated(group: Path) -> bool:
    try:
        return "populated 1" in (group / "cgroup.events").read_text("ascii")
    except OSError:
        return False  # gone: nothing runs in it


def _procs(group: Path) -> list[int]:
    """The pids in ``group`` and its sub-cgroups (lxc's payload sits in ``ns``)."""
    if not _populated(group):
        return []
    out = []
    for here, dirs, _files in os.walk(group):
        dirs.sort()
        try:
            out += [int(p) for p in (Path(here) / "cgroup.procs").read_text("ascii").split()]
        except (OSError, ValueError):
            continue
    return out


def _kill_cgroups(groups: tuple[Path, ...]) -> bool:
    for group in groups:
        try:
            (group / "cgroup.kill").write_text("1", "ascii")
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError:
            return False  # no cgroup.kill (kernel < 5.14) or not allowed
    deadline = time.monotonic() + KILL_WAIT
    while any(_populated(g) for g in groups):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
