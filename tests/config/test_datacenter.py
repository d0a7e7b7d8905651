"""The shutdown policy from PVE's datacenter.cfg, and pvha's setting over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvha.config.datacenter import parse_shutdown_policy, shutdown_policy


@pytest.mark.parametrize("text, expected", [
    ("keyboard: en-us\nha: shutdown_policy=migrate\n", "migrate"),
    ("ha: shutdown_policy=freeze,other=1\n", "freeze"),
    ("ha:   other=1 , shutdown_policy = failover\n", "failover"),
    ("crs: ha=static\n", None),  # crs's "ha" key is not the ha property
    ("# ha: shutdown_policy=migrate\n", None),
    ("ha: shutdown_policy=\n", None),
    ("", None),
])
def test_parse(text: str, expected: str | None) -> None:
    assert parse_shutdown_policy(text) == expected


def test_the_setting_wins_then_the_file_then_pve_s_default(tmp_path: Path) -> None:
    assert shutdown_policy(tmp_path) == "conditional"  # no datacenter.cfg
    (tmp_path / "datacenter.cfg").write_text("ha: shutdown_policy=migrate\n")
    assert shutdown_policy(tmp_path) == "migrate"
    assert shutdown_policy(tmp_path, "freeze") == "freeze"
    (tmp_path / "datacenter.cfg").write_text("ha: shutdown_policy=sideways\n")
    assert shutdown_policy(tmp_path) == "sideways"  # the executor logs it, as PVE's LRM
