"""The PVE API adapter: the only module that knows API paths (besides the login in
``pve_client``). One method per endpoint, each returning frozen dataclasses from
``pvha.ports``; ``PveApi`` implements the ``ClusterReads`` and ``GuestActions`` ports.

Wire rules kept here: booleans go out as 1/0 (PVE rejects ``True``), lists are joined
by the caller's rule, ``None`` parameters are left out.
Guest actions only post: they return the task's UPID, and callers poll
:meth:`PveApi.task_status` (asked of the node named in the UPID) in later rounds; nothing
here waits for a task.

Answers are checked by shape before they reach the core (``pve_client`` has already
checked the size and PVE's ``{"data": ...}`` envelope). The rule: every field pvha uses
from ``/cluster/status``, ``/cluster/resources``, ``/cluster/ha/resources``, task status
and guest status must have the type PVE sends: booleans the integers 0/1 (JSON
true/false pass too; ``"yes"``, ``"1"`` or a missing ``online`` do not), VMIDs integers,
node names PVE's node-name format, states strings, figures JSON numbers (integral
figures may come as floats). Tolerated because real PVE sends them: keys PVE leaves out
on some entries (pve-api-notes §2): an ``unknown`` guest's ``name`` and figures,
``lock``/``tags``/``hastate``/``pool``, a node's figures without RRD data, a node's
``ip`` (or ``null``), a standalone node's cluster entry; free text (``name``, ``tags``,
``comment``) that Perl emitted as a number; HA options from ``resources.cfg`` as digit
strings; entry types pvha does not use (storage, pool, sdn, network, anything newer) are
skipped and unknown keys ignored. ``/nodes/{node}/status`` (informational, never used
for a decision) keeps its lenient parsing. PVE's HA groups and rules (read only by
``pvha import-pve``) keep every option, unknown ones too, as section-config strings, so
the caller refuses what it cannot carry over rather than dropping it.

Anything unexpected about a node or guest means "unknown, do nothing", never "offline":
a node entry without a valid ``online``/``local``, a node or VMID listed twice, no or
several ``local: 1`` nodes, several node entries without a cluster entry, a node listed
by ``/cluster/status`` but not by ``/cluster/resources`` or the reverse, a guest whose
``node`` is not a member, an HA ``sid`` that is not ``vm:N``/``ct:N``. Such an answer is
refused as a whole with one :class:`~pvha.errors.ApiPermanentError` naming the host, the
answer and the field (``pve1: unexpected answer from PVE for /cluster/status: node
'node2': 'online' is missing, expected 0 or 1``); the watch loop then skips the round and
logs it, exactly as for an unreachable API. It is not retried and not failed over (the
host did answer; its answer is simply not usable this round). Every UPID that comes
back (the answer to a guest action, the ``upid`` of a task status) must be one PVE would
produce, for the node the request named; otherwise it is an ApiPermanentError too.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pvha.adapters.pve_client import PveClient
from pvha.errors import ApiError, ApiPermanentError
from pvha.ports import (
    NODE_NAME_RE,
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
    PveHaSection,
    TaskStatus,
)
from pvha.settings import ApiSettings

T = TypeVar("T")
_TAG_SEP = re.compile(r"[;, ]")
log = logging.getLogger(__name__)

_UPID_RE = re.compile(
    r"^UPID:(?P<node>[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s/]+):"
    r"(?P<id>[^:\s/]*):(?P<user>[^:\s/]+):"
)


@dataclass(frozen=True, slots=True)
class Upid:
    """A parsed UPID (``UPID:node:pid:pstart:starttime:type:id:user:``)."""

    upid: str
    node: str
    pid: int
    starttime: int
    type: str
    id: str
    user: str


def parse_upid(upid: str) -> Upid:
    """Parse a UPID; raises ApiPermanentError for anything PVE would not have produced
    (whitespace or a newline around it included)."""
    m = _UPID_RE.fullmatch(upid) if isinstance(upid, str) and len(upid) < 512 else None
    if m is None:
        shown = repr(upid) if len(repr(upid)) <= 80 else repr(upid)[:77] + "..."
        raise ApiPermanentError(f"not a PVE task id: {shown}")
    return Upid(upid, m["node"], int(m["pid"], 16), int(m["starttime"], 16),
                m["type"], m["id"], m["user"])


def form(**params: Any) -> dict[str, Any]:
    """Parameters as PVE wants them: bool -> 1/0, None dropped, the rest as is."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = int(value) if isinstance(value, bool) else value
    return out


