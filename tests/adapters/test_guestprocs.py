"""Finding and killing guest processes on the node itself (pvha.adapters.guestprocs),
with real processes whose command line carries ``-id VMID`` as QEMU's does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pvha.adapters.guestprocs import GuestProc, LocalGuests


def _guest(run: Path, sub: str, vmid: int, argv0: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["bash", "-c", f'exec -a "{argv0}" sleep 60'])
    (run / sub).mkdir(parents=True, exist_ok=True)
    (run / sub / f"{vmid}.pid").write_text(f"{proc.pid}\n")
    return proc


def test_pidfiles_name_the_running_guests_and_kill_stops_them(tmp_path: Path) -> None:
    import time

    vm = _guest(tmp_path, "qemu-server", 101, "kvm -id 101 -name vm101")
    other = _guest(tmp_path, "qemu-server", 102, "kvm -id 999")  # a reused pid
    ct = _guest(tmp_path, "lxc", 105, "lxc-start -id 105")
    (tmp_path / "qemu-server" / "103.pid").write_text("999999\n")  # process gone
    (tmp_path / "qemu-server" / "junk.pid").write_text("1\n")
    try:
        deadline = time.monotonic() + 5
        while len(LocalGuests(tmp_path).running()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # until bash has exec'd
        found = LocalGuests(tmp_path).running()
        assert found == [GuestProc("qemu", 101, vm.pid), GuestProc("lxc", 105, ct.pid)]
        assert [p.sid for p in found] == ["vm:101", "ct:105"]
        assert LocalGuests(tmp_path).kill(found[0])
        assert vm.wait(5) == -9
        assert LocalGuests(tmp_path).kill(GuestProc("qemu", 103, 999999))  # already gone
    finally:
        for p in (vm, other, ct):
            p.kill()
            p.wait(5)


def test_no_run_dir_means_no_guests(tmp_path: Path) -> None:
    assert LocalGuests(tmp_path / "missing").running() == []
