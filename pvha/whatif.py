"""What-if and admission control: where would each HA guest run if these nodes failed, and
would it find room?

Theory of operation. The question is answered by the engine itself, not by a model of
it: :func:`what_if` builds a simulator scenario (pvha.sim) from an inventory (the live
cluster through the API, or a JSON file) and the HA configuration (resources, groups and
rules, as ``pvha watch`` reads them), with PVE's static CRS (each guest's configured
memory and cores, each node's), runs it with every node up, then powers the failed nodes
off, and reads where the manager recovered each guest (fencing, rules, groups, failback
and the scheduler all act as they would). PVE's static scheduler places a guest even
where it does not fit (it only scores); room is checked afterwards, as static CRS counts
it: on each surviving node, the memory of the guests already running there (HA or not)
plus that of the guests recovered onto it, in the order of their ids, against the node's
memory. A guest with no node (rules, groups) or no room is *unplaced*; :func:`check`
asks that for every set of ``tolerate`` nodes.

Inventory file (``--inventory``)::

    {"nodes": {"node1": {"maxcpu": 24, "maxmem": 137438953472}, ...},
     "guests": {"vm:100": {"node": "node1", "maxcpu": 2, "maxmem": 4294967296,
                           "running": true}, ...}}
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvha.core.model import HAConfig
from pvha.errors import ConfigError, UsageError

GIB = 1024**3
ACTIVE = ("started", "request_start", "migrate", "relocate")


@dataclass(frozen=True, slots=True)
class Inventory:
    """Nodes (name -> (maxcpu, maxmem bytes)) and guests (sid -> (node, maxcpu, maxmem,
    running))."""

    nodes: Mapping[str, tuple[float, float]]
    guests: Mapping[str, tuple[str, float, float, bool]]


@dataclass(frozen=True, slots=True)
class Placement:
    sid: str
    before: str
    after: str | None  # None: no node
    state: str  # the service's state when the cluster settled
    room: bool
    note: str = ""

    @property
    def moved(self) -> bool:
        return self.after != self.before

    @property
    def placed(self) -> bool:
        return self.after is not None and self.room and self.state not in ("fence",
                                                                           "recovery")


@dataclass(frozen=True, slots=True)
class NodeLoad:
    mem: float
    maxmem: float
    cpu: float
    maxcpu: float


@dataclass(frozen=True, slots=True)
class Outcome:
    failed: tuple[str, ...]
    placements: tuple[Placement, ...]
    nodes: Mapping[str, NodeLoad] = field(default_factory=dict)

    @property
    def unplaced(self) -> list[Placement]:
        return [p for p in self.placements if not p.placed and p.state != "stopped"]

    def rows(self) -> list[dict[str, Any]]:
        return [{"sid": p.sid, "from": p.before, "to": p.after, "state": p.state,
                 "room": p.room, "note": p.note} for p in self.placements]


def inventory_of_view(view: Any) -> Inventory:
    """The inventory of a live view (pvha.shell.snapshot.RoundView)."""
    nodes = {n.node: (float(n.maxcpu or 0), float(n.maxmem or 0))
             for n in view.snapshot.resources.nodes}
    guests = {sid: (g.node, float(g.maxcpu or 0), float(g.maxmem or 0), g.status == "running")
              for sid, g in view.guests.items()}
    return Inventory(nodes, guests)


def load_inventory(path: Path) -> Inventory:
    """The inventory of a JSON file (module docstring). ConfigError, one line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the inventory: {exc.strerror}", str(path)) from None
    except ValueError as exc:
        raise ConfigError(f"the inventory is not JSON: {exc}", str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        raise ConfigError('the inventory needs "nodes": {NODE: {"maxcpu": N, "maxmem": '
                          'BYTES}} (and "guests": {SID: {"node", "maxcpu", "maxmem", '
                          '"running"}})', str(path))
    guests_in = data.get("guests", {})
    if not isinstance(guests_in, dict):
        raise ConfigError('"guests" must be an object: {SID: {"node", "maxcpu", "maxmem", '
                          '"running"}}', str(path))
    nodes = {str(n): (_number(v, "maxcpu", f"node {n}", path, 0.0),
                      _number(v, "maxmem", f"node {n}", path))
             for n, v in data["nodes"].items()}
    guests = {}
    for sid, v in guests_in.items():
        where = f"guest {sid}"
        if not isinstance(v, dict) or not isinstance(v.get("node"), str):
            raise ConfigError(f'{where}: "node" must name a node', str(path))
        guests[str(sid)] = (v["node"], _number(v, "maxcpu", where, path, 0.0),
                            _number(v, "maxmem", where, path), bool(v.get("running", True)))
    unknown = sorted({g[0] for g in guests.values()} - set(nodes))
    if unknown:
        raise ConfigError(f"guests on unknown node(s): {', '.join(unknown)}", str(path))
    return Inventory(nodes, guests)


def _number(entry: Any, key: str, where: str, path: Path, default: float | None = None) -> float:
    """``entry[key]`` as a number >= 0; ConfigError naming ``where`` and ``key``."""
    value = entry.get(key, default) if isinstance(entry, dict) else None
    if value is None:
        raise ConfigError(f'{where}: "{key}" is missing', str(path))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f'{where}: "{key}" must be a number >= 0, got {value!r}', str(path))
    return float(value)


