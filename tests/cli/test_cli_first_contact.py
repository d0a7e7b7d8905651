"""What a new administrator meets first: --version, PVE's boolean spellings on the command
line, a missing CA file named as such, and sim check on a path without scenarios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Run, files_of

REPO = Path(__file__).resolve().parents[2]


def _pvha(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvha", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_version() -> None:
    from importlib.metadata import version

    res = _pvha("--version")
    assert res.returncode == 0 and res.stdout == f"pvha {version('pvha')}\n"
    assert "--version" in _pvha("--help").stdout


@pytest.mark.parametrize("word, stored", [("yes", "1"), ("on", "1"), ("TRUE", "1"),
                                          ("no", "0"), ("off", "0"), ("0", "0")])
def test_booleans_take_pve_s_spellings(run: Run, cfg_dir: Path, word: str, stored: str) -> None:
    """--nofailback yes is stored as PVE writes it: nofailback 1."""
    res = run("groupadd", "g1", "--nodes", "node1", "--nofailback", word)
    assert res.exit_code == 0, res.output
    assert f"\tnofailback {stored}\n" in (cfg_dir / "groups.cfg").read_text()


def test_a_bad_boolean_is_one_line_and_nothing_is_written(run: Run, cfg_dir: Path) -> None:
    res = run("add", "vm:100", "--failback", "maybe")
    assert res.exit_code == 2 and files_of(cfg_dir) == {}
    assert "expected a boolean (1/0, yes/no, on/off, true/false), got 'maybe'" in res.output
    assert "Value error" not in res.output


def test_a_missing_ca_file_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    env = {"PATH": "/usr/bin:/bin", "PVHA_SETTINGS": str(tmp_path / "none.toml"),
           "PVHA_HOSTS": "127.0.0.1", "PVHA_PASSWORD": "x", "PVHA_CA_FILE": "/nope/ca.pem",
           "PVHA_CONFIG_DIR": str(tmp_path / "cfg")}
    (tmp_path / "none.toml").write_text("")
    res = _pvha("status", env=env)
    assert res.returncode != 0
    assert res.stderr == "pvha: error: /nope/ca.pem: CA file not found (ca_file / PVHA_CA_FILE)\n"


def test_sim_check_without_scenarios_is_an_error(tmp_path: Path) -> None:
    res = _pvha("sim", "check", str(tmp_path))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"pvha: error: no scenario (a directory with a log.expect) under {tmp_path}\n"
