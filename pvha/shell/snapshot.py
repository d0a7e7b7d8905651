"""One frozen view of the cluster per round, from at most 3 API calls.

``take_view(api)`` calls :meth:`pvha.ports.ClusterReads.snapshot` (``/cluster/status``,
``/cluster/resources``, ``/cluster/ha/resources``: three GETs answered by one node, no
proxying, so no call ever waits on a dead node) and turns it into a :class:`RoundView`:
membership and quorum *as the answering node sees them*, guests by sid, and the sids
PVE's own HA manages. Nothing in a round reads the cluster state any other way, except
an explicit confirmation of a guest's state on its (online) node after an action whose
outcome is unknown.

A snapshot is refused, never half-used: :func:`view_of` raises ApiPermanentError for a
node listed twice in the status, a VMID listed twice among the guests (the core must
never see two answers for one guest and pick one) or a guest whose ``node`` is not a
member. The real adapter (``pvha.adapters.pve_api``) already refuses these and every
other shape PVE would not send; this is the same rule for any ``ClusterReads``, the
last gate before the core. The watch loop skips such a round as one without the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NoReturn

from pvha.errors import ApiPermanentError
from pvha.ports import ClusterReads, ClusterSnapshot, Guest


@dataclass(frozen=True, slots=True)
class RoundView:
    """The cluster as one API node saw it at ``taken_at``.

    ``quorate`` is True only when the answering node reports quorum *and* lists itself
    online: a node in a minority partition answers ``quorate: 0`` and must not be acted
    on (safety rule 2). ``online`` holds the members the answering node sees.
    """

    snapshot: ClusterSnapshot
    local_node: str
    quorate: bool
    members: tuple[str, ...]
    online: frozenset[str]
    guests: Mapping[str, Guest]
    pve_ha: frozenset[str]
    taken_at: float

    def node_info(self) -> dict[str, dict[str, int]]:
        """The core's ``get_node_info`` shape: node -> {"online": 0|1}."""
        return {n: {"online": int(n in self.online)} for n in self.members}


def view_of(snap: ClusterSnapshot) -> RoundView:
    """Pure: the view of a snapshot (see :class:`RoundView`). ApiPermanentError for a
    snapshot that is not one consistent view (see the module docstring)."""
    status = snap.status
    names = [n.name for n in status.nodes]
    members = tuple(sorted(set(names)))
    if len(members) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        _refuse(snap, f"/cluster/status lists node '{twice[0]}' twice")
    guests: dict[str, Guest] = {}
    vmids: set[int] = set()
    for g in snap.resources.guests:
        if g.vmid in vmids:
            _refuse(snap, f"/cluster/resources lists VMID {g.vmid} twice")
        vmids.add(g.vmid)
        if g.node not in members:
            _refuse(snap, f"/cluster/resources: guest {g.sid} is on '{g.node}', which is "
                          "not a cluster member")
        if not g.template:
            guests[g.sid] = g
    online = frozenset(n.name for n in status.nodes if n.online)
    local = status.local_node or (members[0] if len(members) == 1 else snap.api_host)
    if status.standalone and local in members:
        online = online | {local}
    quorate = bool(status.quorate) and local in online
    pve_ha = frozenset(r.sid for r in snap.pve_ha_resources)
    return RoundView(
        snapshot=snap,
        local_node=local,
        quorate=quorate,
        members=members,
        online=online,
        guests=MappingProxyType(guests),
        pve_ha=pve_ha,
        taken_at=snap.taken_at,
    )


def _refuse(snap: ClusterSnapshot, why: str) -> NoReturn:
    raise ApiPermanentError(f"{snap.api_host}: snapshot refused: {why}", host=snap.api_host)


def take_view(api: ClusterReads) -> RoundView:
    """Read one snapshot (3 GETs) and return its view. Raises ApiError."""
    return view_of(api.snapshot())
