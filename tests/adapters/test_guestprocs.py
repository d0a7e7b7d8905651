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


def _cgroup2_mount() -> Path:
    """Where the kernel's cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` on PVE, on
    Debian 12 and on most machines; ``/sys/fs/cgroup/unified`` in hybrid layouts)."""
    with open("/proc/self/mounts", encoding="ascii") as fh:
        mounts = [line.split()[1] for line in fh if line.split()[2] == "cgroup2"]
    assert mounts, "no cgroup v2 hierarchy is mounted: containers cannot be found here"
    return Path(mounts[0])


def test_a_container_is_its_cgroup_and_is_killed_whole(tmp_path: Path) -> None:
    """Real cgroups laid out as PVE's (lxc/VMID with lxc's ns inside, lxc.monitor/VMID),
    holding real processes, one of which forked: cgroup.kill ends every one of them."""
    import os
    import time

    root = _cgroup2_mount() / f"pvha-test-{os.getpid()}"
    payload, monitor = root / "lxc" / "105" / "ns", root / "lxc.monitor" / "105"
    empty = root / "lxc" / "106"
    for d in (payload, monitor, empty):
        d.mkdir(parents=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for group, cmd in ((payload, "sleep 60 & exec sleep 61"), (monitor, "exec sleep 62")):
            procs.append(subprocess.Popen(  # the shell joins the cgroup, then forks
                ["bash", "-c", f'echo $$ > "{group}/cgroup.procs" || exit 1; {cmd}']))
        deadline = time.monotonic() + 5
        while len((payload / "cgroup.procs").read_text().split()) < 2 or \
                not (monitor / "cgroup.procs").read_text():
            assert time.monotonic() < deadline, "the container's init did not fork"
            time.sleep(0.01)
        guests = LocalGuests(tmp_path / "run", root)
        found = guests.running()
        assert [(p.sid, p.cgroups) for p in found] == [
            ("ct:105", (root / "lxc" / "105", monitor))]  # 106 holds no process
        assert found[0].pid in [int(x) for x in (payload / "cgroup.procs").read_text().split()]
        assert guests.kill(found[0])
        assert [p.wait(5) for p in procs] == [-9, -9]
        assert (payload / "cgroup.procs").read_text() == "" and guests.running() == []
        assert guests.kill(found[0])  # gone already: still true
    finally:
        for p in procs:
            p.kill()
            p.wait(5)
        for d in (payload, payload.parent, monitor, empty, root / "lxc", root / "lxc.monitor",
                  root):
            d.rmdir()
