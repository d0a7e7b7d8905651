"""The simulated cluster in real time: nodes (power, network, membership views), guests
(where they run), their configs as files under ``<cfs>/nodes/<node>/{qemu-server,lxc}``,
and the RRD caches that make a dead node's guests look stale.

Truth and views:

* Config ownership is where the config file is, in the cluster filesystem
  (:mod:`pvha.fakepve.tree`). On the strict tree every node has its own pmxcfs view: a
  node's API answers from what that node has received, so a rename done on one node (a
  migration, pvha's config steal, design §4.3) reaches the others after the propagation
  delay, and not at all while they lack quorum. ``viewer=None`` reads the whole history
  (the truth ``sim ctl status`` shows). The ``vmid -> kind, node`` map of a view comes
  from scanning its directories, again only when the view changed.
* Where a guest runs is in memory (``Runtime.running``: a *set* of nodes, so a split
  brain, a guest running on two nodes, is visible in ``status`` instead of hidden).
* Membership is per node: a powered-off node sees nothing; a node with its network off
  sees only itself; the others see every powered node with network in the same network
  segment (``partition`` splits the cluster into segments). Quorate means more
  than half of all configured nodes are members (votequorum, one vote each).
* RRD: each node keeps the last sample it got of every guest (owner broadcasts while it
  is a member of the viewer's partition, every ``rrd_interval`` s). A sample older than
  ``stale_seconds`` turns the guest ``unknown`` without ``name`` and usage fields, as
  pmxcfs does after 5 minutes (pve-api-notes §5).

All state is guarded by ``Cluster.lock`` (re-entrant); callers hold it across a read
that must be consistent.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvha.fakepve import ha_config
from pvha.fakepve.tasks import Scheduler, Task, TaskTable
from pvha.fakepve.tree import DirTree, Tree
from pvha.fakepve.wire import PveError

log = logging.getLogger("pvha.fakepve")

CONF_DIRS = {"qemu": "qemu-server", "lxc": "lxc"}
GIB = 1024**3


@dataclass
class Timing:
    """Real-time knobs (seconds)."""

    task_seconds: float = 1.0
    migrate_seconds: float = 2.0
    proxy_delay: float = 1.0
    stale_seconds: float = 300.0
    rrd_interval: float = 0.0
    auth_fail_delay: float = 3.0
    reboot_seconds: float = 5.0
    membership_delay: float = 0.0  # corosync token timeout: a lost node stays a member
    watchdog_seconds: float = 60.0  # watchdog-mux's client timeout: unfed, the node resets
    cfs_lock_seconds: float = 120.0  # pmxcfs's lock expiry (CFS_LOCK_TIMEOUT)
    agent_timeout: float = 1.0  # a hung guest agent's ping answers (an error) after this


@dataclass
class Node:
    """One cluster node. ``generation`` counts boots, so work started in an earlier boot
    never lands after a power cycle."""

    name: str
    nodeid: int
    ip: str
    boot_time: float
    power: bool = True
    network: bool = True
    segment: int = 0
    generation: int = 0
    down_at: float | None = None  # when it lost power or network (membership_delay)


@dataclass(frozen=True)
class GuestConf:
    """A guest config file found in a node's view."""

    vmid: int
    kind: str  # qemu | lxc
    node: str
    data: bytes
    values: dict[str, str]

    @property
    def name(self) -> str:
        key = "name" if self.kind == "qemu" else "hostname"
        default = f"VM {self.vmid}" if self.kind == "qemu" else f"CT{self.vmid}"
        return self.values.get(key, default)

    @property
    def maxmem(self) -> int:
        return _int(self.values.get("memory"), 512) * 1024 * 1024

    @property
    def cpus(self) -> int:
        return _int(self.values.get("cores"), 1) * _int(self.values.get("sockets"), 1)

    @property
    def rel(self) -> str:
        """``nodes/<node>/qemu-server/<vmid>.conf`` as PVE names it in errors."""
        return f"nodes/{self.node}/{CONF_DIRS[self.kind]}/{self.vmid}.conf"


