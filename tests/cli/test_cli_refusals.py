"""The CLI tells what the HA manager will do (issue 8.6), on local files only: rules the
engine would drop, moves the manager would refuse, changes to a resource in error.

Every refusal: exit 2, one ``pvha: error:`` line on stderr, nothing on stdout, every file
byte-identical. Node and service states come from a ``manager_status`` in the config dir
(no API is configured here; the API cases are in tests/fakepve/test_fakepve_cli_checks.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pvha.config import views
from pvha.config.store import Store

NODES3 = {"node1": "online", "node2": "online", "node3": "online"}


def _ok(result):  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return result


def _refused(result, needle: str, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pvha: error: "), result.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output
    return str(lines[0])


def _status(cfg_dir: Path, nodes: dict[str, str] | None = None, **services: Any) -> None:
    cfg_dir.mkdir(exist_ok=True)
    status = {"node_status": NODES3 if nodes is None else nodes, "service_status": services}
    (cfg_dir / "manager_status").write_text(json.dumps(status))


def _add(run, *sids: str) -> None:  # type: ignore[no-untyped-def]
    for sid in sids:
        _ok(run("add", sid))


def _rule(kind: str, rid: str, resources: str, *extra: str) -> list[str]:
    return ["rules", "add", kind, rid, "--resources", resources, *extra]


def _na(rid: str, resources: str, nodes: str, *extra: str) -> list[str]:
    return _rule("node-affinity", rid, resources, "--nodes", nodes, *extra)


def _ra(rid: str, resources: str, affinity: str) -> list[str]:
    return _rule("resource-affinity", rid, resources, "--affinity", affinity)


# --- rules: the engine's feasibility check decides ------------------------------------------


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (
            [],
            _ra("lonely", "vm:100", "positive"),
            "Rule 'lonely' is invalid: rule is ineffective as there are less than two resources",
        ),
        (
            [],
            _ra("apart", "vm:100,vm:101,vm:102,vm:103", "negative"),
            "Rule 'apart' is invalid: rule defines more resources than available nodes",
        ),
        (
            [_ra("apart", "vm:100,vm:101", "negative")],
            _ra("together", "vm:100,vm:101", "positive"),
            (
                "Rule 'together' is invalid: rule shares two or more resources with a negative"
                " resource affinity rule (conflicts with rule 'apart')"
            ),
        ),
        (
            [_na("prio", "vm:100", "node1:2,node2")],
            _ra("together", "vm:100,vm:101", "positive"),
            (
                "Rule 'together' is invalid: resources are in node affinity rules with multiple"
                " priorities (conflicts with rule 'prio')"
            ),
        ),
        (
            [_na("na1", "vm:100", "node1"), _na("na2", "vm:101", "node2")],
            _ra("together", "vm:100,vm:101", "positive"),
            (
                "Rule 'together' is invalid: resources are in multiple node affinity rules"
                " (conflicts with rule 'na1', rule 'na2')"
            ),
        ),
        (
            [_na("pin", "vm:100,vm:101", "node1", "--strict", "1")],
            _ra("apart", "vm:100,vm:101", "negative"),
            (
                "Rule 'apart' is invalid: two or more resources are restricted to less nodes than"
                " available to the resources (conflicts with rule 'pin')"
            ),
        ),
        (
            [_na("pin", "vm:100", "node1")],
            _na("pin2", "vm:101,vm:100", "node2"),
            (
                "Rule 'pin2' is invalid: resource 'vm:100' is already used in another node"
                " affinity rule (conflicts with rule 'pin')"
            ),
        ),
    ],
)
def test_rules_add_refuses_what_the_manager_would_drop(  # type: ignore[no-untyped-def]
    run, snapshot, cfg_dir: Path, setup, args, message
) -> None:
    _add(run, "vm:100", "vm:101", "vm:102", "vm:103")
    _status(cfg_dir)
    for step in setup:
        _ok(run(*step))
    before = snapshot()
    assert _refused(run(*args), message) == f"pvha: error: {message}"
    assert snapshot() == before


def test_cli_and_manager_agree_on_every_rule(run, cfg_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The CLI refuses a rule exactly when the manager's check drops it once written."""
    _add(run, "vm:100", "vm:101", "vm:102", "ct:103")
    _status(cfg_dir, {"node1": "online", "node2": "online"})
    candidates = [
        _na("n1", "vm:100", "node1:2,node2"),
        _ra("pos", "vm:100,vm:101", "positive"),
        _ra("neg", "vm:101,vm:102", "negative"),
        _ra("neg3", "vm:100,vm:102,ct:103", "negative"),
        _na("n2", "vm:102", "node1", "--strict", "1"),
        _na("n3", "ct:103,vm:102", "node2"),
        _ra("pos2", "vm:102,ct:103", "positive"),
        _ra("neg2", "vm:100,ct:103", "negative"),
    ]
    for args in candidates:
        rid = args[3]
        result = run(*args)
        if result.exit_code == 0:
            continue
        assert result.exit_code == 2 and f"Rule '{rid}' is invalid" in result.stderr, result.output
        # the manager's verdict on the same rule written by hand next to the accepted ones
        other = tmp_path / f"by-hand-{rid}"
        other.mkdir()
        for name in ("resources.cfg", "rules.cfg"):
            (other / name).write_bytes((cfg_dir / name).read_bytes())
        keys = {"resources": args[5], **dict(zip(args[6::2], args[7::2], strict=True))}
        text = f"{args[2]}: {rid}\n" + "".join(
            f"\t{k.removeprefix('--')} {v}\n" for k, v in keys.items()
        )
        with (other / "rules.cfg").open("a") as fh:
            fh.write(text + "\n")
        dropped = views.rule_conflicts(Store(other).load(), ["node1", "node2"])
        assert rid in dropped, (rid, dropped)
    accepted = Store(cfg_dir).load()
    assert views.rule_conflicts(accepted, ["node1", "node2"]) == {}
    assert list(accepted.rules.entries) == ["n1", "neg", "n2", "pos2"]


