"""What goes on the wire: PVE's success envelope and its errors (pve-api-notes §1.1-1.2).

Errors carry their text in the HTTP reason phrase (first line only). JSON errors have the
body ``{"data": null, "message": "<text>\\n"[, "errors": {...}]}``; 401s from the auth
checks and 595/596 from the proxy have an empty body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class PveError(Exception):
    """An error answer. ``empty`` = no body (auth failures, proxy errors); ``delay`` =
    seconds the answer is held back, outside the cluster lock (a hung guest agent)."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None,
                 *, empty: bool = False, delay: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.empty = empty
        self.delay = delay


def param_error(errors: dict[str, str]) -> PveError:
    """400 ``Parameter verification failed.`` with per-parameter texts."""
    return PveError(400, "Parameter verification failed.", errors)


@dataclass
class Reply:
    """An HTTP answer as the server writes it."""

    status: int
    reason: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def ok(data: Any, **extra: Any) -> Reply:
    """200 with ``{"data": ...}`` (plus e.g. ``total``)."""
    body = json.dumps({"data": data, **extra}, separators=(",", ":")).encode()
    return Reply(200, "OK", body, {"Content-Type": "application/json;charset=UTF-8"})


def error_reply(err: PveError) -> Reply:
    """The answer for ``err``: reason = first line of the message."""
    lines = err.message.strip().splitlines() or [""]
    reason = lines[0].replace("\r", " ")
    if err.empty:
        return Reply(err.status, reason)
    payload: dict[str, Any] = {"data": None, "message": err.message.rstrip("\n") + "\n"}
    if err.errors:
        payload["errors"] = err.errors
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Reply(err.status, reason, body, {"Content-Type": "application/json;charset=UTF-8"})
