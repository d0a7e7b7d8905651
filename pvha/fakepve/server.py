"""HTTPS listeners, one per simulated node, and :class:`FakePve`, which builds the state
directory, the cluster, and the listeners, and stops them cleanly.

Every node listens on its own loopback address (``127.0.0.11``, ``.12``, ... by default)
on one shared port, because pvha's settings name API hosts and a single port, like a real
cluster on 8006. A powered-off node's listener is closed (connection refused) and its open
connections are cut; powering it on opens it again on the same address and port.

The TLS handshake runs in the connection's own thread (not in ``accept``), so one slow
client cannot stall a node. Handlers set ``disable_nagle_algorithm`` (a 40 ms stall
otherwise, test-components.md §6).
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from pvha.errors import PvhaError
from pvha.fakepve import certs, layout
from pvha.fakepve.api import Api
from pvha.fakepve.auth import Auth
from pvha.fakepve.cluster import Cluster, Node, Timing
from pvha.fakepve.faults import REASONS, Faults
from pvha.fakepve.tree import DirTree, Tree, ViewTree
from pvha.fakepve.watchdog import NodeWatchdogs
from pvha.fakepve.wire import Reply

log = logging.getLogger("pvha.fakepve")
PREFIX = "/api2/json"
CFS_DELAY = 0.05
"""Default seconds before a cfs change made on one node shows on the others: corosync's
delivery and pmxcfs's apply on a loaded LAN cluster (tens of milliseconds)."""
BMC_MARK = "# written by pvha sim serve --bmc"
_HINTS = {errno.EADDRNOTAVAIL: " (each node needs its own loopback address; Linux routes "
                               "127.0.0.0/8 to lo, other systems need aliases or --first-ip)",
          errno.EADDRINUSE: " (choose another --port)"}


