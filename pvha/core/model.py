"""Typed HA configuration, as the engine sees it.

These frozen dataclasses are the contract between the configuration layer
(``pvha.config``, which parses and validates PVE's section-config files into them)
and the engine (``pvha.core``), and the simulator loader (``pvha.sim``). They hold
values with PVE's defaults already applied; the raw text (for byte-exact round-trips)
stays in the config layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pvha.core.health import DEFAULT_FAILURES, DEFAULT_GRACE, DEFAULT_INTERVAL

RESOURCE_TYPES = ("vm", "ct")
# ``fa`` is the simulator-only "failing" resource type (VirtFail).
SIM_RESOURCE_TYPES = ("vm", "ct", "fa")

NodePriorities = tuple[tuple[str, int], ...]
"""A node list with priorities, in file order: ``node1:2,node2`` -> (("node1", 2), ("node2", 0))."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One entry of resources.cfg (``vm: 100`` / ``ct: 101``).

    ``node`` is not part of resources.cfg in real PVE (it comes from where the guest
    config lives); the simulator stores it in ``service_config``.
    """

    sid: str
    state: str = "started"
    group: str | None = None
    failback: bool = True
    max_restart: int = 1
    max_relocate: int = 1
    comment: str | None = None
    node: str | None = None
    priority: int = 0  # pvha extension: start order (pvha.core.start_order)
    after: str | None = None  # pvha extension: the resource that must run first
    health: str | None = None  # pvha extension (pvha.core.health): "agent" or unset
    health_grace: int = DEFAULT_GRACE
    health_failures: int = DEFAULT_FAILURES
    health_interval: int = DEFAULT_INTERVAL

    @classmethod
    def from_config(cls, sid: str, values: Mapping[str, Any]) -> Resource:
        """A resources.cfg entry (parsed values, or the engine's PVE-shaped ``cd`` whose
        numbers may be strings) with PVE's defaults; ``enabled`` becomes ``started``."""
        state = str(values.get("state", "started"))
        return cls(
            sid=sid,
            state="started" if state == "enabled" else state,
            group=values.get("group"),
            failback=bool(int(values.get("failback", 1))),
            max_restart=int(values.get("max_restart", 1)),
            max_relocate=int(values.get("max_relocate", 1)),
            comment=values.get("comment"),
            node=values.get("node"),
            priority=int(values.get("priority", 0)),
            after=values.get("after"),
            health=values.get("health"),
            health_grace=int(values.get("health_grace", DEFAULT_GRACE)),
            health_failures=int(values.get("health_failures", DEFAULT_FAILURES)),
            health_interval=int(values.get("health_interval", DEFAULT_INTERVAL)),
        )

    @property
    def type(self) -> str:
        """The resource type: ``vm``, ``ct`` (``fa`` in the simulator)."""
        return self.sid.split(":", 1)[0]

    @property
    def name(self) -> str:
        """The id within the type (the VMID)."""
        return self.sid.split(":", 1)[1]


@dataclass(frozen=True, slots=True)
class Group:
    """One entry of the legacy groups.cfg (``group: <id>``)."""

    id: str
    nodes: NodePriorities
    restricted: bool = False
    nofailback: bool = False
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class NodeAffinityRule:
    """``node-affinity: <id>`` in rules.cfg."""

    id: str
    resources: tuple[str, ...]
    nodes: NodePriorities
    strict: bool = False
    disable: bool = False
    comment: str | None = None
    order: int = 0

    type = "node-affinity"


@dataclass(frozen=True, slots=True)
class ResourceAffinityRule:
    """``resource-affinity: <id>`` in rules.cfg; ``affinity`` is positive or negative."""

    id: str
    resources: tuple[str, ...]
    affinity: str
    disable: bool = False
    comment: str | None = None
    order: int = 0

    type = "resource-affinity"


Rule = NodeAffinityRule | ResourceAffinityRule


@dataclass(frozen=True, slots=True)
class CrsSettings:
    """The ``crs:`` options of datacenter.cfg that the HA engine uses.

    ``auto_rebalance_threshold`` and ``auto_rebalance_margin`` are fractions
    (0.3 = 30 %), as PVE 5.2.0's engine uses them; the config layer converts percent.
    """

    mode: str = "basic"  # basic | static | dynamic
    rebalance_on_start: bool = False
    auto_rebalance: bool = False
    auto_rebalance_threshold: float = 0.3
    auto_rebalance_method: str = "bruteforce"  # bruteforce | topsis
    auto_rebalance_hold_duration: int = 3
    auto_rebalance_margin: float = 0.1


@dataclass(frozen=True, slots=True)
class DatacenterConfig:
    """The datacenter.cfg options the HA stack reads."""

    shutdown_policy: str = "conditional"  # conditional | freeze | failover | migrate
    crs: CrsSettings = field(default_factory=CrsSettings)
    max_workers: int = 4


@dataclass(frozen=True, slots=True)
class HAConfig:
    """Everything an HA round reads from configuration."""

    resources: dict[str, Resource] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    datacenter: DatacenterConfig = field(default_factory=DatacenterConfig)
