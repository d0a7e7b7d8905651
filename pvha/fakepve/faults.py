"""Injected faults, per node or for all nodes (``node=None``): added latency, bursts of
5xx answers, and connections dropped without an answer. Counters are consumed one per
request, node-specific ones first."""

from __future__ import annotations

import threading
from typing import Any

DEFAULT_5XX = 503
REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout", 596: "Connection timed out"}


class Faults:
    """Thread-safe fault state consulted by every listener."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency: dict[str | None, float] = {}
        self._fail: dict[str | None, list[int]] = {}  # [count, status]
        self._drop: dict[str | None, int] = {}

    def set_latency(self, ms: float, node: str | None = None) -> None:
        if ms < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency[node] = ms / 1000.0

    def add_fail(self, count: int, node: str | None = None, status: int = DEFAULT_5XX) -> None:
        if count < 0 or not 500 <= status <= 599:
            raise ValueError("fail5xx needs COUNT >= 0 and a 5xx status")
        with self._lock:
            self._fail[node] = [count, status]

    def add_drop(self, count: int, node: str | None = None) -> None:
        if count < 0:
            raise ValueError("drop needs COUNT >= 0")
        with self._lock:
            self._drop[node] = count

    def clear(self) -> None:
        with self._lock:
            self._latency.clear()
            self._fail.clear()
            self._drop.clear()

    def latency(self, node: str) -> float:
        """Seconds to wait before answering a request on ``node``."""
        with self._lock:
            return self._latency.get(node, self._latency.get(None, 0.0))

    def take_fail(self, node: str) -> int | None:
        """The status to fail this request with, consuming one from the burst."""
        with self._lock:
            for key in (node, None):
                entry = self._fail.get(key)
                if entry and entry[0] > 0:
                    entry[0] -= 1
                    return entry[1]
        return None

    def take_drop(self, node: str) -> bool:
        with self._lock:
            for key in (node, None):
                if self._drop.get(key, 0) > 0:
                    self._drop[key] -= 1
                    return True
        return False

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"latency_ms": {_name(k): v * 1000 for k, v in self._latency.items()},
                    "fail5xx": {_name(k): v[0] for k, v in self._fail.items() if v[0]},
                    "drop": {_name(k): v for k, v in self._drop.items() if v}}


def _name(node: str | None) -> str:
    return node or "*"