class ServeError(PvhaError):
    """The simulator cannot start (address in use, no loopback alias, ...)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: NodeServer
    timeout = 60  # idle keep-alive connections are closed after this

    def version_string(self) -> str:
        return "pve-api-daemon/3.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.server.node, format % args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _serve(self) -> None:
        srv = self.server
        body = self._read_body()
        if body is None or not srv.alive():
            return self._drop()
        if srv.faults.take_drop(srv.node):
            return self._drop()
        delay = srv.faults.latency(srv.node)
        if delay > 0:
            time.sleep(delay)
        status = srv.faults.take_fail(srv.node)
        if status is not None:
            reply = Reply(status, REASONS.get(status, "Server Error"), b'{"data":null}',
                          {"Content-Type": "application/json;charset=UTF-8"})
        else:
            reply = self._answer(body)
        if not srv.alive():  # powered off while we worked: no answer
            return self._drop()
        self._write(reply)

    def _answer(self, body: bytes) -> Reply:
        url = urlsplit(self.path)
        path = unquote(url.path)
        if not path.startswith(PREFIX + "/"):
            fmt = path.split("/")[2] if path.count("/") >= 2 else ""
            return Reply(501, f"no formatter for uri {path}" if fmt else "Not Implemented")
        params = _params(url.query, body, self.headers.get("Content-Type", ""))
        headers = {k.lower(): v for k, v in self.headers.items()}
        return self.server.api.handle(self.server.node, self.command,
                                      path[len(PREFIX):].rstrip("/") or "/", params, headers)

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""
        except (OSError, ValueError):
            return None

    def _write(self, reply: Reply) -> None:
        body = reply.body
        gzipped = len(body) > 1024 and "gzip" in self.headers.get("Accept-Encoding", "")
        if gzipped:  # pveproxy compresses answers over 1 KiB when the client accepts it
            body = gzip.compress(body, compresslevel=1)
        self.send_response(reply.status, reply.reason)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        """Close without an answer (a dead node, or the ``drop`` fault)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _params(query: str, body: bytes, ctype: str) -> dict[str, Any]:
    """Form or JSON body, then the query string on top (PVE merges them that way);
    a repeated key becomes a list."""
    out: dict[str, Any] = {}
    if body and ctype.startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        if isinstance(data, dict):
            out.update({k: _jsonval(v) for k, v in data.items()})
    elif body:
        _add_pairs(out, parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    query_params: dict[str, Any] = {}
    _add_pairs(query_params, parse_qsl(query, keep_blank_values=True))
    out.update(query_params)
    return out


def _jsonval(v: Any) -> Any:
    if isinstance(v, bool):  # JSON true/false are real booleans for PVE
        return "1" if v else "0"
    return v if isinstance(v, list) else str(v)


def _add_pairs(out: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    for k, v in pairs:
        if k in out:
            out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
        else:
            out[k] = v


class NodeServer(ThreadingHTTPServer):
    """The pveproxy of one node."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], node: str, ctx: ssl.SSLContext, api: Api,
                 faults: Faults, cluster: Cluster) -> None:
        self.node, self.ctx, self.api, self.faults, self.cluster = node, ctx, api, faults, cluster
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self.closing = False
        super().__init__(addr, _Handler)

    def alive(self) -> bool:
        return not self.closing and self.cluster.nodes[self.node].power

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            conn = self.ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with self._conns_lock:
            self._conns.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        except OSError:
            pass
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def cut_connections(self) -> None:
        """Kill open keep-alive connections (the machine lost power)."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FakePve:
    """A simulated cluster behind one HTTPS listener per node. ``start`` prepares the
    state directory and opens the listeners; ``stop`` closes everything (idempotent).

    ``port=0`` picks a free port shared by all node addresses. ``ha_guests=None`` puts
    every guest under pvha's HA. Timings are in ``timing``.
    """

    def __init__(self, state_dir: Path, *, nodes: int = 3, guests: int = 4,
                 ha_guests: int | None = None, port: int = 0, first_ip: str = "127.0.0.11",
                 timing: Timing | None = None, cluster_name: str = "pvha-sim",
                 bmc: str | None = None, cfs_delay: float = CFS_DELAY,
                 agents: bool = False, agent_interval: float = 5.0) -> None:
        if not 1 <= nodes <= 32 or guests < 0:
            raise ValueError("nodes must be 1..32 and guests >= 0")
        try:
            first = ipaddress.IPv4Address(first_ip)
        except ValueError:
            raise ValueError(f"--first-ip {first_ip!r} is not an IPv4 address") from None
        last = first + (nodes - 1) if int(first) + nodes - 1 <= 0xFFFFFFFF else first
        if not (first.is_loopback and last.is_loopback) or int(first) % 256 + nodes > 255:
            raise ValueError(f"--first-ip {first_ip}: {nodes} loopback addresses needed "
                             "(127.x.y.z, not crossing .255)")
        self.state = Path(state_dir).resolve()
        self.names = [f"node{i}" for i in range(1, nodes + 1)]
        self.ips = [str(first + i) for i in range(nodes)]
        self.guests, self.ha_guests, self.port = guests, ha_guests, port
        self.port_fixed = port != 0
        self.timing = timing or Timing()
        self.cluster_name = cluster_name
        self.faults = Faults()
        if bmc is not None and bmc not in ("ipmi", "redfish"):
            raise ValueError("--bmc must be ipmi or redfish")
        self.bmc_kind = bmc
        if cfs_delay < 0:
            raise ValueError("--cfs-delay must be >= 0")
        self.cfs_delay = cfs_delay
        self.with_agents, self.agent_interval = agents, agent_interval
        self.agents: Any = None  # pvha.fakepve.agents.AgentFarm with --agents
        self.shutting_down: dict[str, str] = {}  # node -> "shutdown" | "reboot" in progress
        self.procs: Any = None  # pvha.fakepve.procs.GuestProcs with --agents
        self.pmxcfs: Any = None  # pvha.fakepve.pmxcfs.Pmxcfs when the mounts are up
        self.cfs_notice: str | None = None  # why there are no mounts (one line)
        self.bmcs: Any = None  # pvha.fakepve.bmc.BmcFarm with --bmc
        self.servers: dict[str, NodeServer] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self._lock_fd: int | None = None
        self.cluster: Cluster
        self.auth: Auth
        self.api: Api
        self.env_path: Path

    @property
    def hosts(self) -> list[str]:
        return list(self.ips)

    def cfs_root(self, node: str = "node1") -> Path:
        """``node``'s /etc/pve: its pmxcfs mount (the plain directory without FUSE)."""
        return self.cluster.tree.root(node)

    def address(self, node: str) -> tuple[str, int]:
        return self.ips[self.names.index(node)], self.port

    def start(self) -> Self:
        """Build everything and open the listeners; returns self. Raises ServeError when
        another simulator uses the same state directory."""
        self.state.mkdir(parents=True, exist_ok=True)
        self._take_state_lock()
        ca, cert, key = certs.ensure_certs(self.state, self.ips, self.names)
        self.ca_file = ca
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)
        cfs = self.state / "cfs"
        layout.make_cfs(cfs, self.names, self.guests, self.ha_guests)
        now = time.time()
        nodes = [Node(n, i + 1, ip, now) for i, (n, ip) in enumerate(zip(self.names, self.ips))]
        self.cluster = Cluster(self._mount_cfs(cfs), nodes, self.timing, self.cluster_name)
        self.auth = Auth()
        self.auth.add_token(layout.TOKEN_USER, layout.TOKEN_ID,
                            layout.read_or_make_secret(self.state / "token", make=False))
        self.auth.add_user(layout.TOKEN_USER,
                           layout.read_or_make_secret(self.state / "password", make=False))
        self.api = Api(self.cluster, self.auth, certs.fingerprint(cert))
        with self.cluster.lock:  # guests come up running, as on a cluster that was up
            for vmid, conf in self.cluster.configs().items():
                self.cluster.rt(vmid).running.add(conf.node)
                self.cluster.rt(vmid).started_at = now
            self.cluster.refresh()
        self._open_all()
        self.watchdogs = NodeWatchdogs(self.state, self.names, self.timing.watchdog_seconds,
                                       self._watchdog_reset).start()
        self.cluster.power_hooks.append(self._on_power)
        self.cluster.scheduler.start()
        self._start_bmcs(self.cfs_root(), (ca, cert, key))
        self.env_path = layout.write_env(self.state, self.ips, self.port, self.cfs_root())
        if self.with_agents:
            self._start_agents()
        return self

    def _start_agents(self) -> None:
        if self.pmxcfs is None:
            raise ServeError(f"--agents needs the pmxcfs mounts: {self.cfs_notice}")
        from pvha.fakepve.agents import AgentFarm
        from pvha.fakepve.procs import GuestProcs

        self.procs = GuestProcs(self.cluster, self.state)
        self.procs.sync()  # the guests running now have their processes before any agent
        self.procs.start()
        self.agents = AgentFarm(self.state, {n: self.cfs_root(n) for n in self.names},
                                {n: m.path for n, m in self.watchdogs.muxes.items()},
                                self.timing.watchdog_seconds, self.agent_interval,
                                {n: self.procs.run_dir(n) for n in self.names})
        for name in self.names:
            self.agents.start(name)

    def _mount_cfs(self, backing: Path) -> Tree:
        """One pmxcfs mount per node at ``nodes/NODE/pve``, seeded from ``backing`` (the
        saved tree, as pmxcfs's config.db); where FUSE cannot be used, ``backing`` itself
        as the one directory every node shares, and a one-line ``cfs_notice``."""
        store: Any = None
        try:
            from pvha.fakepve.pmxcfs import Pmxcfs

            store = Pmxcfs(self.names, self.cfs_delay,
                           lock_timeout=self.timing.cfs_lock_seconds,
                           quorum=lambda n: self.cluster.quorate(n))
            layout.seed_pmxcfs(store, backing)
            mounts = {n: store.mount(n, self.state / "nodes" / n / "pve") for n in self.names}
        except Exception as exc:  # noqa: BLE001 - no FUSE here: say so, use the directory
            if store is not None:
                store.unmount_all()
            self.cfs_notice = (f"pmxcfs mounts unavailable ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                               f"every node shares the plain directory {backing}")
            log.warning("%s", self.cfs_notice)
            return DirTree(backing)
        self.pmxcfs = store
        return ViewTree(store, mounts)

    def _start_bmcs(self, cfs: Path, cert: tuple[Path, Path, Path]) -> None:
        """With ``--bmc``: one BMC per node and a fence.cfg for them; without: remove a
        fence.cfg an earlier ``--bmc`` run wrote (its BMCs are gone)."""
        fence_cfg = cfs / "pvha" / "fence.cfg"
        if self.bmc_kind is None:
            try:
                if fence_cfg.read_text(encoding="utf-8").startswith(BMC_MARK):
                    fence_cfg.unlink()
            except OSError:
                pass
            return
        from pvha.fakepve.bmc import BmcFarm

        self.bmcs = BmcFarm(self.cluster, self.bmc_kind, self.state, cert).start()
        self.bmcs.write_fence_cfg(cfs / "pvha")

    def _take_state_lock(self) -> None:
        """One simulator per state directory: an flock held while running (released by
        the kernel if the process dies), taken before anything in DIR is rewritten."""
        fd = os.open(self.state / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ServeError(f"a simulator is already running with state dir {self.state}")
        self._lock_fd = fd

    def _open_all(self) -> None:
        """Bind every node on one port; with port 0, retry until a port is free on all
        addresses (bounded)."""
        for _attempt in range(20):
            try:
                for name in self.names:
                    self._open(name)
                return
            except OSError as exc:
                for srv in self.servers.values():
                    srv.server_close()
                self.servers.clear()
                if exc.errno != errno.EADDRINUSE or self.port_fixed:
                    raise ServeError(f"cannot listen on {exc.filename}: {exc.strerror}"
                                     + _HINTS.get(exc.errno or 0, "")) from None
                self.port = 0
        raise ServeError("no port is free on every node address")

    def _open(self, name: str) -> None:
        ip = self.ips[self.names.index(name)]
        try:
            srv = NodeServer((ip, self.port), name, self._ctx, self.api, self.faults,
                             self.cluster)
        except OSError as exc:
            exc.filename = f"{ip}:{self.port}"
            raise
        if self.port == 0:
            self.port = srv.server_address[1]
        self.servers[name] = srv
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                  name=f"fakepve-{name}", daemon=True)
        thread.start()
        self._threads[name] = thread

    def _close(self, name: str) -> None:
        srv = self.servers.pop(name, None)
        if srv is None:
            return
        srv.closing = True
        srv.shutdown()
        srv.server_close()
        srv.cut_connections()
        thread = self._threads.pop(name, None)
        if thread is not None:
            thread.join(timeout=5)

    def _on_power(self, name: str, on: bool) -> None:
        with self._lock:
            if self._stopped:
                return
            if on and name not in self.servers:
                self._open(name)
            elif not on:
                self._close(name)
            # a node's watchdog-mux runs while the node is on; off, its clients are gone
            mux = self.watchdogs.muxes[name]
            if on:
                mux.start()
                if self.agents is not None:
                    self.agents.start(name)  # the node booted: its agent's unit starts
            else:
                if self.agents is not None:
                    self.agents.kill(name)  # every process of the node dies with it
                mux.stop()

    def shut_down(self, name: str, reboot: bool) -> None:
        """``shutdown NODE`` / ``reboot NODE``: systemd's orderly shutdown of the node.
        Its agent's unit stops first (it hands the node's HA guests to the shutdown
        policy, pvha.fakepve.agents), then the guests still running stop with the node,
        which powers off (and on again after ``reboot_seconds``). Without agents, or for
        a node that is off, at once; else on a thread of its own (this returns at once)."""
        node = self.cluster.nodes[name]
        if self.agents is None or not node.power:
            self._power_down(name, reboot)
            return
        with self._lock:
            if name in self.shutting_down:
                return
            self.shutting_down[name] = "reboot" if reboot else "shutdown"

        def run() -> None:
            try:
                self.agents.shut_down(name, reboot)
                self._power_down(name, reboot)
            finally:
                with self._lock:
                    self.shutting_down.pop(name, None)

        threading.Thread(target=run, name=f"fakepve-shutdown-{name}", daemon=True).start()

    def _power_down(self, name: str, reboot: bool) -> None:
        if reboot:
            self.cluster.reboot(name)
        else:
            self.cluster.set_power(name, False)

    def _watchdog_reset(self, name: str) -> None:
        """A client of the node's watchdog-mux was not fed in time: the node resets
        (off, and on again as ``reboot NODE``)."""
        log.warning("watchdog expired on %s: resetting it", name)
        self.cluster.reboot(name)

    def stop(self) -> None:
        """Close every listener and stop the clock (idempotent)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            for name in list(self.servers):
                self._close(name)
        if self.agents is not None:
            self.agents.stop()
            self.procs.stop()
        if self.bmcs is not None:
            self.bmcs.stop()
        if hasattr(self, "watchdogs"):
            self.watchdogs.stop()
        if hasattr(self, "cluster"):
            self.cluster.scheduler.stop()
        if self.pmxcfs is not None:
            layout.save_pmxcfs(self.pmxcfs, self.state / "cfs")
            self.pmxcfs.unmount_all()
            self.pmxcfs = None
        fd = self._lock_fd
        if fd is not None:
            self._lock_fd = None
            os.close(fd)  # releases the flock

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
