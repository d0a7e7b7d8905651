"""pvha's own scenario directories (``tests/scenarios/pvha-*``) against their golden logs.

Each directory is in PVE's regression format (semantics §8.1) and holds a ``log.expect``
that was reviewed against its README and the semantics document. The simulator runs
in-process; the log must match byte for byte. ``PVHA_UPDATE_GOLDEN=1`` rewrites
``log.expect`` from the current run instead (the case then passes) — review the diff
before committing it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from pvha.sim.runner import run_scenario
from pvha.sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DIRS = sorted(p for p in SCENARIOS.iterdir() if p.is_dir() and (p / "cmdlist").is_file())
UPDATE = os.environ.get("PVHA_UPDATE_GOLDEN") == "1"


def test_enough_scenarios() -> None:
    assert len(DIRS) >= 30, [d.name for d in DIRS]


@pytest.mark.parametrize("path", DIRS, ids=[d.name for d in DIRS])
def test_scenario(path: Path) -> None:
    assert (path / "README").is_file(), f"{path.name}: every scenario explains itself"
    log = run_scenario(load_scenario(path))
    assert log == run_scenario(load_scenario(path)), f"{path.name}: run is not deterministic"
    assert log.endswith("hardware: exit simulation - done\n"), f"{path.name}: run did not finish"
    for line in log.splitlines():
        # the only internal errors a scenario may show are the simulated cfs outages
        if "got unexpected error" in line:
            assert "cfs connection refused" in line, line
    golden = path / "log.expect"
    if UPDATE:
        golden.write_text(log)
        return
    assert golden.is_file(), f"{path.name}: no log.expect (run with PVHA_UPDATE_GOLDEN=1)"
    expected = golden.read_text()
    if log != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                log.splitlines(keepends=True),
                fromfile=f"{path.name}/log.expect",
                tofile=f"{path.name}/log (this run)",
            )
        )
        pytest.fail(f"{path.name}: log differs from log.expect\n{diff}", pytrace=False)