class PveApi:
    """Typed PVE API over a :class:`PveClient`; implements ClusterReads and GuestActions.

    ``clock`` (wall time for snapshots) is injectable.
    """

    def __init__(self, client: PveClient, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: ApiSettings, **kw: Any) -> PveApi:
        """Build client and adapter from settings (``monotonic``/``sleep`` go to the
        client's retries, ``clock`` to the adapter)."""
        client_kw = {k: kw[k] for k in ("monotonic", "sleep") if k in kw}
        client = PveClient(settings, **client_kw)
        return cls(client, **{k: kw[k] for k in ("clock",) if k in kw})

    def _get(self, path: str, **params: Any) -> Any:
        return self.client.call("GET", path, form(**params), idempotent=True)

    def _post(self, path: str, **params: Any) -> Any:
        return self.client.call("POST", path, form(**params), idempotent=False)

    # --- reads: one method per endpoint ------------------------------------------------

    def _read(self, path: str, parse: Callable[[Any], T], empty: Any) -> T:
        data = self._get(path)
        return _parsed(path, parse, data, empty, self.client.current_host)

    def get_cluster_status(self) -> ClusterStatus:
        """``GET /cluster/status``: quorum and per-node online, from the answering node."""
        return self._read("cluster/status", parse_cluster_status, [])

    def get_cluster_resources(self) -> ClusterResources:
        """``GET /cluster/resources``: guests and nodes (one call, one consistent view)."""
        return self._read("cluster/resources", parse_cluster_resources, [])

    def get_node_status(self, node: str) -> NodeStatus:
        """``GET /nodes/{node}/status`` (proxied to ``node``)."""
        path = f"nodes/{_node(node)}/status"
        return self._read(path, lambda d: parse_node_status(node, d), {})

    def get_guest_status(self, ref: GuestRef) -> GuestStatus:
        """``GET /nodes/{node}/{qemu|lxc}/{vmid}/status/current`` (proxied)."""
        path = f"{_guest_path(ref)}/status/current"
        return self._read(path, lambda d: parse_guest_status(ref, d), None)

    def get_ha_resources(self) -> tuple[PveHaResource, ...]:
        """``GET /cluster/ha/resources``: the guests PVE's own HA manages."""
        return self._read("cluster/ha/resources", parse_ha_resources, [])

    def get_ha_groups(self) -> tuple[PveHaSection, ...]:
        """``GET /cluster/ha/groups``: PVE's legacy HA groups (none once PVE 9 migrated
        them to rules)."""
        return self._read("cluster/ha/groups", lambda d: parse_ha_sections(d, "group"), [])

    def get_ha_rules(self) -> tuple[PveHaSection, ...]:
        """``GET /cluster/ha/rules`` (PVE 9); a PVE 8 server, which has no rules and
        answers 501 for the path, gives none."""
        try:
            return self._read("cluster/ha/rules", lambda d: parse_ha_sections(d, "rule"), [])
        except ApiPermanentError as exc:
            if exc.status == 501:
                return ()
            raise

    def delete_ha_resource(self, sid: str) -> None:
        """``DELETE /cluster/ha/resources/{sid}``: PVE's own HA stops managing the guest
        (PVE 9 also takes it out of its rules). Not retried: a repeated delete of a
        resource that is gone is an error."""
        if not isinstance(sid, str) or not _SID_RE.fullmatch(sid):
            raise ValueError(f"invalid HA resource id {sid!r}")
        self.client.call("DELETE", f"cluster/ha/resources/{sid}", {}, idempotent=False)

    def delete_ha_group(self, group: str) -> None:
        """``DELETE /cluster/ha/groups/{group}`` (PVE refuses it while a resource uses it)."""
        if not isinstance(group, str) or not _CONFIGID_RE.fullmatch(group):
            raise ValueError(f"invalid HA group id {group!r}")
        self.client.call("DELETE", f"cluster/ha/groups/{group}", {}, idempotent=False)

    def get_task_status(self, node: str, upid: str) -> TaskStatus:
        """``GET /nodes/{node}/tasks/{upid}/status`` (ask the UPID's node; proxied)."""
        info = parse_upid(upid)
        if info.node != node:
            raise ApiPermanentError(f"task {upid} runs on '{info.node}', not on '{node}'")
        path = f"nodes/{_node(node)}/tasks/{upid}/status"
        return self._read(path, lambda d: parse_task_status(upid, d), None)

    # --- actions: one method per endpoint, each returns the UPID -----------------------

    def _post_task(self, node: str, path: str, **params: Any) -> str:
        """POST a guest action; its answer must be a UPID of a task on ``node`` (PVE runs
        the task on the node in the path), else ApiPermanentError. Not retried: the
        action was delivered."""
        data = self._post(path, **params)
        host = self.client.current_host
        if not isinstance(data, str):
            raise _refused(path, f"expected a task id (UPID), got {_wrong_value(data)}", host)
        try:
            info = parse_upid(data)
        except ApiPermanentError as exc:
            raise _refused(path, str(exc), host) from None
        if info.node != node:
            raise _refused(path, f"the task id names node '{info.node}', not '{node}'", host)
        return info.upid

    def post_start(self, ref: GuestRef) -> str:
        """``POST .../status/start``."""
        return self._post_task(ref.node, f"{_guest_path(ref)}/status/start")

    def post_stop(self, ref: GuestRef, timeout: int | None = None) -> str:
        """``POST .../status/stop`` (qemu takes ``timeout``; lxc has none)."""
        t = timeout if ref.kind == "qemu" else None
        return self._post_task(ref.node, f"{_guest_path(ref)}/status/stop", timeout=t)

    def post_shutdown(self, ref: GuestRef, timeout: int | None = None,
                      force_stop: bool = False) -> str:
        """``POST .../status/shutdown`` with ``forceStop`` as 1/0."""
        path = f"{_guest_path(ref)}/status/shutdown"
        return self._post_task(ref.node, path, timeout=timeout, forceStop=force_stop)

    def post_qemu_migrate(self, node: str, vmid: int, target: str, *, online: bool,
                          with_local_disks: bool = False) -> str:
        """``POST /nodes/{node}/qemu/{vmid}/migrate`` (live when ``online``)."""
        path = f"{_guest_path(GuestRef('qemu', vmid, node))}/migrate"
        params = {"target": _node(target), "online": online}
        if with_local_disks:
            params["with-local-disks"] = True
        return self._post_task(node, path, **params)

    def post_lxc_migrate(self, node: str, vmid: int, target: str, *, restart: bool,
                         timeout: int | None = None) -> str:
        """``POST /nodes/{node}/lxc/{vmid}/migrate``; ``restart`` = shutdown, move, start
        (``timeout`` is the shutdown timeout, PVE's default 180 s)."""
        path = f"{_guest_path(GuestRef('lxc', vmid, node))}/migrate"
        t = timeout if restart else None
        return self._post_task(node, path, target=_node(target), restart=restart, timeout=t)

    def post_migrate(self, ref: GuestRef, target: str, online: bool) -> str:
        """qemu: live when ``online``, else offline; lxc: ``online`` = restart migration."""
        if ref.kind == "qemu":
            return self.post_qemu_migrate(ref.node, ref.vmid, target, online=online)
        return self.post_lxc_migrate(ref.node, ref.vmid, target, restart=online)

    def agent_ping(self, ref: GuestRef) -> None:
        """``POST /nodes/{node}/qemu/{vmid}/agent/ping``: returns when the QEMU guest agent
        answered. PVE's refusals come as ApiPermanentError with PVE's text (500 ``No QEMU
        guest agent configured``, ``VM <vmid> not running``, after the agent's timeout
        ``QEMU guest agent is not running``); an answer that is not PVE's ``{"result":
        ...}`` object is refused the same way. Not retried: a ping that got no answer is
        a failed ping, and the caller pings again later."""
        if ref.kind != "qemu":
            raise ValueError(f"a container has no QEMU guest agent: {ref.kind}/{ref.vmid}")
        path = f"{_guest_path(ref)}/agent/ping"
        data = self._post(path)
        if not isinstance(data, dict) or "result" not in data:
            raise _refused(path, f"expected an object with 'result', got {_wrong_value(data)}",
                           self.client.current_host)

    # --- tasks -------------------------------------------------------------------------

    def task_status(self, upid: str) -> TaskStatus:
        """The status of a task, from the node in its UPID (one proxied GET)."""
        return self.get_task_status(parse_upid(upid).node, upid)

    # --- ClusterReads ------------------------------------------------------------------

    def snapshot(self) -> ClusterSnapshot:
        """Cluster status, resources and PVE HA resources from one answering host;
        read again (once) if the client failed over between the reads. Each answer is
        checked by shape, then the two node lists against each other
        (:func:`check_consistent`); any mismatch refuses the snapshot (ApiPermanentError)."""
        for _ in range(2):
            status = self._quorate_status()
            host = self.client.current_host
            resources = self.get_cluster_resources()
            ha = self.get_ha_resources()
            if self.client.current_host == host:
                break
        host = self.client.current_host
        try:
            check_consistent(status, resources)
        except ShapeError as exc:
            raise ApiPermanentError(f"{host}: inconsistent answers from PVE: {exc}",
                                    host=host, request_sent=True) from None
        return ClusterSnapshot(status, resources, ha, host, self._clock())

    def _quorate_status(self) -> ClusterStatus:
        """``/cluster/status`` from the current host; if that host sees no quorum (it is
        cut off in a minority partition), ask the other configured hosts, one GET each,
        and go on with the first that does. Nothing is ever decided from a minority view
        (safety rule 2); this only lets a watcher reach the majority through another host.
        If no host sees quorum, the first answer is returned and the caller does nothing."""
        status = self.get_cluster_status()
        if sees_quorum(status) or len(self.client.hosts) < 2:
            return status
        first = self.client.current_host
        for host in self.client.hosts:
            if host == first:
                continue
            self.client.prefer_host(host)
            try:
                other = self.get_cluster_status()
            except ApiError:
                continue
            if sees_quorum(other):
                log.warning("API host %s sees no quorum; continuing with %s", first,
                            self.client.current_host)
                return other
        self.client.prefer_host(first)
        return status

    def node_status(self, node: str) -> NodeStatus:
        return self.get_node_status(node)

    def guest_status(self, ref: GuestRef) -> GuestStatus:
        return self.get_guest_status(ref)


