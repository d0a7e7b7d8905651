"""The fast path (``pvha.cli.fast``) prints exactly what the Typer app prints, and
serves what it should without importing Typer.

Every case runs twice as a subprocess with a controlled environment (no ``PVHA_*`` or
terminal variables but the case's own), stdin from /dev/null, stdout and stderr pipes:
once through the real entry point (``pvha.cli.main``, with a probe that records which
heavy modules were imported), once through the Typer app alone (``pvha.cli.app``).
stdout, stderr and the exit code must be equal, and the probe tells whether the fast
path served the case (no Typer) or left it to the Typer app. No timing here: see
``bench/cold_start.py``.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("typer", "click", "rich", "pydantic", "requests", "proxmoxer", "yaml")
PROBE = "FAST_PROBE"  # file the probe writes the imported heavy modules to
ENTRY = f"""\
import atexit, os, sys
def _probe():
    with open(os.environ[{PROBE!r}], "w") as f:
        f.write(" ".join(m for m in {HEAVY!r} if m in sys.modules))
atexit.register(_probe)
from pvha.cli.main import main
main()
"""
TYPER = "from pvha.cli.app import main; main()"


@dataclass(frozen=True)
class Case:
    """``args`` (``{name}`` is the path of fixture dir ``name``), extra environment, and
    whether the fast path serves it."""

    id: str
    args: tuple[str, ...]
    fast: bool
    env: dict[str, str] = field(default_factory=dict)
    bad: bool = False  # bad input: one line on stderr, non-zero exit


def case(id_: str, *args: str, fast: bool, bad: bool = False, **env: str) -> Case:
    return Case(id_, args, fast, env, bad)


HELP_CASES = [
    case("bare", fast=True),
    case("help", "--help", fast=True),
    case("h", "-h", fast=True),
    case("help-columns-80", "--help", fast=True, COLUMNS="80"),
    case("help-columns-junk", "--help", fast=True, COLUMNS="wide"),
    case("help-no-color", "--help", fast=True, NO_COLOR="1"),
    case("help-term-dumb", "-h", fast=True, TERM="dumb"),
    case("help-lines", "--help", fast=True, LINES="10"),
    case("bare-utf8", fast=True, PYTHONIOENCODING="utf-8"),
    case("help-columns-100", "--help", fast=True, COLUMNS="100"),  # help stops at 80
    case("bare-columns-120", fast=True, COLUMNS="120"),
    case("help-columns-0", "--help", fast=True, COLUMNS="0"),
    case("help-columns-60", "--help", fast=False, COLUMNS="60"),
    case("help-force-color", "--help", fast=True, FORCE_COLOR="1"),  # plain text, no colour
    case("help-py-colors", "--help", fast=True, PY_COLORS="1"),
    case("help-github", "--help", fast=True, GITHUB_ACTIONS="true"),
    case("help-tty-compatible", "--help", fast=True, TTY_COMPATIBLE="1"),
    case("help-terminal-width", "--help", fast=True, TERMINAL_WIDTH="80"),
    case("help-no-rich", "--help", fast=True, TYPER_USE_RICH="0"),
    case("help-latin1", "--help", fast=False, PYTHONIOENCODING="latin-1"),
    case("help-ascii", "-h", fast=False, PYTHONIOENCODING="ascii"),
    case(
        "help-click-complete",
        "--help",
        fast=False,
        _PVHA_COMPLETE="bash_complete",
        COMP_WORDS="pvha co",
        COMP_CWORD="1",
    ),
    case("help-config", "-h", "config", fast=False),
    case("help-twice", "--help", "--help", fast=False),
    case("config-help", "config", "--help", fast=False),
    case("help-dir", "--config-dir", "{full}", "--help", fast=False),
    case("help-prefix", "--hel", fast=False, bad=True),
    case("help-upper", "-H", fast=False, bad=True),
]

FORMAT_OPTS: list[tuple[str, ...]] = [
    (),
    ("--output-format", "text"),
    ("--output-format", "json"),
    ("--output-format", "json-pretty"),
    ("--output-format", "yaml"),
]
TYPE_OPTS: list[tuple[str, ...]] = [(), ("--type", "vm"), ("--type", "ct")]
CONFIG_MATRIX = [
    case(
        f"config-{'-'.join((*t, *f)) or 'plain'}",
        "--config-dir",
        "{full}",
        "config",
        *t,
        *f,
        fast=True,
    )
    for t in TYPE_OPTS
    for f in FORMAT_OPTS
]
CONFIG_CASES = [
    *CONFIG_MATRIX,
    case("cmd-dir", "config", "--config-dir", "{full}", fast=True),
    case("cmd-dir-wins", "--config-dir", "{empty}", "config", "--config-dir", "{full}", fast=True),
    case("equals", "--config-dir={full}", "config", "--output-format=json", "--type=ct", fast=True),
    case("cmd-equals", "config", "--config-dir={full}", "--output-format=yaml", fast=True),
    case(
        "order",
        "config",
        "--output-format",
        "json-pretty",
        "--config-dir",
        "{full}",
        "--type",
        "vm",
        fast=True,
    ),
    case("env-dir", "config", fast=True, PVHA_CONFIG_DIR="{full}"),
    case("env-cfs-root", "config", "--output-format", "json", fast=True, PVHA_CFS_ROOT="{cfs}"),
    case("env-dir-over-cfs", "config", fast=True, PVHA_CONFIG_DIR="{full}", PVHA_CFS_ROOT="{cfs}"),
    case("empty-env-dir-cfs", "config", fast=True, PVHA_CONFIG_DIR="", PVHA_CFS_ROOT="{cfs}"),
    case(
        "root-over-env",
        "--config-dir",
        "{empty}",
        "config",
        fast=True,
        PVHA_CONFIG_DIR="{full}",
        PVHA_CFS_ROOT="{cfs}",
    ),
    # [cfs] in the settings file: the config dir pvha watch uses
    case("settings-cfs-root", "config", "--output-format", "json", fast=True,
         PVHA_SETTINGS="{cfs_settings}"),
    case("settings-config-dir", "config", fast=True, PVHA_SETTINGS="{dir_settings}"),
    case("settings-dir-over-env-cfs-root", "config", fast=True,  # as pvha watch: the
         PVHA_SETTINGS="{dir_settings}", PVHA_CFS_ROOT="{cfs}"),  # dir beats ROOT/pvha
    case("env-dir-skips-settings", "config", fast=True, PVHA_SETTINGS="{bad_settings}",
         PVHA_CONFIG_DIR="{full}"),
    case("root-dir-skips-settings", "--config-dir", "{full}", "config", fast=True,
         PVHA_SETTINGS="{bad_settings}"),
    case("settings-bad", "config", fast=False, bad=True, PVHA_SETTINGS="{bad_settings}"),
    case("settings-missing", "config", fast=False, bad=True, PVHA_SETTINGS="{missing}"),
    # no config dir: an error (a wrong --config-dir must not look empty), left to Typer
    case("default-dir", "config", "--output-format", "json", fast=False, bad=True),
    case("empty-dir", "--config-dir", "{empty}", "config", fast=True),
    case(
        "empty-dir-json", "--config-dir", "{empty}", "config", "--output-format", "json", fast=True
    ),
    case("missing-dir", "--config-dir", "{missing}", "config", fast=False, bad=True),
    case("unicode", "--config-dir", "{unicode}", "config", fast=True),
    case(
        "unicode-yaml", "--config-dir", "{unicode}", "config", "--output-format", "yaml", fast=True
    ),
    case(
        "unicode-ascii-out",
        "--config-dir",
        "{unicode}",
        "config",
        fast=False,
        PYTHONIOENCODING="ascii",
    ),
    case("warning-text", "--config-dir", "{warn}", "config", fast=False),
    case("warning-json", "--config-dir", "{warn}", "config", "--output-format", "json", fast=True),
    case(
        "force-color-json",
        "--config-dir",
        "{full}",
        "config",
        "--output-format",
        "json",
        fast=True,
        FORCE_COLOR="1",
        COLUMNS="50",
    ),
    case("broken-cfg", "--config-dir", "{broken}", "config", fast=False, bad=True),
    case(
        "broken-cfg-json",
        "--config-dir",
        "{broken}",
        "config",
        "--output-format",
        "json",
        fast=False,
        bad=True,
    ),
    case("latin1-cfg", "--config-dir", "{latin}", "config", fast=False, bad=True),
    case("dir-is-file", "--config-dir", "{file}", "config", fast=False, bad=True),
    case(
        "click-complete",
        "--config-dir",
        "{full}",
        "config",
        fast=False,
        _PVHA_COMPLETE="bash_complete",
        COMP_WORDS="pvha co",
        COMP_CWORD="1",
    ),
]
BAD_CONFIG = [
    ("type-value", "config", "--type", "xx"),
    ("type-upper", "config", "--type", "VM"),
    ("type-empty", "config", "--type="),
    ("type-missing", "config", "--type"),
    ("format-value", "config", "--output-format", "xml"),
    ("format-name", "config", "--output-format", "json_pretty"),
    ("format-missing", "config", "--output-format"),
    ("dir-missing", "config", "--config-dir"),
    ("root-dir-missing", "--config-dir"),
    ("no-command", "--config-dir", "{full}"),
    ("extra-arg", "config", "extra"),
    ("empty-arg", "config", ""),
    ("unknown-option", "config", "--bogus"),
    ("unknown-root-option", "--bogus", "config"),
    ("short-option", "config", "-t", "vm"),
    ("prefix-option", "config", "--out", "json"),
    ("double-dash", "config", "--", "x"),
    ("unknown-command", "conf"),
]
RELAXED_CONFIG = [  # not bad input, but left to the Typer app
    case(
        "type-twice", "--config-dir", "{full}", "config", "--type", "vm", "--type", "ct", fast=False
    ),
    case("dir-empty-value", "config", "--config-dir=", fast=False, PVHA_CONFIG_DIR="{full}"),
    case("dir-dash-value", "config", "--config-dir", "--type", fast=False),
    case("config-h", "config", "-h", fast=False),
]
COMPLETE_CASES = [
    *[
        case(f"complete-{w}", "--config-dir", "{full}", "_complete", w, fast=True)
        for w in ("sids", "groups", "rules", "nodes", "bogus")
    ],
    case("complete-cmd-dir", "_complete", "sids", "--config-dir", "{full}", fast=True),
    case("complete-dir-first", "_complete", "--config-dir={full}", "nodes", fast=True),
    case("complete-env", "_complete", "groups", fast=True, PVHA_CONFIG_DIR="{full}"),
    case("complete-cfs", "_complete", "sids", fast=True, PVHA_CFS_ROOT="{cfs}"),
    case("complete-settings", "_complete", "sids", fast=True, PVHA_SETTINGS="{cfs_settings}"),
    case("complete-bad-settings", "_complete", "sids", fast=True, PVHA_SETTINGS="{bad_settings}"),
    case("complete-empty", "--config-dir", "{empty}", "_complete", "sids", fast=True),
    case("complete-missing", "--config-dir", "{missing}", "_complete", "nodes", fast=True),
    case("complete-broken", "--config-dir", "{broken}", "_complete", "sids", fast=True),
    case("complete-bad-status", "--config-dir", "{badjson}", "_complete", "nodes", fast=True),
    case("complete-dir-is-file", "--config-dir", "{file}", "_complete", "sids", fast=True),
    case("complete-ansi", "--config-dir", "{ansi}", "_complete", "nodes", fast=False),
    case("complete-no-arg", "_complete", fast=False, bad=True),
    case("complete-two-args", "_complete", "sids", "nodes", fast=False, bad=True),
    case("complete-bogus-option", "_complete", "--bogus", "sids", fast=False, bad=True),
]
CASES = [
    *HELP_CASES,
    *CONFIG_CASES,
    *[case(f"bad-{i}", *args, fast=False, bad=True) for i, *args in BAD_CONFIG],
    *RELAXED_CONFIG,
    *COMPLETE_CASES,
]

RESOURCES = (
    "vm: 100\n\tstate started\n\tmax_restart 2\n\n"
    "ct: 101\n\tgroup g1\n\tcomment a b\n\tfailback 0\n\n"
    "vm: 102\n\tstate stopped\n\tmax_relocate 3\n\n"
)
GROUPS = "group: g1\n\tnodes node1:2,node2\n\tnofailback 1\n\n"
RULES = "node-affinity: pin\n\tresources vm:100\n\tnodes node1\n\n"
STATUS = '{"master_node": "node1", "node_status": {"node1": "online", "node3": "online"}}'


def _dirs(root: Path) -> dict[str, Path]:
    """The config dirs the cases name, under ``root``."""
    files: dict[str, dict[str, str | bytes]] = {
        "full": {
            "resources.cfg": RESOURCES,
            "groups.cfg": GROUPS,
            "rules.cfg": RULES,
            "manager_status": STATUS,
        },
        "cfs/pvha": {"resources.cfg": "ct: 300\n\n"},
        "empty": {},
        "broken": {"resources.cfg": "vm: 100\n\tbogus_key 1\n\n"},
        "warn": {"resources.cfg": "vm: 100\n\tgroup nope\n\n"},
        "latin": {"resources.cfg": b"vm: 100\n\tcomment caf\xe9\n\n"},
        "unicode": {"resources.cfg": "vm: 100\n\tcomment café ☕\n\n"},
        "badjson": {"resources.cfg": RESOURCES, "manager_status": "{not json"},
        "ansi": {"manager_status": '{"node_status": {"\\u001b[31mnode9": "online"}}'},
    }
    dirs = {}
    for name, content in files.items():
        directory = root / name
        directory.mkdir(parents=True)
        for fname, text in content.items():
            target = directory / fname
            target.write_bytes(text if isinstance(text, bytes) else text.encode())
        dirs[name.split("/")[0]] = root / name.split("/")[0]
    settings = {"cfs_settings": f'[cfs]\nroot = "{root / "cfs"}"\n',
                "dir_settings": f'[api]\nport = 8006\n[cfs]\nconfig_dir = "{root / "full"}"\n',
                "bad_settings": "[cfs]\nroot = 5\n"}
    for name, text in settings.items():
        dirs[name] = root / f"{name}.toml"
        dirs[name].write_text(text)
    dirs["missing"] = root / "missing"
    dirs["file"] = root / "a-file"
    dirs["file"].write_text("not a directory\n")
    return dirs


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: bytes
    stderr: bytes
    heavy: tuple[str, ...] = ()  # heavy modules the entry point imported


def _env(home: Path, dirs: dict[str, Path], extra: dict[str, str]) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg"),
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({k: v.format(**dirs) for k, v in extra.items()})
    return env


def _run(code: str, args: list[str], env: dict[str, str], probe: Path | None) -> Outcome:
    if probe is not None:
        env = {**env, PROBE: str(probe)}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        cwd=env["HOME"],
        check=False,
        timeout=120,
    )
    heavy = tuple(probe.read_text().split()) if probe is not None else ()
    return Outcome(result.returncode, result.stdout, result.stderr, heavy)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Outcome, Outcome]]:
    """(entry point, Typer app) outcome of every case, run in parallel once."""
    root = tmp_path_factory.mktemp("fast")
    home = root / "home"
    home.mkdir()
    dirs = _dirs(root / "d")

    def both(c: Case) -> tuple[Outcome, Outcome]:
        args = [a.format(**dirs) for a in c.args]
        env = _env(home, dirs, c.env)
        return (_run(ENTRY, args, env, root / f"probe-{c.id}"), _run(TYPER, args, env, None))

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip((c.id for c in CASES), pool.map(both, CASES), strict=True))


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_fast_path_prints_what_typer_prints(
    c: Case, outcomes: dict[str, tuple[Outcome, Outcome]]
) -> None:
    entry, typer_app = outcomes[c.id]
    assert (entry.code, entry.stdout, entry.stderr) == (
        typer_app.code,
        typer_app.stdout,
        typer_app.stderr,
    ), (entry, typer_app)
    if c.fast:
        assert entry.heavy in ((), ("yaml",)), f"fast path not taken: {entry.heavy}"
    else:
        assert "typer" in entry.heavy, "the fast path served a case it must leave to Typer"
    if c.bad:
        assert entry.code != 0 and entry.stdout == b"", entry
        lines = entry.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pvha: error: "), entry.stderr
    assert b"Traceback" not in entry.stderr


def test_served_cases_print_something(outcomes: dict[str, tuple[Outcome, Outcome]]) -> None:
    """Guards the comparison above against two empty outputs."""
    entry, _ = outcomes["config-plain"]
    assert entry.code == 0 and entry.stdout.startswith(b"ct:101\n\tcomment a b\n"), entry
    entry, _ = outcomes["complete-nodes"]
    assert entry.stdout == b"node1\nnode2\nnode3\n", entry
    entry, _ = outcomes["help"]
    assert b"Usage: pvha [OPTIONS] COMMAND [ARGS]..." in entry.stdout
    ct300 = b'[{"sid":"ct:300","type":"ct"}]\n'
    for name in ("env-cfs-root", "settings-cfs-root"):
        entry, _ = outcomes[name]
        assert entry.stdout == ct300, (name, entry)
    for name in ("settings-config-dir", "settings-dir-over-env-cfs-root",
                 "env-dir-skips-settings", "root-dir-skips-settings"):
        entry, _ = outcomes[name]
        assert entry.code == 0 and entry.stdout.startswith(b"ct:101\n"), (name, entry)
    entry, _ = outcomes["settings-bad"]
    assert b"[cfs] root must be a string" in entry.stderr, entry
    for name in ("complete-settings", "complete-bad-settings"):
        entry, _ = outcomes[name]
        assert entry.stdout == (b"ct:300\n" if name == "complete-settings" else b""), entry
        assert entry.code == 0 and entry.stderr == b"", (name, entry)


def _cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "resources.cfg").write_text(RESOURCES)
    (cfg / "groups.cfg").write_text(GROUPS)
    return cfg


# --- imports -----------------------------------------------------------------------------------

NOT_IMPORTED = ("typer", "click", "rich", "pydantic", "requests", "proxmoxer")


def _imported(argv: list[str], env: dict[str, str]) -> set[str]:
    result = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.mark.parametrize(
    ("args", "yaml"),
    [
        (["--help"], False),
        ([], False),
        (["--config-dir", "{cfg}", "config"], False),
        (["config", "--output-format", "json"], False),
        (["config", "--output-format", "yaml"], True),
        (["_complete", "sids"], False),
    ],
)
def test_python_m_pvha_imports_no_typer(tmp_path: Path, args: list[str], yaml: bool) -> None:
    cfg = _cfg(tmp_path)
    env = _env(tmp_path, {}, {"PVHA_CONFIG_DIR": str(cfg)})
    argv = [sys.executable, "-X", "importtime", "-m", "pvha", *(a.format(cfg=cfg) for a in args)]
    imported = _imported(argv, env)
    assert "pvha" in imported
    assert not imported & {*NOT_IMPORTED}, sorted(imported & {*NOT_IMPORTED})
    assert ("yaml" in imported) == yaml


def test_console_script_takes_the_fast_path(tmp_path: Path) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"pvha": "pvha.cli.main:main"}
    script = Path(sys.executable).with_name("pvha")
    if not script.is_file():
        pytest.skip("no pvha console script next to the interpreter")
    assert "pvha.cli.main" in script.read_text(), (
        f"{script} is stale: run `{sys.executable} -m pip install -e .`"
    )
    env = {**_env(tmp_path, {}, {}), "PYTHONPROFILEIMPORTTIME": "1"}
    imported = _imported([str(script), "--help"], env)
    assert "pvha" in imported and "typer" not in imported


# --- a terminal on stdout ----------------------------------------------------------------------


def _run_pty(code: str, args: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run with stdout a pseudo-terminal (80x24); returns exit code, terminal output, stderr."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    _, stderr = proc.communicate(timeout=120)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, b"".join(chunks), stderr


@pytest.mark.parametrize(
    ("args", "fast"),
    [
        (["--help"], True),  # plain text at the terminal's width (80)
        ([], True),
        (["--config-dir", "{cfg}", "config"], True),  # config's text is never a rich table
        (["--config-dir", "{cfg}", "config", "--output-format", "json"], True),
    ],
)
def test_terminal_output_matches_typer(tmp_path: Path, args: list[str], fast: bool) -> None:
    cfg = _cfg(tmp_path)
    probe = tmp_path / "probe"
    env = {**_env(tmp_path, {}, {}), "TERM": "xterm-256color", PROBE: str(probe)}
    argv = [a.format(cfg=cfg) for a in args]
    entry, typer_app = _run_pty(ENTRY, argv, env), _run_pty(TYPER, argv, env)
    assert entry == typer_app
    assert entry[0] == 0 and entry[1], entry
    assert ("typer" not in probe.read_text().split()) == fast
