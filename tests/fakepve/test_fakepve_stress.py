"""Robustness: concurrent clients while a node flaps; every answer is one PVE would give."""

from __future__ import annotations

import threading

import requests
from fakepve_helpers import ctl, token_client
from proxmoxer.core import ResourceException

from pvha.fakepve.server import FakePve


def test_concurrent_requests_while_a_node_flaps(fake: FakePve) -> None:
    problems: list[str] = []
    done = threading.Event()

    def client(node: str) -> None:
        px = token_client(fake, node)
        for _ in range(25):
            try:
                px.cluster.resources.get(type="vm")
                px.nodes("node3").qemu.get()
            except ResourceException as exc:
                if exc.status_code != 595:
                    problems.append(f"{node}: {exc}")
            except requests.exceptions.ConnectionError:
                if node != "node3":
                    problems.append(f"{node}: connection error")

    def flapper() -> None:
        # all six flips, even if the clients are done first (it then ends powered on)
        for i in range(6):
            ctl(fake, f"power node3 {'off' if i % 2 == 0 else 'on'}")
            done.wait(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in ("node1", "node2", "node3")]
    threads.append(threading.Thread(target=flapper))
    for t in threads:
        t.start()
    for t in threads[:3]:
        t.join(timeout=60)
    done.set()
    threads[3].join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert problems == []
    assert fake.cluster.nodes["node3"].power  # six flips: back on
    assert token_client(fake, "node3").version.get()
