"""PVE's own regression scenarios, run by `pvha sim check --tier exact` (phase 1 of
semantics §9.13 must pass; the rest are checked too when the data is present)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_data import scenarios_path
from typer.testing import CliRunner

from pvha.cli.app import app
from pvha.sim.check import check_paths, check_scenario

PHASE1 = """
test-basic1 test-basic4 test-basic5 test-erroneous-service1 test-locked-service1
test-service-ignore2 test-recovery1 test-recovery2 test-service-command1
test-service-command2 test-service-command3 test-service-command4 test-service-command5
test-service-command6 test-service-command9 test-stop-command1 test-service-ignore1
test-service-ignore3 test-manual-migrate-ignored1 test-relocate-to-inactive-node
test-service-stopped1 test-service-stopped2 test-service-stopped3 test-resource-failure1
test-resource-failure3 test-resource-failure4 test-resource-failure5 test-resource-failure6
test-relocate-policy-default-group test-shutdown1 test-shutdown2 test-shutdown3
test-reboot1 test-restart-lrm test-shutdown-policy1 test-shutdown-policy2
test-shutdown-policy3 test-shutdown-policy5 test-shutdown-policy6
test-crm-maintenance-request1 test-crm-maintenance-request3 test-crm-maintenance-request4
test-crm-exiting-idle1 test-crm-exiting-idle2 test-crm-going-idle1 test-lrm-going-idle1
test-cfs-unavailable1 test-node-affinity-nonstrict1 test-node-affinity-nonstrict2
test-node-affinity-nonstrict3 test-node-affinity-nonstrict4 test-node-affinity-nonstrict6
test-node-affinity-strict1 test-node-affinity-strict2 test-node-affinity-strict3
test-node-affinity-strict4 test-node-affinity-strict5
""".split()  # noqa: SIM905


@pytest.fixture(scope="module")
def scenarios() -> Path:
    path = scenarios_path()
    if path is None:
        pytest.skip("../shared/pve-ha-scenarios is not beside this checkout")
    return path


def test_phase1_exact_via_cli(scenarios: Path) -> None:
    dirs = [str(scenarios / name) for name in PHASE1]
    result = CliRunner().invoke(app, ["sim", "check", "--tier", "exact", *dirs])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == f"{len(PHASE1)} passed, 0 failed", result.output
    assert all(line.startswith("PASS ") for line in lines[:-1])


def test_phase1_list_is_complete(scenarios: Path) -> None:
    assert len(PHASE1) == 57
    missing = [name for name in PHASE1 if not (scenarios / name / "log.expect").is_file()]
    assert not missing


@pytest.mark.parametrize("tier", ["decisions", "relaxed"])
def test_phase1_other_tiers(scenarios: Path, tier: str) -> None:
    failed = [
        r.line() for r in (check_scenario(scenarios / n, tier) for n in PHASE1[::4]) if not r.ok
    ]
    assert not failed


def test_all_shared_scenarios_exact(scenarios: Path) -> None:
    """Phase 2 as well (resource affinity, CRS, auto-rebalance, disarm, group migration)."""
    failed = [r.line() for r in check_paths([scenarios], "exact") if not r.ok]
    assert not failed, "\n".join(failed)
