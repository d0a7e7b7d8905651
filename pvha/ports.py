"""The ports: what the imperative shell (``pvha watch``) needs from the world.

Theory of operation. The HA loop reads one frozen :class:`ClusterSnapshot` per round
through :class:`ClusterReads`, holds the manager lock through :class:`ClusterFilesystem`,
asks the pure core for a decision, then applies it: guest actions through
:class:`GuestActions` (posted, never waited for: their tasks are polled in later rounds),
config steals and status writes through :class:`ClusterFilesystem`. Time comes only from
:class:`Clock`.

Two families implement these ports: the real-path adapters (``pvha.adapters``: the PVE
HTTP API and a cluster filesystem directory such as ``/etc/pve``) and the simulator
(``pvha.sim``). The value types the ports exchange live here too, so both families build
the same frozen dataclasses and the core never imports an adapter.

Errors: API methods raise subclasses of :class:`pvha.errors.ApiError`
(``ApiTransientError`` = may help to try again next round, ``ApiPermanentError`` = it will
not); filesystem methods raise :class:`pvha.errors.StoreError` or
:class:`pvha.errors.LockError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

GuestKind = Literal["qemu", "lxc"]

NODE_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
"""PVE's node-name format; also keeps node names safe to use as path components."""

GUEST_DOWN = frozenset({"stopped"})
"""Guest statuses that mean no guest process runs."""
GUEST_UNKNOWN = frozenset({"unknown", ""})


def guest_alive(status: str | None) -> bool | None:
    """The HA meaning of a guest status as PVE reports it: True = its process runs,
    False = it does not, None = nobody can tell (``unknown``, a stale entry).

    ``/cluster/resources`` carries QEMU's run state for VMs (pvestatd's ``qmpstatus ||
    status``): ``paused``, ``suspended``, ``prelaunch``, ``io-error``, ``postmigrate``,
    ``inmigrate``, ``guest-panicked``, ``internal-error``, ... all with a live QEMU
    process. PVE's HA resource agents count such a guest as running (``check_running``
    looks at the process), so pvha does too: never a start loop on a paused VM, never
    ``stopped`` for a live one, never an offline migration of a running one. A
    hibernated VM is ``stopped`` (its state is on disk)."""
    if status is None or status in GUEST_UNKNOWN:
        return None
    return status not in GUEST_DOWN


MANAGER_LOCK = "pvha_manager_lock"
"""Lock id of pvha's manager (CRM). Distinct from PVE's ``ha_manager_lock`` on purpose:
pvha must never take over the lock of a running pve-ha-manager."""


def agent_lock(node: str) -> str:
    """Lock id of ``node``'s executor (``pvha_agent_<node>_lock``). The manager taking it
    for a dead node is one proof that the node has been fenced (semantics §1.7)."""
    if not NODE_NAME_RE.match(node):
        raise ValueError(f"invalid node name {node!r}")
    return f"pvha_agent_{node}_lock"


# --- value types: cluster reads ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One node as ``/cluster/status`` reports it, from the answering node's view.
    ``online`` = member of the corosync membership that the answering node sees."""

    name: str
    nodeid: int
    online: bool
    local: bool
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """``/cluster/status``. ``cluster_name`` is None on a standalone host (no cluster
    entry); a standalone host counts as quorate."""

    cluster_name: str | None
    quorate: bool
    config_version: int | None
    node_count: int
    nodes: tuple[ClusterNode, ...]

    @property
    def standalone(self) -> bool:
        return self.cluster_name is None

    @property
    def local_node(self) -> str | None:
        """The node that answered (its ``local`` flag), or None if none is marked."""
        return next((n.name for n in self.nodes if n.local), None)

    @property
    def online_nodes(self) -> tuple[str, ...]:
        return tuple(sorted(n.name for n in self.nodes if n.online))


@dataclass(frozen=True, slots=True)
class NodeResource:
    """A ``type: node`` entry of ``/cluster/resources``: ``status`` is online, offline or
    unknown (member but no fresh RRD data); ``hastate`` is PVE HA's node state if any."""

    node: str
    status: str
    maxcpu: int | None = None
    maxmem: int | None = None
    cpu: float | None = None
    mem: int | None = None
    uptime: int | None = None
    hastate: str | None = None


