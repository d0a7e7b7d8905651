"""``what-if --inventory FILE``: a bad inventory is one line naming the entry and the
field (never a Python exception name), exit 1, and nothing written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

GIB = 1024**3


@pytest.mark.parametrize(("inventory", "message"), [
    ([], 'the inventory needs "nodes"'),
    ({"nodes": {"node1": {"maxcpu": 4}}}, 'node node1: "maxmem" is missing'),
    ({"nodes": {"node1": {"maxmem": "lots"}}},
     "node node1: \"maxmem\" must be a number >= 0, got 'lots'"),
    ({"nodes": {"node1": {"maxmem": GIB}}, "guests": {"vm:100": {"maxmem": GIB}}},
     'guest vm:100: "node" must name a node'),
    ({"nodes": {"node1": {"maxmem": GIB}}, "guests": {"vm:100": {"node": "node1"}}},
     'guest vm:100: "maxmem" is missing'),
    ({"nodes": {"node1": {"maxmem": GIB}}, "guests": [1]}, '"guests" must be an object'),
    ({"nodes": {"node1": {"maxmem": GIB}},
      "guests": {"vm:100": {"node": "node9", "maxmem": GIB}}},
     "guests on unknown node(s): node9"),
])
def test_bad_inventory_is_one_line(run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                   snapshot: Callable[[], dict[str, bytes]],
                                   inventory: Any, message: str) -> None:
    assert run("add", "vm:100").exit_code == 0
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    before = snapshot()
    result = run("what-if", "--fail", "node1", "--inventory", str(path))
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Error:" not in lines[0] and "Traceback" not in lines[0]
    assert snapshot() == before