# --- parsing and shape checks (pure functions, tested on PVE's documented shapes) -------------


class ShapeError(ValueError):
    """A ``data`` shape PVE would not send; the text names the entry and the field."""


def sees_quorum(status: ClusterStatus) -> bool:
    """True when the answering node is part of a quorate membership (or standalone)."""
    if status.standalone:
        return True
    return status.quorate and any(n.local and n.online for n in status.nodes)


def parse_cluster_status(items: Any) -> ClusterStatus:
    """Entries in hash order; no ``cluster`` entry means a standalone node (quorate).

    Refused (ShapeError): not a list of objects; an entry without a string ``type``; two
    cluster entries; a node entry whose ``name`` is not a node name, or whose ``online``
    or ``local`` is missing or not 0/1; a node listed twice; no node entry, or not exactly
    one with ``local: 1``; no cluster entry with more than one node entry (only a
    standalone node has none); a cluster entry whose ``quorate`` is missing or not 0/1.
    Entries of other types are skipped."""
    cluster: Mapping[str, Any] | None = None
    nodes: dict[str, ClusterNode] = {}
    for index, e in enumerate(_entries(items)):
        kind = _type(e, index)
        if kind == "cluster":
            if cluster is not None:
                raise ShapeError(f"entry {index}: a second cluster entry")
            cluster = e
        elif kind == "node":
            name = _node_name(e, "name", f"entry {index} (type node)")
            where = f"node '{name}'"
            if name in nodes:
                raise ShapeError(f"{where} is listed twice")
            nodes[name] = ClusterNode(
                name, _opt_int(e, "nodeid", where) or 0, _req_bool(e, "online", where),
                _req_bool(e, "local", where), _opt_str(e, "ip", where) or None)
    if not nodes:
        raise ShapeError("no node entry (the answering node always lists itself)")
    local = [n.name for n in nodes.values() if n.local]
    if len(local) != 1:
        raise ShapeError(f"{len(local)} node entries have 'local': 1, expected exactly one "
                         "(the answering node)")
    ordered = tuple(sorted(nodes.values(), key=lambda n: n.name))
    if cluster is None:
        if len(nodes) > 1:
            raise ShapeError(f"no cluster entry but {len(nodes)} node entries (only a "
                             "standalone node has no cluster entry)")
        return ClusterStatus(None, True, None, 1, ordered)
    where = "cluster entry"
    return ClusterStatus(_opt_str(cluster, "name", where) or "",
                         _req_bool(cluster, "quorate", where),
                         _opt_int(cluster, "version", where),
                         _opt_int(cluster, "nodes", where) or len(nodes), ordered)