@dataclass(frozen=True, slots=True)
class Guest:
    """A qemu or lxc entry of ``/cluster/resources``. ``node`` owns the config file.

    ``status`` is what PVE reports, which for guests of a dead node is stale: it keeps
    ``running`` for up to 5 minutes, then becomes ``unknown`` (and ``name`` disappears).
    ``status_stale`` is True when the owning node is not ``online`` in the same reply or
    the status is ``unknown``: never conclude that such a guest is down (or up) from it.
    """

    vmid: int
    kind: GuestKind
    node: str
    status: str
    status_stale: bool
    name: str | None = None
    template: bool = False
    lock: str | None = None
    hastate: str | None = None
    tags: tuple[str, ...] = ()
    maxcpu: float | None = None
    maxmem: int | None = None
    cpu: float | None = None
    mem: int | None = None
    uptime: int | None = None

    @property
    def sid(self) -> str:
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"

    @property
    def ref(self) -> GuestRef:
        return GuestRef(self.kind, self.vmid, self.node)


@dataclass(frozen=True, slots=True)
class ClusterResources:
    """``/cluster/resources``: nodes and guests (other entry types are ignored)."""

    nodes: tuple[NodeResource, ...]
    guests: tuple[Guest, ...]


@dataclass(frozen=True, slots=True)
class PveHaResource:
    """An entry of PVE's own ``/cluster/ha/resources``. pvha refuses to manage these
    guests (design §5). ``state`` None means PVE's default (started)."""

    sid: str
    type: str
    state: str | None = None
    group: str | None = None
    max_restart: int | None = None
    max_relocate: int | None = None
    failback: bool | None = None
    comment: str | None = None

    @property
    def vmid(self) -> int | None:
        tail = self.sid.split(":", 1)[-1]
        return int(tail) if tail.isdigit() else None


@dataclass(frozen=True, slots=True)
class PveHaSection:
    """A group (``/cluster/ha/groups``) or rule (``/cluster/ha/rules``) of PVE's own HA
    config: section type (``group``, ``node-affinity``, ``resource-affinity``), id, and
    the options as the section-config file holds them (strings, in the answer's order;
    the fields PVE's API adds, ``digest``, ``order``, ``errors``, are left out)."""

    type: str
    id: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """``/nodes/{node}/status`` (proxied: needs that node alive)."""

    node: str
    uptime: int
    cpu: float
    loadavg: tuple[float, ...]
    memory_total: int
    memory_used: int
    pveversion: str | None = None
    kversion: str | None = None


@dataclass(frozen=True, slots=True)
class GuestStatus:
    """``/nodes/{node}/{qemu|lxc}/{vmid}/status/current``: the owning node's truth.
    ``qmpstatus`` is qemu only; ``ha_managed`` tells whether PVE HA manages the guest."""

    ref: GuestRef
    status: str
    qmpstatus: str | None = None
    name: str | None = None
    lock: str | None = None
    uptime: int | None = None
    ha_managed: bool = False
    ha_state: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything one round reads from the API, all from one answering node (``api_host``),
    so membership, quorum and guest placement are one consistent local view.
    ``taken_at`` is the shell clock's wall time when the reads finished."""

    status: ClusterStatus
    resources: ClusterResources
    pve_ha_resources: tuple[PveHaResource, ...]
    api_host: str
    taken_at: float


# --- value types: actions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuestRef:
    """Which guest, and the node the action is sent to (the config owner)."""

    kind: GuestKind
    vmid: int
    node: str

    @property
    def sid(self) -> str:
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """``/nodes/{node}/tasks/{upid}/status``. ``exitstatus`` is set once the task stopped:
    ``OK`` or ``WARNINGS: n`` count as success (as PVE counts them), anything else is
    PVE's error text; ``unexpected status`` means the task's node died under it."""

    upid: str
    node: str
    type: str
    running: bool
    exitstatus: str | None = None

    @property
    def ok(self) -> bool:
        e = self.exitstatus or ""
        return not self.running and (e == "OK" or e.startswith("WARNINGS"))


# --- the ports -------------------------------------------------------------------------------


@runtime_checkable
class Clock(Protocol):
    """The only source of time for the shell (the core gets ``now`` passed in)."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (what status files and logs carry)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards (for timeouts)."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (a simulator advances its virtual time instead)."""


@runtime_checkable
class ClusterReads(Protocol):
    """Reads of cluster state. No method changes anything."""

    def snapshot(self) -> ClusterSnapshot:
        """One consistent view: cluster status (quorum, per-node online), guests and
        nodes of ``/cluster/resources``, PVE's HA resources, all answered by the same API
        node without proxying. If the adapter fails over to another API node halfway, it
        reads again so the snapshot never mixes two nodes' views. Raises ApiError."""

    def node_status(self, node: str) -> NodeStatus:
        """The node's own status (proxied to it: a dead node gives ApiTransientError)."""

    def guest_status(self, ref: GuestRef) -> GuestStatus:
        """The owning node's current view of a guest (proxied; use it, not the stale
        ``/cluster/resources`` status, to confirm a start or stop)."""