def what_if(inv: Inventory, cfg: HAConfig, groups_text: str, rules_text: str,
            fail: Iterable[str], maintenance: bool = False) -> Outcome:
    """Where the HA guests would run once ``fail`` failed (see the module docstring), or,
    with ``maintenance``, once those nodes entered maintenance (they stay members: the
    quorum is kept, and their started guests are migrated away)."""
    from pvha.sim.runner import Simulator
    from pvha.sim.scenario import Scenario

    failed = tuple(sorted(set(fail)))
    unknown = [n for n in failed if n not in inv.nodes]
    if unknown:
        raise UsageError(f"no node {', '.join(unknown)} in the cluster "
                          f"({', '.join(sorted(inv.nodes))})")
    services: dict[str, dict[str, Any]] = {}
    for sid, res in cfg.resources.items():
        guest = inv.guests.get(sid)
        if guest is None:
            continue
        entry: dict[str, Any] = {"node": guest[0], "state": res.state,
                                 "failback": int(res.failback),
                                 "max_restart": res.max_restart,
                                 "max_relocate": res.max_relocate}
        if res.group is not None:
            entry["group"] = res.group
        services[sid] = entry
    nodes = sorted(inv.nodes)
    scenario = Scenario(
        name="what-if", path=Path("what-if"),
        cmdlist=[[f"power {n} on" for n in nodes], [],
                 [f"crm {n} enable-node-maintenance" if maintenance else f"power {n} off"
                  for n in failed]],
        hardware_status={n: {"power": "off", "network": "off", "maxcpu": inv.nodes[n][0],
                             "maxmem": inv.nodes[n][1]} for n in nodes},
        service_config=services, groups_text=groups_text, rules_text=rules_text,
        datacenter={"crs": {"ha": "static"}},
        static_service_stats={sid: {"maxcpu": inv.guests[sid][1],
                                    "maxmem": inv.guests[sid][2]} for sid in services},
    )
    sim = Simulator(scenario)
    sim.run()
    ss = sim.hw.manager_status.get("service_status") or {}
    return _room(inv, failed, services, {sid: sim.hw.service_config[sid]["node"]
                                         for sid in services}, ss)


def _room(inv: Inventory, failed: tuple[str, ...], services: Mapping[str, Any],
          where: Mapping[str, str], ss: Mapping[str, Any]) -> Outcome:
    load = {n: [0.0, 0.0] for n in inv.nodes if n not in failed}  # mem, cpu
    for sid, (node, cpu, mem, running) in inv.guests.items():
        if sid not in services and running and node in load:
            load[node][0] += mem
            load[node][1] += cpu
    placements: list[Placement] = []
    order = sorted(services, key=lambda s: (services[s]["node"] in failed, s))
    for sid in order:
        before = services[sid]["node"]
        state = str((ss.get(sid) or {}).get("state") or "")
        after: str | None = where[sid] if where[sid] not in failed else None
        _node, cpu, mem, _running = inv.guests[sid]
        if state in ("stopped", "disabled", "ignored") or after is None:
            left = len(load)
            note = "" if after is not None else (
                f"no quorum: {left} of {len(inv.nodes)} nodes left" if 2 * left <= len(inv.nodes)
                else "no node may run it")
            placements.append(Placement(sid, before, after, state, after is not None, note))
            continue
        used = load[after]
        free = inv.nodes[after][1] - used[0]
        room = mem <= free
        note = "" if room else (f"no room: needs {mem / GIB:.1f} GiB, {max(free, 0) / GIB:.1f}"
                                f" GiB free on {after}")
        if room:
            used[0] += mem
            used[1] += cpu
        placements.append(Placement(sid, before, after, state, room, note))
    nodes = {n: NodeLoad(v[0], inv.nodes[n][1], v[1], inv.nodes[n][0]) for n, v in load.items()}
    return Outcome(failed, tuple(sorted(placements, key=lambda p: p.sid)), nodes)


def check(inv: Inventory, cfg: HAConfig, groups_text: str, rules_text: str,
          tolerate: int = 1) -> list[Outcome]:
    """One outcome per set of ``tolerate`` nodes whose loss leaves an HA guest unplaced."""
    if not 1 <= tolerate < len(inv.nodes):
        raise ConfigError(f"--tolerate {tolerate}: must be 1 to {len(inv.nodes) - 1} for "
                          f"{len(inv.nodes)} nodes")
    bad = []
    for fail in itertools.combinations(sorted(inv.nodes), tolerate):
        outcome = what_if(inv, cfg, groups_text, rules_text, fail)
        if outcome.unplaced:
            bad.append(outcome)
    return bad
