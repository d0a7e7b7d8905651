"""A watchdog per simulated node, speaking the protocol of Proxmox's watchdog-mux
(pve-ha-manager ``src/watchdog-mux.c``, ``/run/watchdog-mux.sock``): a unix stream socket
where each client is one watchdog, fed by writing any byte(s) (pve-ha-lrm writes ``\\0``).
``V`` as the last byte, then closing, is the magic close: that watchdog is disarmed. A
close without ``V`` (or a broken connection), or no feed for longer than ``timeout``
(watchdog-mux: 60 s), resets the node (at once here; the real mux stops feeding
``/dev/watchdog``, which fires ~10 s later). Any number of clients may connect.

Theory of operation: one thread per :class:`WatchdogMux` selects over the listener, the
clients and a wake-up socketpair (for ``stop``) until the earliest client deadline; only
it changes the client table (the lock keeps ``state()`` consistent). An expiry closes all
clients (the node was reset, their processes died), counts one reset and calls
``on_expire`` once, from the mux thread with no lock held (it may take the cluster lock;
exceptions are logged); new clients are served afterwards. ``stop()`` closes the clients
without a reset and removes the socket; ``start()`` opens it again (node power off/on;
counters are kept). :class:`NodeWatchdogs` runs one mux per node.
"""

from __future__ import annotations

import functools
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvha.adapters.watchdog import WatchdogClient

__all__ = ["MAX_PATH", "NodeWatchdogs", "WatchdogClient", "WatchdogMux"]
log = logging.getLogger("pvha.fakepve")

SOCKET_NAME = "watchdog-mux.sock"
MAX_PATH = 107  # sun_path is 108 bytes including the terminating NUL


@dataclass
class _Client:
    fed: float  # monotonic time of the last byte
    magic: bool = False  # the last byte received was 'V'


class WatchdogMux:
    """One node's watchdog-mux socket; ``on_expire()`` is the node reset."""

    def __init__(self, socket_path: str | Path, timeout: float,
                 on_expire: Callable[[], None]) -> None:
        self.path = Path(socket_path)
        if len(os.fsencode(self.path)) > MAX_PATH:
            raise ValueError(f"watchdog socket path longer than {MAX_PATH} bytes "
                             f"(AF_UNIX limit): {self.path}")
        if not timeout > 0:
            raise ValueError(f"watchdog timeout must be positive: {timeout}")
        self.timeout, self.on_expire = timeout, on_expire
        self._lock = threading.Lock()
        self._clients: dict[socket.socket, _Client] = {}
        self._resets = 0
        self._last_reset: float | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WatchdogMux:
        if self._thread is not None:
            if not self._stopping.is_set():
                raise RuntimeError(f"watchdog {self.path} is already running")
            self._thread.join(timeout=5)  # a stop() from on_expire may still be finishing
        self._stopping.clear()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket() or self.path.is_symlink():
            self.path.unlink()  # stale socket of an earlier run
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"watchdog-{self.path.parent.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every client (no reset) and remove the socket file."""
        if self._thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._wake_w.send(b"x")  # wake the select; the thread closes this pair
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"clients": len(self._clients), "armed": bool(self._clients),
                    "resets": self._resets, "last_reset": self._last_reset}

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                due = min((c.fed + self.timeout for c in self._clients.values()), default=None)
                wait = None if due is None else max(0.0, due - time.monotonic())
                for key, _ in self._sel.select(wait):
                    if key.fileobj is self._wake_r:
                        self._wake_r.recv(4096)
                    elif key.fileobj is self._listener:
                        sock, _ = self._listener.accept()
                        sock.setblocking(False)
                        with self._lock:
                            self._clients[sock] = _Client(time.monotonic())
                        self._sel.register(sock, selectors.EVENT_READ)
                    elif isinstance(key.fileobj, socket.socket):
                        self._read(key.fileobj)
                now = time.monotonic()
                if any(now - c.fed > self.timeout for c in self._clients.values()):
                    self._expire(f"a client was not fed for {self.timeout:g} s")
        finally:
            self._forget(*self._clients)
            for s in (self._listener, self._wake_r, self._wake_w, self._sel):
                s.close()

    def _read(self, sock: socket.socket) -> None:
        if (client := self._clients.get(sock)) is None:  # closed earlier in this batch
            return
        try:
            data = sock.recv(4096)
        except ConnectionError:
            data = b""  # connection reset: like a close without 'V'
        if data:
            client.fed, client.magic = time.monotonic(), data.endswith(b"V")
            return
        self._forget(sock)
        if not client.magic:
            self._expire("a client closed without the magic 'V'")

    def _expire(self, why: str) -> None:
        self._forget(*self._clients)
        with self._lock:
            self._resets, self._last_reset = self._resets + 1, time.time()
        log.warning("watchdog %s expired: %s; node reset", self.path, why)
        try:
            self.on_expire()
        except Exception:
            log.exception("watchdog %s: on_expire failed", self.path)

    def _forget(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                del self._clients[sock]
            self._sel.unregister(sock)
            sock.close()


class NodeWatchdogs:
    """One :class:`WatchdogMux` per node (``muxes[node]``); a reset calls on_reset(node)."""

    def __init__(self, state_dir: str | Path, nodes: Iterable[str], timeout: float,
                 on_reset: Callable[[str], None]) -> None:
        self.muxes = {node: WatchdogMux(Path(state_dir, "nodes", node, SOCKET_NAME), timeout,
                                        functools.partial(on_reset, node)) for node in nodes}

    def start(self) -> NodeWatchdogs:
        for mux in self.muxes.values():
            mux.start()
        return self

    def stop(self) -> None:
        for mux in self.muxes.values():
            mux.stop()

    def state(self) -> dict[str, dict[str, Any]]:
        return {node: mux.state() for node, mux in self.muxes.items()}
