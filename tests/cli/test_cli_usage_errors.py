"""Bad command lines across the commands: one red line on stderr in pvha's words
(``pvha: error: pvha <command>: ...``), exit 2, nothing on stdout, nothing written, and
no parser internals (pydantic's or click's phrasing, Python type names, tracebacks)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cli.conftest import Run

INTERNALS = ("Traceback", "Value error", "Input should", "<class", "NoneType", "pydantic",
             "Got unexpected", "Error:", "errors.pydantic.dev", "type=")

CASES = [
    # (args, command path in the message, what the message says)
    (("nosuch",), "pvha", "No such command 'nosuch'"),
    (("--bogus",), "pvha", "No such option: --bogus"),
    (("add",), "pvha add", "Missing argument 'SID'"),
    (("add", "vm:100", "extra"), "pvha add", "unexpected argument(s): extra"),
    (("add", "vm:100", "--state", "up"), "pvha add", "'up' is not one of 'started'"),
    (("add", "vm:100", "--failback", "maybe"), "pvha add", "expected a boolean"),
    (("history", "--limit", "abc"), "pvha history", "'abc' is not a valid integer"),
    (("history", "--limit", "0"), "pvha history", "0 is out of range (must be >= 1)"),
    (("history", "--limit"), "pvha history", "Option '--limit' requires an argument"),
    (("rules", "config", "--type", "bogus"), "pvha rules config",
     "'bogus' is not one of 'node-affinity', 'resource-affinity'"),
    (("rules", "list", "--noheader=perhaps"), "pvha rules list", "expected a boolean"),
    (("rules", "add", "node-affinity", "r1", "--strict", "2"), "pvha rules add",
     "expected a boolean"),
    (("sim", "serve", "--state-dir", "x", "--nodes", "99"), "pvha sim serve",
     "99 is out of range (must be <= 32)"),
    (("sim", "ctl", "--state-dir", "x", "--timeout", "soon", "status"), "pvha sim ctl",
     "'soon' is not a valid number"),
    (("crm-command", "disarm-ha", "sideways"), "pvha crm-command disarm-ha",
     "'sideways' is not one of"),
    (("what-if",), "pvha what-if", "Missing option '--fail'"),
]


@pytest.mark.parametrize(("args", "path", "says"), CASES, ids=lambda v: " ".join(v)
                         if isinstance(v, tuple) else None)
def test_bad_command_line_is_one_line_in_pvha_words(
    run: Run, snapshot: Callable[[], dict[str, bytes]], args: tuple[str, ...], path: str,
    says: str,
) -> None:
    before = snapshot()
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"pvha: error: {path}: "), lines[0]
    assert says in lines[0], lines[0]
    assert not [word for word in INTERNALS if word in lines[0]], lines[0]
    assert snapshot() == before
