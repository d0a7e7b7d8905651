"""One BMC emulator per simulated node (``pvha sim serve --bmc ipmi|redfish``).

Theory of operation. Each node of the fake cluster gets a BMC on loopback whose power
state *is* that node's power in :class:`~pvha.fakepve.cluster.Cluster`: a BMC "off"
calls ``Cluster.set_power(node, False)`` (the node's listener closes, its guests die,
as after a power cut), "on" boots it, and a status read returns the node's power now.
A node that hangs (``network NODE off``) keeps its power on: only its BMC can prove
it off.

* ``ipmi``: pyghmi BMCs in this process (:func:`pvha.fakepve.bmc_emulators.make_bmc`), one
  UDP port each on ``127.0.0.1``, served by one pyghmi event-loop thread. Driven by
  ``fence_ipmilan`` (``lanplus``).
* ``redfish``: a minimal Redfish service in this process, over HTTPS on ``127.0.0.1``
  (the fake's certificate, which names 127.0.0.1), one ``ComputerSystem`` per node at
  ``/redfish/v1/Systems/<node>``, HTTP basic auth; driven by pvha's native
  ``pvha_redfish`` backend. sushy-emulator is not used here: its fake driver applies a
  power change 1–11 s later at random, and it keeps its own power state in sqlite,
  which cannot be wired to the fake cluster's node power without a libvirt driver.

``write_fence_cfg`` writes ``DIR/cfs/pvha/fence.cfg`` for the BMCs; the BMC password
lives in ``DIR/bmc-password`` (0600) and fence.cfg references it with
``password_file=``. ``bmc NODE fail|work`` (control channel) makes one BMC stop / start
answering: the IPMI BMC's socket closes, the Redfish system drops connections unanswered.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import secrets
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pvha.fakepve.cluster import Cluster
from pvha.fakepve.layout import write_secret

log = logging.getLogger("pvha.fakepve.bmc")

KINDS = ("ipmi", "redfish")
BMC_USER = "admin"
PASSWORD_FILE = "bmc-password"
_SYSTEM_RE = re.compile(r"^/redfish/v1/Systems/([A-Za-z0-9-]+)(/Actions/ComputerSystem\.Reset)?$")


class BmcFarm:
    """The BMCs of every node of ``cluster``; ``start`` opens them, ``stop`` closes them
    (idempotent). ``endpoints`` maps node -> (address, port) once started."""

    def __init__(self, cluster: Cluster, kind: str, state: Path,
                 cert: tuple[Path, Path, Path] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"--bmc must be one of {', '.join(KINDS)}")
        self.cluster, self.kind, self.state = cluster, kind, state
        self.cert = cert  # (ca, server cert, key) for redfish
        self.password = _bmc_password(state / PASSWORD_FILE)
        self.endpoints: dict[str, tuple[str, int]] = {}
        self.failed: set[str] = set()
        self.events: list[tuple[str, str]] = []  # (node, action) in order
        self._ipmi: dict[str, Any] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._redfish: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # --- power, as every BMC sees it --------------------------------------------------

    def power_of(self, node: str) -> str:
        with self.cluster.lock:
            return "on" if self.cluster.nodes[node].power else "off"

    def set_power(self, node: str, on: bool) -> None:
        with self._lock:
            self.events.append((node, "on" if on else "off"))
        log.info("bmc of %s: power %s", node, "on" if on else "off")
        self.cluster.set_power(node, on)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> BmcFarm:
        if self.kind == "ipmi":
            from pvha.fakepve.bmc_emulators import reserve_wakeup_socket, serve_bmcs

            reserve_wakeup_socket()
            for node in sorted(self.cluster.nodes):
                self._open_ipmi(node, 0)
            thread = threading.Thread(target=serve_bmcs, args=(self._stop, 0.2),
                                      name="fakepve-bmc-ipmi", daemon=True)
            thread.start()
            self._threads.append(thread)
        else:
            self._start_redfish()
        return self

    def _open_ipmi(self, node: str, port: int) -> None:
        from pvha.fakepve.bmc_emulators import PowerHooks, make_bmc

        hooks = PowerHooks(lambda: self.power_of(node), lambda: self.set_power(node, True),
                           lambda: self.set_power(node, False))
        server = make_bmc(BMC_USER, self.password, port=port, address="127.0.0.1",
                          hooks=hooks)
        # a failed BMC keeps its port but answers nothing: new sessions are ignored
        answer = server.sessionless_data

        def sessionless_data(data: Any, sockaddr: Any) -> None:
            if node not in self.failed:
                answer(data, sockaddr)

        server.sessionless_data = sessionless_data
        self._ipmi[node] = server
        self.endpoints[node] = ("127.0.0.1", int(server.port))

    def _start_redfish(self) -> None:
        assert self.cert is not None, "redfish BMCs need the fake's certificate"
        _ca, cert, key = self.cert
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server = _RedfishServer(("127.0.0.1", 0), self, ctx)
        self._redfish = server
        port = int(server.server_address[1])
        for node in sorted(self.cluster.nodes):
            self.endpoints[node] = ("127.0.0.1", port)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="fakepve-bmc-redfish", daemon=True)
        thread.start()
        self._threads.append(thread)

    def set_working(self, node: str, working: bool) -> None:
        """``bmc NODE work|fail``: a failed BMC does not answer at all."""
        if node not in self.cluster.nodes:
            raise KeyError(node)
        with self._lock:
            was_failed = node in self.failed
            if working:
                self.failed.discard(node)
            else:
                self.failed.add(node)
        if self.kind == "ipmi" and not working and not was_failed:
            _drop_ipmi_sessions(int(self.endpoints[node][1]))

    def stop(self) -> None:
        """Close every BMC and join the serving threads (bounded)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._ipmi:
            from pvha.fakepve.bmc_emulators import close_bmc

            for server in self._ipmi.values():
                close_bmc(server)
            self._ipmi.clear()
        if self._redfish is not None:
            self._redfish.shutdown()
            self._redfish.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def describe(self) -> dict[str, Any]:
        """For ``ctl status``: kind, endpoints, failed BMCs (no secrets)."""
        return {"kind": self.kind, "failed": sorted(self.failed),
                "endpoints": {n: f"{a}:{p}" for n, (a, p) in sorted(self.endpoints.items())}}

    # --- fence.cfg ----------------------------------------------------------------------

    def fence_cfg_text(self) -> str:
        """fence.cfg for these BMCs (password by reference, never inline)."""
        pwfile = self.state / PASSWORD_FILE
        lines = ["# written by pvha sim serve --bmc " + self.kind]
        if self.kind == "ipmi":
            lines.append(f"device ipmi fence_ipmilan username={BMC_USER} "
                         f"password_file={pwfile} lanplus power_wait=0")
            lines += [f"connect ipmi node={n} ip={a} ipport={p}"
                      for n, (a, p) in sorted(self.endpoints.items())]
        else:
            assert self.cert is not None
            addr, port = next(iter(self.endpoints.values()))
            lines.append(f"device redfish pvha_redfish ip={addr} ipport={port} "
                         f"username={BMC_USER} password_file={pwfile} ssl_ca={self.cert[0]}")
            lines += [f"connect redfish node={n} systems_uri=/redfish/v1/Systems/{n}"
                      for n in sorted(self.endpoints)]
        return "\n".join(lines) + "\n"

    def write_fence_cfg(self, config_dir: Path) -> Path:
        path = config_dir / "fence.cfg"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.fence_cfg_text(), encoding="utf-8")
        tmp.replace(path)
        return path


