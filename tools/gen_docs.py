#!/usr/bin/env python3
"""Generate shell completions and the man page from pvha's command tree.

Usage: ``python tools/gen_docs.py [OUTDIR]`` (default: the repository root) writes
``completions/pvha.bash``, ``completions/_pvha`` (zsh), ``completions/pvha.fish``,
``man/pvha.1`` and ``pvha/cli/help_text.py`` (the root help the Typer-free fast path
prints). The checked-in copies are compared with fresh output by
``tests/cli/test_cli_docs.py``; rerun this script after changing any command, or after
upgrading Typer.

The tree is read from the Typer app (``pvha.cli.app.app``). Values are completed from
the parameter itself: choices for enum options, directories for DIR, and ids from the
*local* configuration (``pvha _complete sids|groups|rules|nodes``) for parameters whose
metavar is SID(S), GROUP, RULE or NODE(S). The scripts hold the tree as data (``case``
tables keyed by command path) plus one small engine per shell.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from typer.main import get_command

from pvha import __version__
from pvha.cli.app import app
from pvha.cli.fast import COMPLETE_VAR, help_width

DYNAMIC = {
    "SID": "sids",
    "SIDS": "sids",
    "GROUP": "groups",
    "RULE": "rules",
    "NODE": "nodes",
    "NODES": "nodes",
}
HELP_OPTS = ["--help", "-h"]


@dataclass
class Param:
    """One option or argument: its names, whether it takes a value, and how to complete it."""

    names: list[str]
    takes_value: bool
    spec: str  # "choice:a b" | "dyn:<kind>" | "dir" | "any" | "" (flag)
    metavar: str
    help: str
    required: bool


@dataclass
class Node:
    path: str
    help: str
    options: list[Param] = field(default_factory=list)
    args: list[Param] = field(default_factory=list)
    children: dict[str, Node] = field(default_factory=dict)


def _param(p: object) -> Param:
    desc = p.type_descriptor  # type: ignore[attr-defined]
    metavar = p.metavar or p.name.upper()  # type: ignore[attr-defined]
    is_flag = bool(getattr(p, "is_flag", False))
    choices = [str(getattr(c, "value", c)) for c in (desc.choices or [])] if desc.is_choice else []
    if is_flag:
        spec = ""
    elif choices:
        spec = "choice:" + " ".join(choices)
    elif metavar in DYNAMIC:
        spec = "dyn:" + DYNAMIC[metavar]
    elif metavar == "DIR":
        spec = "dir"
    else:
        spec = "any"
    if choices:
        metavar = "|".join(choices)
    names = [*p.opts, *p.secondary_opts]  # type: ignore[attr-defined]
    help_text = " ".join((p.help or "").split())  # type: ignore[attr-defined]
    return Param(names, not is_flag, spec, metavar, help_text, bool(p.required))  # type: ignore[attr-defined]


def build_tree() -> Node:
    """The visible command tree (hidden commands such as ``_complete`` are left out)."""
    return _node(get_command(app), "")


def _node(cmd: object, path: str) -> Node:
    node = Node(path, " ".join((cmd.help or "").split()))  # type: ignore[attr-defined]
    for p in cmd.params:  # type: ignore[attr-defined]
        param = _param(p)
        (node.args if p.param_type_name == "argument" else node.options).append(param)
    node.options.append(Param(HELP_OPTS, False, "", "", "Show help and exit.", False))
    for name, sub in getattr(cmd, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            node.children[name] = _node(sub, f"{path} {name}".strip())
    return node


def walk(node: Node) -> list[Node]:
    return [node] + [n for child in node.children.values() for n in walk(child)]


# --- shared tables (bash and zsh share the POSIX-like case syntax) --------------------------


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _sh_tables(root: Node) -> str:
    nodes = walk(root)
    subs = [
        f"    {_sh_quote(n.path)}) echo {_sh_quote(' '.join(n.children))} ;;"
        for n in nodes
        if n.children
    ]
    opts = [
        f"    {_sh_quote(n.path)}) echo {_sh_quote(' '.join(nm for o in n.options for nm in o.names))} ;;"
        for n in nodes
    ]
    values, args = [], []
    for n in nodes:
        for o in n.options:
            if o.takes_value:
                pattern = "|".join(_sh_quote(f"{n.path}|{name}") for name in o.names)
                values.append(f"    {pattern}) echo {_sh_quote(o.spec)} ;;")
        for i, a in enumerate(n.args):
            args.append(f"    {_sh_quote(f'{n.path}|{i}')}) echo {_sh_quote(a.spec)} ;;")
    return "\n".join(
        [
            "_pvha_subcommands() {",
            '  case "$1" in',
            *subs,
            "  esac",
            "}",
            "_pvha_options() {",
            '  case "$1" in',
            *opts,
            "  esac",
            "}",
            "# Prints the completion spec of an option that takes a value; nothing for a flag.",
            "_pvha_value() {",
            '  case "$1|$2" in',
            *values,
            "  esac",
            "}",
            "_pvha_arg() {",
            '  case "$1|$2" in',
            *args,
            "  esac",
            "}",
        ]
    )


HEADER = "generated by tools/gen_docs.py from the pvha command tree; do not edit"

# Scans the words before the cursor: follows subcommands, skips option values, counts
# positionals, remembers --config-dir; then decides what the current word is.
SCAN = """\
  local cmdpath="" npos=0 expect="" cfg="" w i
  for ((i = FIRST; i < LAST; i++)); do
    w="${WORDS[i]}"
    if [[ -n $expect ]]; then
      [[ $expect == --config-dir ]] && cfg="$w"
      expect=""
      continue
    fi
    if [[ $w == -* ]]; then
      [[ $w != *=* && -n "$(_pvha_value "$cmdpath" "$w")" ]] && expect="$w"
      continue
    fi
    if [[ " $(_pvha_subcommands "$cmdpath") " == *" $w "* ]]; then
      cmdpath="${cmdpath:+$cmdpath }$w"
      npos=0
    else
      npos=$((npos + 1))
    fi
  done
  local spec="" subs
  subs="$(_pvha_subcommands "$cmdpath")"
  if [[ -n $expect ]]; then
    spec="$(_pvha_value "$cmdpath" "$expect")"
  elif [[ $cur == -* ]]; then
    spec="choice:$(_pvha_options "$cmdpath")"
  elif [[ -n $subs ]]; then
    spec="choice:$subs"
  else
    spec="$(_pvha_arg "$cmdpath" "$npos")"
  fi