def parse_cluster_resources(items: Any) -> ClusterResources:
    """Nodes and guests; pools, storages, sdn and unknown types are skipped. A guest's
    status is stale when its node is not ``online`` here or the status is ``unknown``.

    Refused (ShapeError): not a list of objects; an entry without a string ``type``; a
    node entry whose ``node`` is not a node name or whose ``status`` is not a string; a
    guest whose ``vmid`` is not an integer >= 1, whose ``node`` is not a node name or
    whose ``status`` is not a string; a node or a VMID listed twice (qemu and lxc share
    one VMID space); an optional field of the wrong type (``template`` 0/1; ``lock``,
    ``hastate`` strings; ``name``, ``tags`` strings or numbers; the usage figures JSON
    numbers). Keys PVE leaves out (``name`` and the figures of an ``unknown`` guest,
    ``lock``, ``tags``, ``hastate``; ``maxcpu``... of a node without RRD data) may be
    absent."""
    rows = _entries(items)
    nodes: dict[str, NodeResource] = {}
    guest_rows: list[tuple[int, str, Mapping[str, Any]]] = []
    for index, e in enumerate(rows):
        kind = _type(e, index)
        if kind == "node":
            name = _node_name(e, "node", f"entry {index} (type node)")
            where = f"node '{name}'"
            if name in nodes:
                raise ShapeError(f"{where} is listed twice")
            nodes[name] = NodeResource(
                name, _req_str(e, "status", where), _opt_int_num(e, "maxcpu", where),
                _opt_int_num(e, "maxmem", where), _opt_num(e, "cpu", where),
                _opt_int_num(e, "mem", where), _opt_int_num(e, "uptime", where),
                _opt_str(e, "hastate", where))
        elif kind == "qemu" or kind == "lxc":
            guest_rows.append((index, kind, e))
    online = {n.node for n in nodes.values() if n.status == "online"}
    guests: dict[int, Guest] = {}
    for index, kind, e in guest_rows:
        vmid = e.get("vmid")
        if type(vmid) is not int or vmid < 1:
            raise ShapeError(_wrong(f"entry {index} (type {kind})", "vmid", vmid,
                                    "a VMID (an integer >= 1)"))
        where = f"guest {kind}/{vmid}"
        if vmid in guests:
            raise ShapeError(f"{where}: VMID {vmid} is listed twice")
        node = _node_name(e, "node", where)
        status = _req_str(e, "status", where)
        raw_tags = _opt_text(e, "tags", where)
        guests[vmid] = Guest(
            vmid=vmid, kind=kind, node=node, status=status,  # type: ignore[arg-type]
            status_stale=status == "unknown" or node not in online,
            name=_opt_text(e, "name", where), template=_opt_bool(e, "template", where),
            lock=_opt_str(e, "lock", where), hastate=_opt_str(e, "hastate", where),
            tags=tuple(t for t in _TAG_SEP.split(raw_tags) if t) if raw_tags else (),
            maxcpu=_opt_num(e, "maxcpu", where), maxmem=_opt_int_num(e, "maxmem", where),
            cpu=_opt_num(e, "cpu", where), mem=_opt_int_num(e, "mem", where),
            uptime=_opt_int_num(e, "uptime", where),
        )
    return ClusterResources(tuple(sorted(nodes.values(), key=lambda n: n.node)),
                            tuple(guests[v] for v in sorted(guests)))


