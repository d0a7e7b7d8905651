"""systemd's notify protocol (``sd_notify``), without a dependency: a datagram to
``$NOTIFY_SOCKET``. Used by ``pvha watch`` under ``Type=notify``: ``READY=1`` after the
first round, ``WATCHDOG=1`` and ``STATUS=<the round's sentence>`` after every round,
``STOPPING=1`` on the way out. Without ``$NOTIFY_SOCKET`` every call is a no-op."""

from __future__ import annotations

import contextlib
import os
import socket


def notify(*fields: str, env: dict[str, str] | None = None) -> bool:
    """Send ``fields`` (``KEY=value``) to systemd; True if sent. Never raises."""
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not addr or not fields:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract socket namespace
    payload = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(addr)
        sock.sendall(payload)
        return True
    return False