@runtime_checkable
class GuestActions(Protocol):
    """Guest actions through the owning node (``ref.node``). Each call only submits the
    action and returns its task id (UPID); nothing waits for a task: callers poll
    :meth:`task_status` in later rounds. Raises ApiTransientError (the node or the API
    is unreachable; ``request_sent`` False = certainly not submitted) or
    ApiPermanentError (refused synchronously, e.g. ``CT 100 already running``).

    Callers must hold the manager lock, and must not act on guests PVE's own HA manages
    (PVE would turn the action into an ``hastart``/``hastop`` request, not perform it)."""

    def post_start(self, ref: GuestRef) -> str:
        """Start the guest on ``ref.node``."""

    def post_stop(self, ref: GuestRef, timeout: int | None = None) -> str:
        """Hard stop."""

    def post_shutdown(
        self, ref: GuestRef, timeout: int | None = None, force_stop: bool = False
    ) -> str:
        """Clean shutdown, optionally forcing a stop when ``timeout`` expires."""

    def post_migrate(self, ref: GuestRef, target: str, online: bool) -> str:
        """Move the guest from ``ref.node`` to ``target`` (both nodes must be alive).
        qemu: live migration when ``online``, else offline. lxc: ``online`` means restart
        migration (shutdown, move, start), since PVE has no live migration for containers.
        The config changes owner only when the task succeeds."""

    def task_status(self, upid: str) -> TaskStatus:
        """The task's status, asked of the node in its UPID (proxied)."""


@runtime_checkable
class ClusterFilesystem(Protocol):
    """The cluster filesystem root (``/etc/pve`` or a directory laid out like it).

    Locks follow pmxcfs semantics (semantics §1.7): a lock is a directory under
    ``priv/lock``; mkdir takes it, utime renews it, it expires 120 s after the last
    successful take or renewal, rmdir releases it. Everything under the root is
    read-only on a node without quorum, so a non-quorate node can neither renew nor
    write. Every write below is atomic: a crash leaves the old or the new content."""

    def acquire_lock(self, lock_id: str) -> bool:
        """One attempt (no sleeping): renew if this process took or renewed the lock less
        than 120 s ago, else try to take it (an expired foreign lock is broken first).
        True = held for the next 120 s. Logs only transitions (acquired / lost)."""

    def release_lock(self, lock_id: str) -> None:
        """Remove the lock if this process holds it, and forget it either way."""

    def holds_lock(self, lock_id: str) -> bool:
        """Whether this process's last successful take or renewal is under 120 s old. A
        process whose hold lapsed (it was paused) must drop what it keeps in memory
        before it acts again: another process may have held the lock meanwhile."""

    def read_manager_status(self) -> dict[str, Any] | None:
        """The manager status JSON (semantics §1.3 shape), or None if there is none."""

    def write_manager_status(self, status: dict[str, Any]) -> None:
        """Replace the manager status atomically. Caller holds the manager lock."""

    def read_executor_status(self, node: str) -> dict[str, Any] | None:
        """``node``'s executor (LRM) status JSON (semantics §1.4 shape), or None."""

    def write_executor_status(self, node: str, status: dict[str, Any]) -> None:
        """Replace ``node``'s executor status atomically. Caller holds that node's agent
        lock (or is the manager acting for it)."""

    def append_command(self, command: str) -> None:
        """Queue one crm command line (semantics §1.5) under the HA domain lock."""

    def take_commands(self) -> list[str]:
        """Read and empty the crm command queue in one step under the HA domain lock, so
        a command is consumed exactly once. Caller holds the manager lock."""

    def has_commands(self) -> bool:
        """Peek: is a crm command queued (no lock, nothing consumed)?"""

    def read_config(self, name: str) -> str | None:
        """The text of an HA config file (``resources.cfg``, ``groups.cfg``, ``rules.cfg``,
        ``fence.cfg``) from the config dir, or None if it does not exist."""

    def write_config(self, name: str, text: str) -> None:
        """Replace an HA config file atomically under the HA domain lock."""

    def steal_guest_config(self, kind: GuestKind, vmid: int, old_node: str, new_node: str) -> bool:
        """Move the guest's config from ``old_node`` to ``new_node`` with one atomic rename
        (safety rule 3). Only after ``old_node`` is fenced, by the manager-lock holder on a
        quorate node. True = moved now; False = it already was on ``new_node`` (resume
        after a crash). Raises StoreError if it is on neither or on both."""

    def find_guest_config(self, kind: GuestKind, vmid: int) -> list[str]:
        """The nodes whose config dir holds the guest's config (one, normally)."""

    def remove_guest_lock(self, kind: GuestKind, vmid: int, node: str,
                          locks: tuple[str, ...] | list[str]) -> str | None:
        """Drop a leftover ``lock:`` (one of ``locks``) from the guest's config on the
        fenced ``node`` before its recovery, atomically; the lock removed, or None."""