def check_consistent(status: ClusterStatus, resources: ClusterResources) -> None:
    """``/cluster/status`` and ``/cluster/resources`` of one answering node must name the
    same nodes (both list every node of corosync's nodelist, offline ones too), and every
    guest must belong to one of them. ShapeError otherwise: a node one answer lists and
    the other does not is unknown, never offline."""
    members = {n.name for n in status.nodes}
    listed = {n.node for n in resources.nodes}
    if members - listed:
        raise ShapeError(f"node {_names(members - listed)} is in /cluster/status but not in "
                         "/cluster/resources")
    if listed - members:
        raise ShapeError(f"node {_names(listed - members)} is in /cluster/resources but not "
                         "in /cluster/status")
    for g in resources.guests:
        if g.node not in members:
            raise ShapeError(f"/cluster/resources: guest {g.kind}/{g.vmid}: 'node' is "
                             f"'{g.node}', which is not a cluster member")


def parse_node_status(node: str, d: Mapping[str, Any]) -> NodeStatus:
    mem = d.get("memory") or {}
    return NodeStatus(node, _int(d.get("uptime")) or 0, _float(d.get("cpu")) or 0.0,
                      tuple(_float(x) or 0.0 for x in d.get("loadavg") or ()),
                      _int(mem.get("total")) or 0, _int(mem.get("used")) or 0,
                      d.get("pveversion"), d.get("kversion"))


