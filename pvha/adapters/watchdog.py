"""A client of Proxmox's watchdog-mux (``/run/watchdog-mux.sock``, pve-ha-manager
``src/watchdog-mux.c``), as pve-ha-lrm is: connecting arms one watchdog (the connect
counts as a feed), any byte written feeds it (pve-ha-lrm writes ``\\0``), and ``V`` as the
last byte before closing is the magic close that disarms it. A client that stops feeding
for the mux's client timeout (60 s), or that goes away without ``V``, makes the mux stop
feeding ``/dev/watchdog``: the node resets about 10 s later."""

from __future__ import annotations

import select
import socket
from pathlib import Path

DEFAULT_SOCKET = Path("/run/watchdog-mux.sock")
MUX_CLIENT_TIMEOUT = 60.0
"""watchdog-mux's ``CLIENT_WATCHDOG_TIMEOUT``: an unfed client makes the node reset."""
HARDWARE_TIMEOUT = 10.0
"""The timeout watchdog-mux sets on ``/dev/watchdog``: the reset follows within it."""


class WatchdogClient:
    """One armed watchdog. ``feed`` raises ``OSError`` once the mux dropped the
    connection (the node is being reset); ``close(clean=True)`` disarms it."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise

    def feed(self) -> None:
        self.sock.sendall(b"\0")

    def dropped(self) -> bool:
        """True once the mux closed the connection (it never writes): tells a reset
        without feeding."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            return bool(readable) and self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def close(self, clean: bool = True) -> None:
        """Close; ``clean`` sends the magic 'V' first (disarms this watchdog)."""
        with self.sock:
            if clean:
                self.sock.sendall(b"V")
