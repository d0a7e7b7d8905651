"""``priority`` and ``after`` (pvha's start order) through ``add``/``set``/``remove``:
written in PVE's syntax, refused when out of range, self-referencing, dangling or
cyclic (one line, exit 2, nothing written), and purged with the resource they name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def test_priority_and_after_are_written_and_listed(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:100", "--priority", "10").exit_code == 0
    assert run("add", "vm:101", "--after", "vm:100", "--priority", "-5").exit_code == 0
    assert (cfg_dir / "resources.cfg").read_text() == (
        "vm: 100\n\tpriority 10\n\nvm: 101\n\tafter vm:100\n\tpriority -5\n\n")
    out = run("config", "--output-format", "json").output
    assert '"after":"vm:100"' in out and '"priority":10' in out


@pytest.mark.parametrize(("args", "message"), [
    (("set", "vm:100", "--after", "vm:101"), "vm:100 -> vm:101 -> vm:100 is a cycle"),
    (("set", "vm:101", "--after", "vm:101"), "vm:101 cannot run after itself"),
    (("set", "vm:100", "--after", "vm:999"), "no such resource 'vm:999'"),
    (("set", "vm:100", "--after", "node1"), "does not look like a valid ha resource id"),
    (("set", "vm:100", "--priority", "1001"), "maximum value of 1000"),
    (("set", "vm:100", "--priority", "high"), "type check ('integer') failed"),
])
def test_bad_order_is_one_line_and_writes_nothing(
        run, cfg_dir: Path, snapshot: Callable[[], dict[str, bytes]],  # type: ignore[no-untyped-def]
        args: tuple[str, ...], message: str) -> None:
    assert run("add", "vm:100").exit_code == 0
    assert run("add", "vm:101", "--after", "vm:100").exit_code == 0
    before = snapshot()
    result = run(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert snapshot() == before


def test_a_longer_cycle_is_refused(run) -> None:  # type: ignore[no-untyped-def]
    for sid in ("vm:100", "vm:101", "vm:102"):
        assert run("add", sid).exit_code == 0
    assert run("set", "vm:101", "--after", "vm:100").exit_code == 0
    assert run("set", "vm:102", "--after", "vm:101").exit_code == 0
    result = run("set", "vm:100", "--after", "vm:102")
    assert result.exit_code == 2 and "vm:100 -> vm:102 -> vm:101 -> vm:100" in result.stderr


def test_remove_purges_the_after_that_names_it(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:100").exit_code == 0
    assert run("add", "vm:101", "--after", "vm:100", "--priority", "3").exit_code == 0
    assert run("remove", "vm:100").exit_code == 0
    assert (cfg_dir / "resources.cfg").read_text() == "vm: 101\n\tpriority 3\n\n"
    assert run("add", "vm:100").exit_code == 0
    assert run("set", "vm:101", "--after", "vm:100").exit_code == 0
    assert run("remove", "vm:100", "--purge", "0").exit_code == 0
    assert "after vm:100" in (cfg_dir / "resources.cfg").read_text()
