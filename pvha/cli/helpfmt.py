"""Help pages: one plain layout for every command, readable in 80 columns.

Typer's rich help prints a type column (``<bool>``, ``<str>``), keeps a docstring's
line breaks and then wraps the lines again, truncates long option names, and breaks
words inside choices and paths. pvha renders its help itself instead, from the click
command tree Typer builds: :func:`install` gives every command of the tree (those added
later included, as it runs on the finished tree) a :class:`HelpContext`, whose
``get_help`` (what ``--help``, ``-h`` and a bare group print) is :func:`render_help`::

    Usage: pvha add [OPTIONS] SID

      First paragraph of the docstring.

      Further paragraphs, each rewrapped (one that starts with \\b kept as written).

    Arguments:
      SID  HA resource id: vm:<vmid> or ct:<vmid>.  [required]

    Options:
      --state <started|stopped|enabled|disabled|ignored>
                              Requested resource state.
      --max-restart, --max_restart N
                              Restarts on the same node after a failed start ...

    Commands:
      name  The command's first paragraph, whole.

Text is wrapped at :func:`pvha.cli.fast.help_width` (the terminal's width, at most 78
columns) at spaces only: never inside a word, nor at a hyphen. A value placeholder is
the parameter's metavar, its choices (``<a|b>``), N for a number, or its name in
capitals. The output is plain text (no colour), the same on a terminal and in a pipe,
which lets :mod:`pvha.cli.fast` serve the root help.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Iterator, Sequence

from typer import _click as click

from pvha.cli.fast import help_width

INDENT = 2  # paragraphs and definition lists are indented this much
NAME_WIDTH = 30  # a definition's help starts after the names, or on the next line past this
GAP = 2


class HelpContext(click.Context):
    """A click context whose help page is :func:`render_help`'s."""

    def get_help(self) -> str:
        return render_help(self)


def install(command: click.Command) -> None:
    """Give ``command`` and every command below it the pvha help page."""
    command.context_class = HelpContext
    for sub in getattr(command, "commands", {}).values():
        install(sub)


def render_help(ctx: click.Context) -> str:
    """The help page of ``ctx.command`` (no trailing newline, as click's ``get_help``)."""
    command, width = ctx.command, help_width()
    blocks = [_usage(ctx, width)]
    text = inspect.cleandoc(command.help or "").partition("\f")[0]
    if text:
        blocks.append(_paragraphs(text, width))
    arguments = [_param_row(ctx, p) for p in _visible(ctx) if p.param_type_name == "argument"]
    options = [_param_row(ctx, p) for p in _visible(ctx) if p.param_type_name == "option"]
    for title, rows in (("Arguments", arguments), ("Options", options)):
        if rows:
            blocks.append(f"{title}:\n{_definitions(rows, width)}")
    commands = list(_command_rows(ctx))
    if commands:
        blocks.append(f"Commands:\n{_definitions(commands, width)}")
    if command.epilog:
        blocks.append(_paragraphs(inspect.cleandoc(command.epilog), width))
    return "\n\n".join(block.rstrip("\n") for block in blocks)


def _visible(ctx: click.Context) -> list[click.Parameter]:
    return [p for p in ctx.command.get_params(ctx) if not getattr(p, "hidden", False)]


def _usage(ctx: click.Context, width: int) -> str:
    pieces = [ctx.command_path]
    if ctx.command.options_metavar:
        pieces.append(ctx.command.options_metavar)
    for param in ctx.command.get_params(ctx):
        if param.param_type_name == "argument":
            name = _placeholder(ctx, param) + ("..." if param.nargs != 1 else "")
            pieces.append(name if param.required else f"[{name}]")
    if hasattr(ctx.command, "commands"):
        pieces.append(getattr(ctx.command, "subcommand_metavar", None) or "COMMAND [ARGS]...")
    head = "Usage: "
    return _wrap(" ".join(pieces), width, head, " " * len(head))


def _paragraphs(text: str, width: int) -> str:
    """``text``'s paragraphs (blank-line separated), each rewrapped; one led by ``\\b``
    keeps its lines (a line too wide for ``width`` is wrapped)."""
    out = []
    pad = " " * INDENT
    for paragraph in text.split("\n\n"):
        if paragraph.startswith("\b"):
            lines = paragraph.removeprefix("\b").strip("\n").splitlines()
            out.append("".join(_kept(pad + line, width) for line in lines))
        elif paragraph.strip():
            out.append(_wrap(paragraph, width, pad, pad))
    return "\n".join(out)


def _kept(line: str, width: int) -> str:
    """A line kept as written; wrapped, if wider than ``width``, under its indent."""
    line = line.rstrip()
    if len(line) <= width:
        return line + "\n"
    indent = " " * (len(line) - len(line.lstrip()))
    return _wrap(line, width, indent, indent + "    ")


def _placeholder(ctx: click.Context, param: click.Parameter) -> str:
    """What stands for a parameter's value: its metavar, its choices, N for a number,
    or its name."""
    if param.metavar:
        return param.metavar
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and descriptor.is_choice:
        return str(param.display_type(ctx))  # type: ignore[attr-defined]
    if descriptor is not None and descriptor.annotation in (int, float):
        return "N"
    return (param.name or "value").upper()


def _param_row(ctx: click.Context, param: click.Parameter) -> tuple[str, str]:
    record = param.get_help_record(ctx)
    help_text = record[1] if record else ""
    if param.param_type_name == "argument":
        return _placeholder(ctx, param) + ("..." if param.nargs != 1 else ""), help_text
    names = click.formatting.join_options(param.opts)[0]
    if param.secondary_opts:
        names += " / " + click.formatting.join_options(param.secondary_opts)[0]
    if not (getattr(param, "is_flag", False) or getattr(param, "count", False)):
        names += " " + _placeholder(ctx, param)
    return names, help_text


def _command_rows(ctx: click.Context) -> Iterator[tuple[str, str]]:
    command = ctx.command
    if not hasattr(command, "commands"):
        return
    for name in command.list_commands(ctx):  # type: ignore[attr-defined]
        sub = command.get_command(ctx, name)  # type: ignore[attr-defined]
        if sub is None or sub.hidden:
            continue
        summary = sub.short_help or inspect.cleandoc(sub.help or "").partition("\f")[0]
        yield name, summary.split("\n\n")[0]


def _definitions(rows: Sequence[tuple[str, str]], width: int) -> str:
    """Two columns: names, then their help wrapped beside them (or below, indented, when
    the names are wider than NAME_WIDTH)."""
    name_width = min(max(len(name) for name, _ in rows), NAME_WIDTH)
    pad = " " * INDENT
    help_pad = " " * (INDENT + name_width + GAP)
    out = []
    for name, help_text in rows:
        if len(name) <= name_width:
            first = pad + name.ljust(name_width + GAP)
            out.append(_wrap(help_text, width, first, help_pad) if help_text else
                       first.rstrip() + "\n")
            continue
        out.append(_wrap(name, width, pad, pad + "  "))
        if help_text:
            out.append(_wrap(help_text, width, help_pad, help_pad))
    return "".join(out)


def _wrap(text: str, width: int, first: str, rest: str) -> str:
    """``text``'s words in lines of at most ``width`` columns, broken at spaces only."""
    lines = textwrap.wrap(
        " ".join(text.split()), width, initial_indent=first, subsequent_indent=rest,
        break_long_words=False, break_on_hyphens=False,
    )
    return "".join(line + "\n" for line in lines) or first.rstrip() + "\n"
