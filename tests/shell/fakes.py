"""Test doubles for the shell: an in-memory PVE API over a real cluster-fs directory.

``FakeApi`` answers ``snapshot()`` from its node table and the guest configs it finds
under ``<root>/nodes/*/{qemu-server,lxc}``, so a config steal done by the real
``ClusterFs`` shows up in the next snapshot exactly as with PVE. Every call is counted
and actions are recorded in order, so tests can assert on what was done.

Actions are posted as PVE does: each returns a UPID at once, and the task ends
``task_seconds`` (virtual, on the fake clock; 0 = at once) later; its effect (a guest
running, a config moved) happens when it ends. ``task_status`` reports it.
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
    NodeStatus,
    PveHaResource,
    TaskStatus,
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
    task_seconds: float = 0.0
    status: dict[int, str] = field(default_factory=dict)  # vmid -> QEMU state if not plain
    tasks: dict[str, list] = field(default_factory=dict)  # upid -> [end, effect, exitstatus]
    faults: dict[str, list[Exception]] = field(default_factory=dict)  # "post_start:100" -> ...
    broken_starts: set[tuple[int, str]] = field(default_factory=set)  # (vmid, node): start fails

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

    def _tick(self) -> None:
        """End the tasks whose time has come (their effects happen now)."""
        for upid, task in list(self.tasks.items()):
            end, effect, status = task
            if status is None and end <= self.clock.time():
                node = upid.split(":")[1]
                if not self.power[node]:
                    task[2] = "unexpected status"
                    continue
                task[2] = effect() or "OK"

    def _status_of(self, vmid: int) -> str:
        if vmid not in self.running:
            return "stopped"
        return self.status.get(vmid, "running")

    def snapshot(self) -> ClusterSnapshot:
        self._tick()
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
            Guest(vmid, kind, node, self._status_of(vmid),  # type: ignore[arg-type]
                  node not in up)
            for vmid, kind, node in self._guests())
        ha = tuple(PveHaResource(s, s.split(":")[0]) for s in sorted(self.pve_ha))
        return ClusterSnapshot(status, ClusterResources(nodes, guests), ha, self.local,
                               self.clock.time())

    def get_cluster_status(self) -> ClusterStatus:
        return self.snapshot().status

    def guest_status(self, ref: GuestRef) -> GuestStatus:
        self._tick()
        self._reach(ref.node, f"GET {ref.node}/{ref.vmid}/status/current",
                    f"guest_status:{ref.vmid}")
        alive = ref.vmid in self.running
        return GuestStatus(ref, "running" if alive else "stopped",
                           self.status.get(ref.vmid, "running") if alive else "stopped")

    def node_status(self, node: str) -> NodeStatus:
        """Answers while the node is powered; else what pveproxy says for it (595)."""
        self.calls.append(f"node_status:{node}")
        if not self.power.get(node, False):
            raise ApiTransientError(f"595 No route to host ({node})")
        return NodeStatus(node, 1000, 0.01, (0.1, 0.1, 0.1), 32 << 30, 2 << 30)

    # --- GuestActions ------------------------------------------------------------------

    def _reach(self, node: str, call: str, fault: str | None = None) -> None:
        self.calls.append(call)
        for key in (f"{fault}@{node}", fault):
            if fault is not None and self.faults.get(key):
                raise self.faults[key].pop(0)
        if not self.power[node]:
            raise ApiTransientError(f"{node}: 595 no route to host", status=595)

    def _owned(self, ref: GuestRef) -> None:
        if ref.node not in self.config_nodes(ref.vmid):
            raise ApiPermanentError(f"500 Configuration file 'nodes/{ref.node}/"
                                    f"qemu-server/{ref.vmid}.conf' does not exist")

    def _task(self, node: str, kind: str, effect) -> str:  # type: ignore[no-untyped-def]
        upid = f"UPID:{node}:{len(self.tasks) + 1:08X}:00000001:00000001:{kind}::root@pam:"
        self.tasks[upid] = [self.clock.time() + self.task_seconds, effect, None]
        self._tick()
        return upid

    def task_status(self, upid: str) -> TaskStatus:
        self._tick()
        node = upid.split(":")[1]
        self._reach(node, f"GET {node}/tasks", "task_status")
        _end, _effect, status = self.tasks[upid]
        return TaskStatus(upid, node, upid.split(":")[5], status is None, status)

    def post_start(self, ref: GuestRef) -> str:
        self._reach(ref.node, f"POST {ref.node}/{ref.vmid}/start", f"post_start:{ref.vmid}")
        self._owned(ref)
        if ref.vmid in self.running and ref.kind == "lxc":
            raise ApiPermanentError(f"500 CT {ref.vmid} already running")
        self.actions.append(("start", ref.sid, ref.node))

        def effect() -> str | None:
            if ref.vmid in self.running:
                return f"VM {ref.vmid} already running"
            if (ref.vmid, ref.node) in self.broken_starts:
                return "start failed: QEMU exited with code 1"
            self.running.add(ref.vmid)
            return None

        return self._task(ref.node, "qmstart", effect)

    def post_stop(self, ref: GuestRef, timeout: int | None = None) -> str:
        self._reach(ref.node, f"POST {ref.node}/{ref.vmid}/stop")
        self._owned(ref)
        self.actions.append(("stop", ref.sid, ref.node))
        return self._task(ref.node, "qmstop", lambda: self.running.discard(ref.vmid))

    def post_shutdown(self, ref: GuestRef, timeout: int | None = None,
                      force_stop: bool = False) -> str:
        self._reach(ref.node, f"POST {ref.node}/{ref.vmid}/shutdown", f"post_shutdown:{ref.vmid}")
        self._owned(ref)
        self.actions.append(("shutdown", ref.sid, ref.node))
        return self._task(ref.node, "qmshutdown", lambda: self.running.discard(ref.vmid))

    def post_migrate(self, ref: GuestRef, target: str, online: bool) -> str:
        self._reach(ref.node, f"POST {ref.node}/{ref.vmid}/migrate", f"post_migrate:{ref.vmid}")
        self._reach(target, f"(migrate to {target})")
        self._owned(ref)
        if ref.vmid in self.running and not online:
            raise ApiPermanentError("500 can't migrate running VM without --online")
        self.actions.append(("migrate", ref.sid, f"{ref.node}->{target}"))
        d = "qemu-server" if ref.kind == "qemu" else "lxc"

        def effect() -> None:
            (self.root / "nodes" / ref.node / d / f"{ref.vmid}.conf").rename(
                self.root / "nodes" / target / d / f"{ref.vmid}.conf")

        return self._task(ref.node, "qmigrate", effect)


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