"""


def bash_script(root: Node) -> str:
    scan = SCAN.replace("WORDS", "words").replace("FIRST", "1").replace("LAST", "${#words[@]} - 1")
    return f"""# bash completion for pvha -- {HEADER}.
# Ids (sids, groups, rules, nodes) come from the local config: `pvha _complete KIND`.

{_sh_tables(root)}

_pvha_ids() {{
  # the pvha being completed, as typed (by path too), not the one in PATH
  local cmd="${{_pvha_cmd:-pvha}}"
  if [[ -n $2 ]]; then "$cmd" --config-dir "$2" _complete "$1" 2>/dev/null; else "$cmd" _complete "$1" 2>/dev/null; fi
}}

_pvha() {{
  # Split the line ourselves: bash's own words break at ':' (vm:100).
  local line="${{COMP_LINE:0:COMP_POINT}}" words cur
  read -ra words <<< "$line"
  [[ $line == *[[:space:]] || ${{#words[@]}} -eq 0 ]] && words+=("")
  cur="${{words[${{#words[@]}} - 1]}}"
  local _pvha_cmd="${{words[0]/#\\~/$HOME}}"
{scan}  COMPREPLY=()
  case "$spec" in
    choice:*) mapfile -t COMPREPLY < <(compgen -W "${{spec#choice:}}" -- "$cur") ;;
    dyn:*) mapfile -t COMPREPLY < <(compgen -W "$(_pvha_ids "${{spec#dyn:}}" "$cfg")" -- "$cur") ;;
    dir) mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
  esac
  # bash replaces only the part after the last ':' of the current word.
  if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
    local prefix="${{cur%"${{cur##*:}}"}}"
    COMPREPLY=("${{COMPREPLY[@]#"$prefix"}}")
  fi
}}

complete -F _pvha pvha
"""


def zsh_script(root: Node) -> str:
    scan = SCAN.replace("WORDS", "words").replace("FIRST", "2").replace("LAST", "CURRENT")
    return f"""#compdef pvha
# zsh completion for pvha -- {HEADER}.
# Ids (sids, groups, rules, nodes) come from the local config: `pvha _complete KIND`.

{_sh_tables(root)}

_pvha_ids() {{
  # the pvha being completed, as typed (by path too), not the one in PATH
  local cmd="${{_pvha_cmd:-pvha}}"
  if [[ -n $2 ]]; then "$cmd" --config-dir "$2" _complete "$1" 2>/dev/null; else "$cmd" _complete "$1" 2>/dev/null; fi
}}

_pvha() {{
  local cur="${{words[CURRENT]}}" _pvha_cmd="${{words[1]/#\\~/$HOME}}"
{scan}  case "$spec" in
    choice:*) compadd -- ${{(s: :)${{spec#choice:}}}} ;;
    dyn:*) compadd -- ${{(f)"$(_pvha_ids "${{spec#dyn:}}" "$cfg")"}} ;;
    dir) _files -/ ;;
  esac
}}

_pvha "$@"
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_switch(name: str, subject: str, cases: list[tuple[str, str]]) -> str:
    body = "".join(
        f"        case {_fish_quote(k)}\n            echo {_fish_quote(v)}\n" for k, v in cases
    )
    return f"function {name}\n    switch {subject}\n{body}    end\nend\n"


FISH_ENGINE = """\
function __pvha_complete
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l cmdpath ''
    set -l npos 0
    set -l expect ''
    set -l cfg ''
    for w in $tokens[2..-1]
        if test -n "$expect"
            test "$expect" = --config-dir; and set cfg $w
            set expect ''
            continue
        end
        if string match -q -- '-*' $w
            set -l v (__pvha_value "$cmdpath" $w)
            if not string match -q -- '*=*' $w; and test -n "$v"
                set expect $w
            end
            continue
        end
        if contains -- $w (string split ' ' -- (__pvha_subcommands "$cmdpath"))
            set cmdpath (string trim -- "$cmdpath $w")
            set npos 0
        else
            set npos (math $npos + 1)
        end
    end
    set -l spec ''
    set -l subs (__pvha_subcommands "$cmdpath")
    if test -n "$expect"
        set spec (__pvha_value "$cmdpath" $expect)
    else if string match -q -- '-*' "$cur"
        set spec "choice:"(__pvha_options "$cmdpath")
    else if test -n "$subs"
        set spec "choice:$subs"
    else
        set spec (__pvha_arg "$cmdpath" $npos)
    end
    switch "$spec"
        case 'choice:*'
            string split ' ' -- (string replace 'choice:' '' -- $spec)
        case 'dyn:*'
            set -l kind (string replace 'dyn:' '' -- $spec)
            # the pvha being completed, as typed (by path too), not the one in PATH
            set -l cmd (string replace -r '^~' $HOME -- $tokens[1])
            if test -n "$cfg"
                $cmd --config-dir $cfg _complete $kind 2>/dev/null
            else
                $cmd _complete $kind 2>/dev/null
            end
        case dir
            __fish_complete_directories $cur
    end
end

complete -c pvha -f -a '(__pvha_complete)'
"""


def fish_script(root: Node) -> str:
    nodes = walk(root)
    subs = [(n.path, " ".join(n.children)) for n in nodes if n.children]
    opts = [(n.path, " ".join(nm for o in n.options for nm in o.names)) for n in nodes]
    values = [
        (f"{n.path}|{nm}", o.spec)
        for n in nodes
        for o in n.options
        if o.takes_value
        for nm in o.names
    ]
    args = [(f"{n.path}|{i}", a.spec) for n in nodes for i, a in enumerate(n.args)]
    tables = "\n".join(
        [
            _fish_switch("__pvha_subcommands", '"$argv[1]"', subs),
            _fish_switch("__pvha_options", '"$argv[1]"', opts),
            _fish_switch("__pvha_value", '"$argv[1]|$argv[2]"', values),
            _fish_switch("__pvha_arg", '"$argv[1]|$argv[2]"', args),
        ]
    )
    return f"""# fish completion for pvha -- {HEADER}.
# Ids (sids, groups, rules, nodes) come from the local config: `pvha _complete KIND`.

{tables}\n{FISH_ENGINE}"""


# --- man page -------------------------------------------------------------------------------


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _usage(node: Node) -> str:
    parts = [f"\\fBpvha {_roff(node.path)}\\fR" if node.path else "\\fBpvha\\fR"]
    parts += [f"\\fI{_roff(a.metavar)}\\fR" for a in node.args]
    if len(node.options) > 1:
        parts.append("[\\fIOPTIONS\\fR]")
    if node.children:
        parts.append("\\fICOMMAND\\fR ...")
    return " ".join(parts)


def _option_item(o: Param) -> str:
    names = ", ".join(f"\\fB{_roff(n)}\\fR" for n in o.names)
    value = f" \\fI{_roff(o.metavar)}\\fR" if o.takes_value else ""
    required = " (required)" if o.required else ""
    return f".TP\n{names}{value}\n{_roff(o.help)}{required}\n"


def man_page(root: Node) -> str:
    out = [
        f'.\\" {HEADER}.',
        f'.TH PVHA 1 "" "pvha {__version__}" "User Commands"',
        ".SH NAME",
        "pvha \\- Proxmox VE high availability with ha\\-manager's commands",
        ".SH SYNOPSIS",
        _usage(root),
        ".SH DESCRIPTION",
        _roff(root.help),
        (
            "Commands, option names (\\fB\\-\\-max_restart\\fR and \\fB\\-\\-max\\-restart\\fR both work)"
            " and the configuration files follow Proxmox VE's \\fBha\\-manager\\fR(1)."
        ),
        ".SH GLOBAL OPTIONS",
        *[_option_item(o).rstrip("\n") for o in root.options],
        ".SH COMMANDS",
    ]
    for node in walk(root)[1:]:
        if node.children and not node.args and len(node.options) == 1:
            out += [f'.SS "{node.path}"', _roff(node.help)]
            continue
        out += [f'.SS "{node.path}"', _usage(node), ".PP", _roff(node.help)]
        for a in node.args:
            out.append(f".TP\n\\fI{_roff(a.metavar)}\\fR\n{_roff(a.help)}")
        out += [_option_item(o).rstrip("\n") for o in node.options if o.names != HELP_OPTS]
    out += _settings_roff()
    out += [
        ".SH ENVIRONMENT",
        *[f".TP\n\\fB{_roff(var)}\\fR\n{_roff(text)}" for var, text in _variables()],
        ".SH FILES",
        (
            ".TP\n\\fIresources.cfg\\fR, \\fIgroups.cfg\\fR, \\fIrules.cfg\\fR\n"
            "HA configuration in Proxmox VE's section\\-config syntax, in the configuration directory"
            " (default \\fI/etc/pve/pvha\\fR when \\fI/etc/pve\\fR exists, else \\fI/etc/pvha\\fR for root,"
            " else \\fI~/.config/pvha\\fR)."
        ),
        ".TP\n\\fIcrm_commands\\fR\nCommands queued for the HA manager, one per line.",
        ".TP\n\\fImanager_status\\fR, \\fIlrm_status/NODE\\fR\nLast status files read by \\fBpvha status\\fR.",
        ".SH EXIT STATUS",
        "0 on success, 2 for usage errors (bad arguments, unknown references), 1 for other errors.",
        ".SH SEE ALSO",
        "\\fBha\\-manager\\fR(1)",
    ]
    return "\n".join(out) + "\n"


# --- root help for the fast path -------------------------------------------------------------

HELP_WIDTH = 80  # the columns of a terminal, and without one
TYPER_MAIN = "from pvha.cli.app import main; main()"  # the Typer app, never the fast path


def typer_output(args: list[str]) -> str:
    """stdout of the Typer app run on ``args`` as :mod:`pvha.cli.fast` serves the help:
    stdin, stdout and stderr not terminals, HELP_WIDTH columns, UTF-8."""
    env = {k: v for k, v in os.environ.items() if k != COMPLETE_VAR}
    env.update(COLUMNS=str(HELP_WIDTH), PYTHONIOENCODING="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", TYPER_MAIN, *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0 or result.stderr:
        raise SystemExit(f"pvha {' '.join(args)}: exit {result.returncode}: {result.stderr!r}")
    return result.stdout.decode("utf-8")


def _literal(text: str) -> str:
    return "(\n" + "".join(f"    {line!r}\n" for line in text.splitlines(keepends=True)) + ")"


def help_module() -> str:
    """``pvha/cli/help_text.py``: what the Typer app prints for ``pvha --help`` (and
    ``-h``) and for a bare ``pvha``."""
    asked, bare = typer_output(["--help"]), typer_output([])
    if typer_output(["-h"]) != asked:
        raise SystemExit("pvha -h and pvha --help differ: pvha.cli.fast serves one text")
    no_args = "HELP" if bare == asked else _literal(bare)
    return f'''"""Root help as the Typer app prints it on {HELP_WIDTH} columns (wrapped at WIDTH) to a
UTF-8 stdout: what :mod:`pvha.cli.fast` prints for ``pvha --help``, ``pvha -h``
(HELP) and a bare ``pvha`` (NO_ARGS), byte for byte.

{HEADER}.
"""

WIDTH = {help_width(HELP_WIDTH)}
HELP = {_literal(asked)}
NO_ARGS = {no_args}
'''


def _variables() -> list[tuple[str, str]]:
    """Every PVHA_* variable: those of the settings keys, then the others."""
    from pvha import settings

    out = [(settings._KEYS[key][1], f"{text} (setting {key})")
           for key, _default, text in settings.REFERENCE]
    return out + list(settings.VARIABLES)


def _settings_roff() -> list[str]:
    from pvha import settings

    out = [".SH SETTINGS",
           ("In \\fI/etc/pvha/settings.toml\\fR (or \\fBPVHA_SETTINGS\\fR); a variable wins "
           "over the file, a flag over both. Secrets never go in the file: it names files "
           "that hold them.")]
    for key, default, text in settings.REFERENCE:
        section = settings._KEYS[key][0]
        name = "root" if key == "cfs_root" else key
        out.append(f".TP\n\\fB[{section}] {_roff(name)}\\fR (default {_roff(default)})\n"
                   f"{_roff(text)}.")
    out += [".SS API token privileges",
            _roff(f"On /, propagated: {', '.join(settings.PRIVILEGES)}. For example:"),
            ".nf", *[_roff(line) for line in settings.TOKEN_SETUP], ".fi"]
    return out


README_BEGIN = "<!-- settings reference: written by tools/gen_docs.py -->"
README_END = "<!-- end of the settings reference -->"


def readme(template: str) -> str:
    """README.md with its settings reference block rewritten."""
    from pvha import settings

    lines = [README_BEGIN, "", "| setting | variable | default | meaning |", "|---|---|---|---|"]
    for key, default, text in settings.REFERENCE:
        section, var = settings._KEYS[key]
        name = "root" if key == "cfs_root" else key
        lines.append(f"| `[{section}] {name}` | `{var}` | {default} | {text} |")
    lines += ["", "Variables without a setting:", ""]
    lines += [f"- `{var}`: {text}" for var, text in settings.VARIABLES]
    lines += ["", (f"API token privileges, on `/`, propagated: {', '.join(settings.PRIVILEGES)} "
              "(read the cluster and the guests, start, stop and migrate them; Sys.Console only "
              "for `pvha import-pve`, which removes resources from PVE's own HA; recovery "
              "moves configs on the cluster filesystem, not through the API). For example:"),
              "",
              *[f"    {line}" for line in settings.TOKEN_SETUP], "", README_END]
    head, sep, rest = template.partition(README_BEGIN)
    if not sep:
        raise SystemExit(f"README.md lacks the line {README_BEGIN}")
    _old, sep, tail = rest.partition(README_END)
    if not sep:
        raise SystemExit(f"README.md lacks the line {README_END}")
    return head + "\n".join(lines) + tail


def generate(outdir: Path) -> list[Path]:
    """Write all generated files under ``outdir``; returns their paths."""
    root = build_tree()
    files = {
        Path("completions/pvha.bash"): bash_script(root),
        Path("completions/_pvha"): zsh_script(root),
        Path("completions/pvha.fish"): fish_script(root),
        Path("man/pvha.1"): man_page(root),
        Path("pvha/cli/help_text.py"): help_module(),
        Path("README.md"): readme((REPO / "README.md").read_text(encoding="utf-8")),
    }
    written = []
    for rel, text in files.items():
        target = outdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO):
        print(path)
