"""pvha's watchdog-mux client against the protocol itself, on a bare unix socket: the
bytes it writes, the magic close, and how it notices that the mux dropped it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pvha.adapters.watchdog import WatchdogClient


def _listener(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "wd.sock"))
    sock.listen(1)
    sock.settimeout(5)
    return sock


def _all(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(64):
        data += chunk
    return data


@pytest.mark.parametrize(("clean", "sent"), [(True, b"\0\0V"), (False, b"\0\0")])
def test_feeds_are_nul_bytes_and_only_a_clean_close_ends_with_v(
        tmp_path: Path, clean: bool, sent: bytes) -> None:
    with _listener(tmp_path) as srv:
        client = WatchdogClient(tmp_path / "wd.sock")
        conn, _ = srv.accept()
        with conn:
            client.feed()
            client.feed()
            assert not client.dropped()
            client.close(clean=clean)
            assert _all(conn) == sent


def test_the_mux_dropping_the_connection_is_seen_without_feeding(tmp_path: Path) -> None:
    with _listener(tmp_path) as srv:
        client = WatchdogClient(tmp_path / "wd.sock")
        conn, _ = srv.accept()
        assert not client.dropped()
        conn.close()  # the node is being reset
        assert client.dropped()
        client.close(clean=False)


def test_no_socket_is_an_oserror(tmp_path: Path) -> None:
    try:
        WatchdogClient(tmp_path / "missing.sock")
    except OSError as exc:
        assert exc.errno is not None
    else:
        raise AssertionError("connected to nothing")
