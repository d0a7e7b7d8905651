"""fence.cfg parser: PVE's own cases (shared data) and pvha's extra rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import shared_path

from pvha.errors import ConfigError
from pvha.fence.config import FenceConfigError, load_fence_config, parse_fence_config

_NODES = ("node1", "node2", "node3")


def _cases() -> list[Path]:
    base = shared_path()
    folder = base / "pve-ha-scenarios" / "fence_cfgs" if base else None
    return sorted(folder.glob("*.cfg")) if folder and folder.is_dir() else []


def _render(cfg_path: Path) -> str:
    """Print a parse like PVE's fence config test does."""
    rel = f"fence_cfgs/{cfg_path.name}"
    try:
        config = load_fence_config(cfg_path)
    except FenceConfigError as exc:
        lines = [f"[FenceConfig] Encountered error(s) on parsing '{rel}':"]
        lines += [f"line {ln}: {msg}" for ln, msg in exc.issues]
        return "\n".join(lines)
    out: list[str] = []
    try_ = 0
    while True:
        out.append(f"[try] {try_}")
        found = False
        for node in _NODES:
            commands = config.get_commands(node, try_)
            if not commands:
                out.append(f"[{node}-cmd] none")
                continue
            found = True
            out += [f"[{node}-cmd] {c.render()}" for c in commands]
        if not found:
            return "\n".join(out)
        try_ += 1


def test_pve_cases_are_present(shared_dir: Path) -> None:
    assert len(_cases()) >= 6, "expected PVE's fence_cfgs cases in the shared folder"


@pytest.mark.parametrize("cfg", _cases(), ids=lambda p: p.name)
def test_pve_fence_cfg_case(cfg: Path) -> None:
    expect = cfg.with_name(cfg.name + ".expect").read_text(encoding="utf-8")
    assert _render(cfg) == expect.rstrip("\n")


def test_levels_follow_declaration_order_and_parallel_subdevices() -> None:
    config = parse_fence_config(
        "device psu:2 fence_ipmilan ip=10.0.0.2\n"
        "device psu:1 fence_ipmilan ip=10.0.0.1\n"
        "device pdu fence_apc ip=10.0.0.9 password=s3cret\n"
        "connect pdu node=node1 plug=3\n"
        "connect psu:1 node=node1 ipport=1\n"
        "connect psu:2 node=node1 ipport=2\n"
        "connect psu:1 node=node2 ipport=3 lanplus\n"
    )
    levels = config.levels("node1")
    assert [(lv.level, lv.device) for lv in levels] == [(1, "psu"), (2, "pdu")]
    assert [t.label for t in levels[0].targets] == ["psu:1", "psu:2"]
    assert levels[0].targets[0].options == (("ip", "10.0.0.1"), ("ipport", "1"))
    node2 = config.levels("node2")
    assert [t.label for t in node2[0].targets] == ["psu:1"]
    assert node2[0].targets[0].options[-1] == ("lanplus", None)
    assert config.count_devices("node2") == 1 and config.levels("node9") == ()
    assert config.nodes() == ("node1", "node2")
    assert "s3cret" not in repr(config) and "s3cret" not in repr(levels)


def test_errors_carry_path_and_every_line() -> None:
    text = (
        "# c\n"
        "device a fence_x ip=1\n"
        "bogus line here\n"
        "device a fence_x ip=2\n"
        "connect a node=n1\n"
        "connect a node=n1\n"
        "connect b node=n1\n"
        'device c fence_x password="unterminated\n'
        "connect a nodes=n2\n"
    )
    with pytest.raises(FenceConfigError) as info:
        parse_fence_config(text, "/etc/pve/ha/fence.cfg")
    err = info.value
    assert isinstance(err, ConfigError)
    assert [ln for ln, _ in err.issues] == [3, 4, 6, 7, 8, 9]
    assert err.path == "/etc/pve/ha/fence.cfg" and err.line == 3
    assert str(err).splitlines()[1] == ("/etc/pve/ha/fence.cfg:4: device 'a:1' already declared")
    assert "unterminated" not in str(err)


def test_connect_without_options_and_one_letter_rendering() -> None:
    config = parse_fence_config("device d fence_x k=v ip=h\nconnect d node=pve-1\n")
    (command,) = config.get_commands("pve-1", 0) or []
    assert command.render() == "fence_x -k v --ip=h"
    assert config.get_commands("pve-1", 1) is None


def test_load_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read fence config"):
        load_fence_config(tmp_path / "fence.cfg")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="devicnt :=\"'\\#_-.x1a", max_size=40), max_size=8))
def test_any_text_parses_or_raises_fence_config_error(lines: list[str]) -> None:
    try:
        config = parse_fence_config("\n".join(lines))
    except FenceConfigError as exc:
        assert exc.issues and all(1 <= ln <= max(len(lines), 1) for ln, _ in exc.issues)
        return
    for node in config.nodes():
        assert config.count_devices(node) >= 1
