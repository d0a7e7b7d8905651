"""Request routing for one answering node: auth, schema checks, proxying, handlers.

``Api.handle(node, method, path, params, headers)`` answers one request that arrived on
``node``'s listener, the way pveproxy on that node would (pve-api-notes §1.5):

1. ``POST /access/ticket`` needs no auth; everything else needs a ticket (+ CSRF on
   writes) or a token, else 401 with an empty body after ``auth_fail_delay``.
2. Parameters (query, form and path) are checked against PVE's schema: 400
   ``Parameter verification failed.``.
3. ``proxyto: node`` methods for another node are forwarded: unknown node → 500
   ``hostname lookup ...``; unreachable from here → 595 ``No route to host`` (empty body)
   after ``proxy_delay``; else the handler runs as that node.
4. Handlers read the cluster as the executing node sees it (membership, quorum, RRD),
   from one scan of the config files per request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from pvha.fakepve import actions, ha_config, schema
from pvha.fakepve.auth import Auth, AuthFailure, Identity
from pvha.fakepve.cluster import GIB, Cluster, GuestConf
from pvha.fakepve.tasks import UPID_RE, Task
from pvha.fakepve.wire import PveError, Reply, error_reply, ok, param_error

log = logging.getLogger("pvha.fakepve")
VERSION = {"version": "9.2.11", "release": "9.2", "repoid": "14a22df1"}
NODE_MAXCPU, NODE_MAXMEM, NODE_MAXDISK = 8, 32 * GIB, 100 * GIB
GUEST_MAXDISK = 8 * GIB

Params = Mapping[str, Any]


class Api:
    """The API as served by every node of ``cluster``; ``fingerprint`` is the nodes'
    certificate fingerprint (``ssl_fingerprint`` in ``/nodes``)."""

    def __init__(self, cluster: Cluster, auth: Auth, fingerprint: str = "",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.c = cluster
        self.auth = auth
        self.fingerprint = fingerprint
        self._sleep = sleep
        # requests the handlers got, by "METHOD /path/{template}" ("METHOD ?" for an
        # unknown path), for `sim ctl requests`: what pvha sends, counted
        self._requests: Counter[str] = Counter()
        self._requests_lock = threading.Lock()

    def requests(self, reset: bool = False) -> dict[str, int]:
        """Counts of the requests handled so far, by method and path template."""
        with self._requests_lock:
            out = dict(sorted(self._requests.items()))
            if reset:
                self._requests.clear()
        return out

    def handle(self, node: str, method: str, path: str, params: Params,
               headers: Mapping[str, str]) -> Reply:
        """Answer one request received by ``node`` (headers with lower-case names)."""
        try:
            return self._handle(node, method, path, params, headers)
        except PveError as err:
            if err.status == 401 and self.c.timing.auth_fail_delay > 0:
                self._sleep(self.c.timing.auth_fail_delay)
            if err.delay > 0:
                self._sleep(err.delay)
            return error_reply(err)
        except Exception as exc:  # a bug must still answer, as a PVE handler die does
            log.exception("fake PVE handler failed: %s %s", method, path)
            return error_reply(PveError(500, f"fake PVE internal error: {type(exc).__name__}"))

    def _handle(self, node: str, method: str, path: str, params: Params,
                headers: Mapping[str, str]) -> Reply:
        key, pparams, _ = schema.match(method, path)
        with self._requests_lock:
            self._requests[key or f"{method} ?"] += 1
        if key is None:
            raise PveError(501, f"Method '{method} {path}' not implemented")
        spec = schema.endpoints()[key]
        merged = {**params, **pparams}
        if key == "POST /access/ticket":
            if headers.get("authorization", "").startswith("PVEAPIToken"):
                self._refuse_token(path, headers)
            return self._login(spec, merged)
        try:
            ident = self.auth.authenticate(method, headers)
        except AuthFailure as exc:
            raise PveError(401, str(exc), empty=True) from None
        if ident.tokenid and not spec["allowtoken"]:
            raise PveError(403, f"Permission check failed (URI '{path}' not available with "
                                "API token, need proper ticket.")
        errors = schema.validate(spec["params"], merged)
        if errors:
            raise param_error(errors)
        target = self._route(node, spec, pparams, "pvedisableproxy" in headers)
        handler = _bind(self, _handler_name(key))
        with self.c.consistent():
            return handler(target, merged, ident)

    def _refuse_token(self, path: str, headers: Mapping[str, str]) -> None:
        """``allowtoken: 0`` endpoints: a valid token gets 403, a bad one 401."""
        try:
            self.auth.authenticate("POST", headers)
        except AuthFailure as exc:
            raise PveError(401, str(exc), empty=True) from None
        raise PveError(403, f"Permission check failed (URI '{path}' not available with "
                            "API token, need proper ticket.")

    def _login(self, spec: Mapping[str, Any], params: Params) -> Reply:
        errors = schema.validate(spec["params"], params)
        if errors:
            raise param_error(errors)
        user = str(params["username"])
        if "@" not in user and params.get("realm"):
            user = f"{user}@{params['realm']}"
        try:
            return ok({**self.auth.login(user, str(params["password"])),
                       "clustername": self.c.name, "cap": {}})
        except AuthFailure:
            # a failed login is a JSON 401 (unlike the auth checks of other calls)
            if self.c.timing.auth_fail_delay > 0:
                self._sleep(self.c.timing.auth_fail_delay)
            return error_reply(PveError(401, "authentication failure"))

    def _route(self, node: str, spec: Mapping[str, Any], pparams: Params,
               no_proxy: bool) -> str:
        """The node that executes the call; raises the proxy errors."""
        if spec["proxyto"] != "node":
            return node
        target = str(pparams["node"])
        if target in ("localhost", node):
            return node
        if no_proxy:  # already forwarded once (header PVEDisableProxy)
            raise PveError(500, "proxy loop detected")
        with self.c.lock:
            if target not in self.c.nodes:
                raise PveError(500, f"hostname lookup '{target}' failed - failed to get "
                                    f"address info for: {target}: Name or service not known")
            reachable = self.c.reachable(node, target)
        if not reachable:
            if self.c.timing.proxy_delay > 0:
                self._sleep(self.c.timing.proxy_delay)
            raise PveError(595, "No route to host", empty=True)
        return target

    # --- cluster-wide reads (local view) ---------------------------------------------------

    def h_version(self, node: str, p: Params, ident: Identity) -> Reply:
        return ok(dict(VERSION))

    def h_cluster_status(self, node: str, p: Params, ident: Identity) -> Reply:
        members = self.c.members(node)
        out: list[dict[str, Any]] = [{
            "type": "cluster", "id": "cluster", "name": self.c.name, "nodes": len(self.c.nodes),
            "quorate": int(self.c.quorate(node)), "version": len(self.c.nodes) + 1}]
        # hash order, as PVE sends it: clients must not rely on any order
        for n in sorted(self.c.nodes.values(), key=lambda n: hashlib.md5(n.name.encode()).digest()):
            out.append({"type": "node", "id": f"node/{n.name}", "name": n.name,
                        "nodeid": n.nodeid, "online": int(n.name in members),
                        "local": int(n.name == node), "ip": n.ip, "level": ""})
        return ok(out)

    def h_cluster_resources(self, node: str, p: Params, ident: Identity) -> Reply:
        self.c.refresh()  # take the broadcasts this node can see now
        kind = p.get("type")
        out: list[dict[str, Any]] = []
        if kind in (None, "node"):
            out += [self._node_entry(node, n, resources=True) for n in sorted(self.c.nodes)]
        if kind in (None, "vm"):
            hastate = ha_config.states(self.c.tree, node)
            out += [self._guest_entry(node, conf, hastate)
                    for _, conf in sorted(self.c.configs(node).items())]
        if kind in (None, "storage"):
            out += [self._storage_entry(node, n) for n in sorted(self.c.nodes)]
        return ok(out)

    def h_cluster_tasks(self, node: str, p: Params, ident: Identity) -> Reply:
        return ok([t.list_entry() for t in self.c.tasks.all()[:50]])

    def h_cluster_ha_resources(self, node: str, p: Params, ident: Identity) -> Reply:
        """PVE's own HA resources, from ``ha/resources.cfg`` in ``node``'s view."""
        return ok(ha_config.resources(self.c.tree, node, p.get("type")))

    def h_cluster_ha_groups(self, node: str, p: Params, ident: Identity) -> Reply:
        return ok(ha_config.groups(self.c.tree, node))

    def h_cluster_ha_rules(self, node: str, p: Params, ident: Identity) -> Reply:
        return ok(ha_config.rules(self.c.tree, node, p.get("type"), p.get("resource")))

    def h_cluster_ha_resources_sid(self, node: str, p: Params, ident: Identity) -> Reply:
        """``DELETE``: PVE's ``parse_sid`` (a bare VMID is typed from the guest list),
        then the domain-locked delete; ``sim ctl "guest VMID fail ha-delete"`` makes the
        next one of that guest fail writing resources.cfg (an error not worth a retry)."""
        sid = self._ha_sid(node, str(p["sid"]))
        self._ha_quorum(node, "delete resource")
        vmid = sid.partition(":")[2]
        if vmid.isdigit() and self.c.rt(int(vmid)).faults.pop("ha-delete", None):
            raise PveError(500, "delete resource failed: close (rename) - "
                                "'/etc/pve/ha/resources.cfg' failed - Input/output error")
        ha_config.delete_resource(self.c.tree, node, sid, p.get("purge", "1") == "1")
        return ok(None)

    def h_cluster_ha_groups_group(self, node: str, p: Params, ident: Identity) -> Reply:
        """``DELETE`` of a legacy group (refused while a resource uses it)."""
        self._ha_quorum(node, "delete ha group")
        ha_config.delete_group(self.c.tree, node, str(p["group"]))
        return ok(None)

    def _ha_sid(self, node: str, sid: str) -> str:
        if schema.HA_VMID_RE.match(sid):  # a bare VMID
            conf = self.c.configs(node).get(int(sid))
            if conf is None:
                raise PveError(500, f"unable to detect SID from VMID - VM/CT {sid} does "
                                    "not exist")
            return f"{'vm' if conf.kind == 'qemu' else 'ct'}:{sid}"
        return sid  # the schema checked its format

    def _ha_quorum(self, node: str, what: str) -> None:
        if not self.c.quorate(node):
            raise PveError(500, f"{what} failed: cfs-lock 'domain-ha' error: no quorum!")

    def h_cluster_ha_status_current(self, node: str, p: Params, ident: Identity) -> Reply:
        q = self.c.quorate(node)
        return ok([{"id": "quorum", "type": "quorum", "node": node, "quorate": int(q),
                    "status": "OK" if q else f"No quorum on node '{node}'!"}])

    def h_nodes(self, node: str, p: Params, ident: Identity) -> Reply:
        self.c.refresh()
        return ok([self._node_entry(node, n, resources=False) for n in sorted(self.c.nodes)])

    def _node_entry(self, viewer: str, name: str, *, resources: bool) -> dict[str, Any]:
        n = self.c.nodes[name]
        online = name in self.c.members(viewer)
        e: dict[str, Any] = {"id": f"node/{name}", "type": "node", "node": name,
                             "status": "online" if online else "offline"}
        if not resources:
            e["ssl_fingerprint"] = self.fingerprint
        if online or self.c.node_has_rrd(viewer, name):
            e.update(level="", maxcpu=NODE_MAXCPU, maxmem=NODE_MAXMEM, maxdisk=NODE_MAXDISK)
        if online:
            e.update(uptime=int(self.c.clock() - n.boot_time), cpu=0.02,
                     mem=self._node_mem(name), disk=12 * GIB)
        if resources:
            e["cgroup-mode"] = 2
        return e

    def _node_mem(self, name: str) -> int:
        confs = self.c.configs(name)
        used = sum(c.maxmem for v, c in confs.items() if self.c.is_running(v, name))
        return 2 * GIB + used

    def _guest_entry(self, viewer: str, conf: GuestConf,
                     hastate: Mapping[str, str]) -> dict[str, Any]:
        e: dict[str, Any] = {"id": f"{conf.kind}/{conf.vmid}", "vmid": conf.vmid,
                             "node": conf.node, "type": conf.kind}
        s = self.c.sample(viewer, conf)
        if s is None:
            e["status"] = "unknown"
        else:
            up = s.status == "running"
            e.update(status=s.status, name=conf.name,
                     template=1 if conf.values.get("template") == "1" else 0, maxcpu=conf.cpus,
                     maxmem=conf.maxmem, maxdisk=GUEST_MAXDISK, disk=0,
                     uptime=int(s.time - s.started_at) if up else 0, cpu=0.01 if up else 0,
                     mem=conf.maxmem // 2 if up else 0, memhost=conf.maxmem // 2 if up else 0,
                     netin=0, netout=0, diskread=0, diskwrite=0)
        rt = self.c.rt(conf.vmid)
        lock = rt.lock or conf.values.get("lock")
        if lock:
            e["lock"] = lock
        if conf.values.get("tags"):
            e["tags"] = conf.values["tags"]
        sid = f"{'vm' if conf.kind == 'qemu' else 'ct'}:{conf.vmid}"
        if sid in hastate:
            e["hastate"] = hastate[sid]  # pvestatd's view of PVE HA's state
        return e

    def _storage_entry(self, viewer: str, name: str) -> dict[str, Any]:
        e: dict[str, Any] = {"id": f"storage/{name}/local", "type": "storage",
                             "storage": "local", "node": name, "plugintype": "dir", "shared": 0,
                             "content": "backup,iso,vztmpl", "status": "unknown"}
        if name in self.c.members(viewer):
            e.update(status="available", disk=12 * GIB, maxdisk=NODE_MAXDISK)
        return e

    # --- per-node reads (proxied) ----------------------------------------------------------

    def h_nodes_node_status(self, node: str, p: Params, ident: Identity) -> Reply:
        n = self.c.nodes[node]
        mem = self._node_mem(node)
        return ok({
            "uptime": int(self.c.clock() - n.boot_time), "idle": 0, "cpu": 0.02, "wait": 0,
            "loadavg": ["0.12", "0.08", "0.05"],
            "cpuinfo": {"model": "pvha simulated CPU", "sockets": 1, "cpus": NODE_MAXCPU,
                        "cores": NODE_MAXCPU, "mhz": "2400.000", "user_hz": 100, "hvm": "1",
                        "flags": "", "vendor": "pvha", "family": "6"},
            "memory": {"total": NODE_MAXMEM, "used": mem, "free": NODE_MAXMEM - mem,
                       "available": NODE_MAXMEM - mem},
            "swap": {"total": 0, "used": 0, "free": 0}, "ksm": {"shared": 0},
            "rootfs": {"total": NODE_MAXDISK, "used": 12 * GIB, "free": 88 * GIB,
                       "avail": 88 * GIB},
            "pveversion": "pve-manager/9.2.11/14a22df1", "kversion": "Linux 6.14.8-2-pve",
            "current-kernel": {"sysname": "Linux", "release": "6.14.8-2-pve",
                               "version": "#1 SMP PREEMPT_DYNAMIC", "machine": "x86_64"},
            "boot-info": {"mode": "efi", "secureboot": 0},
        })

    def h_nodes_node_qemu(self, node: str, p: Params, ident: Identity) -> Reply:
        return ok(self._guest_list(node, "qemu"))

    def h_nodes_node_lxc(self, node: str, p: Params, ident: Identity) -> Reply:
        return ok(self._guest_list(node, "lxc"))

    def _guest_list(self, node: str, kind: str) -> list[dict[str, Any]]:
        return [self._vmstatus(node, conf) for _, conf in sorted(self.c.configs(node).items())
                if conf.node == node and conf.kind == kind]

    def _vmstatus(self, node: str, conf: GuestConf) -> dict[str, Any]:
        rt = self.c.rt(conf.vmid)
        up = node in rt.running
        e: dict[str, Any] = {
            "vmid": conf.vmid, "status": "running" if up else "stopped", "name": conf.name,
            **({"qmpstatus": rt.qmp or "running"} if up and conf.kind == "qemu" else {}),
            "cpus": conf.cpus, "maxmem": conf.maxmem, "maxdisk": GUEST_MAXDISK, "disk": 0,
            "mem": conf.maxmem // 2 if up else 0, "cpu": 0.01 if up else 0,
            "uptime": int(self.c.clock() - rt.started_at) if up else 0, "netin": 0,
            "netout": 0}
        if conf.kind == "lxc":
            e.update(type="lxc", maxswap=512 * 1024 * 1024, swap=0, diskread=0, diskwrite=0)
        else:
            e["memhost"] = e["mem"]
        if up:
            e["pid"] = 10_000 + conf.vmid
        lock = rt.lock or conf.values.get("lock")
        if lock:
            e["lock"] = lock
        if conf.values.get("tags"):
            e["tags"] = conf.values["tags"]
        return e

    def _conf(self, node: str, p: Params, kind: str) -> GuestConf:
        conf = self.c.config_on(node, kind, int(p["vmid"]))
        if conf is None:
            raise PveError(500, actions._missing(node, kind, int(p["vmid"])))
        return conf

    def h_guest_config(self, node: str, p: Params, ident: Identity, kind: str) -> Reply:
        conf = self._conf(node, p, kind)
        data: dict[str, Any] = {k: int(v) if v.isdigit() else v for k, v in conf.values.items()}
        data["digest"] = hashlib.sha1(conf.data).hexdigest()
        return ok(data)

    def h_guest_current(self, node: str, p: Params, ident: Identity, kind: str) -> Reply:
        conf = self._conf(node, p, kind)
        e = self._vmstatus(node, conf)
        e["ha"] = {"managed": 0}
        if kind == "qemu":
            e.setdefault("qmpstatus", e["status"])
            e.update(diskread=0, diskwrite=0)
        return ok(e)

    # --- actions (proxied) -----------------------------------------------------------------

    def h_guest_action(self, node: str, p: Params, ident: Identity, kind: str,
                       action: str) -> Reply:
        upid = actions.guest_action(self.c, node, kind, int(p["vmid"]), action, ident.full, p)
        return ok(upid)

    def h_guest_migrate(self, node: str, p: Params, ident: Identity, kind: str) -> Reply:
        return ok(actions.migrate(self.c, node, kind, int(p["vmid"]), ident.full, p))

    def h_guest_agent_ping(self, node: str, p: Params, ident: Identity, kind: str) -> Reply:
        wait = actions.agent_ping(self.c, node, int(p["vmid"]))
        if wait:
            raise PveError(500, "QEMU guest agent is not running", delay=wait)
        return ok({"result": {}})

    def h_guest_precondition(self, node: str, p: Params, ident: Identity, kind: str) -> Reply:
        return ok(actions.precondition(self.c, node, kind, int(p["vmid"]), p))

    # --- tasks (proxied) -------------------------------------------------------------------

    def _task(self, node: str, p: Params) -> Task:
        upid = str(p["upid"])
        if not UPID_RE.match(upid):
            raise param_error({"upid": "unable to parse worker upid"})
        task = self.c.tasks.get(upid)
        if task is None or task.node != node:
            raise param_error({"upid": "no such task"})
        return task

    def h_nodes_node_tasks_upid_status(self, node: str, p: Params, ident: Identity) -> Reply:
        return ok(self._task(node, p).status())

    def h_nodes_node_tasks_upid_log(self, node: str, p: Params, ident: Identity) -> Reply:
        lines, total = self._task(node, p).log_page(int(p.get("start", 0)),
                                                    int(p.get("limit", 50)))
        return ok(lines, total=total)

    def h_nodes_node_tasks(self, node: str, p: Params, ident: Identity) -> Reply:
        tasks = self.c.tasks.on_node(node)
        if "vmid" in p:
            tasks = [t for t in tasks if t.id == str(p["vmid"])]
        if "typefilter" in p:
            tasks = [t for t in tasks if t.type == p["typefilter"]]
        if p.get("source", "archive") == "active":
            tasks = [t for t in tasks if t.running]
        start, limit = int(p.get("start", 0)), int(p.get("limit", 50))
        page = tasks[start:start + limit]
        return ok([t.list_entry() for t in page], total=len(tasks))


def _handler_name(key: str) -> str:
    """``GET /nodes/{node}/qemu/{vmid}/status/current`` -> handler method name; guest
    endpoints share handlers that take the kind (and action) as arguments."""
    method, path = key.split(" ", 1)
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[0] == "nodes" and parts[2] in ("qemu", "lxc"):
        return _guest_handler(method, parts)
    return "_".join(p.strip("{}") for p in parts).replace("-", "_")


def _guest_handler(method: str, parts: list[str]) -> str:
    kind, rest = parts[2], "/".join(parts[4:])
    name = {"config": "guest_config", "status/current": "guest_current",
            "migrate": "guest_migrate" if method == "POST" else "guest_precondition",
            "agent/ping": "guest_agent_ping"}.get(rest)
    if name is None:
        name = f"guest_action:{rest.removeprefix('status/')}"
    return f"{name}:{kind}"


def _bind(api: Api, name: str) -> Callable[..., Reply]:
    base, *args = name.split(":")
    fn: Callable[..., Reply] = getattr(api, "h_" + base)
    if not args:
        return fn
    kind = args[-1]
    extra = args[:-1]
    return lambda node, p, ident: fn(node, p, ident, kind, *extra)
