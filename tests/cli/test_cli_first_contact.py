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


def test_commands_use_the_config_dir_that_the_settings_file_gives_pvha_watch(
        tmp_path: Path) -> None:
    """`[cfs]` in the settings file moves the config dir for every command, not only for
    pvha watch: a guest added there is the one the watcher and status see."""
    from pvha.settings import load_settings

    cfg = tmp_path / "elsewhere" / "pvha"
    cfg.mkdir(parents=True)
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[cfs]\nconfig_dir = "{cfg}"\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PVHA_SETTINGS": str(settings)}
    assert load_settings(env=env).cfs.resolved_config_dir == cfg  # where pvha watch looks
    added = _pvha("add", "vm:100", "--max-restart", "2", env=env)
    assert added.returncode == 0, added.stderr
    assert (cfg / "resources.cfg").read_text() == "vm: 100\n\tmax_restart 2\n\n"
    shown = _pvha("config", env=env)
    assert shown.returncode == 0 and shown.stdout.startswith("vm:100\n"), shown
    without = {k: v for k, v in env.items() if k != "PVHA_SETTINGS"}
    named = _pvha("status", "--settings", str(settings), env=without)
    assert named.returncode == 5 and named.stderr == "", named  # 5: no API, quorum unknown
    assert "service vm:100 (---, queued)\n" in named.stdout, named.stdout
    settings.write_text("[cfs]\nconfig_dir = 7\n")
    refused = _pvha("add", "vm:101", env=env)
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr == f"pvha: error: {settings}: [cfs] config_dir must be a string\n"
    assert (cfg / "resources.cfg").read_text() == "vm: 100\n\tmax_restart 2\n\n"