def parse_guest_status(ref: GuestRef, d: Any) -> GuestStatus:
    """``status/current``. Refused (ShapeError): not an object; ``status`` missing or not
    a string; ``vmid``, when sent, another guest's; ``qmpstatus``, ``lock`` not strings;
    ``uptime`` not a number; ``ha`` not an object, its ``managed`` not 0/1 or its
    ``state`` not a string. ``name`` may be a string or a number; absent keys are fine."""
    if not isinstance(d, dict):
        raise ShapeError(f"expected an object, got {_a(d)}")
    where = f"guest {ref.kind}/{ref.vmid}"
    vmid = d.get("vmid")
    if vmid is not None and not (type(vmid) is int and vmid == ref.vmid
                                 or isinstance(vmid, str) and vmid == str(ref.vmid)):
        raise ShapeError(_wrong(where, "vmid", vmid, f"{ref.vmid} (the guest asked about)"))
    ha = d.get("ha")
    if ha is None:
        ha = {}
    elif not isinstance(ha, dict):
        raise ShapeError(_wrong(where, "ha", ha, "an object"))
    return GuestStatus(ref, _req_str(d, "status", where), _opt_str(d, "qmpstatus", where),
                       _opt_text(d, "name", where), _opt_str(d, "lock", where),
                       _opt_int_num(d, "uptime", where), _opt_bool(ha, "managed", where + ", ha"),
                       _opt_str(ha, "state", where + ", ha"))


def parse_ha_resources(items: Any) -> tuple[PveHaResource, ...]:
    """``/cluster/ha/resources``. Refused (ShapeError): not a list of objects; a ``sid``
    that is not ``vm:<vmid>`` or ``ct:<vmid>`` (pvha must know exactly which guests PVE's
    HA manages); a sid listed twice; a ``type`` other than the sid's; the options of the
    wrong type. ``max_restart``, ``max_relocate`` and ``failback`` come from
    ``resources.cfg`` through PVE's section config and may arrive as digit strings."""
    out: dict[str, PveHaResource] = {}
    for index, e in enumerate(_entries(items)):
        r = parse_ha_resource(e, index)
        if r.sid in out:
            raise ShapeError(f"resource '{r.sid}' is listed twice")
        out[r.sid] = r
    return tuple(out.values())


def parse_ha_resource(d: Any, index: int = 0) -> PveHaResource:
    if not isinstance(d, dict):
        raise ShapeError(f"entry {index}: expected an object, got {_a(d)}")
    sid = d.get("sid")
    m = _SID_RE.fullmatch(sid) if isinstance(sid, str) else None
    if m is None or not isinstance(sid, str):
        raise ShapeError(_wrong(f"entry {index}", "sid", sid, "vm:<vmid> or ct:<vmid>"))
    where = f"resource '{sid}'"
    kind = _opt_str(d, "type", where)
    if kind is not None and kind != m[1]:
        raise ShapeError(_wrong(where, "type", kind, f"'{m[1]}' (as in the sid)"))
    failback = _opt_cfg_int(d, "failback", where)
    if failback not in (None, 0, 1):
        raise ShapeError(_wrong(where, "failback", d.get("failback"), "0 or 1"))
    return PveHaResource(sid, m[1], _opt_str(d, "state", where), _opt_str(d, "group", where),
                         _opt_cfg_int(d, "max_restart", where),
                         _opt_cfg_int(d, "max_relocate", where),
                         None if failback is None else bool(failback),
                         _opt_text(d, "comment", where))


_API_FIELDS = ("type", "digest", "order", "errors")


