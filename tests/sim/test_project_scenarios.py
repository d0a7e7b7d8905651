"""The project's own scenario directories (tests/scenarios): each runs deterministically,
without internal errors, and matches its golden log when one is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvha.sim.check import first_difference
from pvha.sim.runner import run_scenario
from pvha.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1] / "scenarios"
DIRS = sorted(p for p in ROOT.glob("*") if (p / "cmdlist").is_file()) if ROOT.is_dir() else []


@pytest.mark.skipif(not DIRS, reason="no project scenarios")
@pytest.mark.parametrize("path", DIRS, ids=lambda p: p.name)
def test_project_scenario(path: Path) -> None:
    scenario = load_scenario(path)
    log = run_scenario(scenario)
    assert log == run_scenario(load_scenario(path)), "simulation is not deterministic"
    assert log.endswith("hardware: exit simulation - done\n")
    for line in log.splitlines():
        if "got unexpected error" in line:
            assert "cfs connection refused" in line, line
    if scenario.expected_log is not None:
        assert first_difference(scenario.expected_log, log, "exact") is None
