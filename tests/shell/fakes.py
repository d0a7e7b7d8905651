"""Test doubles for the shell: an in-memory PVE API over a real cluster-fs directory.

``FakeApi`` answers ``snapshot()`` from its node table and the guest configs it finds
under ``<root>/nodes/*/{qemu-server,lxc}``, so a config steal done by the real
``ClusterFs`` shows up in the next snapshot exactly as with PVE. Every call is counted
and actions are recorded in order, so tests can assert on what was done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pvha.adapters.cfs import ClusterFs
from pvha.errors import ApiPermanentError, ApiTransientError
from pvha.ports import (
    ClusterNode,
    ClusterResources,
    ClusterSnapshot,
    ClusterStatus,
    Guest,
    GuestRef,
    GuestStatus,
    NodeResource,
    PveHaResource,
    TaskResult,
)


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass
class FakeApi:
    root: Path
    clock: FakeClock
    nodes: list[str] = field(default_factory=lambda: ["node1", "node2", "node3"])
    power: dict[str, bool] = field(default_factory=dict)
    running: set[int] = field(default_factory=set)
    local: str = "node1"
    quorate_override: bool | None = None
    pve_ha: set[str] = field(default_factory=set)
    fail_snapshot: list[Exception] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    actions: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for n in self.nodes:
            self.power.setdefault(n, True)
            for d in ("qemu-server", "lxc"):
                (self.root / "nodes" / n / d).mkdir(parents=True, exist_ok=True)

    # --- test helpers ------------------------------------------------------------------

    def add_guest(self, vmid: int, node: str, running: bool = False, kind: str = "qemu") -> None:
        d = "qemu-server" if kind == "qemu" else "lxc"
        (self.root / "nodes" / node / d / f"{vmid}.conf").write_text("memory: 512\n")
        if running:
            self.running.add(vmid)

    def config_nodes(self, vmid: int) -> list[str]:
        return sorted(p.parts[-3] for p in (self.root / "nodes").glob(f"*/*/{vmid}.conf"))

    def _guests(self) -> list[tuple[int, str, str]]:
        out = []
        for p in sorted((self.root / "nodes").glob("*/*/*.conf")):
            kind = "qemu" if p.parent.name == "qemu-server" else "lxc"
            out.append((int(p.stem), kind, p.parts[-3]))
        return out

    # --- ClusterReads ------------------------------------------------------------------

    def snapshot(self) -> ClusterSnapshot:
        if self.fail_snapshot:
            raise self.fail_snapshot.pop(0)
        self.calls += ["GET cluster/status", "GET cluster/resources", "GET cluster/ha/resources"]
        up = {n for n in self.nodes if self.power[n]}
        quorate = len(up) * 2 > len(self.nodes)
        if self.quorate_override is not None:
            quorate = self.quorate_override
        status = ClusterStatus("c", quorate, 1, len(self.nodes), tuple(
            ClusterNode(n, i + 1, n in up, n == self.local) for i, n in enumerate(self.nodes)))
        nodes = tuple(NodeResource(n, "online" if n in up else "offline") for n in self.nodes)
        guests = tuple(
            Guest(vmid, kind, node, "running" if vmid in self.running else "stopped",  # type: ignore[arg-type]
                  node not in up)
            for vmid, kind, node in self._guests())
        ha = tuple(PveHaResource(s, s.split(":")[0]) for s in sorted(self.pve_ha))
        return ClusterSnapshot(status, ClusterResources(nodes, guests), ha, self.local,
                               self.clock.time())

    def guest_status(self, ref: GuestRef) -> GuestStatus:
        self._reach(ref.node, f"GET {ref.node}/{ref.vmid}/status/current")
        return GuestStatus(ref, "running" if ref.vmid in self.running else "stopped")

    def node_status(self, node: str) -> None:
        raise NotImplementedError

    # --- GuestActions ------------------------------------------------------------------

    def _reach(self, node: str, call: str) -> None:
        self.calls.append(call)
        if not self.power[node]:
            raise ApiTransientError(f"{node}: 595 no route to host", status=595)

    def _owned(self, ref: GuestRef) -> None:
        if ref.node not in self.config_nodes(ref.vmid):
            raise ApiPermanentError(f"500 Configuration file 'nodes/{ref.node}/"
                                    f"qemu-server/{ref.vmid}.conf' does not exist")

    def _task(self, node: str, kind: str) -> TaskResult:
        return TaskResult(f"UPID:{node}:1:1:1:{kind}::root@pam:", node, kind, "OK")

    def start(self, ref: GuestRef) -> TaskResult:
        self._reach(ref.node, f"POST {ref.node}/{ref.vmid}/start")
        self._owned(ref)
        if ref.vmid in self.running:
            raise ApiPermanentError(f"500 VM {ref.vmid} already running")
        self.actions.append(("start", ref.sid, ref.node))
        self.running.add(ref.vmid)
        return self._task(ref.node, "qmstart")

    def stop(self, ref: GuestRef, timeout: int | None = None) -> TaskResult:
        self._reach(ref.node, f"POST {ref.node}/{ref.vmid}/stop")
        self._owned(ref)
        self.actions.append(("stop", ref.sid, ref.node))
        self.running.discard(ref.vmid)
        return self._task(ref.node, "qmstop")

    def shutdown(self, ref: GuestRef, timeout: int | None = None,
                 force_stop: bool = False) -> TaskResult:
        self._reach(ref.node, f"POST {ref.node}/{ref.vmid}/shutdown")
        self._owned(ref)
        self.actions.append(("shutdown", ref.sid, ref.node))
        self.running.discard(ref.vmid)
        return self._task(ref.node, "qmshutdown")

    def migrate(self, ref: GuestRef, target: str, online: bool) -> TaskResult:
        self._reach(ref.node, f"POST {ref.node}/{ref.vmid}/migrate")
        self._reach(target, f"(migrate to {target})")
        self._owned(ref)
        self.actions.append(("migrate", ref.sid, f"{ref.node}->{target}"))
        d = "qemu-server" if ref.kind == "qemu" else "lxc"
        (self.root / "nodes" / ref.node / d / f"{ref.vmid}.conf").rename(
            self.root / "nodes" / target / d / f"{ref.vmid}.conf")
        return self._task(ref.node, "qmigrate")


def make_cluster(tmp: Path, clock: FakeClock | None = None) -> tuple[FakeApi, ClusterFs, FakeClock]:
    clock = clock or FakeClock()
    root = tmp / "pve"
    root.mkdir(parents=True, exist_ok=True)
    api = FakeApi(root, clock)
    cfs = ClusterFs(root, clock=clock.time, sleep=clock.sleep, pmxcfs=False)
    cfs.config_dir.mkdir(parents=True, exist_ok=True)
    return api, cfs, clock


def new_cfs(api: FakeApi) -> ClusterFs:
    """Another process's view of the same directory (its own lock bookkeeping)."""
    return ClusterFs(api.root, clock=api.clock.time, sleep=api.clock.sleep, pmxcfs=False)
