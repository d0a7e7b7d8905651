"""Authentication as pveproxy does it: tickets (+ CSRF on writes) and API tokens.

* ``POST /access/ticket`` with ``username`` and ``password`` (or a still valid ticket as
  the password, to renew) gives ``PVE:<user>:<8 hex epoch>::<base64 signature>`` and a
  CSRF token ``<8 hex epoch>:<base64 HMAC>`` bound to the user. Tickets live 2 h
  (+5 min grace) and are valid on every node (one key for the whole cluster).
* ``Cookie: PVEAuthCookie=<ticket>`` (or the ``Authorization: PVEAuthCookie=`` fallback);
  non-GET requests with a ticket need ``CSRFPreventionToken``.
* ``Authorization: PVEAPIToken=<user>!<tokenid>=<secret>`` (a space may replace the first
  ``=``): stateless, no CSRF.

Failures are ``AuthFailure`` with PVE's reason phrase; the HTTP layer answers them 401
with an empty body. ``expire_all`` rotates the key: every ticket issued so far fails, as
after the 2 h lifetime. Secrets never appear in a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

TICKET_LIFETIME = 7200
TICKET_GRACE = 300


class AuthFailure(Exception):
    """401 with this reason phrase (empty body)."""


@dataclass(frozen=True)
class Identity:
    """Who is calling: ``user`` (``root@pam``), ``tokenid`` for tokens, ``csrf_ok``."""

    user: str
    tokenid: str | None
    csrf_ok: bool

    @property
    def full(self) -> str:
        """The user as it appears in UPIDs (``root@pam!pvha`` for a token)."""
        return f"{self.user}!{self.tokenid}" if self.tokenid else self.user


class Auth:
    """Users with passwords, API tokens, and the ticket/CSRF keys of one cluster."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._passwords: dict[str, str] = {}
        self._tokens: dict[str, str] = {}  # "user!tokenid" -> secret
        self._key = secrets.token_bytes(32)
        self._csrf_key = secrets.token_bytes(32)

    def add_user(self, user: str, password: str) -> None:
        self._passwords[user] = password

    def add_token(self, user: str, tokenid: str, secret: str) -> None:
        self._tokens[f"{user}!{tokenid}"] = secret

    def expire_all(self) -> None:
        """Invalidate every ticket and CSRF token issued so far."""
        with self._lock:
            self._key = secrets.token_bytes(32)
            self._csrf_key = secrets.token_bytes(32)

    # --- tickets ---------------------------------------------------------------------------

    def login(self, username: str, password: str) -> dict[str, str]:
        """The ``/access/ticket`` answer, or AuthFailure("authentication failure")."""
        known = self._passwords.get(username)
        ok = known is not None and hmac.compare_digest(known.encode(), password.encode())
        if not ok and password.startswith("PVE:"):
            try:
                ok = self.verify_ticket(password) == username
            except AuthFailure:
                ok = False
        if not ok:
            raise AuthFailure("authentication failure")
        return {"username": username, "ticket": self._ticket(username),
                "CSRFPreventionToken": self._csrf(username)}

    def _sign(self, key: bytes, text: str) -> str:
        return base64.b64encode(hmac.new(key, text.encode(), hashlib.sha256).digest()).decode()

    def _ticket(self, user: str) -> str:
        plain = f"PVE:{user}:{int(self._clock()):08X}"
        with self._lock:
            return f"{plain}::{self._sign(self._key, plain)}"

    def _csrf(self, user: str) -> str:
        stamp = f"{int(self._clock()):08X}"
        with self._lock:
            return f"{stamp}:{self._sign(self._csrf_key, f'{stamp}:{user}')}"

    def verify_ticket(self, ticket: str) -> str:
        """The ticket's user, or AuthFailure (bad signature, expired, garbled)."""
        plain, sep, sig = ticket.partition("::")
        parts = plain.split(":")
        if not sep or len(parts) != 3 or parts[0] != "PVE":
            raise AuthFailure("Authentication failed!")
        with self._lock:
            good = hmac.compare_digest(self._sign(self._key, plain), sig)
        try:
            age = self._clock() - int(parts[2], 16)
        except ValueError:
            raise AuthFailure("Authentication failed!") from None
        if not good or not -TICKET_GRACE <= age <= TICKET_LIFETIME + TICKET_GRACE:
            raise AuthFailure("Authentication failed!")
        return parts[1]

    def _verify_csrf(self, token: str | None, user: str) -> bool:
        if not token or ":" not in token:
            return False
        stamp, _, sig = token.partition(":")
        with self._lock:
            good = hmac.compare_digest(self._sign(self._csrf_key, f"{stamp}:{user}"), sig)
        try:
            age = self._clock() - int(stamp, 16)
        except ValueError:
            return False
        return good and -TICKET_GRACE <= age <= TICKET_LIFETIME + TICKET_GRACE

    # --- per request -----------------------------------------------------------------------

    def authenticate(self, method: str, headers: Mapping[str, str]) -> Identity:
        """The caller of a request (header names lower-case), or AuthFailure. CSRF is
        checked here for ticket requests that are not GET."""
        authz = headers.get("authorization", "")
        if authz.startswith("PVEAPIToken"):
            return self._token(authz)
        ticket = _cookie(headers.get("cookie", ""), "PVEAuthCookie")
        if ticket is None and authz.startswith("PVEAuthCookie="):
            ticket = authz.removeprefix("PVEAuthCookie=")
        if not ticket:
            raise AuthFailure("No ticket")
        user = self.verify_ticket(ticket)
        if method != "GET" and not self._verify_csrf(headers.get("csrfpreventiontoken"), user):
            raise AuthFailure("Permission denied - invalid csrf token")
        return Identity(user, None, True)

    def _token(self, authz: str) -> Identity:
        value = authz[len("PVEAPIToken"):]
        if not value or value[0] not in "= ":
            raise AuthFailure("Authentication failed!")
        name, sep, secret = value[1:].rpartition("=")
        known = self._tokens.get(name)
        if not sep or known is None or not hmac.compare_digest(known.encode(), secret.encode()):
            raise AuthFailure("Authentication failed!")
        user, _, tokenid = name.partition("!")
        return Identity(user, tokenid, True)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None
