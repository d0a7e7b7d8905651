"""What this watcher may do in the current round: the round's view and the manager lock.

Safety rule 2 (design §4): only a process that holds the manager lock and whose API node
sees a quorate cluster acts. :meth:`Authority.may_act` is that check; every write of the
shell (status files, config moves, guest actions, fencing) asks it first, so a process
that lost the lock or whose API node lost quorum changes nothing. The lock itself is
taken and renewed by the core CRM's lock step, once per round, through the manager's
port (:class:`pvha.shell.env.ManagerEnv`); a round never waits on a task, so a renewal
is never more than one round interval plus one round's own (bounded) work away.
"""

from __future__ import annotations

from typing import Any

from pvha.ports import MANAGER_LOCK, Clock
from pvha.shell.snapshot import RoundView


class Authority:
    """The round's view, the lock, and when each node was last seen online."""

    def __init__(self, cfs: Any, clock: Clock) -> None:
        self.cfs = cfs
        self.clock = clock
        self.view: RoundView | None = None
        # when this process last saw each node online in a quorate view
        self.seen_online: dict[str, float] = {}

    def set_view(self, view: RoundView | None) -> None:
        """Install the round's view (None: the API could not be read this round)."""
        self.view = view
        if view is not None and view.quorate:
            for node in view.online:
                self.seen_online[node] = view.taken_at

    def require_view(self) -> RoundView:
        from pvha.core.ports import CfsError

        if self.view is None:
            raise CfsError("no cluster view this round")
        return self.view

    def quorate(self) -> bool:
        return self.view is not None and self.view.quorate

    def holds_manager_lock(self) -> bool:
        return bool(self.cfs.holds_lock(MANAGER_LOCK))

    def may_act(self) -> bool:
        """Safety rule 2: manager lock held and the answering API node quorate."""
        return self.quorate() and self.holds_manager_lock()

    def node_online(self, node: str) -> bool:
        return self.view is not None and node in self.view.online
