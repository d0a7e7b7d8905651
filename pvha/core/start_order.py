"""The start order of HA guests: ``priority`` and ``after`` (a documented pvha extension).

Theory of operation. PVE starts the HA guests of a node in sid order, as many at once as
``max_workers`` allows, on every node at the same time; it has no priority and no
dependency. A pvha resource may have ``priority`` (an integer, default 0: higher starts
first) and ``after`` (another HA resource that must run first). Before an LRM starts a
guest that does not run, it asks :func:`blocker` for the first resource that must run
before it and does not yet:

* its ``after`` resource, while that is requested to run (``state started`` in
  resources.cfg) and on its way: in ``started``, ``recovery``, ``fence``, ``migrate``,
  ``relocate`` or ``request_start``, on whatever node;
* any resource of a higher priority in ``started`` on an online node: the recovery of a
  failed node and the starts after quorum returns go in priority tiers, as vSphere's
  restart priorities do.

The start waits, at most ``order_wait`` seconds from when its command was queued, then
goes on with a warning, so one stuck guest never blocks the rest. Nothing waits when no
resource sets either key: PVE-compatible runs are unchanged.

The recovery's placement honours priority too (:func:`order`, used by the manager), so
when room is short the higher priorities get it first. "Runs" is the port's
``guest_runs``, asked lazily and at most once per sid and round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pvha.core.executor import RetryLater

ORDER_WAIT = 120
"""Seconds a start may wait for the guests that must run before it."""
ON_ITS_WAY = frozenset({"started", "recovery", "fence", "migrate", "relocate", "request_start"})


def priority(cd: Mapping[str, Any] | None) -> int:
    """A resource's start priority (0 when unset)."""
    return int((cd or {}).get("priority", 0))


def ordered(sc: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether any resource sets ``priority`` or ``after``."""
    return any("priority" in cd or "after" in cd for cd in sc.values())


def order(sids: list[str], sc: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``sids`` in sid order, or higher priority first (then sid) when any is set."""
    if not any("priority" in cd for cd in sc.values()):
        return sorted(sids)
    return sorted(sids, key=lambda s: (-priority(sc.get(s)), s))


class StartOrder:
    """One round's view of who must run first (built once per LRM round)."""

    def __init__(
        self, sc: Mapping[str, Mapping[str, Any]], ss: Mapping[str, Mapping[str, Any]],
        node_states: Mapping[str, str], runs: Callable[[str], bool],
    ) -> None:
        self.sc, self.ss = sc, ss
        self._runs = runs
        self._seen: dict[str, bool] = {}
        self._tiers = sorted(
            ((priority(sc.get(sid)), sid) for sid, sd in ss.items()
             if sd.get("state") == "started" and node_states.get(str(sd.get("node"))) == "online"
             and (sc.get(sid) or {}).get("state") == "started"),
            reverse=True,
        )

    def runs(self, sid: str) -> bool:
        """Whether ``sid`` runs; a port that cannot tell now counts as not (yet)."""
        if sid not in self._seen:
            try:
                self._seen[sid] = self._runs(sid)
            except RetryLater:
                self._seen[sid] = False
        return self._seen[sid]

    def blocker(self, sid: str) -> tuple[str, str] | None:
        """The first resource ``sid`` waits for and why (``after`` or its priority)."""
        cd = self.sc.get(sid) or {}
        after = cd.get("after")
        if after and after != sid:
            dep = self.ss.get(after)
            if (dep is not None and dep.get("state") in ON_ITS_WAY
                    and (self.sc.get(after) or {}).get("state") == "started"
                    and not self.runs(after)):
                return after, "after"
        mine = priority(cd)
        for prio, other in self._tiers:
            if prio <= mine:
                break
            if other != sid and not self.runs(other):
                return other, f"priority {prio}"
        return None
