"""A corrupting layer between ``pvha watch`` and the fake PVE, in process: it wraps
``FakePve.api.handle`` (every node listener calls it), so each 200 JSON answer may be
corrupted before it goes on the wire over the real HTTPS connection.

Modes (``faults_plan.CORRUPT_MODES``): ``truncate`` (body cut short: not JSON),
``dropkey`` (a key removed from an entry: ``online`` of a node entry when aimed at a
victim node), ``dup`` (list entries duplicated), ``dup_conflict`` (a duplicate whose
``online``/``status`` says the opposite), ``online_yes`` (``online: 1`` becomes
``"yes"``), ``nodata`` (200 with a body without ``data``).

Sporadic: each answer is corrupted with probability ``rate`` in a random mode, aimed at
no particular node. Windows ("sticky"): while open, every answer on the window's path
is corrupted in its mode, aimed at its victim node, as a broken proxy or a bad API
version would do for a while. Logins (``/access/ticket``) pass untouched.

Every corruption applied is recorded with its time, so a violation can be matched with
what the watcher was shown just before.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from pvha.fakepve.wire import Reply

FLIP = {"online": {1: 0, 0: 1}, "status": {"online": "offline", "offline": "online",
                                          "running": "stopped", "stopped": "running"}}
MAX_RECORDS = 5000


class Corrupter:
    """Installed on ``fake.api`` at construction; ``uninstall`` puts the original back."""

    def __init__(self, fake: Any, seed: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = fake.api
        self._orig = fake.api.handle
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._clock = clock
        self.rate = 0.0
        self.windows: list[dict[str, Any]] = []
        self.records: list[tuple[float, str, str, str]] = []  # (t, mode, path, aimed at)
        self.counts: Counter[str] = Counter()
        self.seen = 0
        fake.api.handle = self.handle

    def uninstall(self) -> None:
        self.off()
        self._api.handle = self._orig

    def off(self) -> None:
        with self._lock:
            self.rate = 0.0
            self.windows.clear()

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = rate

    def open_window(self, window: dict[str, Any]) -> None:
        with self._lock:
            self.windows.append(window)

    def close_window(self, window: dict[str, Any]) -> None:
        with self._lock:
            if window in self.windows:
                self.windows.remove(window)

    def since(self, t: float) -> list[tuple[float, str, str, str]]:
        with self._lock:
            return [r for r in self.records if r[0] >= t]

    # --- the wrapper ---------------------------------------------------------------------

    def handle(self, node: str, method: str, path: str, params: Mapping[str, Any],
               headers: Mapping[str, str]) -> Reply:
        reply = self._orig(node, method, path, params, headers)
        if reply.status != 200 or path == "/access/ticket" or not reply.body.startswith(b"{"):
            return reply
        with self._lock:
            self.seen += 1
            choice = self._choose(path)
            if choice is None:
                return reply
            mode, victim = choice
            body = self._corrupt(reply.body, mode, victim)
            if body is None:
                return reply
            self.counts[mode] += 1
            if len(self.records) < MAX_RECORDS:
                self.records.append((self._clock(), mode, f"{method} {path}", victim or ""))
        return Reply(200, "OK", body, dict(reply.headers))

    def _choose(self, path: str) -> tuple[str, str | None] | None:
        for w in reversed(self.windows):
            if w["path"] in ("*", path):
                return w["mode"], w["victim"]
        if self.rate > 0 and self._rng.random() < self.rate:
            from tests.e2e.faults_plan import CORRUPT_MODES

            return self._rng.choice(CORRUPT_MODES), None
        return None

    def _corrupt(self, body: bytes, mode: str, victim: str | None) -> bytes | None:
        """The corrupted body, or None when this answer offers nothing to corrupt in
        ``mode`` (e.g. no node entry for ``online_yes``)."""
        rng = self._rng
        if mode == "truncate":
            return body[:rng.randint(1, max(1, len(body) - 1))]
        if mode == "nodata":
            return rng.choice((b"{}", b'{"success":1}', b'{"errors":{}}'))
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        data = doc.get("data")
        changed = _MUTATORS[mode](rng, data, victim)
        return json.dumps(doc, separators=(",", ":")).encode() if changed else None


def _entries(data: Any, victim: str | None) -> list[dict[str, Any]]:
    """The dict entries of a list answer; when aimed at a victim, only the entries
    about it (its node entry, the guests it owns)."""
    if not isinstance(data, list):
        return []
    items = [e for e in data if isinstance(e, dict)]
    if victim is None:
        return items
    return [e for e in items if victim in (e.get("name"), e.get("node"))]


def _dropkey(rng: random.Random, data: Any, victim: str | None) -> bool:
    if isinstance(data, dict) and data:
        del data[rng.choice(sorted(data))]
        return True
    items = _entries(data, victim)
    if not items:
        return False
    entry = rng.choice(items)
    keys = sorted(entry)
    if not keys:
        return False
    key = "online" if "online" in entry and (victim or rng.random() < 0.5) else rng.choice(keys)
    del entry[key]
    return True


def _dup(rng: random.Random, data: Any, victim: str | None) -> bool:
    items = _entries(data, victim)
    if not items:
        return False
    for entry in rng.sample(items, min(len(items), rng.randint(1, 2))):
        data.insert(rng.randrange(len(data) + 1), dict(entry))
    return True


def _dup_conflict(rng: random.Random, data: Any, victim: str | None) -> bool:
    items = [e for e in _entries(data, victim)
             if any(e.get(k) in FLIP[k] for k in FLIP)]
    if not items:
        return False
    copy = dict(rng.choice(items))
    for key, flip in FLIP.items():
        if copy.get(key) in flip:
            copy[key] = flip[copy[key]]
            break
    data.insert(rng.randrange(len(data) + 1), copy)
    return True


def _online_yes(rng: random.Random, data: Any, victim: str | None) -> bool:
    items = [e for e in _entries(data, victim) if e.get("online") == 1]
    if victim is None:
        items = [e for e in items if rng.random() < 0.5] or items[:1]
    for entry in items:
        entry["online"] = "yes"
    return bool(items)


_MUTATORS: dict[str, Callable[[random.Random, Any, str | None], bool]] = {
    "dropkey": _dropkey, "dup": _dup, "dup_conflict": _dup_conflict,
    "online_yes": _online_yes,
}
