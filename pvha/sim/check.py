"""Conformance checking of simulator runs against ``log.expect`` (design.md §3).

Tiers:

* ``exact`` — the whole log, byte for byte.
* ``decisions`` — the CRM decision lines of semantics §8.5 Tier A, with time and origin.
* ``relaxed`` — per-service and per-node sequences of state changes, times ignored.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pvha.errors import PvhaError, UsageError
from pvha.sim.runner import run_scenario
from pvha.sim.scenario import load_scenario

TIERS = ("exact", "decisions", "relaxed")

_LINE = re.compile(r"^(\S+)\s+(\d+)\s+(\S+): (.*)$")
_TIER_A = [
    re.compile(p)
    for p in (
        r"^node '[^']+': state changed from '[a-z]+' => '[a-z]+'$",
        r"^service '[^']+': state changed from '[a-z_]+' to '[a-z_]+'(  \(.*\))?$",
        r"^(adding new service|removing stale service) .*",
        r"^(migrate|relocate) service '[^']+' to node '[^']+'( \(running\))?$",
        r"^recover(ing)? service .*",
        r"^fencing: acknowledged - got agent lock for node '[^']+'$",
        r"^(FENCE|SUCCEED): .*",
        r"^auto rebalance - .*",
        (
            r"^moving service '.*' back to .*|^dropping maintenance fallback node .*"
            r"|^service '.*': clearing stale maintenance node .*"
        ),
        r"^status change [a-z_]+ => master$",
        (
            r"^disarm: .*|^all LRMs disarmed.*|^deferring disarm - .*|^re-arming HA stack$"
            r"|^HA stack fully disarmed.*"
        ),
        r"^service '.*': updating node .*",
        r"^Drop rule '.*', because .*",
    )
]
_SVC = re.compile(
    r"^service '([^']+)': state changed from '([a-z_]+)' to '([a-z_]+)'(?:  \((.*)\))?$"
)
_NODE = re.compile(r"^node '([^']+)': state changed from '([a-z]+)' => '([a-z]+)'$")


def decision_lines(log: str) -> list[str]:
    out = []
    for line in log.splitlines():
        m = _LINE.match(line)
        if not m or not m.group(3).endswith("/crm"):
            continue
        if any(p.match(m.group(4)) for p in _TIER_A):
            out.append(line)
    return out


def relaxed_lines(log: str) -> list[str]:
    seqs: dict[str, list[str]] = {}
    for line in log.splitlines():
        m = _LINE.match(line)
        if not m or not m.group(3).endswith("/crm"):
            continue
        msg = m.group(4)
        if sm := _SVC.match(msg):
            seqs.setdefault(f"service {sm.group(1)}", []).append(
                f"{sm.group(2)} -> {sm.group(3)} {sm.group(4) or ''}".rstrip()
            )
        elif nm := _NODE.match(msg):
            seqs.setdefault(f"node {nm.group(1)}", []).append(f"{nm.group(2)} -> {nm.group(3)}")
    return [f"{key}: {' | '.join(seq)}" for key, seq in sorted(seqs.items())]


def _project(log: str, tier: str) -> list[str]:
    if tier == "exact":
        return log.splitlines()
    if tier == "decisions":
        return decision_lines(log)
    return relaxed_lines(log)


def first_difference(expected: str, got: str, tier: str) -> str | None:
    """None when equal at ``tier``, else a one-line description of the first difference."""
    if tier == "exact" and expected == got:
        return None
    exp, act = _project(expected, tier), _project(got, tier)
    for i, (e, a) in enumerate(zip(exp, act, strict=False)):
        if e != a:
            return f"line {i + 1}: expected {e!r}, got {a!r}"
    if len(exp) != len(act):
        i = min(len(exp), len(act))
        if len(exp) > len(act):
            return f"line {i + 1}: expected {exp[i]!r}, got end of log"
        return f"line {i + 1}: expected end of log, got {act[i]!r}"
    if tier == "exact":
        return "logs differ in line endings"
    return None


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    reason: str | None = None
    diff: tuple[str, ...] = ()

    def line(self) -> str:
        return f"PASS {self.name}" if self.ok else f"FAIL {self.name}: {self.reason}"


def find_scenarios(paths: Iterable[str | Path]) -> list[Path]:
    """Every directory under ``paths`` (recursively, sorted) that holds a ``log.expect``."""
    found: set[Path] = set()
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UsageError(f"no such path: {path}")
        if (path / "log.expect").is_file():
            found.add(path)
            continue
        for f in path.rglob("log.expect"):
            found.add(f.parent)
    return sorted(found, key=lambda q: (q.name, str(q)))


def check_scenario(path: Path, tier: str) -> CheckResult:
    if tier not in TIERS:
        raise UsageError(f"unknown tier '{tier}' (choose from {', '.join(TIERS)})")
    try:
        scenario = load_scenario(path)
        got = run_scenario(scenario)
    except PvhaError as exc:
        return CheckResult(path.name, False, f"error: {exc}")
    except Exception as exc:  # noqa: BLE001 - report, keep checking the others
        return CheckResult(path.name, False, f"internal error: {type(exc).__name__}: {exc}")
    expected = scenario.expected_log or ""
    reason = first_difference(expected, got, tier)
    if reason is None:
        return CheckResult(path.name, True)
    lines = difflib.unified_diff(
        _project(expected, tier), _project(got, tier), "log.expect", "pvha", lineterm=""
    )
    return CheckResult(path.name, False, reason, tuple(lines))


def check_paths(paths: Iterable[str | Path], tier: str) -> Iterator[CheckResult]:
    for path in find_scenarios(paths):
        yield check_scenario(path, tier)
