"""PVE's own rules test cases (rules_cfgs/*.cfg + .expect): drops, transforms, compile.

The reference data stays in ../shared (AGPL); it is read from there, never copied.
The expected "Config" section prints only keys set in the file (``strict 0`` shows,
a missing ``strict`` does not); our typed rules hold booleans, so flags compare as
booleans.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from shared_data import shared_path

from pvha.config import parse_rules_text
from pvha.core.model import NodeAffinityRule, Rule
from pvha.core.rules import compile_rules

NODES = ("node1", "node2", "node3")  # the node set of PVE's rules test harness

_SHARED = shared_path()
_CASES_DIR = _SHARED / "pve-ha-scenarios" / "rules_cfgs" if _SHARED else None
CASES = (
    sorted(p.name for p in _CASES_DIR.glob("*.cfg")) if _CASES_DIR and _CASES_DIR.is_dir() else []
)


def _sections(expect: str) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    head, rest = expect.split("--- Config ---\n", 1)
    config, compiled = rest.split("--- Compiled Config ---\n", 1)
    log = [line for line in head.splitlines() if line and line != "--- Log ---"]
    return log, json.loads(config), json.loads(compiled)


def _rule_json(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"type": rule.type, "resources": sorted(set(rule.resources))}
    if isinstance(rule, NodeAffinityRule):
        out["nodes"] = dict(rule.nodes)
        out["strict"] = rule.strict
    else:
        out["affinity"] = rule.affinity
    out["disable"] = rule.disable
    return out


def _expected_rule(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": raw["type"], "resources": sorted(raw["resources"])}
    if raw["type"] == "node-affinity":
        out["nodes"] = {n: v["priority"] for n, v in raw["nodes"].items()}
        out["strict"] = bool(raw.get("strict", 0))
    else:
        out["affinity"] = raw["affinity"]
    out["disable"] = bool(raw.get("disable", 0))
    return out


@pytest.mark.skipif(not CASES, reason="../shared/pve-ha-scenarios/rules_cfgs not present")
@pytest.mark.parametrize("name", CASES)
def test_rules_cfg_case(name: str) -> None:
    assert _CASES_DIR is not None
    text = (_CASES_DIR / name).read_text()
    log, config, compiled = _sections((_CASES_DIR / f"{name}.expect").read_text())

    result = compile_rules(parse_rules_text(text, name), {}, {}, NODES)

    assert list(result.log) == log
    assert hashlib.sha1(text.encode()).hexdigest() == config["digest"]
    assert {rid: _rule_json(r) for rid, r in result.rules.items()} == {
        rid: _expected_rule(raw) for rid, raw in config["ids"].items()
    }
    assert {rid: r.order for rid, r in result.rules.items()} == config["order"]
    assert result.compiled.to_json() == compiled


def test_cases_found_when_shared_present() -> None:
    if _CASES_DIR is None or not _CASES_DIR.is_dir():
        pytest.skip("../shared not present")
    assert len(CASES) == 12
