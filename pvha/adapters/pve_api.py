"""The PVE API adapter: the only module that knows API paths (besides the login in
``pve_client``). One method per endpoint, each returning frozen dataclasses from
``pvha.ports``; ``PveApi`` implements the ``ClusterReads`` and ``GuestActions`` ports.

Wire rules kept here: booleans go out as 1/0 (PVE rejects ``True``), lists are joined
by the caller's rule, ``None`` parameters are left out; numbers and booleans coming back
are normalised (PVE sends 0/1 integers, loadavg as strings, and leaves keys out).
Guest actions only post: they return the task's UPID, and callers poll
:meth:`PveApi.task_status` (asked of the node named in the UPID) in later rounds; nothing
here waits for a task.
"""

from __future__ import annotations

import logging
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
    TaskStatus,
)
from pvha.settings import ApiSettings

T = TypeVar("T")
_TAG_SEP = re.compile(r"[;, ]")
log = logging.getLogger(__name__)

_UPID_RE = re.compile(
    r"^UPID:(?P<node>[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s/]+):"
    r"(?P<id>[^:\s/]*):(?P<user>[^:\s/]+):$"
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
    """Parse a UPID; raises ApiPermanentError for anything PVE would not have produced."""
    m = _UPID_RE.match(upid.strip()) if isinstance(upid, str) else None
    if m is None:
        raise ApiPermanentError(f"not a PVE task id: {upid!r}")
    return Upid(upid.strip(), m["node"], int(m["pid"], 16), int(m["starttime"], 16),
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

    def get_cluster_status(self) -> ClusterStatus:
        """``GET /cluster/status``: quorum and per-node online, from the answering node."""
        return _parsed("cluster/status", parse_cluster_status, self._get("cluster/status"), [])

    def get_cluster_resources(self) -> ClusterResources:
        """``GET /cluster/resources``: guests and nodes (one call, one consistent view)."""
        data = self._get("cluster/resources")
        return _parsed("cluster/resources", parse_cluster_resources, data, [])

    def get_node_status(self, node: str) -> NodeStatus:
        """``GET /nodes/{node}/status`` (proxied to ``node``)."""
        path = f"nodes/{_node(node)}/status"
        return _parsed(path, lambda d: parse_node_status(node, d), self._get(path), {})

    def get_guest_status(self, ref: GuestRef) -> GuestStatus:
        """``GET /nodes/{node}/{qemu|lxc}/{vmid}/status/current`` (proxied)."""
        path = f"{_guest_path(ref)}/status/current"
        return _parsed(path, lambda d: parse_guest_status(ref, d), self._get(path), {})

    def get_ha_resources(self) -> tuple[PveHaResource, ...]:
        """``GET /cluster/ha/resources``: the guests PVE's own HA manages."""
        data = self._get("cluster/ha/resources")
        return _parsed("cluster/ha/resources",
                       lambda items: tuple(parse_ha_resource(r) for r in items), data, [])

    def get_task_status(self, node: str, upid: str) -> dict[str, Any]:
        """``GET /nodes/{node}/tasks/{upid}/status`` (ask the UPID's node; proxied)."""
        data = self._get(f"nodes/{_node(node)}/tasks/{upid}/status")
        if not isinstance(data, dict):
            raise ApiPermanentError(f"unexpected answer from PVE for task {upid}: {data!r}")
        return data

    # --- actions: one method per endpoint, each returns the UPID -----------------------

    def post_start(self, ref: GuestRef) -> str:
        """``POST .../status/start``."""
        return _upid(self._post(f"{_guest_path(ref)}/status/start"))

    def post_stop(self, ref: GuestRef, timeout: int | None = None) -> str:
        """``POST .../status/stop`` (qemu takes ``timeout``; lxc has none)."""
        t = timeout if ref.kind == "qemu" else None
        return _upid(self._post(f"{_guest_path(ref)}/status/stop", timeout=t))

    def post_shutdown(self, ref: GuestRef, timeout: int | None = None,
                      force_stop: bool = False) -> str:
        """``POST .../status/shutdown`` with ``forceStop`` as 1/0."""
        path = f"{_guest_path(ref)}/status/shutdown"
        return _upid(self._post(path, timeout=timeout, forceStop=force_stop))

    def post_qemu_migrate(self, node: str, vmid: int, target: str, *, online: bool,
                          with_local_disks: bool = False) -> str:
        """``POST /nodes/{node}/qemu/{vmid}/migrate`` (live when ``online``)."""
        path = f"{_guest_path(GuestRef('qemu', vmid, node))}/migrate"
        params = {"target": _node(target), "online": online}
        if with_local_disks:
            params["with-local-disks"] = True
        return _upid(self._post(path, **params))

    def post_lxc_migrate(self, node: str, vmid: int, target: str, *, restart: bool,
                         timeout: int | None = None) -> str:
        """``POST /nodes/{node}/lxc/{vmid}/migrate``; ``restart`` = shutdown, move, start
        (``timeout`` is the shutdown timeout, PVE's default 180 s)."""
        path = f"{_guest_path(GuestRef('lxc', vmid, node))}/migrate"
        t = timeout if restart else None
        return _upid(self._post(path, target=_node(target), restart=restart, timeout=t))

    def post_migrate(self, ref: GuestRef, target: str, online: bool) -> str:
        """qemu: live when ``online``, else offline; lxc: ``online`` = restart migration."""
        if ref.kind == "qemu":
            return self.post_qemu_migrate(ref.node, ref.vmid, target, online=online)
        return self.post_lxc_migrate(ref.node, ref.vmid, target, restart=online)

    # --- tasks -------------------------------------------------------------------------

    def task_status(self, upid: str) -> TaskStatus:
        """The status of a task, from the node in its UPID (one proxied GET)."""
        info = parse_upid(upid)
        st = self.get_task_status(info.node, info.upid)
        running = st.get("status") != "stopped"
        exitstatus = None if running else str(st.get("exitstatus") or "unexpected status")
        return TaskStatus(info.upid, info.node, info.type, running, exitstatus)

    # --- ClusterReads ------------------------------------------------------------------

    def snapshot(self) -> ClusterSnapshot:
        """Cluster status, resources and PVE HA resources from one answering host;
        read again (once) if the client failed over between the reads."""
        for _ in range(2):
            status = self._quorate_status()
            host = self.client.current_host
            resources = self.get_cluster_resources()
            ha = self.get_ha_resources()
            if self.client.current_host == host:
                break
        return ClusterSnapshot(status, resources, ha, self.client.current_host, self._clock())

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


# --- parsing (pure functions, tested on PVE's documented shapes) -----------------------------


def sees_quorum(status: ClusterStatus) -> bool:
    """True when the answering node is part of a quorate membership (or standalone)."""
    if status.standalone:
        return True
    return status.quorate and any(n.local and n.online for n in status.nodes)


def parse_cluster_status(items: list[Mapping[str, Any]]) -> ClusterStatus:
    """Entries in hash order; no ``cluster`` entry means a standalone node (quorate)."""
    cluster = next((i for i in items if i.get("type") == "cluster"), None)
    nodes = tuple(
        sorted(
            (ClusterNode(str(i["name"]), _int(i.get("nodeid")) or 0, _bool(i.get("online")),
                         _bool(i.get("local")), i.get("ip") or None)
             for i in items if i.get("type") == "node"),
            key=lambda n: n.name,
        )
    )
    if cluster is None:
        return ClusterStatus(None, True, None, len(nodes), nodes)
    return ClusterStatus(str(cluster.get("name", "")), _bool(cluster.get("quorate")),
                         _int(cluster.get("version")), _int(cluster.get("nodes")) or len(nodes),
                         nodes)


def parse_cluster_resources(items: list[Mapping[str, Any]]) -> ClusterResources:
    """Nodes and guests; pools, storages, sdn and unknown types are skipped. A guest's
    status is stale when its node is not ``online`` here or the status is ``unknown``."""
    nodes = tuple(
        sorted(
            (NodeResource(str(i["node"]), str(i.get("status", "unknown")), _int(i.get("maxcpu")),
                          _int(i.get("maxmem")), _float(i.get("cpu")), _int(i.get("mem")),
                          _int(i.get("uptime")), i.get("hastate"))
             for i in items if i.get("type") == "node"),
            key=lambda n: n.node,
        )
    )
    online = {n.node for n in nodes if n.status == "online"}
    guests = []
    for i in items:
        if i.get("type") not in ("qemu", "lxc"):
            continue
        status = str(i.get("status", "unknown"))
        raw_tags = i.get("tags")
        tags = tuple(t for t in _TAG_SEP.split(str(raw_tags)) if t) if raw_tags else ()
        guests.append(Guest(
            vmid=int(i["vmid"]), kind=i["type"], node=str(i["node"]), status=status,
            status_stale=status == "unknown" or i["node"] not in online,
            name=i.get("name"), template=_bool(i.get("template")), lock=i.get("lock"),
            hastate=i.get("hastate"), tags=tags, maxcpu=_float(i.get("maxcpu")),
            maxmem=_int(i.get("maxmem")), cpu=_float(i.get("cpu")), mem=_int(i.get("mem")),
            uptime=_int(i.get("uptime")),
        ))
    guests.sort(key=lambda g: g.vmid)
    return ClusterResources(nodes, tuple(guests))


def parse_node_status(node: str, d: Mapping[str, Any]) -> NodeStatus:
    mem = d.get("memory") or {}
    return NodeStatus(node, _int(d.get("uptime")) or 0, _float(d.get("cpu")) or 0.0,
                      tuple(_float(x) or 0.0 for x in d.get("loadavg") or ()),
                      _int(mem.get("total")) or 0, _int(mem.get("used")) or 0,
                      d.get("pveversion"), d.get("kversion"))


def parse_guest_status(ref: GuestRef, d: Mapping[str, Any]) -> GuestStatus:
    ha = d.get("ha") or {}
    return GuestStatus(ref, str(d.get("status", "unknown")), d.get("qmpstatus"), d.get("name"),
                       d.get("lock"), _int(d.get("uptime")), _bool(ha.get("managed")),
                       ha.get("state"))


def parse_ha_resource(d: Mapping[str, Any]) -> PveHaResource:
    failback = d.get("failback")
    return PveHaResource(str(d["sid"]), str(d.get("type") or str(d["sid"]).split(":")[0]),
                         d.get("state"), d.get("group"), _int(d.get("max_restart")),
                         _int(d.get("max_relocate")),
                         None if failback is None else _bool(failback), d.get("comment"))


def _parsed(path: str, parse: Callable[[Any], T], data: Any, empty: Any) -> T:
    """Parse an answer; a shape PVE would not send is an ApiPermanentError, not a crash."""
    try:
        return parse(empty if data is None else data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ApiPermanentError(f"unexpected answer from PVE for /{path}: {exc!r}") from None


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


def _upid(data: Any) -> str:
    if not isinstance(data, str):
        raise ApiPermanentError(f"expected a task id from PVE, got {data!r}")
    return parse_upid(data).upid


def _bool(v: Any) -> bool:
    return v in (1, True, "1", "true")


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

