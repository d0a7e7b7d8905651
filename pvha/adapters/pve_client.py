"""Transport to the PVE API: hosts with failover, auth, TLS, retries, error mapping.

Theory of operation. ``PveClient.call(method, path, ...)`` sends one API request through
proxmoxer's ``ProxmoxResource`` (path building, ``ResourceException``) over a requests
session that pvha builds itself, so that:

* TLS is verified with the CA file passed explicitly on every request (requests would
  otherwise let ``REQUESTS_CA_BUNDLE`` override a session-level ``verify``), or with a
  pinned fingerprint adapter (``pvha.adapters.tls``) that also covers the login;
* the timeout is (connect, read) with read >= 30 s, PVE's own proxy wait;
* login and ticket renewal go through the same verified session, never through
  proxmoxer's logger (which logs request data, i.e. the password, at INFO);
* an expired ticket (process paused > 2 h) is replaced by a fresh login instead of
  failing forever;
* every answer is read with ``stream=True`` and a bounded read: at most
  ``max_answer_bytes`` decoded bytes (default 32 MiB, see ``pvha.settings``). A larger
  answer, whether it says so in ``Content-Length`` or not, is refused after reading at
  most that much (the connection is dropped), so it is never held whole in memory;
* redirects are not followed: PVE never redirects under ``/api2/json``, so a 1xx/3xx
  answer is not PVE's and is refused;
* a 2xx body must be PVE's JSON envelope, a JSON object with a ``data`` member
  (``{"data": ...}``); anything else (not JSON, not UTF-8, a top-level list, an object
  without ``data``) is refused. proxmoxer's own serializer would raise ``KeyError`` or
  ``TypeError`` there, or pass a non-JSON body on as ``{"errors": b"..."}`` data.

A refused answer is an :class:`~pvha.errors.ApiPermanentError` naming the host, the path
and what was wrong; it is not retried and not failed over (another host of the same
cluster gives the same answer), and the watch loop skips the round. The shape of the
``data`` inside the envelope is checked by ``pvha.adapters.pve_api``.

Failover: hosts are tried in order starting with the last one that worked; the next host
is tried when the current one cannot serve:

* it cannot be reached at all (connect error, TLS failure) - for any call;
* a read timeout, or an HTTP answer that says "this host cannot serve": 502, 503 or 504
  (pveproxy busy, or a reverse proxy in front of it), or, for a path that is not
  forwarded to a node (everything outside ``/nodes/...``, e.g. ``/cluster/status``),
  595-599 (pveproxy could not reach its own pvedaemon) - only for read-only calls.

A 595/596 on ``/nodes/X/...`` is *not* a reason to fail over: it is the answering node
telling that X, which it forwarded to, is unreachable, and every other host would say
the same. A write (guest action) fails over only when it certainly never left this
process (connect error, TLS failure): a POST that may have been delivered is never sent
again, to this host or another.

Retry policy (tenacity, exponential backoff, injectable sleep): only ApiTransientError
is retried. Read-only calls are retried on any transient error; writes (guest actions)
only when the request certainly did not reach the acting node (``request_sent`` False:
connect errors, 595, lock timeouts), so a start is never sent twice by accident.
A plain 500 is *permanent*: PVE answers every handler ``die`` with 500 (``VM 100 already
running``, ``cluster not ready - no quorum?``), and asking again gives the same answer;
only 500s that report a lock timeout count as transient. 401 is ApiAuthError
(after one fresh login for ticket auth), TLS failures ApiTlsError.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
import tenacity
from proxmoxer.backends.https import JsonSerializer
from proxmoxer.core import ProxmoxResource, ResourceException
from requests.auth import AuthBase

from pvha.adapters.tls import PinnedFingerprintAdapter
from pvha.errors import (
    ApiAuthError,
    ApiError,
    ApiPermanentError,
    ApiTlsError,
    ApiTransientError,
    ConfigError,
)
from pvha.settings import DEFAULT_MAX_ANSWER_BYTES, ApiSettings

log = logging.getLogger("pvha.api")

TICKET_PATH = "access/ticket"
TICKET_RENEW_AGE = 3600.0  # renew like proxmoxer/the GUI: well inside the 2 h lifetime
TICKET_LIFETIME = 7200.0 - 300.0  # 2 h minus a margin: past this, log in again
_TRANSIENT_STATUS = {502, 503, 504, 595, 596, 597, 598, 599}
_HOST_CANNOT_SERVE = {502, 503, 504}  # pveproxy busy, or a reverse proxy in front of it
_LOCAL_DAEMON_DOWN = {595, 596, 597, 598, 599}  # outside /nodes/: its own pvedaemon failed
_CHUNK = 64 * 1024
# 500s that are timeouts waiting for a lock: the handler gave up before doing anything.
_TRANSIENT_500 = re.compile(r"got (lock request )?timeout", re.IGNORECASE)


def _no_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    return r


class _TokenAuth(AuthBase):
    """``Authorization: PVEAPIToken=user@realm!name=secret``; stateless, no CSRF."""

    def __init__(self, user: str, token_name: str, secret: str) -> None:
        self._header = f"PVEAPIToken={user}!{token_name}={secret}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._header
        return r

    def __repr__(self) -> str:
        return "_TokenAuth(***)"


class _TicketAuth(AuthBase):
    """Ticket cookie on every request, CSRF token on every non-GET request. The ticket is
    valid on every node of the cluster, so one instance serves all hosts."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self.ticket: str | None = None
        self.csrf: str | None = None
        self.born = 0.0

    def set(self, ticket: str, csrf: str) -> None:
        self.ticket, self.csrf, self.born = ticket, csrf, self._monotonic()

    def age(self) -> float:
        return self._monotonic() - self.born

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.ticket is not None:
            r.headers["Cookie"] = f"PVEAuthCookie={self.ticket}"
            if r.method != "GET" and self.csrf is not None:
                r.headers["CSRFPreventionToken"] = self.csrf
        return r

    def __repr__(self) -> str:
        return "_TicketAuth(***)"


