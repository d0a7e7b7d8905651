"""Notifications: the HA events an operator acts on, sent to the targets the settings name.

Theory of operation. Every event passes through :meth:`Notifier.send`, which only puts
it on a bounded queue and returns: one daemon thread sends, so a slow or failing target
never delays a round, and a failure is logged in one line (the target's number and
scheme, never its URL: URLs hold tokens) and forgotten. A full queue drops the event
with a warning.

Targets:

* apprise URLs (webhook ``json://`` / ``jsons://``, ``mailto://``, ``gotify://``,
  ``ntfy://``, ``slack://``, ``matrix://``, and every other service apprise knows), one
  per line of the file ``[notify] urls_file`` names (a secret file: not the settings file
  itself, never argv). Each event is one message: the title, then the summary, one
  ``key: value`` line per field, and the event as one JSON line last (``{"event": ...,
  "node": ..., ...}``) for a receiver to parse.
* PVE's own notification system, on a PVE node: a mail to root through ``sendmail``
  becomes PVE's ``system-mail`` event (proxmox-mail-forward), so the matchers and targets
  configured in Datacenter -> Notifications apply. ``[notify] pve_mail``: ``auto`` (the
  default: when ``/usr/bin/proxmox-mail-forward`` exists), or a boolean.

Events (``event`` in the JSON; the fields vary): ``fence-started``, ``fence-verified``
(a device's read-back, or ``proof: lease``), ``fence-failed``, ``fence-acknowledged``,
``recovery-placed``, ``recovery-running`` (``seconds`` since placed, ``fence_seconds``
since the fence began), ``recovery-failed`` (no node had room), ``guest-error``,
``guest-running-twice`` (a stale copy its node's agent found), ``guest-unhealthy`` (its
QEMU guest agent stopped answering: pvha.core.health), ``quorum-lost``,
``quorum-back``, ``manager-takeover``, ``ha-degraded``, ``ha-healthy``. History events
are mapped by :func:`from_history`.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("pvha.notify")

PVE_MAIL_FORWARD = Path("/usr/bin/proxmox-mail-forward")
SENDMAIL = "/usr/sbin/sendmail"
QUEUE_SIZE = 1000
SEND_TIMEOUT = 30.0

SEVERITY = {
    "fence-started": "warning", "fence-verified": "success", "fence-failed": "failure",
    "fence-acknowledged": "warning", "recovery-placed": "info", "recovery-running": "success",
    "recovery-failed": "failure", "guest-error": "failure", "guest-running-twice": "failure",
    "guest-unhealthy": "warning",
    "quorum-lost": "failure", "quorum-back": "success", "manager-takeover": "info",
    "ha-degraded": "warning", "ha-healthy": "success",
}

_FENCE = {"started": "fence-started", "verified off": "fence-verified",
          "lease expired": "fence-verified", "failed": "fence-failed",
          "acknowledged, not verified": "fence-acknowledged"}
_RECOVERY = {"placed": "recovery-placed", "running": "recovery-running",
             "no recovery node": "recovery-failed"}


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # a key of SEVERITY
    summary: str  # one sentence
    fields: Mapping[str, Any] = field(default_factory=dict)
    time: float = 0.0

    def record(self, cluster: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.kind, "severity": SEVERITY.get(self.kind, "info"),
                               "time": round(self.time, 3), "summary": self.summary}
        if cluster:
            out["cluster"] = cluster
        out.update({k: v for k, v in self.fields.items() if v is not None})
        return out

    def title(self) -> str:
        node = self.fields.get("node")
        return f"pvha: {self.kind}" + (f" ({node})" if node else "")

    def body(self, cluster: str | None = None) -> str:
        record = self.record(cluster)
        lines = [self.summary, ""]
        lines += [f"{k}: {v}" for k, v in record.items() if k not in ("summary", "event")]
        return "\n".join([*lines, "", json.dumps(record, sort_keys=True)])


def from_history(record: Mapping[str, Any]) -> Event | None:
    """The notification of a history record (pvha.shell.history), or None."""
    kind_of = {"fence": _FENCE, "recovery": _RECOVERY}.get(str(record.get("event")))
    fields = {k: v for k, v in record.items() if k not in ("event", "time")}
    node, sid, outcome = record.get("node"), record.get("sid"), record.get("outcome")
    when = float(record.get("time") or 0.0)
    if record.get("event") == "stale-copy":
        where = record.get("target")
        return Event("guest-running-twice", f"{sid} ran on {node} although its config is on "
                     f"{where}: {outcome}", fields, when)
    if record.get("event") == "health":
        return Event("guest-unhealthy", f"{sid} on {node} is unhealthy "
                     f"({record.get('detail')}): restart policy applies", fields, when)
    if kind_of is None or outcome not in kind_of:
        return None
    kind = kind_of[str(outcome)]
    device = record.get("device")
    summaries = {
        "fence-started": f"fencing {node}: powering it off via {device}",
        "fence-verified": f"{node} fenced: " + (
            f"powered off by {device} (verified)" if device
            else f"its agent's lease expired ({record.get('silent')} s without renewal)"),
        "fence-failed": f"fencing {node} via {device} failed: {record.get('detail', '')}",
        "fence-acknowledged": f"{node} acknowledged off by fence-ack (not verified)",
        "recovery-placed": f"recovering {sid} from {node} on {record.get('target')}",
        "recovery-running": f"{sid} recovered from {node}: running on {record.get('target')}",
        "recovery-failed": f"{sid} of fenced {node} cannot be recovered: no node has room",
    }
    if kind == "fence-verified":
        fields.setdefault("proof", device or "lease")
    return Event(kind, summaries[kind].rstrip(": "), fields, when)


class Notifier:
    """See the module docstring. ``urls``: apprise URLs; ``mail``: send to PVE's
    notification system through ``sendmail``; ``cluster``: named in every event."""

    def __init__(self, urls: Sequence[str], mail: bool = False, *, cluster: str | None = None,
                 sendmail: str = SENDMAIL, clock: Callable[[], float] = time.time) -> None:
        self.urls, self.mail, self.cluster, self.sendmail = list(urls), mail, cluster, sendmail
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[Event | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._started: dict[str, float] = {}  # node -> when its fence began
        self._placed: dict[str, float] = {}  # sid -> when its recovery was placed
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.urls or self.mail)

    def history(self, record: Mapping[str, Any]) -> None:
        """A history record was appended: send its notification, if it has one."""
        event = from_history(record)
        if event is not None:
            self.send(event)

    def event(self, kind: str, summary: str, **fields: Any) -> None:
        self.send(Event(kind, summary, fields, self.clock()))

    def send(self, event: Event) -> None:
        """Queue ``event`` (never blocks, never raises)."""
        if not self.enabled:
            return
        event = self._durations(event)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pvha-notify",
                                                daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("notification queue full: %s dropped", event.kind)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (at most ``timeout`` s), then stop the sender."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def _durations(self, event: Event) -> Event:
        node, sid = event.fields.get("node"), event.fields.get("sid")
        extra: dict[str, Any] = {}
        if event.kind == "fence-started" and node:
            self._started.setdefault(str(node), event.time)
        elif event.kind in ("fence-verified", "fence-acknowledged") and node:
            began = self._started.pop(str(node), None)
            if began is not None:
                extra["fence_seconds"] = round(event.time - began, 1)
        elif event.kind == "recovery-placed" and sid:
            self._placed[str(sid)] = event.time
        elif event.kind == "recovery-running" and sid:
            placed = self._placed.pop(str(sid), None)
            if placed is not None:
                extra["seconds"] = round(event.time - placed, 1)
        if not extra:
            return event
        return Event(event.kind, event.summary, {**event.fields, **extra}, event.time)

    def _run(self) -> None:
        targets = self._targets()
        while True:
            event = self._queue.get()
            if event is None:
                return
            for number, (scheme, target) in enumerate(targets, start=1):
                try:
                    ok = bool(target(event))
                except Exception:  # noqa: BLE001 - a target must never stop the sender
                    ok = False
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                    log.warning("notification %s to target %d (%s) failed", event.kind,
                                number, scheme)

    def _targets(self) -> list[tuple[str, Callable[[Event], bool]]]:
        out: list[tuple[str, Callable[[Event], bool]]] = []
        if self.urls:
            out += _apprise_targets(self.urls, self.cluster)
        if self.mail:
            out.append(("pve-mail", self._mail))
        return out

    def _mail(self, event: Event) -> bool:
        message = (f"To: root\nSubject: {event.title()}\n"
                   "Content-Type: text/plain; charset=utf-8\n\n" + event.body(self.cluster))
        try:
            done = subprocess.run([self.sendmail, "-t"], input=message.encode(),
                                  capture_output=True, timeout=SEND_TIMEOUT, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


def _apprise_targets(urls: Sequence[str], cluster: str | None
                     ) -> list[tuple[str, Callable[[Event], bool]]]:
    import apprise  # ~0.3 s: only when a notification is first sent

    logging.getLogger("apprise").setLevel(logging.CRITICAL)  # it may name URLs
    types = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
             "warning": apprise.NotifyType.WARNING, "failure": apprise.NotifyType.FAILURE}
    out: list[tuple[str, Callable[[Event], bool]]] = []
    for url in urls:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        one = apprise.Apprise()
        if not one.add(url):
            out.append((scheme, lambda _e: False))  # told at each event: the URL is wrong
            continue

        def send(event: Event, one: Any = one) -> bool:
            return bool(one.notify(body=event.body(cluster), title=event.title(),
                                   notify_type=types[SEVERITY.get(event.kind, "info")]))

        out.append((scheme, send))
    return out


def read_urls(path: Path) -> list[str]:
    """The apprise URLs of ``path``: one per line, ``#`` comments and blank lines skipped.
    OSError when unreadable (the caller names the file, never its content)."""
    text = path.read_text(encoding="utf-8")
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def notifier_for(settings: Any) -> Notifier:
    """The Notifier of ``settings.notify`` (ConfigError when the URL file cannot be read:
    its name, never its content)."""
    from pvha.errors import ConfigError

    cfg = settings.notify
    urls: list[str] = []
    if cfg.urls_file is not None:
        try:
            urls = read_urls(cfg.urls_file)
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"cannot read the notification URLs: {why}",
                              str(cfg.urls_file)) from None
    mail = PVE_MAIL_FORWARD.exists() if cfg.pve_mail is None else cfg.pve_mail
    return Notifier(urls, mail)
