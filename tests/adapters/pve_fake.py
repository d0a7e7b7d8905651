"""Test helpers: a strict PVE API mock for the adapter unit tests, built as a
``responses`` registry the way proxmoxer's own tests do (``tests/api_mock.py``): a
FirstMatchRegistry subclass whose callback responses answer like pveproxy, plus fault
injection.

Strict on purpose (pve-api-notes §9): error text in the HTTP reason phrase, 401 with an
empty body for missing/invalid auth, CSRF required on non-GET ticket requests, booleans
accepted only as 1/0, 400 ``Parameter verification failed.`` with an ``errors`` map.

Faults answer a JSON payload (``fault(method, path, (status, reason, payload))``), raise
an exception, or send a :class:`Raw` body as is: bytes, or a :class:`HugeBody` stream
made on demand that counts the bytes the client actually read.
"""

from __future__ import annotations

import io
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
import urllib3.exceptions
from responses.registries import FirstMatchRegistry

from pvha.settings import ApiSettings, Secret

HOSTS = ("pve1.test", "pve2.test")
USER = "pvha@pve"
TOKEN_NAME = "ha"
TOKEN_SECRET = "tok-SECRET-0b1c2d3e"
PASSWORD = "pw-SECRET-9f8e7d"
BOOLEAN_PARAMS = {"online", "restart", "forceStop", "with-local-disks", "full"}
URL_RE = re.compile(r"https://(pve[12]\.test):8006/api2/json/(.*)")

CLUSTER_STATUS = [
    {"type": "cluster", "id": "cluster", "name": "lab", "nodes": 3, "quorate": 1, "version": 4},
    {"type": "node", "id": "node/pve2", "name": "pve2", "nodeid": 2, "online": 1, "local": 0,
     "ip": "192.0.2.12", "level": ""},
    {"type": "node", "id": "node/pve1", "name": "pve1", "nodeid": 1, "online": 1, "local": 1,
     "ip": "192.0.2.11", "level": ""},
    {"type": "node", "id": "node/pve3", "name": "pve3", "nodeid": 3, "online": 0, "local": 0,
     "ip": "192.0.2.13", "level": ""},
]
CLUSTER_RESOURCES = [
    {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online", "maxcpu": 8,
     "maxmem": 34359738368, "cpu": 0.05, "mem": 4294967296, "uptime": 1000, "cgroup-mode": 2},
    {"id": "node/pve2", "type": "node", "node": "pve2", "status": "online", "maxcpu": 8},
    {"id": "node/pve3", "type": "node", "node": "pve3", "status": "offline", "maxcpu": 8},
    {"id": "qemu/100", "type": "qemu", "vmid": 100, "node": "pve1", "status": "running",
     "name": "web", "template": 0, "maxmem": 2147483648, "maxcpu": 2, "tags": "prod;web"},
    # a guest of the dead node pve3: PVE keeps showing its last status ("running")
    {"id": "qemu/101", "type": "qemu", "vmid": 101, "node": "pve3", "status": "running",
     "name": "db", "template": 0},
    # after 5 minutes the RRD data is gone: status unknown, no name
    {"id": "lxc/102", "type": "lxc", "vmid": 102, "node": "pve3", "status": "unknown",
     "lock": "backup"},
    {"id": "storage/pve1/local", "type": "storage", "node": "pve1", "storage": "local",
     "status": "available", "shared": 0},
    {"id": "/pool/p1", "type": "pool", "pool": "p1"},
    {"id": "sdn/pve1/localnetwork", "type": "sdn", "node": "pve1", "status": "ok"},
]
HA_RESOURCES = [{"sid": "vm:200", "type": "vm", "digest": "abc", "state": "started",
                 "max_restart": 2, "failback": 0}]


@dataclass
class Raw:
    """A fault answer sent as is (no JSON encoding): the body and extra headers."""

    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class HugeBody(io.RawIOBase):
    """``size`` bytes made on demand: ``head``, then spaces, then ``tail`` (a valid JSON
    envelope when whole). ``read_bytes`` counts what the client pulled; nothing of the
    body is ever held, so a test can send gigabytes."""

    def __init__(self, size: int, head: bytes = b'{"data": "', tail: bytes = b'"}') -> None:
        super().__init__()
        self.size, self.head, self.tail = size, head, tail
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        pos, n = self.read_bytes, min(len(buf), self.size - self.read_bytes)
        if n <= 0:
            return 0
        chunk = bytearray(b" " * n)
        for i in range(max(0, pos), min(pos + n, len(self.head))):
            chunk[i - pos] = self.head[i]
        tail_at = self.size - len(self.tail)
        for i in range(max(pos, tail_at), pos + n):
            chunk[i - pos] = self.tail[i - tail_at]
        buf[:n] = chunk
        self.read_bytes += n
        return n

    def stream(self) -> io.BufferedReader:
        return io.BufferedReader(self)


