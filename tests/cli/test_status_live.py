"""The appended blocks of ``pvha status --watch`` (:func:`pvha.cli.live_view.block`):
what a log collecting them can parse back. The terminal and pipe behaviour end to end
is in ``tests/e2e/test_status_live_e2e.py``."""

from __future__ import annotations

import json
import time

import yaml  # type: ignore[import-untyped]

from pvha import status as ha_status
from pvha.cli.live_view import block
from pvha.core.model import HAConfig

ENTRIES = ha_status.status_entries(
    {"timestamp": 1000, "node_status": {"node1": "online"},
     "service_status": {"vm:100": {"node": "node1", "state": "started", "running": 1}}},
    {"node1": {"timestamp": 1000, "mode": "active", "state": "active"}}, HAConfig(),
    now=1001, quorum=ha_status.Quorum("node1", True))


def test_yaml_blocks_appended_are_one_document_each() -> None:
    stream = block(ENTRIES, "yaml", 2, 1001) + block(ENTRIES, "yaml", 2, 1003)
    assert list(yaml.safe_load_all(stream)) == [ENTRIES, ENTRIES]


def test_json_blocks_are_json_lines() -> None:
    stream = block(ENTRIES, "json", 2, 1001) * 2
    assert [json.loads(line) for line in stream.splitlines()] == [ENTRIES, ENTRIES]


def test_a_text_block_is_a_time_line_then_the_status_text() -> None:
    text = block(ENTRIES, "text", 0.5, 1001)
    head, rest = text.split("\n\n", 1)
    assert head == "pvha status, every 0.5 s, " + time.strftime("%Y-%m-%d %H:%M:%S",
                                                                 time.localtime(1001))
    assert rest == ha_status.format_status_text(ENTRIES) + "\n"
    assert rest.startswith("quorum OK\nmaster ") and "\nservice vm:100 (node1, " in rest