def parse_ha_sections(items: Any, id_key: str) -> tuple[PveHaSection, ...]:
    """``/cluster/ha/groups`` (``id_key`` ``group``) or ``/cluster/ha/rules`` (``rule``).
    Refused (ShapeError): not a list of objects; an id that is not a PVE config id, or
    listed twice; a rule without a string ``type`` (groups have ``type: group``); an
    option that is not a string or an integer (section-config values, booleans as 0/1).
    Every other key is kept as an option, so a key pvha does not know reaches the caller
    (which refuses what it cannot carry over) instead of being dropped."""
    out: dict[str, PveHaSection] = {}
    for index, e in enumerate(_entries(items)):
        ident = e.get(id_key)
        if not isinstance(ident, str) or not _CONFIGID_RE.fullmatch(ident):
            raise ShapeError(_wrong(f"entry {index}", id_key, ident, "a PVE config id"))
        where = f"{id_key} '{ident}'"
        if ident in out:
            raise ShapeError(f"{where} is listed twice")
        kind = _req_str(e, "type", where) if id_key == "rule" else "group"
        if id_key == "group" and _opt_str(e, "type", where) not in (None, "group"):
            raise ShapeError(_wrong(where, "type", e.get("type"), "'group'"))
        options = []
        for key, value in e.items():
            if key in _API_FIELDS or key == id_key:
                continue
            if type(value) is int or type(value) is bool:
                value = str(int(value))
            if type(value) is not str:
                raise ShapeError(_wrong(where, key, value, "a string or an integer"))
            options.append((key, value))
        out[ident] = PveHaSection(kind, ident, tuple(options))
    return tuple(out.values())


def parse_task_status(upid: str, d: Any) -> TaskStatus:
    """``/nodes/{node}/tasks/{upid}/status``. Refused (ShapeError): not an object;
    ``status`` missing or not ``running``/``stopped``; ``upid``, when sent, another
    task's; ``exitstatus`` not a string. A stopped task without ``exitstatus`` ended
    unexpectedly (its node died under it)."""
    info = parse_upid(upid)
    if not isinstance(d, dict):
        raise ShapeError(f"expected an object, got {_a(d)}")
    where = "task"
    status = _req_str(d, "status", where)
    if status not in ("running", "stopped"):
        raise ShapeError(_wrong(where, "status", status, "'running' or 'stopped'"))
    answered = d.get("upid")
    if answered is not None and answered != info.upid:
        raise ShapeError(_wrong(where, "upid", answered, "the task asked about"))
    exitstatus = _opt_str(d, "exitstatus", where)
    running = status == "running"
    return TaskStatus(info.upid, info.node, info.type, running,
                      None if running else exitstatus or "unexpected status")


def _parsed(path: str, parse: Callable[[Any], T], data: Any, empty: Any,
            host: str | None = None) -> T:
    """Parse an answer; a shape PVE would not send is an ApiPermanentError naming the
    answer and the field, not a crash."""
    try:
        return parse(empty if data is None else data)
    except ShapeError as exc:
        raise _refused(path, str(exc), host) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _refused(path, repr(exc), host) from None


def _refused(path: str, detail: str, host: str | None) -> ApiPermanentError:
    prefix = f"{host}: " if host else ""
    return ApiPermanentError(f"{prefix}unexpected answer from PVE for /{path}: {detail}",
                             host=host, request_sent=True)


_SID_RE = re.compile(r"(vm|ct):([1-9][0-9]*)")
_CONFIGID_RE = re.compile(r"[a-z][a-z0-9_-]+", re.IGNORECASE)


def _entries(items: Any) -> list[Mapping[str, Any]]:
    if not isinstance(items, list):
        raise ShapeError(f"expected a list, got {_a(items)}")
    for index, e in enumerate(items):
        if not isinstance(e, dict):
            raise ShapeError(f"entry {index}: expected an object, got {_a(e)}")
    return items


def _type(e: Mapping[str, Any], index: int) -> str:
    kind = e.get("type")
    if not isinstance(kind, str):
        raise ShapeError(_wrong(f"entry {index}", "type", kind, "a string"))
    return kind


def _node_name(e: Mapping[str, Any], key: str, where: str) -> str:
    v = e.get(key)
    if isinstance(v, str) and NODE_NAME_RE.match(v):
        return v
    raise ShapeError(_wrong(where, key, v, "a node name"))


