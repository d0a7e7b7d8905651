"""Loader for PVE's regression scenario directories (semantics §8.1)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvha.config import parse_groups_text, parse_rules_text
from pvha.errors import ConfigError

DEFAULT_NODES = ("node1", "node2", "node3")


@dataclass
class Scenario:
    """Raw inputs of one scenario, as PVE's test harness copies them to ``status/``."""

    name: str
    path: Path
    cmdlist: list[list[str]]
    hardware_status: dict[str, dict[str, Any]]
    service_config: dict[str, dict[str, Any]]
    manager_status: dict[str, Any] = field(default_factory=dict)
    groups_text: str = ""
    rules_text: str = ""
    datacenter: dict[str, Any] = field(default_factory=dict)
    static_service_stats: dict[str, Any] | None = None
    dynamic_service_stats: dict[str, Any] | None = None
    service_status: dict[str, dict[str, int]] = field(default_factory=dict)
    fence_cfg: str | None = None
    expected_log: str | None = None
    readme: str | None = None


def _json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    text = path.read_text()
    if not text.strip():
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", str(path), exc.lineno) from exc


def _text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def load_scenario(path: str | Path) -> Scenario:
    """Read every input file of a scenario directory (missing ones get PVE's defaults)."""
    d = Path(path)
    if not d.is_dir():
        raise ConfigError("not a scenario directory", str(d))
    hardware = _json(d / "hardware_status", None)
    if hardware is None:
        hardware = {n: {"power": "off", "network": "off"} for n in DEFAULT_NODES}
    services = _json(d / "service_config", None)
    if services is None:
        services = {
            f"vm:{101 + i}": {"node": DEFAULT_NODES[i % 3], "state": "enabled"} for i in range(6)
        }
    status: dict[str, dict[str, int]] = {}
    for node in hardware:
        status[node] = _json(d / f"service_status_{node}", {})
    groups_text = _text(d / "groups") or ""
    rules_text = _text(d / "rules_config") or ""
    # validate early so a broken file is a load error, not a log line mid-run
    if groups_text.strip():
        parse_groups_text(groups_text, str(d / "groups"))
    if rules_text.strip():
        parse_rules_text(rules_text, str(d / "rules_config"))
    if not isinstance(services, dict) or not all(
        isinstance(v, dict) and v.get("node") for v in services.values()
    ):
        raise ConfigError("every resource needs a 'node'", str(d / "service_config"))
    return Scenario(
        name=d.name,
        path=d,
        cmdlist=_json(d / "cmdlist", []),
        hardware_status=hardware,
        service_config=services,
        manager_status=_json(d / "manager_status", {}),
        groups_text=groups_text,
        rules_text=rules_text,
        datacenter=_json(d / "datacenter.cfg", {}),
        static_service_stats=_json(d / "static_service_stats", None),
        dynamic_service_stats=_json(d / "dynamic_service_stats", None),
        service_status=status,
        fence_cfg=_text(d / "fence.cfg"),
        expected_log=_text(d / "log.expect"),
        readme=_text(d / "README"),
    )
