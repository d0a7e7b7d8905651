"""Fencing by lease expiry: the manager's side of ``pvha agent`` (pvha.shell.agent).

Each round the watcher looks at every node's lease (``priv/lock/pvha_agent_<node>``) and
agent status (``<config dir>/agent_status/<node>``) in its own cluster filesystem view.
It remembers, on its own monotonic clock, when it last saw the lease's mtime change: a
renewal. No clock agreement between nodes is needed: a renewal is seen at or after the
moment it was made (pmxcfs mtimes are whole seconds, so a renewal inside the same second
as the one before may go unseen: up to 1 s, inside the margin).

A node counts as fenced by its lease when its agent was armed (status ``active``,
``shutting-down`` or ``lost`` and the lease there at the last look) and no renewal has been seen for longer
than the agent's ``fence_after`` (watchdog-mux's client timeout plus the hardware
watchdog's, 60 + 10 s on PVE) plus :data:`MARGIN`. The agent feeds the watchdog only after
a renewal that succeeded, so by then the node has been reset. The fencing step asks only
for nodes the quorate view shows offline: a node cut off from a quorate majority has no
quorum, so its renewals fail. A lease released by a clean agent stop, a node whose agent
never armed, or a watcher that started after the last renewal (it waits the whole time
from its first look) give no proof early.

A node whose agent reports a stale copy it could not kill (``stale_running``) is
:meth:`Leases.blocked`: no guest is placed there while it lasts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pvha.adapters.cfs import ClusterFs
from pvha.shell.agent import AgentStatus, lease_mtime, read_status

MARGIN = 5.0
"""Seconds beyond the watchdog's worst case: mux tick (1 s), mtime granularity (1 s),
scheduling."""


@dataclass(slots=True)
class _Seen:
    mtime: float | None  # the lease directory's mtime at the last look; None: no lease
    changed_at: float  # monotonic time of the last change seen (or of the first look)
    status: AgentStatus | None


class Leases:
    """The leases as this watcher has seen them (see the module docstring)."""

    def __init__(self, cfs: ClusterFs, monotonic: Callable[[], float]) -> None:
        self.cfs, self._now = cfs, monotonic
        self._seen: dict[str, _Seen] = {}
        self.fenced: set[str] = set()  # proven by lease expiry, until the node is back

    def observe(self, nodes: Iterable[str], statuses: bool = True) -> None:
        """Look at the leases; ``statuses`` also re-reads the agents' status files (they
        change only with an agent's state: once per round is enough)."""
        now = self._now()
        for node in nodes:
            mtime = lease_mtime(self.cfs.lock_dir, node)
            prev = self._seen.get(node)
            changed = now if prev is None or prev.mtime != mtime else prev.changed_at
            status = read_status(self.cfs.config_dir, node) if statuses or prev is None \
                else prev.status
            self._seen[node] = _Seen(mtime, changed, status)

    def statuses(self) -> dict[str, AgentStatus | None]:
        """Each node's agent status as last read (a shutdown in progress is in it)."""
        return {n: s.status for n, s in self._seen.items()}

    def blocked(self) -> frozenset[str]:
        """Nodes whose agent reports a stale copy it could not stop: nothing is placed
        there until it is gone."""
        return frozenset(n for n, s in self._seen.items()
                         if s.status is not None and s.status.stale_running)

    def armed(self, node: str) -> bool:
        s = self._seen.get(node)
        return s is not None and s.mtime is not None and s.status is not None \
            and s.status.armed

    def silent_for(self, node: str) -> float | None:
        """Seconds since the last renewal seen, for an armed agent (else None)."""
        if not self.armed(node):
            return None
        return self._now() - self._seen[node].changed_at

    def left(self, node: str) -> float | None:
        """Seconds until the lease proves ``node`` dead (None: it cannot)."""
        silent = self.silent_for(node)
        if silent is None:
            return None
        return max(0.0, self.fence_after(node) + MARGIN - silent)

    def expired(self, node: str) -> float | None:
        """Seconds of silence when the lease proves ``node`` was reset, else None."""
        silent = self.silent_for(node)
        if silent is None or silent <= self.fence_after(node) + MARGIN:
            return None
        return silent

    def fence_after(self, node: str) -> float:
        s = self._seen.get(node)
        return s.status.fence_after if s is not None and s.status is not None else 0.0

    def node_back(self, node: str) -> None:
        self.fenced.discard(node)
