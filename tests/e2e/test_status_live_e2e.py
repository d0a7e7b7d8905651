"""``pvha status --watch`` against the fake PVE of ``pvha sim serve`` (3 nodes, 6 HA
guests: node3 has ct:102 and ct:105): on a pseudo-terminal the full-screen view (the
alternate screen, the header, the state table and the latest events side by side or
stacked, an API failure shown in the view, Ctrl-C restoring the terminal); on a pipe
plain appended blocks, and JSON Lines for json. Waits are bounded; nothing here
asserts on speed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from pvha.shell.history import History
from tests.e2e.harness import E2E, REPO, wait_for
from tests.e2e.terminal import ALT_SCREEN_OFF, ALT_SCREEN_ON, ESCAPES, HOME, Terminal, plain

WATCH = ["status", "--watch", "--interval", "0.3"]
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def _line_with(lines: list[str], *parts: str) -> str | None:
    return next((ln for ln in lines if all(p in ln for p in parts)), None)


def test_wide_view_shows_state_and_events_side_by_side_and_follows_a_failure(
        e2e: E2E) -> None:
    e2e.watch()
    wait_for(e2e.all_started, 40, what="all services started")
    term = Terminal(WATCH, e2e.env(), columns=160, rows=50)
    try:
        first = term.wait_frame(["ct:105 (node3, started)", "master since"])
        assert term.output().index(ALT_SCREEN_ON) < term.output().index(b"ct:105")
        assert re.match(rf"pvha status, every 0\.3 s \(Ctrl-C to quit\), refreshed {STAMP}$",
                        first[0]), first[:3]
        assert first[1] == "quorum OK"
        assert re.match(r"master node1 \(active, .+\) - master since ", first[2]), first[2]
        # both panels on one line: their titles, then the table heads
        assert _line_with(first, " state ", " latest events (0 of 0, pvha history) "), first
        assert _line_with(first, "┏", "no fence or recovery events yet"), first
        assert _line_with(first, "lrm", "node3 (active, fence-ack only")
        seen = len(term.frames())

        e2e.ctl("power node3 off")
        term.wait_frame("node3 (executor not running: node offline", after=seen)
        # the manager's detection is journaled: a node event beside the state
        down = term.wait_frame(["node3 (executor not running", "offline"], after=seen)
        assert _line_with(down, "│ node ", "│ node3 ", "│ offline"), down
        assert "acknowledged" not in "\n".join(down)
        ack = e2e.pvha("fence-ack", "node3", "--yes")
        assert ack.returncode == 0, ack.stderr
        seen = len(term.frames())
        later = term.wait_frame(["acknowledged, not verified", "placed"], after=seen)
        title = _line_with(later, " state ", " latest events (")
        assert title and re.search(r"latest events \((\d+) of \1, pvha history\)", title)
        # a state row and an event row share a line
        assert any(re.search(r"│ (lrm|fencing|service) +│ .*│ (node|fence|recovery) +│ "
                             r"node3 +│", ln) for ln in later), later
        assert term.ctrl_c() == 0
        out = term.output()
        assert out.rindex(ALT_SCREEN_OFF) > out.rindex(b"placed")
        assert "Traceback" not in plain(out) and "pvha: error" not in plain(out)
    finally:
        term.close()


def test_narrow_view_stacks_and_shows_an_api_failure_until_the_api_answers(e2e: E2E) -> None:
    journal = History(e2e.config_dir)  # more events than fit: the newest are shown
    for k in range(1, 31):
        journal.append("fence", "node2", time=time.time(), outcome="failed",
                       device="ipmi", detail=f"event-{k:02d}")
    env = e2e.env(hosts=[e2e.fp.hosts[0]])  # only node1's API: its failure is a failure
    term = Terminal(WATCH, env, columns=80, rows=40)
    try:
        first = term.wait_frame(["quorum OK", "latest events"])
        shown = re.search(r"latest events \((\d+) of 30, pvha history\)", "\n".join(first))
        assert shown and 3 <= int(shown[1]) < 30, first
        newest = [f"event-{k:02d}" for k in range(31 - int(shown[1]), 31)]
        assert all(_line_with(first, e) for e in newest), first
        assert not _line_with(first, f"event-{30 - int(shown[1]):02d}"), first
        state = next(i for i, ln in enumerate(first) if " state " in ln)
        events = next(i for i, ln in enumerate(first) if " latest events " in ln)
        assert state < events and " latest events " not in first[state], first
        assert _line_with(first, "service", "vm:100 (node1,")  # the table above the events
        assert first.index(_line_with(first, "vm:100 (node1,")) < events
        e2e.ctl("fail5xx 100000 node1")
        failed = term.wait_frame(["quorum unknown (cluster API failed)", "API: "])
        api = _line_with(failed, "API: ")
        assert api and re.fullmatch(r"API: \S+: 503 Service Unavailable", api), failed
        seen = len(term.frames())
        e2e.ctl("clear-faults")
        back = term.wait_frame("quorum OK", after=seen)
        assert not _line_with(back, "API: ")
        assert term.ctrl_c() == 0
        out = term.output()
        assert out.rindex(ALT_SCREEN_OFF) > out.rindex(HOME)
        assert "Traceback" not in plain(out) and "pvha: error" not in plain(out)
    finally:
        term.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_restore_the_terminal(e2e: E2E, sig: signal.Signals) -> None:
    term = Terminal(WATCH, e2e.env(), columns=100, rows=30)
    try:
        term.wait_frame("quorum OK")
        term.proc.send_signal(sig)
        assert term.exit_code() == 0
        out = term.output()
        assert out.rindex(ALT_SCREEN_OFF) > out.rindex(ALT_SCREEN_ON)
        assert "Traceback" not in plain(out)
    finally:
        term.close()


def test_bad_input_on_a_terminal_is_one_line_and_no_screen(e2e: E2E) -> None:
    env = e2e.env(PVHA_CONFIG_DIR=str(e2e.tmp / "missing"))
    term = Terminal(WATCH, env, columns=100, rows=30)
    try:
        assert term.exit_code() == 1
        out = plain(term.output()).strip()
        assert out.startswith("pvha: error: ") and "\n" not in out, out
        assert ALT_SCREEN_ON not in term.output()
    finally:
        term.close()


def _watch_piped(e2e: E2E, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pvha", *WATCH, *args], env=e2e.env(),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_piped_text_appends_plain_blocks_and_ends_when_the_reader_goes(e2e: E2E) -> None:
    proc = _watch_piped(e2e)
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    while sum(ln.startswith("pvha status, every") for ln in lines) < 3:
        line = proc.stdout.readline()
        assert line, (lines, proc.stderr.read())
        lines.append(line)
    proc.stdout.close()  # the reader goes: the next block ends the watch quietly
    assert proc.wait(30) == 0
    assert proc.stderr.read() == ""
    text = "".join(lines[:-1])
    assert not ESCAPES.search(text.encode()) and "\x1b" not in text
    blocks = text.split("pvha status, every 0.3 s, ")[1:]
    assert len(blocks) == 2
    for block in blocks:
        head, blank, *status, end = block.split("\n")[:-1]
        assert re.fullmatch(STAMP, head) and blank == "" and end == "", block
        assert status[0] == "quorum OK" and status[1].startswith("master ")
        assert "service vm:101 (node2, queued)" in status, status


def test_piped_json_is_one_document_per_refresh(e2e: E2E) -> None:
    proc = _watch_piped(e2e, "--output-format", "json")
    assert proc.stdout is not None and proc.stderr is not None
    docs = [json.loads(proc.stdout.readline()) for _ in range(3)]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert proc.stderr.read() == ""
    for doc in docs:
        entries = {e["id"]: e for e in doc}
        assert entries["quorum"]["quorate"] == 1 and entries["quorum"]["node"] == "node1"
        assert entries["service:ct:102"]["state"] == "queued"
    assert [e["id"] for e in docs[0]] == [e["id"] for e in docs[2]]
