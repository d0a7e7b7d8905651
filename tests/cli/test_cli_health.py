"""The guest health keys of resources.cfg (a pvha extension): ``pvha add/set`` options in
both spellings, ``pvha config`` output, the file text, and refusals (ct:, bad values)
with one line and nothing written."""

from __future__ import annotations

import json

import pytest

from pvha.config.resources import parse_resources_text
from pvha.errors import ConfigError


def test_add_and_set_write_the_health_keys_in_both_spellings(run, cfg_dir) -> None:  # type: ignore[no-untyped-def]
    res = run("add", "vm:100", "--health", "agent", "--health_grace", "60",
              "--health-failures", "2")
    assert res.exit_code == 0, res.output
    res = run("set", "vm:100", "--health-interval", "10", "--health-grace", "90")
    assert res.exit_code == 0, res.output
    text = (cfg_dir / "resources.cfg").read_text()
    assert text == ("vm: 100\n\thealth agent\n\thealth_failures 2\n\thealth_grace 90\n"
                    "\thealth_interval 10\n\n")
    r = parse_resources_text(text)["vm:100"]
    assert (r.health, r.health_grace, r.health_failures, r.health_interval) == (
        "agent", 90, 2, 10)
    res = run("config", "--output-format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == [{"sid": "vm:100", "type": "vm", "health": "agent",
                                       "health_failures": 2, "health_grace": 90,
                                       "health_interval": 10}]
    assert "\thealth agent\n" in run("config").stdout
    assert run("set", "vm:100", "--delete", "health").exit_code == 0
    assert parse_resources_text((cfg_dir / "resources.cfg").read_text())["vm:100"].health is None


def test_unset_health_leaves_the_defaults() -> None:
    r = parse_resources_text("vm: 100\n\tmax_restart 2\n")["vm:100"]
    assert (r.health, r.health_grace, r.health_failures, r.health_interval) == (None, 300, 3, 30)


@pytest.mark.parametrize(("args", "message"), [
    (("add", "ct:101", "--health", "agent"),
     "invalid value for 'health': a container has no QEMU guest agent"),
    (("add", "ct:101", "--health-grace", "5"),
     "invalid value for 'health_grace': a container has no QEMU guest agent"),
    (("add", "vm:100", "--health", "ping"),
     "invalid value for 'health': value 'ping' does not have a value in the enumeration 'agent'"),
    (("add", "vm:100", "--health-failures", "0"),
     "invalid value for 'health_failures': value must have a minimum value of 1"),
    (("add", "vm:100", "--health_interval", "x"),
     "invalid value for 'health_interval': type check ('integer') failed - got 'x'"),
])
def test_bad_health_options_are_refused_with_one_line_and_nothing_written(
        run, snapshot, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    before = snapshot()
    res = run(*args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert snapshot() == before


def test_a_ct_section_with_health_is_refused_at_its_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_resources_text("ct: 101\n\tmax_restart 1\n\thealth agent\n")
    assert err.value.line == 3 and "no QEMU guest agent" in str(err.value)
