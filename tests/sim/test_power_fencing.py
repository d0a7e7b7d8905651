"""pvha's simulator extension: power fencing through simulated BMCs (pvha.sim.fencing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pvha.errors import ConfigError
from pvha.sim.fencing import DEVICE_FENCE_DELAY, SimFencing, parse_options
from pvha.sim.runner import run_scenario
from pvha.sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
FENCE_CFG = "device ipmi fence_ipmilan username=admin\nconnect ipmi node=node2 ip=10.0.0.2\n"


def test_options_absent_mean_pve() -> None:
    opts = parse_options({"ha": {"shutdown_policy": "migrate"}}, None)
    assert (opts.power, opts.fence_delay, opts.round_interval, opts.detection_delay) == (
        False, 60, 20, 0)


def test_power_default_delay_is_shorter() -> None:
    assert parse_options({"pvha": {"fencing": "power"}}, FENCE_CFG).fence_delay == (
        DEVICE_FENCE_DELAY)


@pytest.mark.parametrize("raw, cfg, message", [
    ({"fencing": "power"}, None, "needs a fence.cfg"),
    ({"fencing": "magic"}, FENCE_CFG, "'lock', 'power' or 'lease'"),
    ({"fence_delay": -1}, FENCE_CFG, "cannot be negative"),
    ({"fence_delay": "soon"}, FENCE_CFG, "must be an integer"),
    ({"speed": 1}, FENCE_CFG, "unknown pvha option"),
])
def test_options_errors(raw: dict[str, object], cfg: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_options({"pvha": raw}, cfg)


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, level: str, msg: str) -> None:
        self.lines.append(f"{level} {msg}")


def test_read_back_on_is_no_proof_and_one_step_per_round() -> None:
    power = {"node2": "on"}
    fencing = SimFencing.from_text(FENCE_CFG, 2, lambda n: power[n])
    log = _Log()
    assert not fencing.attempt("node2", 100, log)
    assert not fencing.attempt("node2", 100, log)  # same round: no second command
    assert fencing.due(101) == [] and fencing.due(102) == ["node2"]
    # the command was lost: the node still reads "on" -> no proof, a new attempt next
    assert not fencing.attempt("node2", 120, log)
    assert not fencing.attempt("node2", 140, log)
    power["node2"] = "off"
    assert fencing.attempt("node2", 160, log)
    assert [line.split(":")[1].split("(")[0].strip() for line in log.lines] == [
        "powering off node 'node2' via device 'ipmi'",
        "node 'node2' still on after off command via device 'ipmi'",
        "powering off node 'node2' via device 'ipmi'",
        "node 'node2' powered off by device 'ipmi'",
    ]


def test_failed_bmc_never_proves(tmp_path: Path) -> None:
    log = run_scenario(load_scenario(SCENARIOS / "pvha-power-fence-bmc-failing"))
    assert "recover service" not in log
    assert "got agent lock for node 'node2'" not in log


def test_detection_delay_postpones_unknown(tmp_path: Path) -> None:
    src = SCENARIOS / "pvha-power-fence-hang"
    dst = tmp_path / "scenario"
    shutil.copytree(src, dst)
    dc = json.loads((dst / "datacenter.cfg").read_text())
    dc["pvha"]["detection_delay"] = 30
    (dst / "datacenter.cfg").write_text(json.dumps(dc))
    (dst / "log.expect").unlink()
    log = run_scenario(load_scenario(dst))
    unknown = [ln for ln in log.splitlines() if "'node2': state changed from 'online'" in ln]
    assert unknown and int(unknown[0].split()[1]) >= 150, unknown