def system_ca() -> bool | str:
    """The operating system's CA bundle (e.g. Debian's ca-certificates) when there is
    one, else requests' own (certifi). Passed explicitly, as the session ignores env."""
    path = ssl.get_default_verify_paths().cafile
    return path if path and os.path.isfile(path) else True


class AnswerRefused(Exception):
    """An HTTP answer that is not PVE's (too large, not the JSON envelope, a redirect).
    Raised below proxmoxer, turned into ApiPermanentError by :class:`PveClient`."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Session(requests.Session):
    """A session that always passes its timeout and ``verify`` explicitly, follows no
    redirect, and reads every answer with a bounded read (see the module docstring)."""

    def __init__(self, timeout: tuple[float, float], verify: bool | str,
                 max_answer: int = DEFAULT_MAX_ANSWER_BYTES) -> None:
        super().__init__()
        self.trust_env = False  # no env proxies/netrc/CA bundle silently changing behaviour
        self._pvha_timeout = timeout
        self._pvha_verify = verify
        self._pvha_max = max_answer

    def request(self, method: str | bytes, url: str | bytes, *a: Any, **kw: Any) -> Any:
        kw.setdefault("timeout", self._pvha_timeout)
        kw.setdefault("verify", self._pvha_verify)
        kw["stream"] = True  # the body is read below, bounded
        kw["allow_redirects"] = False
        resp = super().request(method, url, *a, **kw)
        read_bounded(resp, self._pvha_max)
        return resp


def read_bounded(resp: requests.Response, limit: int) -> None:
    """Read a streamed answer's body into ``resp`` (``content``, ``text`` and ``json()``
    then work as usual), at most ``limit`` decoded bytes; AnswerRefused beyond that, or
    for a 1xx/3xx answer. The connection is dropped when the body is not read to its end,
    so nothing more of it is ever received."""
    status = resp.status_code
    if status < 200 or 300 <= status < 400:
        resp.close()
        what = " ".join(str(x) for x in (status, resp.reason) if x)
        where = f" to {resp.headers['Location']}" if resp.headers.get("Location") else ""
        raise AnswerRefused(f"HTTP {what}{where} is not a PVE API answer (PVE never "
                            "redirects)", status)
    declared = resp.headers.get("Content-Length", "")
    encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if not encoded and declared.strip().isdigit() and int(declared) > limit:
        resp.close()
        raise AnswerRefused(f"answer of {int(declared)} bytes is larger than "
                            f"max_answer_bytes ({limit}); not read", status)
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(_CHUNK):
        size += len(chunk)
        if size > limit:
            resp.close()
            raise AnswerRefused(f"answer larger than max_answer_bytes ({limit}); "
                                f"stopped reading after {size} bytes", status)
        chunks.append(chunk)
    resp._content = b"".join(chunks)
    resp._content_consumed = True


class _PveJson:
    """The serializer handed to proxmoxer (it calls ``loads`` on a 2xx answer and
    ``loads_errors`` on a >= 400 one): strict about PVE's envelope (``{"data": ...}``)
    on success, never raising on an error body (whose ``errors`` map is optional)."""

    def loads(self, response: requests.Response) -> Any:
        try:
            body = json.loads(response.content)
        except ValueError:  # includes UnicodeDecodeError
            raise AnswerRefused("the answer is not JSON", response.status_code) from None
        if not isinstance(body, dict):
            raise AnswerRefused(f"the answer is a JSON {_json_type(body)}, not PVE's "
                                'envelope {"data": ...}', response.status_code)
        if "data" not in body:
            raise AnswerRefused('the answer has no "data" member (not PVE\'s envelope '
                                '{"data": ...})', response.status_code)
        return body["data"]

    def loads_errors(self, response: requests.Response) -> Any:
        try:
            body = json.loads(response.content)
        except ValueError:
            return {"errors": response.content}  # as proxmoxer: not JSON (401s, 595/596)
        errors = body.get("errors") if isinstance(body, dict) else None
        return errors if isinstance(errors, dict) else None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "number" if isinstance(value, (int, float)) else type(value).__name__


class PveClient:
    """Sends API calls to the first reachable host; see the module docstring.

    ``monotonic`` and ``sleep`` are injectable so tests neither sleep nor wait 2 h for a
    ticket to age. ``call`` returns the ``data`` member of PVE's answer or raises ApiError.
    """

    def __init__(
        self,
        settings: ApiSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        backoff: tuple[float, float] = (1.0, 8.0),
    ) -> None:
        if settings.ca_file is not None and not settings.ca_file.is_file():
            raise ConfigError("CA file not found (ca_file / PVHA_CA_FILE)", str(settings.ca_file))
        self._s = settings
        self._monotonic = monotonic
        self._sleep = sleep
        self._backoff = backoff
        self._current = 0
        self._resources: dict[str, ProxmoxResource] = {}
        self._sessions: dict[str, _Session] = {}
        self._secrets = tuple(
            x.reveal() for x in (settings.token_secret, settings.password) if x is not None
        )
        self._auth: _TokenAuth | _TicketAuth
        if settings.uses_token:
            if settings.token_secret is None:
                raise ConfigError("no API token secret: set token_secret_file or PVHA_TOKEN_SECRET")
            self._auth = _TokenAuth(
                settings.user, str(settings.token_name), settings.token_secret.reveal()
            )
        else:
            if settings.password is None:
                raise ConfigError("no API password: set password_file or PVHA_PASSWORD "
                                  "(or use an API token)")
            self._auth = _TicketAuth(monotonic)

    def __repr__(self) -> str:
        return f"PveClient(hosts={self._s.hosts!r}, user={self._s.user!r})"

    @property
    def current_host(self) -> str:
        """The host the next call goes to first (the last one that answered)."""
        return self._s.hosts[self._current]

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every configured API host, in configuration order."""
        return tuple(self._s.hosts)

    def prefer_host(self, host: str) -> None:
        """Send the next calls to ``host`` first (as if it had answered last)."""
        self._current = self._s.hosts.index(host)

    def base_url(self, host: str) -> str:
        netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"https://{netloc}:{self._s.port}/api2/json"

    # --- the one entry point ---------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotent: bool,
    ) -> Any:
        """Send ``method path`` (path relative to ``/api2/json``), with failover and
        retries. ``idempotent`` False (guest actions) restricts retries to requests that
        certainly were not delivered. Raises ApiError subclasses, free of secrets."""
        base, cap = self._backoff
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self._s.attempts)),
            wait=tenacity.wait_exponential(multiplier=base, min=base, max=cap),
            retry=tenacity.retry_if_exception(lambda e: _retryable(e, idempotent)),
            sleep=self._sleep,
            reraise=True,
            before_sleep=_log_retry,
        )
        return retrying(self._call_with_failover, method, path, dict(params or {}), idempotent)

    def _call_with_failover(
        self, method: str, path: str, params: dict[str, Any], idempotent: bool
    ) -> Any:
        hosts = self._s.hosts
        last: ApiError | None = None
        for step in range(len(hosts)):
            index = (self._current + step) % len(hosts)
            try:
                result = self._call_on(hosts[index], method, path, params)
            except ApiError as exc:
                if not _host_unusable(exc, idempotent, path):
                    raise
                log.warning("API host %s unusable (%s); trying the next one", hosts[index], exc)
                last = exc
                continue
            self._current = index
            return result
        assert last is not None
        raise last

    def _call_on(self, host: str, method: str, path: str, params: dict[str, Any]) -> Any:
        res = self._resource(host)
        try:
            self._ensure_ticket(host)
            try:
                return _send(res, method, path, params)
            except ResourceException as exc:
                if exc.status_code != 401 or not isinstance(self._auth, _TicketAuth):
                    raise
                # ticket rejected (expired while we were away, or key trouble): log in
                # again once, with the password, then repeat the request once.
                self._login(host, renew=False)
                return _send(res, method, path, params)
        except (ResourceException, requests.RequestException) as exc:
            raise self._map(exc, host) from None
        except AnswerRefused as exc:
            raise refused(exc, host, path) from None

    # --- auth --------------------------------------------------------------------------

    def _ensure_ticket(self, host: str) -> None:
        auth = self._auth
        if not isinstance(auth, _TicketAuth):
            return
        if auth.ticket is None or auth.age() >= TICKET_LIFETIME:
            self._login(host, renew=False)
        elif auth.age() >= TICKET_RENEW_AGE:
            try:
                self._login(host, renew=True)
            except ApiAuthError:
                self._login(host, renew=False)

    def _login(self, host: str, *, renew: bool) -> None:
        """POST /access/ticket with the password (or the current ticket, to renew)."""
        auth = self._auth
        assert isinstance(auth, _TicketAuth) and self._s.password is not None
        secret = auth.ticket if renew else self._s.password.reveal()
        self._resource(host)
        url = f"{self.base_url(host)}/{TICKET_PATH}"
        try:
            # not through proxmoxer: its logger would print the form, i.e. the password
            resp = self._sessions[host].post(
                url, data={"username": self._s.user, "password": secret}, auth=_no_auth
            )
        except requests.RequestException as exc:
            raise self._map(exc, host) from None
        except AnswerRefused as exc:
            raise refused(exc, host, TICKET_PATH) from None
        if resp.status_code != 200:
            exc = ResourceException(resp.status_code, "", resp.reason or "", None)
            raise self._map(exc, host)
        try:
            data = (resp.json() or {}).get("data") or {}
        except (ValueError, AttributeError):
            raise ApiPermanentError(f"{host}: login answer is not PVE's JSON", host=host,
                                    status=200) from None
        if not isinstance(data, dict):
            raise ApiPermanentError(f"{host}: login answer is not PVE's JSON", host=host,
                                    status=200)
        if data.get("NeedTFA"):
            raise ApiAuthError(f"user {self._s.user} needs two-factor auth; use an API token")
        ticket, csrf = data.get("ticket"), data.get("CSRFPreventionToken")
        if not isinstance(ticket, str) or not isinstance(csrf, str) or not ticket or not csrf:
            raise ApiAuthError(f"{host}: login answer without ticket", host=host, status=200)
        auth.set(ticket, csrf)
        log.debug("%s ticket for %s", "renewed" if renew else "new", self._s.user)

    # --- plumbing ---------------------------------------------------------------------------

    def _resource(self, host: str) -> ProxmoxResource:
        res = self._resources.get(host)
        if res is None:
            s = self._s
            verify = str(s.ca_file) if s.ca_file is not None else system_ca()
            session = _Session((s.connect_timeout, s.read_timeout), verify,
                               s.max_answer_bytes)
            if s.fingerprints:
                session.mount("https://", PinnedFingerprintAdapter(s.fingerprints))
            session.auth = self._auth
            session.headers["accept"] = JsonSerializer().get_accept_types()
            res = ProxmoxResource(
                base_url=self.base_url(host), session=session, serializer=_PveJson()
            )
            self._resources[host] = res
            self._sessions[host] = session
        return res

    def _map(self, exc: Exception, host: str) -> ApiError:
        ticket = getattr(self._auth, "ticket", None)
        return map_error(exc, host, self._secrets + ((ticket,) if ticket else ()))


