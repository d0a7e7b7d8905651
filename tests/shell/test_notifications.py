"""Notifications through apprise to a real webhook receiver on loopback (apprise's
``json://``), PVE's mail route through a sendmail stand-in, and what a failing or slow
target must never do: block a caller, stop the sender, or put a URL in the log."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvha.errors import ConfigError
from pvha.settings import load_settings
from pvha.shell.notifications import Event, Notifier, from_history, notifier_for


class Receiver:
    """A webhook receiver: every POST body (JSON) by path; ``delay`` s per answer."""

    def __init__(self, delay: float = 0.0) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                outer.got.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook"

    def events(self) -> list[dict[str, Any]]:
        """The JSON line each message ends with."""
        return [json.loads(payload["message"].splitlines()[-1]) for _p, payload in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_an_event_reaches_a_webhook_with_its_fields_in_text_and_json(receiver: Receiver) -> None:
    n = Notifier([receiver.url], cluster="prod")
    n.event("quorum-lost", "node1 sees no quorum", node="node1")
    n.close()
    (path, payload), = receiver.got
    assert path == "/hook" and payload["title"] == "pvha: quorum-lost (node1)"
    assert payload["type"] == "failure"
    text = payload["message"].splitlines()
    assert text[0] == "node1 sees no quorum" and "node: node1" in text and "cluster: prod" in text
    assert receiver.events()[0] | {"time": 0} == {
        "event": "quorum-lost", "severity": "failure", "node": "node1", "cluster": "prod",
        "summary": "node1 sees no quorum", "time": 0}


def test_history_events_become_notifications_with_their_durations(receiver: Receiver) -> None:
    n = Notifier([receiver.url])
    for record in (
        {"time": 100.0, "event": "fence", "node": "node2", "outcome": "started",
         "device": "ipmi", "attempt": 1},
        {"time": 103.5, "event": "fence", "node": "node2", "outcome": "verified off",
         "device": "ipmi", "attempt": 1},
        {"time": 104.0, "event": "recovery", "node": "node2", "sid": "vm:101",
         "outcome": "placed", "target": "node3"},
        {"time": 110.0, "event": "recovery", "node": "node2", "sid": "vm:101",
         "outcome": "running", "target": "node3"},
        {"time": 111.0, "event": "recovery", "node": "node2", "outcome": "bogus"},
    ):
        n.history(record)
    n.close()
    events = receiver.events()
    assert [e["event"] for e in events] == [
        "fence-started", "fence-verified", "recovery-placed", "recovery-running"]
    assert events[1]["proof"] == "ipmi" and events[1]["fence_seconds"] == 3.5
    assert events[1]["summary"] == "node2 fenced: powered off by ipmi (verified)"
    assert events[3]["seconds"] == 6.0 and events[3]["target"] == "node3"


@pytest.mark.parametrize("record, kind, summary", [
    ({"event": "fence", "node": "n2", "outcome": "lease expired", "proof": "lease",
      "silent": 76.0}, "fence-verified", ("n2 fenced: its agent's lease expired (76.0 s "
     "without renewal)")),
    ({"event": "fence", "node": "n2", "outcome": "acknowledged, not verified", "by": "root"},
     "fence-acknowledged", "n2 acknowledged off by fence-ack (not verified)"),
    ({"event": "fence", "node": "n2", "outcome": "failed", "device": "ipmi",
      "detail": "timed out"}, "fence-failed", "fencing n2 via ipmi failed: timed out"),
    ({"event": "recovery", "node": "n2", "sid": "ct:105", "outcome": "no recovery node"},
     "recovery-failed", "ct:105 of fenced n2 cannot be recovered: no node has room"),
    ({"event": "stale-copy", "node": "n2", "sid": "vm:101", "outcome": "stopped",
      "target": "n3"}, "guest-running-twice",
     "vm:101 ran on n2 although its config is on n3: stopped"),
    ({"event": "health", "node": "n2", "sid": "vm:101", "outcome": "unhealthy",
      "detail": "guest agent did not answer 3 pings in a row"}, "guest-unhealthy",
     ("vm:101 on n2 is unhealthy (guest agent did not answer 3 pings in a row): restart "
      "policy applies")),
])
def test_each_history_outcome_has_its_event(record: dict[str, Any], kind: str,
                                            summary: str) -> None:
    event = from_history({"time": 1.0, **record})
    assert event is not None and (event.kind, event.summary) == (kind, summary)
    assert event.fields["node"] == "n2"


def test_a_failing_target_is_logged_without_its_url_and_the_others_still_get_it(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    secret = "json://user:s3cr3t@127.0.0.1:1/hook"  # nothing listens on port 1
    n = Notifier([secret, "not a url", receiver.url])
    with caplog.at_level(logging.DEBUG):
        n.event("ha-degraded", "HA degraded: resources.cfg:3: bad state")
        n.event("ha-healthy", "HA no longer degraded")
        n.close()
    assert [e["event"] for e in receiver.events()] == ["ha-degraded", "ha-healthy"]
    assert n.sent == 2 and n.failed == 4
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("pvha")]
    assert "notification ha-degraded to target 1 (json) failed" in lines
    assert "notification ha-degraded to target 2 (?) failed" in lines
    assert not [r for r in caplog.records if "s3cr3t" in r.getMessage()]


def test_sending_never_blocks_the_caller() -> None:
    slow = Receiver(delay=2.0)
    n = Notifier([slow.url])
    try:
        began = time.monotonic()
        for i in range(20):
            n.send(Event("recovery-placed", f"recovering vm:{i}", {"sid": f"vm:{i}"}, 1.0))
        queued_in = time.monotonic() - began
        assert queued_in < 1.0, queued_in  # 20 events of a 2 s target: not waited for
        n.close(timeout=0.1)
    finally:
        slow.server.shutdown()
        slow.server.server_close()
    n.close(timeout=30)  # the rest fail at once now: logged here, not after the tests end


def test_pve_mail_route_pipes_a_mail_to_root_through_sendmail(tmp_path: Path) -> None:
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/argv"\ncat > "{tmp_path}/mail"\n')
    sendmail.chmod(0o755)
    n = Notifier([], mail=True, sendmail=str(sendmail))
    n.event("guest-error", "vm:101 entered the error state", sid="vm:101")
    n.close()
    assert (tmp_path / "argv").read_text() == "-t\n"
    mail = (tmp_path / "mail").read_text()
    assert mail.startswith("To: root\nSubject: pvha: guest-error\n") and n.sent == 1
    assert json.loads(mail.splitlines()[-1])["sid"] == "vm:101"


def test_the_urls_come_from_their_file(tmp_path: Path, receiver: Receiver) -> None:
    urls = tmp_path / "urls"
    urls.write_text(f"# webhook\n\n{receiver.url}\n")
    settings = load_settings(env={"PVHA_PASSWORD": "pw", "PVHA_NOTIFY_URLS_FILE": str(urls),
                                  "PVHA_NOTIFY_PVE_MAIL": "no"}, path=_empty(tmp_path))
    n = notifier_for(settings)
    assert n.urls == [receiver.url] and n.mail is False
    settings = load_settings(env={"PVHA_PASSWORD": "pw", "PVHA_NOTIFY_URLS_FILE":
                                  str(tmp_path / "missing")}, path=_empty(tmp_path))
    with pytest.raises(ConfigError, match="cannot read the notification URLs"):
        notifier_for(settings)


@pytest.mark.parametrize("word, expected", [("yes", True), ("On", True), ("1", True),
                                            ("true", True), ("no", False), ("OFF", False),
                                            ("0", False), ("false", False)])
def test_pve_mail_takes_pve_s_boolean_spellings(tmp_path: Path, word: str,
                                                expected: bool) -> None:
    settings = load_settings(env={"PVHA_PASSWORD": "pw", "PVHA_NOTIFY_PVE_MAIL": word},
                             path=_empty(tmp_path))
    assert settings.notify.pve_mail is expected


def test_a_bad_boolean_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pve_mail: expected a boolean \(yes/no"):
        load_settings(env={"PVHA_PASSWORD": "pw", "PVHA_NOTIFY_PVE_MAIL": "maybe"},
                      path=_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text("")
    return path
