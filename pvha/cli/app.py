"""The ``pvha`` command line: ``ha-manager``'s commands on a local configuration store.

The entry point is :mod:`pvha.cli.main`: it serves the root help, ``config`` and
``_complete`` without Typer when it can (:mod:`pvha.cli.fast`) and calls :func:`main`
here otherwise.

PVE's standard output options take their value optionally (``--noborder`` is
``--noborder 1``): :func:`pvha.cli.common.optional_values` spells a bare one out before
click parses the command line.

Errors are translated once, here: a :class:`~pvha.errors.PvhaError` or a usage error
(unknown option, bad value) becomes one red line on stderr and exit code 2 for usage
errors, 1 otherwise; no traceback is shown (set ``PVHA_DEBUG=1`` to see one).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer import _click as click
from typer.core import TyperGroup

from pvha.cli import (
    agent,
    crm,
    explain,
    fast,
    groups,
    helpfmt,
    import_pve,
    render,
    resources,
    rules,
    watch,
    whatif,
)
from pvha.cli import status as status_cmd
from pvha.cli.common import CONFIG_DIR_HELP, optional_values
from pvha.cli.sim import sim_app
from pvha.errors import PvhaError


class PvhaGroup(TyperGroup):
    """The root command: runs the tree and turns every error into one line + exit code.
    Every command of the tree prints pvha's help page (:mod:`pvha.cli.helpfmt`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        helpfmt.install(self)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = _run(self, args, prog_name, complete_var, **extra)
        if not standalone_mode:
            return code
        sys.exit(code)


def _run(
    group: TyperGroup,
    args: Sequence[str] | None,
    prog_name: str | None,
    complete_var: str | None,
    **extra: Any,
) -> int:
    args = optional_values(sys.argv[1:] if args is None else args)
    try:
        result = TyperGroup.main(
            group, args, prog_name or "pvha", complete_var, standalone_mode=False, **extra
        )
        return result if isinstance(result, int) else 0
    except click.exceptions.NoArgsIsHelpError as err:
        typer.echo(err.message)  # the help page
        return 0
    except click.exceptions.UsageError as err:
        render.error(_usage_message(group, args, err))
        return 2
    except click.exceptions.ClickException as err:
        render.error(err.format_message())
        return err.exit_code
    except typer.Abort:
        render.error("aborted")
        return 1
    except PvhaError as err:
        render.error(str(err))
        return err.exit_code
    except Exception as err:
        if os.environ.get("PVHA_DEBUG"):
            raise
        render.error(
            f"internal error: {type(err).__name__}: {err} (set PVHA_DEBUG=1 for a traceback)"
        )
        return 1


BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
EXTRA = re.compile(r"Got unexpected extra arguments?(?:\(s\))? \((.*)\)$")


def _usage_message(group: TyperGroup, args: Sequence[str], err: click.exceptions.UsageError) -> str:
    """A usage error in pvha's words: the command path, then what was wrong, without the
    parser's own phrasing (pydantic's "Input should be ...", "Value error, ...")."""
    path = err.ctx.command_path if err.ctx else _command_path(group, args)
    cause = err.__cause__
    if isinstance(err, click.exceptions.BadParameter) and hasattr(cause, "errors"):
        err.message = _reason(cause.errors()[0])
    extra = EXTRA.match(err.message)
    if extra:
        err.message = f"unexpected argument(s): {extra[1]}"
    return f"{path}: {err.format_message()}"


def _reason(problem: dict[str, Any]) -> str:
    """One pydantic validation problem as a sentence about the value given."""
    value, limits = problem.get("input"), problem.get("ctx") or {}
    if problem["type"] in ("int_parsing", "int_from_float"):
        return f"{value!r} is not a valid integer"
    if problem["type"] == "float_parsing":
        return f"{value!r} is not a valid number"
    bounds = [f"{op} {limits[k]}" for k, op in BOUNDS.items() if k in limits]
    if bounds:
        return f"{value} is out of range (must be {' and '.join(bounds)})"
    return str(problem.get("msg", "invalid value")).removeprefix("Value error, ")


def _command_path(group: TyperGroup, args: Sequence[str]) -> str:
    """``pvha`` and the (sub)command names in ``args``: where an error without a context
    was raised."""
    path, command = ["pvha"], group
    for word in args:
        sub = getattr(command, "commands", {}).get(word)
        if sub is not None:
            path.append(word)
            command = sub
    return " ".join(path)


app = typer.Typer(
    name="pvha",
    cls=PvhaGroup,
    help="Proxmox VE high availability: ha-manager's commands on a pvha configuration store.",
    no_args_is_help=True,
    rich_markup_mode=None,  # help pages are pvha.cli.helpfmt's
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"pvha {version('pvha')}")
        except PackageNotFoundError:
            typer.echo("pvha (not installed)")
        raise typer.Exit(0)


@app.callback()
def root(
    config_dir: str | None = typer.Option(
        None, "--config-dir", metavar="DIR", help=CONFIG_DIR_HELP, show_default=False
    ),
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Proxmox VE high availability: ha-manager's commands on a pvha configuration store."""


@app.command("_complete", hidden=True)
def complete(
    ctx: typer.Context, what: str, config_dir: str | None = typer.Option(None, "--config-dir")
) -> None:
    """Ids for shell completion (sids, groups, rules, nodes) from the local config only."""
    root_dir = ctx.find_root().params.get("config_dir")
    typer.echo(fast.complete_output(config_dir, root_dir, what), nl=False)


resources.register(app)
groups.register(app)
app.command("status")(status_cmd.status)
app.add_typer(crm.crm_app, name="crm-command")
app.add_typer(rules.rules_app, name="rules")
app.add_typer(sim_app, name="sim")
watch.register(app)
agent.register(app)
whatif.register(app)
explain.register(app)
import_pve.register(app)


def main() -> None:
    """The Typer app on ``sys.argv`` (what :func:`pvha.cli.main.main` falls back to)."""
    app()