def _drop_ipmi_sessions(port: int) -> None:
    """Forget the open IPMI sessions of the BMC on ``port`` (their clients get no
    further answer)."""
    from pyghmi.ipmi.private import session  # type: ignore[import-untyped]

    for key, entry in list(session.Session.bmc_handlers.items()):
        if isinstance(entry, dict) and isinstance(key, tuple):
            entry.pop(port, None)


def _bmc_password(path: Path) -> str:
    """The BMCs' password: reused from an earlier run, else 16 random hex characters
    (IPMI 2.0 passwords hold at most 20 bytes)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    if text and len(text) <= 20:
        return text
    value = secrets.token_hex(8)
    write_secret(path, value)
    return value


class _RedfishServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], farm: BmcFarm, ctx: ssl.SSLContext) -> None:
        self.farm, self.ctx = farm, ctx
        super().__init__(addr, _RedfishHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            conn = self.ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        except OSError:
            pass
        finally:
            conn.close()


class _RedfishHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _RedfishServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("redfish %s", format % args)

    def do_GET(self) -> None:
        self._serve(self._get)

    def do_POST(self) -> None:
        self._serve(self._post)

    def _serve(self, handler: Callable[[str, str | None], tuple[int, Any]]) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > 65536:
            return self._reply(400, {"error": "bad Content-Length"})
        body = self.rfile.read(length) if length > 0 else b""
        farm = self.server.farm
        path = self.path.split("?")[0].rstrip("/")
        match = _SYSTEM_RE.match(path)
        node = match.group(1) if match else None
        if node is not None and node in farm.failed:
            self.close_connection = True  # a dead BMC: no answer at all
            return
        if not self._authorized():
            return self._reply(401, {"error": "unauthorized"},
                               {"WWW-Authenticate": 'Basic realm="pvha-bmc"'})
        self._body = body
        status, data = handler(path, node if node in farm.cluster.nodes else None)
        self._reply(status, data)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        farm = self.server.farm
        return user == BMC_USER and hmac.compare_digest(password.encode(),
                                                        farm.password.encode())

    def _get(self, path: str, node: str | None) -> tuple[int, Any]:
        farm = self.server.farm
        if path == "/redfish/v1":
            return 200, {"Systems": {"@odata.id": "/redfish/v1/Systems"}}
        if path == "/redfish/v1/Systems":
            members = [{"@odata.id": f"/redfish/v1/Systems/{n}"} for n in sorted(farm.endpoints)]
            return 200, {"Members": members, "Members@odata.count": len(members)}
        if node is None or path.endswith("Reset"):
            return 404, {"error": "not found"}
        target = f"/redfish/v1/Systems/{node}/Actions/ComputerSystem.Reset"
        return 200, {"Id": node, "Name": node,
                     "PowerState": "On" if farm.power_of(node) == "on" else "Off",
                     "Actions": {"#ComputerSystem.Reset": {"target": target}}}

    def _post(self, path: str, node: str | None) -> tuple[int, Any]:
        if node is None or not path.endswith("Reset"):
            return 404, {"error": "not found"}
        try:
            kind = json.loads(self._body or b"{}").get("ResetType")
        except (ValueError, AttributeError):
            return 400, {"error": "bad JSON"}
        farm = self.server.farm
        if kind in ("ForceOff", "GracefulShutdown", "PushPowerButton"):
            farm.set_power(node, False)
        elif kind in ("On", "ForceOn", "ForceRestart", "GracefulRestart"):
            farm.set_power(node, True)
        else:
            return 400, {"error": f"unsupported ResetType {kind!r}"}
        return 204, None

    def _reply(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = b"" if data is None else json.dumps(data).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
