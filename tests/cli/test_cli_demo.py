"""Part 1 of the README demo (``python -m pvha.demo``) runs the CLI and exits 0
(part 2, the cluster demo, is run by ``tests/e2e/test_demo.py``)."""

from __future__ import annotations

import pytest

from pvha import demo


def test_demo_runs_commands_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.cli_showcase() == 0
    out, err = capsys.readouterr()
    assert "!!" not in out, out
    assert "$ pvha add vm:100 --max_restart 2\n" in out
    assert '[{"sid":"ct:101","type":"ct","comment":"web frontend","state":"stopped"},' in out
    assert "service vm:100 (node2, started)\n" in out
    assert (
        "--- rules.cfg ---\nnode-affinity: r1\n\tnodes node2\n\tresources vm:100\n\tstrict 1\n"
        in out
    )
    errors = [line for line in err.splitlines() if line.startswith("pvha: error:")]
    assert errors[0].startswith("pvha: error: the HA manager would drop rule 'apart'"), err
    assert errors[1:] == ["pvha: error: resource ID 'vm:100' already defined"], err
    notes = [line for line in err.splitlines() if not line.startswith("pvha: error:")]
    assert notes and all(line.startswith("note: ") for line in notes), err