def _req_bool(e: Mapping[str, Any], key: str, where: str) -> bool:
    """PVE booleans are the integers 0/1 (JSON true/false accepted too); nothing else."""
    v = e.get(key)
    if v is True or v is False:
        return v
    if type(v) is int and (v == 0 or v == 1):
        return v == 1
    raise ShapeError(_wrong(where, key, v, "0 or 1"))


def _opt_bool(e: Mapping[str, Any], key: str, where: str) -> bool:
    v = e.get(key)
    if v is None or v == 0 and type(v) is int:
        return False
    return _req_bool(e, key, where)


def _req_str(e: Mapping[str, Any], key: str, where: str) -> str:
    v = e.get(key)
    if type(v) is str:
        return v
    raise ShapeError(_wrong(where, key, v, "a string"))


def _opt_str(e: Mapping[str, Any], key: str, where: str) -> str | None:
    v = e.get(key)
    if v is None or type(v) is str:
        return v
    raise ShapeError(_wrong(where, key, v, "a string"))


def _opt_text(e: Mapping[str, Any], key: str, where: str) -> str | None:
    """Free text (names, tags, comments): a string, or a number Perl emitted as one."""
    v = e.get(key)
    kind = type(v)
    if v is None or kind is str:
        return v
    if kind is int or kind is float:
        return str(v)
    raise ShapeError(_wrong(where, key, v, "a string"))


def _opt_int(e: Mapping[str, Any], key: str, where: str) -> int | None:
    v = e.get(key)
    if v is None or type(v) is int:
        return v
    raise ShapeError(_wrong(where, key, v, "an integer"))


def _opt_num(e: Mapping[str, Any], key: str, where: str) -> float | None:
    v: Any = e.get(key)
    kind = type(v)
    if kind is float:
        return v  # type: ignore[no-any-return]
    if kind is int:
        return float(v)
    if v is None:
        return None
    raise ShapeError(_wrong(where, key, v, "a number"))


def _opt_int_num(e: Mapping[str, Any], key: str, where: str) -> int | None:
    """A count or size: a JSON number (Perl may emit an integral figure as 1.0e9)."""
    v: Any = e.get(key)
    kind = type(v)
    if kind is int:
        return v  # type: ignore[no-any-return]
    if v is None:
        return None
    if kind is float and math.isfinite(v):
        return int(v)
    raise ShapeError(_wrong(where, key, v, "a number"))


def _opt_cfg_int(e: Mapping[str, Any], key: str, where: str) -> int | None:
    """A section-config integer: a JSON integer or a string of digits."""
    v = e.get(key)
    if v is None or type(v) is int:
        return v
    if isinstance(v, str) and v.isdigit() and v.isascii():
        return int(v)
    raise ShapeError(_wrong(where, key, v, "an integer"))


def _wrong(where: str, key: str, value: Any, expected: str) -> str:
    if value is None:
        return f"{where}: '{key}' is missing, expected {expected}"
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{where}: '{key}' is {shown} ({_a(value)}), expected {expected}"


def _a(value: Any) -> str:
    """``a string``, ``an object``: the JSON type of ``value`` with its article."""
    kind = _kind(value)
    return f"an {kind}" if kind == "object" else f"a {kind}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def _names(names: set[str]) -> str:
    return ", ".join(f"'{n}'" for n in sorted(names))


def _guest_path(ref: GuestRef) -> str:
    if ref.kind not in ("qemu", "lxc"):
        raise ValueError(f"unknown guest kind {ref.kind!r}")
    if not isinstance(ref.vmid, int) or isinstance(ref.vmid, bool) or ref.vmid < 1:
        raise ValueError(f"invalid vmid {ref.vmid!r}")
    return f"nodes/{_node(ref.node)}/{ref.kind}/{ref.vmid}"


def _node(node: str) -> str:
    """Node names go into URL paths: only PVE's node-name format is accepted."""
    if not isinstance(node, str) or not NODE_NAME_RE.match(node):
        raise ValueError(f"invalid node name {node!r}")
    return node


def _wrong_value(value: Any) -> str:
    shown = repr(value)
    return f"{shown if len(shown) <= 60 else shown[:57] + '...'} ({_a(value)})"


def _int(v: Any) -> int | None:
    if type(v) is int:  # the common case, thousands of times a round
        return v
    try:
        return None if v is None or v == "" else int(v)
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    kind = type(v)
    if kind is float:
        return v  # type: ignore[no-any-return]
    if kind is int:
        return float(v)
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None

