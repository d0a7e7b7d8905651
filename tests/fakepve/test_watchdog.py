"""The per-node watchdog-mux of the fake cluster, over real unix sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pvha.fakepve.watchdog import MAX_PATH, NodeWatchdogs, WatchdogClient, WatchdogMux

TIMEOUT = 0.5


def wait_for(pred: Callable[[], bool], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def feed_for(client: WatchdogClient, seconds: float, every: float = 0.1) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        client.feed()
        time.sleep(every)


class Resets:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.calls.append(time.monotonic())

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.calls)


@pytest.fixture
def resets() -> Resets:
    return Resets()


@pytest.fixture
def mux(tmp_path: Path, resets: Resets) -> Iterator[WatchdogMux]:
    m = WatchdogMux(tmp_path / "wd.sock", TIMEOUT, resets).start()
    yield m
    m.stop()


def connect(mux: WatchdogMux, n: int = 1) -> WatchdogClient:
    client = WatchdogClient(mux.path)
    wait_for(lambda: mux.state()["clients"] == n)
    return client


def assert_dropped(client: WatchdogClient) -> None:
    """The mux closed this client's connection (the node was reset)."""
    assert client.sock.recv(1) == b""
    with pytest.raises(OSError):
        client.feed()
    client.close(clean=False)


def test_fed_client_never_resets(mux: WatchdogMux, resets: Resets) -> None:
    client = connect(mux)
    feed_for(client, 3 * TIMEOUT)
    assert resets.count == 0
    assert mux.state() == {"clients": 1, "armed": True, "resets": 0, "last_reset": None}
    client.close()


def test_unfed_client_resets_once_after_timeout(mux: WatchdogMux, resets: Resets) -> None:
    start = time.monotonic()
    client = connect(mux)
    client.feed()
    wait_for(lambda: resets.count == 1)
    assert resets.calls[0] - start >= TIMEOUT
    time.sleep(2 * TIMEOUT)
    assert resets.count == 1
    state = mux.state()
    assert state["resets"] == 1 and state["clients"] == 0 and not state["armed"]
    assert abs(state["last_reset"] - time.time()) < 5
    assert_dropped(client)


def test_magic_close_disarms(mux: WatchdogMux, resets: Resets) -> None:
    client = connect(mux)
    client.feed()
    client.close(clean=True)
    wait_for(lambda: mux.state()["clients"] == 0)
    time.sleep(2 * TIMEOUT)
    assert resets.count == 0
    assert mux.state()["resets"] == 0


def test_feed_after_magic_byte_rearms(mux: WatchdogMux, resets: Resets) -> None:
    client = connect(mux)
    client.sock.sendall(b"V\0")  # 'V' must be the last byte before the close
    client.sock.close()
    wait_for(lambda: resets.count == 1, limit=0.8 * TIMEOUT)  # at once, not by timeout


def test_close_without_magic_resets_at_once(mux: WatchdogMux, resets: Resets) -> None:
    client = connect(mux)
    client.feed()
    client.close(clean=False)
    wait_for(lambda: resets.count == 1, limit=0.8 * TIMEOUT)
    time.sleep(2 * TIMEOUT)
    assert resets.count == 1
    assert mux.state()["resets"] == 1


def test_one_unfed_client_of_two_resets_and_drops_both(mux: WatchdogMux,
                                                       resets: Resets) -> None:
    fed = connect(mux, 1)
    unfed = connect(mux, 2)
    assert mux.state()["clients"] == 2
    end = time.monotonic() + 3 * TIMEOUT
    while resets.count == 0 and time.monotonic() < end:
        fed.feed()
        time.sleep(0.05)
    assert resets.count == 1
    assert mux.state()["clients"] == 0
    assert_dropped(fed)
    assert_dropped(unfed)


def test_new_clients_are_served_after_a_reset(mux: WatchdogMux, resets: Resets) -> None:
    WatchdogClient(mux.path).close(clean=False)
    wait_for(lambda: resets.count == 1)
    client = connect(mux)
    feed_for(client, 2 * TIMEOUT)
    assert resets.count == 1
    assert mux.state()["clients"] == 1
    client.close()
    wait_for(lambda: mux.state()["clients"] == 0)
    time.sleep(TIMEOUT)
    assert resets.count == 1


def test_state_counts_clients(mux: WatchdogMux) -> None:
    assert mux.state() == {"clients": 0, "armed": False, "resets": 0, "last_reset": None}
    a = connect(mux, 1)
    b = connect(mux, 2)
    assert mux.state()["armed"]
    a.close()
    wait_for(lambda: mux.state()["clients"] == 1)
    b.close()
    wait_for(lambda: mux.state() == {"clients": 0, "armed": False, "resets": 0,
                                     "last_reset": None})


def test_failing_callback_does_not_kill_the_mux(tmp_path: Path) -> None:
    calls: list[int] = []

    def boom() -> None:
        calls.append(1)
        raise RuntimeError("reset failed")

    m = WatchdogMux(tmp_path / "wd.sock", TIMEOUT, boom).start()
    try:
        WatchdogClient(m.path).close(clean=False)
        wait_for(lambda: len(calls) == 1)
        WatchdogClient(m.path).close(clean=False)
        wait_for(lambda: len(calls) == 2)
        assert m.state()["resets"] == 2
    finally:
        m.stop()


