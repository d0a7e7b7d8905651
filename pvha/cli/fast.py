"""pvha without Typer: the invocations a shell runs most, and what they share with Typer.

Importing Typer (and through it pydantic and rich) costs ~0.2 s at every start, ten
times Python's own. :func:`run` serves these invocations without it:

* ``pvha``, ``pvha --help``, ``pvha -h``: the root help as the Typer app renders it
  (:mod:`pvha.cli.helpfmt`: plain text at :func:`help_width`), generated at build time
  into :mod:`pvha.cli.help_text` (``tools/gen_docs.py``);
* ``pvha [--config-dir DIR] config [--type vm|ct] [--output-format FMT] [--config-dir DIR]``;
* ``pvha [--config-dir DIR] _complete WHAT [--config-dir DIR]`` (every TAB runs it).

The Typer commands call the same functions (:func:`store_at`, :func:`config_output`,
:func:`complete_output`), which live here because they must not import Typer, so the
two entry points cannot drift apart. The output is byte for byte the Typer app's; to
keep it so, :func:`run` returns None, having written nothing, for anything else and
whenever the Typer app would print what only rich renders (an unknown option, a bad
or repeated value, a config that does not load, a warning) or help at another width.
The Typer app then runs the command as before, so every message, option and other
command stays Typer's.

Imports are local to the functions that need them: the help needs none of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    from pvha.config.store import Store

HELP_OPTIONS = ("--help", "-h")
FORMATS = ("text", "json", "json-pretty", "yaml")
TYPES = ("vm", "ct")
CONFIG_DIR = "--config-dir"
COMPLETE_VAR = "_PVHA_COMPLETE"  # click's shell-completion mode: the Typer app answers it


# --- shared with the Typer commands ---------------------------------------------------------


def store_at(command_dir: str | None, root_dir: str | None,
             settings_file: str | None = None) -> Store:
    """The store: the command's ``--config-dir``, else the top-level one, else
    $PVHA_CONFIG_DIR, else the config dir ``pvha watch`` uses (``[cfs]`` from
    $PVHA_CFS_ROOT and the settings file, :func:`pvha.settings.cfs_settings`), else the
    default. The settings file is read only when neither ``--config-dir`` nor
    $PVHA_CONFIG_DIR is given: a bad one is then a ConfigError."""
    from pathlib import Path

    from pvha.config.store import ENV_VAR, Store, resolve_config_dir

    chosen = command_dir or root_dir
    cfs_root = os.environ.get("PVHA_CFS_ROOT")
    if chosen or os.environ.get(ENV_VAR):
        directory = resolve_config_dir(chosen)
    else:
        from pvha.settings import cfs_settings

        cfs = cfs_settings(settings_file)
        if cfs is None:
            directory = resolve_config_dir(None)
        else:
            directory, cfs_root = Path(cfs.resolved_config_dir), str(cfs.root)
    root = cluster_root(directory, cfs_root)
    if root is None:
        return Store(directory)

    def cluster_lock(timeout: float) -> AbstractContextManager[None]:
        from pvha.adapters.cfs import ClusterFs

        return ClusterFs(root, directory).domain_lock(timeout)

    return Store(directory, cluster_lock)


def cluster_root(directory: Path, cfs_root: str | None) -> Path | None:
    """The cluster filesystem a config dir lives in: ``$PVHA_CFS_ROOT`` when the dir is
    inside it, else the dir's parent when that is laid out as one (``priv/lock``, as
    ``/etc/pve``); None for a plain local dir."""
    from pathlib import Path

    if cfs_root and directory.resolve().is_relative_to(Path(cfs_root).resolve()):
        return Path(cfs_root)
    parent = directory.parent
    return parent if (parent / "priv" / "lock").is_dir() else None


def config_output(store: Store, type_: str | None, fmt: str) -> tuple[list[str], str]:
    """What ``pvha config`` prints: the warnings for stderr (text format only: one per
    property in error, as ``ha-manager config`` prints them before the data) and the
    resources for stdout in ``fmt``. ConfigError/StoreError if the store does not load."""
    from pvha.cli import render
    from pvha.config import views

    store.require_dir()  # a wrong --config-dir must not look like an empty configuration
    rows = views.resource_rows(store.load(), type_)
    warnings: list[str] = []

    def text(rows: Sequence[render.Row]) -> str:
        for row in rows:
            for prop, message in (row.get("errors") or {}).items():
                warnings.append(f"error: property '{prop}' - {message}")
        return render.section_text(
            rows, header=lambda r: str(r["sid"]), skip=("sid", "type", "digest", "errors")
        )

    return warnings, render.formatted(rows, fmt, text)


def complete_output(command_dir: str | None, root_dir: str | None, what: str) -> str:
    """What ``pvha _complete WHAT`` prints: ids (sids, groups, rules, nodes) one a line,
    from the local config only (the store as :func:`store_at` finds it); nothing on a
    broken or missing config or settings file, as completion must stay quiet."""
    from pvha.config import views
    from pvha.config.store import MANAGER_STATUS
    from pvha.errors import PvhaError
    from pvha.fsutil import parse_json_object

    try:
        store = store_at(command_dir, root_dir)
        status = parse_json_object(store.read_text(MANAGER_STATUS), store.path(MANAGER_STATUS))
        ids = views.known_ids(store.load(), what, status)
    except PvhaError:
        return ""
    return "".join(f"{i}\n" for i in ids)


def help_width(columns: int | None = None) -> int:
    """The width help pages are wrapped at (:mod:`pvha.cli.helpfmt`) on a terminal of
    ``columns`` (default: $COLUMNS if a positive number, else the size of the first
    terminal among stdin, stdout and stderr, else 80): within 40 and 80, less a 2-column
    margin."""
    if columns is None:
        env = os.environ.get("COLUMNS", "")
        columns = int(env) if env.isdigit() and int(env) > 0 else _terminal_columns()
    return min(max(columns, 40), 80) - 2


def _terminal_columns() -> int:
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


# --- the fast path ----------------------------------------------------------------------------


def run(argv: Sequence[str]) -> int | None:
    """Serve ``argv`` (``sys.argv[1:]``) without Typer and return the exit code; None,
    having written nothing, to leave it to the Typer app."""
    try:
        if sys.stdout is None or COMPLETE_VAR in os.environ:
            return None
        if not argv or (len(argv) == 1 and argv[0] in HELP_OPTIONS):
            output = _help(bool(argv))
        else:
            output = _command(argv)
        if output is None:
            return None
        sys.stdout.write(output)
        return 0
    except KeyboardInterrupt:
        return 130  # what the Typer app exits with, silently
    except Exception:  # noqa: BLE001 - declined, not hidden: the Typer app runs it again
        # Whatever went wrong, the Typer app reports it its way (and writes the output
        # again if a write failed half-way: only when the reader is gone).
        return None


def _help(asked: bool) -> str | None:
    """The root help if the Typer app would print it exactly as generated: at the
    generated width, to a UTF-8 stdout."""
    from pvha.cli import help_text

    encoding = (sys.stdout.encoding or "").lower()
    if encoding not in ("utf-8", "utf8") or help_width() != help_text.WIDTH:
        return None
    return help_text.HELP if asked else help_text.NO_ARGS


def _command(argv: Sequence[str]) -> str | None:
    """``[--config-dir DIR] COMMAND ...`` for the commands served here."""
    root, rest = _options(argv, {CONFIG_DIR}, stop_at_argument=True)
    if root is None or not rest:
        return None
    command, tail = rest[0], rest[1:]
    if command == "config":
        return _config(root.get(CONFIG_DIR), tail)
    if command == "_complete":
        return _complete(root.get(CONFIG_DIR), tail)
    return None


def _config(root_dir: str | None, argv: Sequence[str]) -> str | None:
    opts, args = _options(argv, {"--type", "--output-format", CONFIG_DIR})
    if opts is None or args:
        return None
    type_, fmt = opts.get("--type"), opts.get("--output-format", "text")
    if (type_ is not None and type_ not in TYPES) or fmt not in FORMATS:
        return None
    warnings, output = config_output(store_at(opts.get(CONFIG_DIR), root_dir), type_, fmt)
    return None if warnings else output  # the warnings are rich's: the Typer app prints them


def _complete(root_dir: str | None, argv: Sequence[str]) -> str | None:
    opts, args = _options(argv, {CONFIG_DIR})
    if opts is None or len(args) != 1:
        return None
    output = complete_output(opts.get(CONFIG_DIR), root_dir, args[0])
    return None if "\x1b" in output else output  # click strips ANSI codes from a pipe


def _options(
    argv: Sequence[str], known: set[str], stop_at_argument: bool = False
) -> tuple[dict[str, str] | None, list[str]]:
    """Split ``argv`` into ``--option VALUE``/``--option=VALUE`` pairs and arguments, as
    click does for these options; None for the options when click might read it
    differently or would refuse it (an unknown or repeated option, a missing, empty or
    dash-led value, ``--``, an empty argument)."""
    opts: dict[str, str] = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-"):
            if not word:
                return None, []
            if stop_at_argument:
                return opts, list(argv[i:])
            args.append(word)
            i += 1
            continue
        name, eq, value = word.partition("=")
        if not eq:
            if i + 1 == len(argv):
                return None, []
            i += 1
            value = argv[i]
        if name not in known or name in opts or not value or value.startswith("-"):
            return None, []
        opts[name] = value
        i += 1
    return opts, args