def upid(node: str, kind: str, vmid: int, n: int = 1) -> str:
    return f"UPID:{node}:0001D3{n:02X}:15925672:69E05EBF:{kind}:{vmid}:{USER}!{TOKEN_NAME}:"


@dataclass
class Call:
    host: str
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    timeout: Any = None
    verify: Any = None


@dataclass
class FakePve:
    """State and behaviour behind the registry. Tests poke at the attributes."""

    tickets: dict[str, str] = field(default_factory=dict)  # ticket -> csrf
    ticket_counter: int = 0
    calls: list[Call] = field(default_factory=list)
    # (METHOD, path) -> queue of (status, reason, body|Exception) served before the default
    faults: dict[tuple[str, str], deque[Any]] = field(default_factory=dict)
    down_hosts: set[str] = field(default_factory=set)
    tasks: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    def fault(self, method: str, path: str, *answers: Any) -> None:
        self.faults.setdefault((method, path), deque()).extend(answers)

    def paths(self, method: str | None = None) -> list[str]:
        return [c.path for c in self.calls if method is None or c.method == method]

    # --- request handling ----------------------------------------------------------------

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], Any]:
        m = URL_RE.match(request.url or "")
        assert m, request.url
        host, path = m[1], urlsplit("/" + m[2]).path.lstrip("/")
        query = dict(parse_qsl(urlsplit(request.url or "").query))
        body = request.body or ""
        form = dict(parse_qsl(body if isinstance(body, str) else body.decode()))
        kw = getattr(request, "req_kwargs", {})
        self.calls.append(Call(host, str(request.method), path, {**form, **query},
                               dict(request.headers), kw.get("timeout"), kw.get("verify")))
        if host in self.down_hosts:  # what requests raises when nothing listens
            exc = urllib3.exceptions
            refused = exc.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
            pool_error = exc.MaxRetryError(None, request.url, refused)  # type: ignore[arg-type]
            raise requests.exceptions.ConnectionError(pool_error)
        queue = self.faults.get((str(request.method), path))
        if queue:
            status, reason, payload = queue.popleft()
            if isinstance(payload, Exception):
                raise payload
            if isinstance(payload, Raw):
                return status, {"X-Reason": reason, **payload.headers}, payload.body
            return self._answer(status, reason, payload)
        if path == "access/ticket" and request.method == "POST":
            return self._login(form)
        denied = self._check_auth(request)
        if denied:
            return denied
        bad = {k: f"type check ('boolean') failed - got '{v}'" for k, v in form.items()
               if k in BOOLEAN_PARAMS and v not in ("0", "1")}
        if bad:
            return self._answer(400, "Parameter verification failed.",
                                {"data": None, "errors": bad})
        return self._route(str(request.method), path, form)

    def _answer(self, status: int, reason: str, payload: Any) -> tuple[int, dict[str, str], Any]:
        body = "" if payload is None else json.dumps(payload)
        headers = {"X-Reason": reason}
        if body:
            headers["Content-Type"] = "application/json;charset=UTF-8"
        return status, headers, body

    def _login(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        user, password = form.get("username"), form.get("password")
        if user != USER or (password != PASSWORD and password not in self.tickets):
            return self._answer(401, "authentication failure",
                                {"data": None, "message": "authentication failure\n"})
        self.ticket_counter += 1
        ticket = f"PVE:{USER}:{self.ticket_counter:08X}::sig{self.ticket_counter}"
        csrf = f"{self.ticket_counter:08X}:csrf{self.ticket_counter}"
        self.tickets[ticket] = csrf
        return self._answer(200, "OK", {"data": {"username": USER, "ticket": ticket,
                                                 "CSRFPreventionToken": csrf}})

    def _check_auth(self, request: requests.PreparedRequest) -> Any:
        auth = request.headers.get("Authorization", "")
        if auth:
            if auth == f"PVEAPIToken={USER}!{TOKEN_NAME}={TOKEN_SECRET}":
                return None
            return self._answer(401, "Authentication failed!", None)
        cookie = request.headers.get("Cookie", "")
        if not cookie.startswith("PVEAuthCookie="):
            return self._answer(401, "No ticket", None)
        ticket = cookie.removeprefix("PVEAuthCookie=")
        if ticket not in self.tickets:
            return self._answer(401, "Authentication failed!", None)
        csrf = request.headers.get("CSRFPreventionToken")
        if request.method != "GET" and csrf != self.tickets[ticket]:
            return self._answer(401, "Permission denied - invalid csrf token", None)
        return None

    def _route(self, method: str, path: str, form: dict[str, str]) -> Any:
        ok = lambda data: self._answer(200, "OK", {"data": data})
        if method == "GET":
            static = {"version": {"version": "9.2.11", "release": "9.2"},
                      "cluster/status": CLUSTER_STATUS, "cluster/resources": CLUSTER_RESOURCES,
                      "cluster/ha/resources": HA_RESOURCES}
            if path in static:
                return ok(static[path])
            m = re.fullmatch(r"nodes/([^/]+)/tasks/([^/]+)/status", path)
            if m:
                queue = self.tasks.get(m[2])
                if not queue:
                    return self._answer(400, "Parameter verification failed.",
                                        {"data": None, "errors": {"upid": "no such task"}})
                return ok(queue[0] if len(queue) == 1 else queue.popleft())
            if re.fullmatch(r"nodes/pve[12]/status", path):
                return ok({"uptime": 1234, "cpu": 0.02, "loadavg": ["0.10", "0.20", "0.30"],
                           "memory": {"total": 100, "used": 40, "free": 60},
                           "pveversion": "pve-manager/9.2.11/x", "kversion": "Linux 6.8"})
            if re.fullmatch(r"nodes/pve3/.*", path):
                return self._answer(595, "No route to host", None)
            m = re.fullmatch(r"nodes/(pve\d)/(qemu|lxc)/(\d+)/status/current", path)
            if m:
                return ok({"status": "running", "qmpstatus": "running", "name": "web",
                           "uptime": 50, "ha": {"managed": 0}})
        if method == "POST":
            if re.fullmatch(r"nodes/pve3/.*", path):
                return self._answer(595, "No route to host", None)
            if re.fullmatch(r"nodes/pve[12]/qemu/\d+/agent/ping", path):
                return ok({"result": {}})  # qga's guest-ping answers an empty object
            m = re.fullmatch(r"nodes/(pve\d)/(qemu|lxc)/(\d+)/(status/\w+|migrate)", path)
            if m:
                if m[1] == "pve3":
                    return self._answer(595, "No route to host", None)
                action = m[4].removeprefix("status/")
                prefix = "qm" if m[2] == "qemu" else "vz"
                kind = "qmigrate" if (prefix, action) == ("qm", "migrate") else prefix + action
                task = upid(m[1], kind, int(m[3]), len(self.started) + 1)
                self.started.append(task)
                self.tasks.setdefault(task, deque([{"status": "stopped", "exitstatus": "OK"}]))
                return ok(task)
        return self._answer(501, f"Method '{method} /{path}' not implemented", {"data": None})


class PveCallbackResponse(responses.CallbackResponse):
    """A callback response whose reason phrase is PVE's message (``X-Reason``), since the
    real PVE sends its error text in the status line."""

    def get_response(self, request: requests.PreparedRequest) -> Any:
        resp = super().get_response(request)
        reason = resp.headers.pop("X-Reason", None)
        if reason:
            resp.reason = reason
        return resp


class PVERegistry(FirstMatchRegistry):
    """Registry with one callback per HTTP method, routing to ``fake``."""

    fake: FakePve

    def __init__(self) -> None:
        super().__init__()
        for method in ("GET", "POST", "PUT", "DELETE"):
            self.add(PveCallbackResponse(method, URL_RE, callback=self._dispatch))

    def _dispatch(self, request: requests.PreparedRequest) -> Any:
        return type(self).fake.handle(request)


@pytest.fixture
def fake_pve() -> Any:
    fake = FakePve()
    PVERegistry.fake = fake
    with responses.RequestsMock(registry=PVERegistry, assert_all_requests_are_fired=False):
        yield fake


class FakeTime:
    """Injectable monotonic/wall clock and sleep: sleeping advances the clock."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def api_settings(**over: Any) -> ApiSettings:
    base: dict[str, Any] = {"hosts": HOSTS, "user": USER, "token_name": TOKEN_NAME,
                                "token_secret": Secret(TOKEN_SECRET), "attempts": 3}
    if over.pop("password_auth", False):
        base.update(token_name=None, token_secret=None, password=Secret(PASSWORD))
    base.update(over)
    return ApiSettings(**base)


def version(api: Any) -> dict[str, Any]:
    """``GET /version`` through the adapter's client: the cheapest authenticated call."""
    return dict(api.client.call("GET", "version", idempotent=True) or {})