def test_rules_set_is_checked_like_add(run, snapshot, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _add(run, "vm:100", "vm:101")
    _status(cfg_dir)
    _ok(run(*_na("na1", "vm:100", "node1")))
    _ok(run(*_na("na2", "vm:101", "node2")))
    before = snapshot()
    _refused(
        run("rules", "set", "node-affinity", "na2", "--resources", "vm:100,vm:101"),
        "Rule 'na2' is invalid: resource 'vm:100' is already used in another node affinity"
        " rule (conflicts with rule 'na1')",
    )
    assert snapshot() == before
    # a disabled rule is not checked (the manager skips it), enabling it again is
    _ok(run("rules", "set", "node-affinity", "na2", "--disable", "1"))
    _ok(run("rules", "set", "node-affinity", "na2", "--resources", "vm:100,vm:101"))
    before = snapshot()
    _refused(run("rules", "set", "node-affinity", "na2", "--disable", "0"),
             "Rule 'na2' is invalid")
    assert snapshot() == before


def test_rule_nodes_must_exist_when_nodes_are_known(run, snapshot, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _add(run, "vm:100", "vm:101", "vm:102")
    # no manager status, no API: accepted, and the CLI says what it could not check
    result = _ok(run(*_na("pin", "vm:100", "node9")))
    assert result.stderr == (
        "note: node names not checked (no API configured and no manager status yet)\n"
    )
    result = _ok(run(*_ra("apart", "vm:100,vm:101,vm:102", "negative")))
    assert result.stderr == (
        "note: node count not checked (no API configured and no manager status yet)\n"
    )
    _ok(run("rules", "remove", "pin"))
    _ok(run("rules", "remove", "apart"))
    _status(cfg_dir)
    before = snapshot()
    _refused(run(*_na("pin", "vm:100", "node1,node9,node8:2")),
             "cannot use non-existent node(s) node9, node8.")
    _refused(run(*_rule("node-affinity", "pin", "vm:100")), "no nodes were specified")
    assert snapshot() == before
    result = _ok(run(*_na("pin", "vm:100", "node1,node3:2")))
    assert result.output == ""


def test_group_changes_that_make_a_rule_dropped_are_refused(run, snapshot, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """A group is a node-affinity rule to the engine (``ha-group-<id>``)."""
    _add(run, "vm:100", "vm:101")
    _ok(run("groupadd", "g1", "--nodes", "node1"))
    _ok(run(*_na("pin", "vm:100", "node2")))
    _ok(run(*_ra("together", "vm:100,vm:101", "positive")))
    before = snapshot()
    line = _refused(
        run("set", "vm:100", "--group", "g1"),
        "the HA manager would drop group 'g1' (because resource 'vm:100' is already used in"
        " another node affinity rule; ",
    )
    assert "), rule 'pin' (because " in line and "), rule 'together' (because " in line
    assert snapshot() == before
    _ok(run("rules", "remove", "pin"))
    _ok(run("set", "vm:101", "--group", "g1"))  # the positive set joins the group's rule
    before = snapshot()
    _refused(
        run("groupset", "g1", "--nodes", "node1:2,node2"),
        "the HA manager would drop group 'g1' (because resources are in a resource affinity"
        " rule and cannot be in a node affinity rule with multiple priorities), rule 'together'"
        " (because resources are in node affinity rules with multiple priorities)",
    )
    assert snapshot() == before


def test_rules_add_with_a_group_on_the_same_resource(run, snapshot) -> None:  # type: ignore[no-untyped-def]
    """The issue's "shown by" sequence: the manager would drop both, so the CLI refuses."""
    _add(run, "vm:100")
    _ok(run("groupadd", "g1", "--nodes", "node1:2,node2", "--nofailback", "1"))
    _ok(run("set", "vm:100", "--group", "g1"))
    before = snapshot()
    _refused(
        run(*_na("r1", "vm:100", "node2", "--strict", "1")),
        "Rule 'r1' is invalid: resource 'vm:100' is already used in another node affinity"
        " rule (conflicts with group 'g1')",
    )
    assert snapshot() == before


# --- migrate / relocate -----------------------------------------------------------------------


MOVES = [
    ["migrate"],
    ["relocate"],
    ["crm-command", "migrate"],
    ["crm-command", "relocate"],
]


def _task(cmd: list[str]) -> str:
    return cmd[-1]


@pytest.fixture
def two_apart(run, cfg_dir: Path):  # type: ignore[no-untyped-def]
    _add(run, "vm:100", "vm:101", "vm:102", "ct:103")
    _ok(run(*_ra("apart", "vm:100,vm:101", "negative")))
    _ok(run(*_ra("together", "vm:100,ct:103", "positive")))
    _status(
        cfg_dir,
        {"node1": "online", "node2": "online", "node3": "unknown", "node4": "maintenance"},
        **{
            "vm:100": {"state": "started", "node": "node1"},
            "vm:101": {"state": "migrate", "node": "node3", "target": "node2"},
            "vm:102": {"state": "error", "node": "node1"},
            "ct:103": {"state": "stopped", "node": "node1"},
        },
    )


@pytest.mark.parametrize("cmd", MOVES)
def test_moves_the_manager_would_refuse(run, snapshot, two_apart, cmd) -> None:  # type: ignore[no-untyped-def]
    task = _task(cmd)
    before = snapshot()
    _refused(
        run(*cmd, "vm:100", "node2"),
        f"cannot {task} resource 'vm:100' to node 'node2': resource 'vm:101' on target node"
        " 'node2' in negative affinity with resource 'vm:100'",
    )
    _refused(
        run(*cmd, "vm:100", "node3"),
        f"cannot {task} resource 'vm:100' to node 'node3': node 'node3' is not online"
        " (HA node state 'unknown')",
    )
    _refused(run(*cmd, "vm:100", "node4"), "(HA node state 'maintenance')")
    _refused(
        run(*cmd, "vm:100", "node9"),
        "no such cluster node 'node9' (not in the HA manager's node status)",
    )
    _refused(
        run(*cmd, "vm:102", "node2"),
        "service 'vm:102' in error state, must be disabled and fixed first",
    )
    _refused(run(*cmd, "vm:999", "node2"), "resource 'vm:999' is not HA managed")
    _refused(run(*cmd, "vm:100", "no de"), "invalid node name 'no de'")
    assert snapshot() == before


@pytest.mark.parametrize("cmd", MOVES)
def test_accepted_move_names_the_partners_it_takes_along(run, cfg_dir: Path, two_apart, cmd) -> None:  # type: ignore[no-untyped-def]
    task = _task(cmd)
    _ok(run("rules", "remove", "apart"))
    result = _ok(run(*cmd, "vm:100", "node2"))
    assert result.stdout == (
        f"also {task} resource 'ct:103' in positive affinity with resource 'vm:100' to"
        " target node 'node2'\n"
    )
    assert result.stderr == ""
    # a partner already on the target is not named; a bare VMID is found in the config
    result = _ok(run(*cmd, "103", "node1"))
    assert result.output == "resource 'ct:103' is already on node 'node1', nothing queued\n"
    assert (cfg_dir / "crm_commands").read_text() == f"{task} vm:100 node2\n"


def test_strict_node_affinity_blocks_a_move(run, snapshot, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _add(run, "vm:100", "vm:101")
    _ok(run(*_na("pin", "vm:100", "node1,node2", "--strict", "1")))
    _ok(run(*_na("pref", "vm:101", "node1")))
    _status(cfg_dir, **{"vm:100": {"state": "started", "node": "node1"}})
    before = snapshot()
    _refused(
        run("migrate", "vm:100", "node3"),
        "cannot migrate resource 'vm:100' to node 'node3': strict node affinity rule 'pin'"
        " allows only node1, node2",
    )
    assert snapshot() == before
    _ok(run("migrate", "vm:100", "node2"))
    _ok(run("migrate", "vm:101", "node3"))  # a non-strict rule only prefers
    assert (cfg_dir / "crm_commands").read_text() == "migrate vm:100 node2\nmigrate vm:101 node3\n"


def test_disarmed_in_ignore_mode_nothing_is_ha_managed(run, snapshot, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _add(run, "vm:100")
    _status(cfg_dir)
    status = json.loads((cfg_dir / "manager_status").read_text())
    status["disarm"] = {"mode": "ignore", "state": "disarmed"}
    (cfg_dir / "manager_status").write_text(json.dumps(status))
    before = snapshot()
    _refused(run("migrate", "vm:100", "node2"), "resource 'vm:100' is not HA managed")
    _refused(run("crm-command", "stop", "vm:100", "0"), "resource 'vm:100' is not HA managed")
    assert snapshot() == before


def test_move_without_any_node_information_says_so(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _add(run, "vm:100")
    result = _ok(run("migrate", "vm:100", "node2"))
    assert result.stdout == ""
    assert result.stderr == (
        "note: cannot check that node 'node2' is online (no API configured and no manager"
        " status yet)\n"
    )
    assert (cfg_dir / "crm_commands").read_text() == "migrate vm:100 node2\n"


# --- resources in error, bare VMIDs -----------------------------------------------------------


def test_error_state_takes_only_state_disabled(run, snapshot, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _add(run, "vm:100")
    _status(cfg_dir, **{"vm:100": {"state": "error", "node": "node1"}})
    before = snapshot()
    message = "service 'vm:100' in error state, must be disabled and fixed first"
    for args in (
        ["set", "vm:100", "--state", "stopped"],
        ["set", "vm:100", "--state", "started"],
        ["set", "vm:100", "--comment", "fixed?"],
        ["crm-command", "stop", "vm:100", "0"],
    ):
        _refused(run(*args), message)
    assert snapshot() == before
    _ok(run("set", "vm:100", "--state", "disabled", "--comment", "broken disk"))
    assert (cfg_dir / "resources.cfg").read_text() == (
        "vm: 100\n\tcomment broken disk\n\tstate disabled\n\n"
    )


def test_bare_vmid_without_an_api(run, snapshot, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _add(run, "ct:101")
    before = snapshot()
    _refused(
        run("add", "103"),
        "unable to detect SID from VMID '103' without a PVE API (none configured):"
        " give vm:103 or ct:103, or --type",
    )
    _refused(run("remove", "104"), "unable to detect SID from VMID '104' - no HA resource")
    assert snapshot() == before
    _ok(run("set", "101", "--comment", "web"))  # the configured ct:101
    _ok(run("add", "103", "--type", "vm"))
    _ok(run("remove", "101"))
    assert (cfg_dir / "resources.cfg").read_text() == "vm: 103\n\n"
