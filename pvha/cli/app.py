"""The ``pvha`` command line: ``ha-manager``'s commands on a local configuration store.

The entry point is :mod:`pvha.cli.main`: it serves the root help, ``config`` and
``_complete`` without Typer when it can (:mod:`pvha.cli.fast`) and calls :func:`main`
here otherwise.

Errors are translated once, here: a :class:`~pvha.errors.PvhaError` or a usage error
(unknown option, bad value) becomes one red line on stderr and exit code 2 for usage
errors, 1 otherwise; no traceback is shown (set ``PVHA_DEBUG=1`` to see one).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer import _click as click
from typer.core import TyperGroup

from pvha.cli import agent, crm, fast, groups, import_pve, render, resources, rules, watch, whatif
from pvha.cli import status as status_cmd
from pvha.cli.common import CONFIG_DIR_HELP, store_for
from pvha.cli.sim import sim_app
from pvha.errors import PvhaError


class PvhaGroup(TyperGroup):
    """The root command: runs the tree and turns every error into one line + exit code."""

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
    try:
        result = TyperGroup.main(
            group, args, prog_name or "pvha", complete_var, standalone_mode=False, **extra
        )
        return result if isinstance(result, int) else 0
    except click.exceptions.NoArgsIsHelpError as err:
        # Building the error already printed the rich help; plain mode keeps it in the message.
        if err.message.strip():
            typer.echo(err.message)
        return 0
    except click.exceptions.UsageError as err:
        where = f"{err.ctx.command_path}: " if err.ctx else ""
        render.error(f"{where}{err.format_message()}")
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


app = typer.Typer(
    name="pvha",
    cls=PvhaGroup,
    help="Proxmox VE high availability: ha-manager's commands on a pvha configuration store.",
    no_args_is_help=True,
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
    typer.echo(fast.complete_output(store_for(ctx, config_dir), what), nl=False)


resources.register(app)
groups.register(app)
app.command("status")(status_cmd.status)
app.add_typer(crm.crm_app, name="crm-command")
app.add_typer(rules.rules_app, name="rules")
app.add_typer(sim_app, name="sim")
watch.register(app)
agent.register(app)
whatif.register(app)
import_pve.register(app)


def main() -> None:
    """The Typer app on ``sys.argv`` (what :func:`pvha.cli.main.main` falls back to)."""
    app()