@dataclass
class Runtime:
    """What is true about a guest beyond its config file. ``qmp`` is a running VM's QEMU
    state when it is not ``running`` (``paused``, ``suspended``, ``io-error``, ...): PVE
    reports it as the guest's status in ``/cluster/resources`` (pvestatd's ``qmpstatus ||
    status``) and as ``qmpstatus`` in ``status/current``."""

    running: set[str] = field(default_factory=set)
    started_at: float = 0.0
    lock: str | None = None
    qmp: str | None = None
    # injected for the next task of an action (start, stop, shutdown, migrate): "fail"
    # (the task ends with an error) or "hang" (it never ends); one-shot
    # (or "ha-delete": the next DELETE of its PVE HA resource fails writing the file)
    faults: dict[str, str] = field(default_factory=dict)
    # the QEMU guest agent inside a VM: "ok" answers, "hung" does not until the VM's next
    # start, "broken" never again (``sim ctl guest VMID agent ...``); pings counts them
    agent: str = "ok"
    pings: int = 0

    def fresh_boot(self) -> None:
        """The guest (re)started: a hung agent answers again, a broken one does not."""
        if self.agent == "hung":
            self.agent = "ok"

    def status(self, node: str) -> str:
        """The status PVE's resource list shows for the guest on ``node``."""
        if node not in self.running:
            return "stopped"
        return self.qmp or "running"


@dataclass(frozen=True)
class Sample:
    """A viewer's RRD entry for one guest."""

    node: str
    status: str
    time: float
    started_at: float