# --- error mapping --------------------------------------------------------------------------


def refused(exc: AnswerRefused, host: str, path: str) -> ApiPermanentError:
    """The ApiPermanentError for an answer that is not PVE's (the request was delivered)."""
    return ApiPermanentError(f"{host}: unexpected answer from PVE for /{path}: {exc.reason}",
                             host=host, status=exc.status, request_sent=True)



def map_error(exc: Exception, host: str, secrets: tuple[str, ...] = ()) -> ApiError:
    """Turn a proxmoxer/requests exception into an ApiError subclass carrying PVE's
    message (the reason phrase). Any secret that would appear in the text is masked."""
    if isinstance(exc, ResourceException):
        return _map_resource(exc, host, secrets)
    text = _scrub(_short(exc), secrets)
    if isinstance(exc, requests.exceptions.SSLError):
        return ApiTlsError(f"{host}: TLS verification failed: {text}", host=host,
                           request_sent=False)
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        isinstance(exc, requests.exceptions.ConnectionError) and _not_connected(exc)
    ):
        return ApiTransientError(f"{host}: cannot connect: {text}", host=host,
                                 request_sent=False)
    if isinstance(exc, requests.exceptions.Timeout):
        return ApiTransientError(f"{host}: no answer in time: {text}", host=host)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ApiTransientError(f"{host}: connection failed: {text}", host=host)
    return ApiPermanentError(f"{host}: request failed: {text}", host=host)


