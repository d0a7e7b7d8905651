"""Option types shared by the commands, and the store behind ``--config-dir``.

Metavars carry meaning: the completion generator (``tools/gen_docs.py``) completes a
parameter whose metavar is SID, GROUP, RULE or NODE with ids from the local config.

PVE's standard output options (``--noborder``, ``--noheader``, ``--quiet``,
``--human-readable``) are PVE booleans whose value is optional, as PVE's CLI reads
them: ``--noborder`` alone is ``--noborder 1``. Click has no optional values, so
:func:`optional_values` gives a bare one its ``=1`` before the command line is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any

import typer

from pvha.cli.fast import store_at
from pvha.cli.render import Shape
from pvha.config.store import Store
from pvha.settings import Settings, load_settings


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    json_pretty = "json-pretty"
    yaml = "yaml"


class ResourceType(str, Enum):
    vm = "vm"
    ct = "ct"


class State(str, Enum):
    started = "started"
    stopped = "stopped"
    enabled = "enabled"
    disabled = "disabled"
    ignored = "ignored"


TRUE_WORDS = ("1", "yes", "on", "true")
FALSE_WORDS = ("0", "no", "off", "false")


def pve_bool(value: str) -> str:
    """A PVE boolean on the command line, spelled as PVE's own CLI takes it: 1/0, yes/no,
    on/off, true/false (any case); ``"1"`` or ``"0"``."""
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return "1"
    if word in FALSE_WORDS:
        return "0"
    raise typer.BadParameter(f"expected a boolean (1/0, yes/no, on/off, true/false), got "
                             f"{value!r}")


BOOL_METAVAR = "<1|0>"
Bool = str  # the value of a PVE_BOOL option: "1" or "0"
OPTIONAL_BOOL_METAVAR = "[<1|0>]"


CONFIG_DIR_HELP = (
    "Configuration directory (env PVHA_CONFIG_DIR; else [cfs] of PVHA_CFS_ROOT and the"
    " settings file, as pvha watch; default: /etc/pve/pvha if /etc/pve exists, else"
    " /etc/pvha for root, else ~/.config/pvha)."
)

ConfigDirOpt = Annotated[
    str | None,
    typer.Option("--config-dir", metavar="DIR", help=CONFIG_DIR_HELP, show_default=False),
]
OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output-format", help="Output format; text is a table on a terminal."),
]


def _output_bool(names: tuple[str, ...], help_text: str) -> Any:
    return typer.Option(*names, parser=pve_bool, metavar=OPTIONAL_BOOL_METAVAR,
                        help=help_text, show_default=False)


NO_BORDER = ("--noborder", "--no-border")
NO_HEADER = ("--noheader", "--no-header")
QUIET = ("--quiet",)
HUMAN_READABLE = ("--human-readable", "--human_readable")
NoBorderOpt = Annotated[Bool, _output_bool(NO_BORDER, "Text: a table without border lines.")]
NoHeaderOpt = Annotated[Bool, _output_bool(NO_HEADER, "Text: no header row.")]
QuietOpt = Annotated[Bool, _output_bool(QUIET, "Print no result (the exit status tells).")]
HumanReadableOpt = Annotated[
    Bool, _output_bool(HUMAN_READABLE, "Values rendered for people, e.g. times (default: 1).")
]


def shape(noborder: Bool, noheader: Bool, quiet: Bool) -> Shape:
    """The table shape that PVE's standard output options ask for."""
    return Shape(border=noborder == "0", header=noheader == "0", quiet=quiet == "1")


def optional_values(args: Sequence[str]) -> list[str]:
    """``args`` with each bare PVE standard output option (one not followed by a boolean
    word) given its value 1; untouched from ``--`` on."""
    names = {*NO_BORDER, *NO_HEADER, *QUIET, *HUMAN_READABLE}
    out = list(args)
    for i, word in enumerate(out):
        if word == "--":
            break
        bare = i + 1 == len(out) or out[i + 1].lower() not in (*TRUE_WORDS, *FALSE_WORDS)
        if word in names and bare:
            out[i] = f"{word}=1"
    return out
SidArg = Annotated[
    str,
    typer.Argument(
        metavar="SID", help="HA resource id: vm:<vmid> or ct:<vmid>.", show_default=False
    ),
]
NodeArg = Annotated[
    str, typer.Argument(metavar="NODE", help="Cluster node name.", show_default=False)
]
GroupArg = Annotated[str, typer.Argument(metavar="GROUP", help="HA group id.", show_default=False)]
RuleArg = Annotated[str, typer.Argument(metavar="RULE", help="HA rule id.", show_default=False)]
CommentOpt = Annotated[
    str | None, typer.Option("--comment", help="Description.", show_default=False)
]
DeleteOpt = Annotated[
    str | None,
    typer.Option(
        "--delete",
        metavar="KEYS",
        help="Comma-separated list of options to delete.",
        show_default=False,
    ),
]


SettingsOpt = Annotated[
    str | None,
    typer.Option("--settings", metavar="FILE",
                 help="pvha settings file (env PVHA_SETTINGS; default /etc/pvha/settings.toml).",
                 show_default=False),
]


def store_for(ctx: typer.Context, config_dir: str | None,
              settings_file: str | None = None) -> Store:
    """The store: the command's ``--config-dir``, else the top-level one, else
    $PVHA_CONFIG_DIR, else the config dir ``pvha watch`` uses ($PVHA_CFS_ROOT and
    ``[cfs]`` in the settings file), else the default (:func:`pvha.cli.fast.store_at`,
    which the fast path shares)."""
    return store_at(config_dir, ctx.find_root().params.get("config_dir"), settings_file)


def settings_for(flags: dict[str, Any], settings_file: str | None) -> Settings:
    """pvha's settings: flags > ``PVHA_*`` environment > settings file > defaults."""
    return load_settings(flags, path=settings_file)


def value(option: Enum | str | None) -> str | None:
    """Raw string of an option value (enums give their value)."""
    if option is None:
        return None
    return str(option.value) if isinstance(option, Enum) else option