def _int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def parse_conf(text: str) -> dict[str, str]:
    """``key: value`` lines of the current config (snapshot sections ignored)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("["):
            break
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def with_lock(text: str, lock: str | None) -> str:
    """``text`` (a guest config) with ``lock: LOCK`` as the main section's lock, or
    without any lock there (``None``); snapshot sections are kept as they are."""
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line.startswith("[")), len(lines))
    main = [line for line in lines[:end] if not re.match(r"lock\s*:", line)]
    if lock is not None:
        if main and not main[-1].endswith("\n"):
            main[-1] += "\n"
        while main and main[-1].strip() == "":  # before the blank line of a snapshot
            main.pop()
        main.append(f"lock: {lock}\n")
        if end < len(lines):
            main.append("\n")
    return "".join(main + lines[end:])


def conf_rel(node: str, kind: str, vmid: int) -> str:
    return f"nodes/{node}/{CONF_DIRS[kind]}/{vmid}.conf"


class Cluster:
    """Nodes, guests, tasks and views; see the module docstring."""

    def __init__(self, tree: Tree | Path, nodes: list[Node], timing: Timing,
                 name: str = "pvha-sim", clock: Callable[[], float] = time.time) -> None:
        self.tree: Tree = DirTree(tree) if isinstance(tree, Path) else tree
        self.nodes: dict[str, Node] = {n.name: n for n in nodes}
        self.timing = timing
        self.name = name
        self.clock = clock
        self.lock = threading.RLock()
        self.tasks = TaskTable()
        self.scheduler = Scheduler(clock)
        self.runtime: dict[int, Runtime] = {}
        self._rrd: dict[str, dict[int, Sample]] = {n: {} for n in self.nodes}
        self._node_seen: dict[str, dict[str, float]] = {n: {} for n in self.nodes}
        self.power_hooks: list[Callable[[str, bool], None]] = []
        # per viewer: (view version or None, scan); pinned viewers keep their scan for the
        # rest of the request
        self._confs: dict[str | None, tuple[int | None, dict[int, GuestConf]]] = {}
        self._pinned: set[str | None] = set()
        self._in_request = False

    # --- configs ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def consistent(self) -> Iterator[None]:
        """Hold the lock; each view is scanned at most once until the request ends: one
        request sees one cfs state per view (and a request with many entries does not
        re-read every file per entry)."""
        with self.lock:
            if self._in_request:  # nested: the outer scan stands
                yield
                return
            self._in_request = True
            try:
                yield
            finally:
                self._in_request = False
                self._pinned.clear()
                self._confs = {k: v for k, v in self._confs.items() if v[0] is not None}

    def configs(self, viewer: str | None = None) -> dict[int, GuestConf]:
        """Every guest config in ``viewer``'s view (None: the whole history), by vmid (the
        first in node name order wins a duplicate)."""
        hit = self._confs.get(viewer)
        if hit is not None and viewer in self._pinned:
            return hit[1]
        key = self.tree.version(viewer)
        if hit is not None and key is not None and hit[0] == key:
            confs = hit[1]
        else:
            confs = self._scan(viewer)
            if key is not None or self._in_request:
                self._confs[viewer] = (key, confs)
        if self._in_request:
            self._pinned.add(viewer)
        return confs

    def _scan(self, viewer: str | None) -> dict[int, GuestConf]:
        out: dict[int, GuestConf] = {}
        for node in sorted(self.nodes):
            for kind, sub in CONF_DIRS.items():
                try:
                    names = self.tree.listdir(viewer, f"nodes/{node}/{sub}")
                except OSError:
                    continue
                for fname in names:
                    stem, _, ext = fname.partition(".")
                    if ext != "conf" or not stem.isdigit() or int(stem) in out:
                        continue
                    conf = self._read_conf(viewer, int(stem), kind, node)
                    if conf is not None:
                        out[conf.vmid] = conf
        return out

    def _read_conf(self, viewer: str | None, vmid: int, kind: str,
                   node: str) -> GuestConf | None:
        try:
            data = self.tree.read(viewer, conf_rel(node, kind, vmid))
        except OSError:  # renamed away between listdir and read
            return None
        return GuestConf(vmid, kind, node, data, parse_conf(data.decode("utf-8", "replace")))

    def config(self, vmid: int) -> GuestConf | None:
        return self.configs().get(vmid)

    def config_on(self, node: str, kind: str, vmid: int) -> GuestConf | None:
        """The config if it is on ``node`` with that kind, as ``node`` sees it (PVE's
        ``load_config`` there)."""
        return self._read_conf(node, vmid, kind, node)

    def rt(self, vmid: int) -> Runtime:
        return self.runtime.setdefault(vmid, Runtime())

    def lock_of(self, conf: GuestConf) -> str | None:
        """The guest's lock: a running task's (in memory) or the config's ``lock:``."""
        return self.rt(conf.vmid).lock or conf.values.get("lock") or None

    def set_lock(self, vmid: int, lock: str | None) -> None:
        """Out-of-band lock change (tests, the ``guest VMID lock|unlock`` command), where
        PVE keeps it: the ``lock:`` line of the config's main section, written through
        the owner node's view (a backup's ``lock: backup``; ``qm unlock`` deletes it, and
        so the lock of a task in flight too). ValueError for a bad name; OSError when
        the owner's pmxcfs refuses the write (no quorum there)."""
        if lock is not None and not re.fullmatch(r"[a-z][a-z-]*", lock):
            raise ValueError(f"bad lock name {lock!r}")
        with self.lock:
            conf = self.config(vmid)
            if conf is None:
                raise KeyError(f"no guest {vmid}")
            if lock is None:
                self.rt(vmid).lock = None
            self._write_lock(conf.node, conf, lock)

    def _write_lock(self, viewer: str, conf: GuestConf, lock: str | None) -> None:
        """Set (or drop) ``conf``'s ``lock:`` line through ``viewer``'s view (OSError
        when that view refuses the write); nothing is written when it is so already."""
        text = conf.data.decode("utf-8", "replace")
        new = with_lock(text, lock)
        if new != text:
            self.tree.write(viewer, conf_rel(conf.node, conf.kind, conf.vmid), new.encode())

    def is_running(self, vmid: int, node: str) -> bool:
        return node in self.rt(vmid).running

    # --- topology --------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def members(self, viewer: str) -> set[str]:
        """The corosync membership as ``viewer`` sees it. With ``membership_delay`` a
        node that lost power or network stays in it for that long (corosync notices a
        lost node only after its token timeout), though nothing reaches it."""
        v = self.nodes[viewer]
        if not v.power:
            return set()
        now = self.clock()

        def counted(n: Node) -> bool:
            if n.power and n.network:
                return True
            return n.down_at is not None and now - n.down_at < self.timing.membership_delay

        if not v.network and not counted(v):
            return {viewer}
        return {n.name for n in self.nodes.values() if counted(n) and n.segment == v.segment}

    def _mark(self, n: Node, was_up: bool) -> None:
        if n.power and n.network:
            n.down_at = None
        elif was_up:
            n.down_at = self.clock()

    def quorate(self, viewer: str) -> bool:
        return 2 * len(self.members(viewer)) > len(self.nodes)

    def reachable(self, src: str, dst: str) -> bool:
        """Can ``src``'s pveproxy open a connection to ``dst``'s?"""
        a, b = self.nodes[src], self.nodes[dst]
        if src == dst:
            return a.power
        return a.power and b.power and a.network and b.network and a.segment == b.segment

    # --- RRD -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Let every powered node take the broadcasts it can see now. Called before
        every change and every read, so a sample is as old as the last time it could
        have been broadcast."""
        now = self.clock()
        # each powered node's pvestatd broadcasts the guests its own view puts on it
        own = {m: [c for c in self.configs(m).values() if c.node == m]
               for m, n in self.nodes.items() if n.power}
        for viewer in self.nodes:
            members = self.members(viewer)
            seen = self._node_seen[viewer]
            for m in members:
                seen[m] = now
            cache = self._rrd[viewer]
            for m in members:
                for conf in own.get(m, ()):
                    vmid = conf.vmid
                    prev = cache.get(vmid)
                    if (prev is None or prev.node != conf.node
                            or now - prev.time >= self.timing.rrd_interval):
                        rt = self.rt(vmid)
                        status = rt.status(conf.node) if conf.kind == "qemu" else (
                            "running" if conf.node in rt.running else "stopped")
                        cache[vmid] = Sample(conf.node, status, now, rt.started_at)

    def sample(self, viewer: str, conf: GuestConf) -> Sample | None:
        """``viewer``'s fresh-enough sample of the guest, or None (status unknown)."""
        s = self._rrd[viewer].get(conf.vmid)
        if s is None or s.node != conf.node:
            return None
        if self.clock() - s.time > self.timing.stale_seconds:
            return None
        return s

    def node_has_rrd(self, viewer: str, node: str) -> bool:
        seen = self._node_seen[viewer].get(node)
        return seen is not None and self.clock() - seen <= self.timing.stale_seconds

    # --- tasks -----------------------------------------------------------------------------

    def new_task(self, node: str, type_: str, id_: str, user: str) -> Task:
        n = self.nodes[node]
        return self.tasks.new(node, n.boot_time, type_, id_, user, self.clock())

    def later(self, delay: float, node: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` under the lock after ``delay`` s, unless ``node`` rebooted since."""
        gen = self.nodes[node].generation

        def run() -> None:
            with self.lock:
                n = self.nodes[node]
                if n.power and n.generation == gen:
                    fn()

        self.scheduler.at(delay, run)

    # --- hardware commands -----------------------------------------------------------------

    def set_power(self, name: str, on: bool) -> None:
        """Power a node on (fresh boot, network on) or off (guests and tasks die)."""
        with self.lock:
            self.refresh()
            n = self.nodes[name]
            if n.power == on:
                return
            was_up = n.power and n.network
            n.power = on
            if on:
                n.network = True
                n.boot_time = self.clock()
            else:
                n.generation += 1
                self._leave_task_locks(name)
                for rt in self.runtime.values():
                    rt.running.discard(name)
                self.tasks.crash_node(name, self.clock())
                self._rrd[name] = {}
                self._node_seen[name] = {}
            self._mark(n, was_up)
            self.refresh()
        for hook in list(self.power_hooks):
            hook(name, on)

    def _leave_task_locks(self, node: str) -> None:
        """``node`` died in the middle of a task that locks a guest (a migration from
        it). PVE wrote that lock into the guest's config when the task began, and no one
        clears it now: the lock moves from memory into the config file, written through
        a node that still can (the file is the cluster's); with none, it stays in memory."""
        writers = [w for w in sorted(self.nodes)
                   if w != node and self.nodes[w].power and self.quorate(w)]
        for vmid, rt in sorted(self.runtime.items()):
            conf = self.config(vmid) if rt.lock is not None and writers else None
            if conf is None or conf.node != node:
                continue
            try:
                self._write_lock(writers[0], conf, rt.lock)
            except OSError:
                continue
            rt.lock = None

    def set_network(self, name: str, on: bool) -> None:
        with self.lock:
            self.refresh()
            n = self.nodes[name]
            was_up = n.power and n.network
            n.network = on
            self._mark(n, was_up)
            self.refresh()

    def partition(self, groups: list[list[str]]) -> None:
        """Split the network: each group is a segment; unnamed nodes share one more.
        An empty list heals every split (``network NODE off`` stays as it is)."""
        with self.lock:
            self.refresh()
            for n in self.nodes.values():
                n.segment = 0
            for index, group in enumerate(groups, start=1):
                for name in group:
                    self.nodes[name].segment = index
            self.refresh()

    def reboot(self, name: str, delay: float | None = None) -> None:
        """Power off now, back on after ``delay`` (default ``reboot_seconds``)."""
        self.set_power(name, False)
        wait = self.timing.reboot_seconds if delay is None else delay
        self.scheduler.at(wait, lambda: self.set_power(name, True))

    def guest_fault(self, vmid: int, fault: str, action: str) -> None:
        """The next ``action`` task of guest ``vmid`` fails or hangs (``sim ctl``)."""
        with self.lock:
            if self.config(vmid) is None:
                raise KeyError(f"no guest {vmid}")
            self.rt(vmid).faults[action] = fault

    def set_pve_ha(self, vmid: int, state: str | None) -> None:
        """PVE's own HA manages the guest with ``state`` (None: it does not), written to
        ``ha/resources.cfg`` on the first quorate node, as ``ha-manager`` run there does."""
        with self.lock:
            conf = self.config(vmid)
            if conf is None:
                raise KeyError(f"no guest {vmid}")
            writer = next((n for n in sorted(self.nodes) if self.nodes[n].power
                           and self.quorate(n)), None)
            if writer is None:
                raise ValueError("no node has quorum: ha-manager cannot write its config")
            sid = f"{'vm' if conf.kind == 'qemu' else 'ct'}:{vmid}"
            try:
                ha_config.set_state(self.tree, writer, sid, state)
            except PveError as exc:
                raise ValueError(exc.message) from None

    def make_template(self, vmid: int) -> None:
        """Mark a stopped guest as a template (``template: 1`` in its config), as
        ``qm template`` does."""
        with self.lock:
            conf = self.config(vmid)
            if conf is None:
                raise KeyError(f"no guest {vmid}")
            if self.rt(vmid).running:
                raise ValueError(f"guest {vmid} is running: a template must be stopped")
            if conf.values.get("template") != "1":
                data = conf.data.rstrip(b"\n") + b"\ntemplate: 1\n"
                try:  # qm template runs on the guest's node
                    self.tree.write(conf.node, conf_rel(conf.node, conf.kind, vmid), data)
                except OSError as exc:
                    raise ValueError(f"cannot write the config of {vmid} on {conf.node}: "
                                     f"{exc.strerror}") from None
            self.refresh()

    def guest_qmp(self, vmid: int, state: str | None) -> None:
        """Out-of-band QEMU state change of a running VM (``pause``, ``resume``,
        ``suspend`` commands); None = running normally."""
        with self.lock:
            self.refresh()
            conf = self.config(vmid)
            if conf is None:
                raise KeyError(f"no guest {vmid}")
            if conf.kind != "qemu":
                raise ValueError(f"guest {vmid} is a container: no QEMU state")
            rt = self.rt(vmid)
            if not rt.running:
                raise ValueError(f"VM {vmid} not running")
            rt.qmp = state
            self.refresh()

    def guest_agent(self, vmid: int, state: str) -> None:
        """The VM's guest agent answers (``ok``), hangs until its next start (``hung``) or
        for good (``broken``)."""
        with self.lock:
            conf = self.config(vmid)
            if conf is None:
                raise KeyError(f"no guest {vmid}")
            if conf.kind != "qemu":
                raise ValueError(f"guest {vmid} is a container: no QEMU guest agent")
            self.rt(vmid).agent = state

    def guest_set(self, vmid: int, running: bool) -> None:
        """Out-of-band truth change (tests): start on the owner node, or stop everywhere."""
        with self.lock:
            self.refresh()
            conf = self.config(vmid)
            if conf is None:
                raise KeyError(f"no guest {vmid}")
            rt = self.rt(vmid)
            if running:
                if not self.nodes[conf.node].power:
                    raise ValueError(f"node {conf.node} is powered off")
                if conf.node not in rt.running:
                    rt.running.add(conf.node)
                    rt.started_at = self.clock()
                    rt.qmp = None
                    rt.fresh_boot()
            else:
                rt.running.clear()
            self.refresh()

    def truth(self) -> dict[str, Any]:
        """The cluster's real state, for ``ctl status``."""
        with self.lock:
            nodes = {
                n.name: {"power": "on" if n.power else "off",
                         "network": "on" if n.network else "off", "segment": n.segment,
                         "quorate": self.quorate(n.name) if n.power else False,
                         "members": sorted(self.members(n.name)), "ip": n.ip}
                for n in self.nodes.values()
            }
            guests: dict[str, dict[str, Any]] = {}
            for vmid, conf in sorted(self.configs().items()):
                rt = self.rt(vmid)
                guests[str(vmid)] = {"kind": conf.kind, "node": conf.node, "name": conf.name,
                                     "running_on": sorted(rt.running), "lock": self.lock_of(conf),
                                     "qmp": rt.qmp,
                                     **({"agent": rt.agent, "pings": rt.pings}
                                        if conf.kind == "qemu" else {})}
            split = [v for v, g in guests.items() if len(g["running_on"]) > 1]
            return {"cluster": self.name, "nodes": nodes, "guests": guests,
                    "split_brain": split}