def test_stop_removes_socket_without_reset_and_start_reopens(mux: WatchdogMux,
                                                             resets: Resets) -> None:
    client = connect(mux)
    mux.stop()
    assert not mux.path.exists()
    assert_dropped(client)
    with pytest.raises(OSError):
        WatchdogClient(mux.path)
    mux.start()
    with pytest.raises(RuntimeError):
        mux.start()
    client = connect(mux)
    client.close()
    wait_for(lambda: mux.state()["clients"] == 0)
    assert resets.count == 0


def test_stop_from_the_callback(tmp_path: Path) -> None:
    holder: list[WatchdogMux] = []
    m = WatchdogMux(tmp_path / "wd.sock", TIMEOUT, lambda: holder[0].stop())
    holder.append(m)
    m.start()
    WatchdogClient(m.path).close(clean=False)
    wait_for(lambda: not m.path.exists())
    m.start()  # waits for the old thread
    connect(m).close()
    m.stop()
    assert m.state()["resets"] == 1


def test_path_too_long_or_bad_timeout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="AF_UNIX"):
        WatchdogMux(tmp_path / ("x" * MAX_PATH), TIMEOUT, lambda: None)
    with pytest.raises(ValueError, match="AF_UNIX"):
        NodeWatchdogs(tmp_path / ("d" * 100), ["node1"], TIMEOUT, lambda node: None)
    with pytest.raises(ValueError, match="positive"):
        WatchdogMux(tmp_path / "wd.sock", 0, lambda: None)


def test_stale_socket_file_is_replaced(tmp_path: Path, resets: Resets) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "wd.sock"))  # a crashed run leaves its socket file
    stale.close()
    m = WatchdogMux(tmp_path / "wd.sock", TIMEOUT, resets).start()
    try:
        connect(m).close()
        wait_for(lambda: m.state()["clients"] == 0)
    finally:
        m.stop()
    assert resets.count == 0


def test_node_watchdogs_one_socket_per_node(tmp_path: Path) -> None:
    reset: list[str] = []
    nodes = ["node1", "node2", "node3"]
    wds = NodeWatchdogs(tmp_path, nodes, TIMEOUT, reset.append).start()
    try:
        for node in nodes:
            assert (tmp_path / "nodes" / node / "watchdog-mux.sock").is_socket()
            assert wds.muxes[node].path == tmp_path / "nodes" / node / "watchdog-mux.sock"
        fed = WatchdogClient(wds.muxes["node1"].path)
        unfed = WatchdogClient(wds.muxes["node2"].path)
        end = time.monotonic() + 3 * TIMEOUT
        while not reset and time.monotonic() < end:
            fed.feed()
            time.sleep(0.05)
        assert reset == ["node2"]
        state = wds.state()
        assert state["node1"]["resets"] == 0 and state["node1"]["clients"] == 1
        assert state["node2"]["resets"] == 1 and state["node2"]["clients"] == 0
        assert state["node3"] == {"clients": 0, "armed": False, "resets": 0,
                                  "last_reset": None}
        fed.close()
        unfed.close(clean=False)
    finally:
        wds.stop()
    for node in nodes:
        assert not (tmp_path / "nodes" / node / "watchdog-mux.sock").exists()
    assert reset == ["node2"]


def test_the_fake_cluster_resets_a_node_whose_watchdog_client_stops_feeding(
        fake_factory: Any) -> None:
    from fakepve_helpers import ctl, wait_for

    fake = fake_factory(timing={"watchdog_seconds": 0.5, "reboot_seconds": 0.5})
    status = ctl(fake, "status")["nodes"]
    sock = status["node2"]["watchdog"]["socket"]
    assert sock == str(fake.state / "nodes" / "node2" / "watchdog-mux.sock")
    client = WatchdogClient(sock)
    fed = WatchdogClient(status["node3"]["watchdog"]["socket"])
    wait_for(lambda: ctl(fake, "status")["nodes"]["node2"]["watchdog"]["clients"] == 1)
    booted = fake.cluster.nodes["node2"].boot_time
    assert fake.cluster.is_running(101, "node2")
    for _ in range(12):  # node3's client is fed, node2's is not
        fed.feed()
        time.sleep(0.1)
    # node2 was reset: its guests died, it powered on again with its watchdog serving
    assert not fake.cluster.is_running(101, "node2")
    wait_for(lambda: fake.cluster.nodes["node2"].power
             and fake.cluster.nodes["node2"].boot_time > booted)
    wd = wait_for(lambda: ctl(fake, "status")["nodes"]["node2"]["watchdog"])
    assert (wd["resets"], wd["clients"]) == (1, 0)
    with pytest.raises(OSError):
        client.feed()
        client.feed()
    assert ctl(fake, "status")["nodes"]["node3"]["watchdog"]["resets"] == 0
    assert fake.cluster.is_running(102, "node3")
    fed.close()
    WatchdogClient(sock).close()  # served again after the reset