def _map_resource(exc: ResourceException, host: str, secrets: tuple[str, ...]) -> ApiError:
    status = int(exc.status_code)
    pve = _scrub(str(exc.content or "").strip(), secrets)
    # proxmoxer gives {"errors": b""} when the body is not JSON (401s, 595/596)
    raw = exc.errors if isinstance(exc.errors, dict) else {}
    errors = {
        str(k): _scrub(str(v).strip(), secrets) for k, v in raw.items() if not isinstance(v, bytes)
    }
    detail = "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
    message = f"{host}: {status} {pve}" + (f" ({detail})" if detail else "")
    kw: dict[str, Any] = {"status": status, "pve_message": pve, "errors": errors, "host": host}
    if status == 401:
        return ApiAuthError(message, **kw)
    if status == 595 or (status == 500 and _TRANSIENT_500.search(pve)):
        return ApiTransientError(message, request_sent=False, **kw)
    if status in _TRANSIENT_STATUS:
        return ApiTransientError(message, **kw)
    # Any other 500 is a handler's die: "VM 100 already running", "no quorum?", ... PVE
    # answers the same when asked again, so it is permanent for this request.
    return ApiPermanentError(message, request_sent=True, **kw)


def _not_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the TCP/TLS connection was never established (nothing was sent)."""
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)
    name = type(inner).__name__
    return name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")


def _short(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    inner = getattr(reason, "reason", None)
    return str(inner if inner is not None else reason)


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def _send(res: ProxmoxResource, method: str, path: str, params: dict[str, Any]) -> Any:
    """proxmoxer's public verbs: GET/DELETE params go in the query, POST/PUT in the form."""
    verb = getattr(res(path), method.lower())
    return verb(**dict(params))  # a copy: proxmoxer deletes None values in place


def _retryable(exc: BaseException, idempotent: bool) -> bool:
    if not isinstance(exc, ApiTransientError):
        return False
    return idempotent or exc.request_sent is False


def _host_unusable(exc: ApiError, idempotent: bool, path: str) -> bool:
    """Errors that say the API host itself cannot serve, so another host may do better
    (see the module docstring). Writes only when nothing left this process."""
    if isinstance(exc, ApiTlsError):
        return True
    if not isinstance(exc, ApiTransientError):
        return False
    status = getattr(exc, "status", None)
    if status is None:
        return exc.request_sent is False or idempotent
    if not idempotent:
        return False
    return status in _HOST_CANNOT_SERVE or (
        status in _LOCAL_DAEMON_DOWN and not path.startswith("nodes/"))


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("API call failed (%s); retry %d in %.1f s", exc, state.attempt_number, wait)
