"""Random simulator scenarios for ``pvha sim chaos`` (the generator and its data).

Theory of operation. A :class:`Spec` is one scenario in structured form: nodes, their
hardware, services, rules, groups, datacenter options, fence devices and the command
batches. :func:`generate` draws one from a :class:`random.Random`; :meth:`Spec.files`
renders it as the files of a PVE regression scenario directory (semantics §8.1) and
:meth:`Spec.scenario` as the :class:`~pvha.sim.scenario.Scenario` the simulator runs,
through the same JSON texts, so what runs is what a written directory replays. The
shrinker (:mod:`pvha.sim.chaos_shrink`) edits specs, never texts.

Every drawn setting is a legal one (the scenario vocabulary of semantics §8.4, every
value the config schemas accept), with these deliberate limits, each because the
simulator would otherwise model something physically impossible, not because pvha
refuses it:

* ``service <sid> add <node> <state> 1`` (a guest already running) and initial running
  flags only where the node's HA stack can take the guest over before any fault: in the
  first batch, which powers every node on, for a requested state other than
  ``ignored``. A guest running outside HA's control on a node that is cut off later is
  not protected by any fence (PVE's as well): nothing ties it to a watchdog.
* ``service <sid> add`` only for new ids: re-adding a deleted id on another node would
  leave the old guest (still running outside HA) behind.
* no ``manual-migrate``: the simulator moves the config but not the running flag, which
  for a running guest is no migration a person could do.
* no pre-seeded ``manager_status``: every run starts from a fresh cluster.

The simulator has no partition model (all quorate nodes share one view, semantics §8.2),
so partitions are drawn as network failures of several nodes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvha.sim.scenario import Scenario

GIB = 1024**3
POLICIES = ("conditional", "freeze", "failover", "migrate")
CRS_MODES = ("basic", "static", "dynamic")
STATES = ("started", "started", "started", "enabled", "stopped", "disabled", "ignored", None)
LOCKS = ("backup", "mounted", "migrate", "snapshot", "create")
VERSIONS = ("9.0.0~2", "9.0.0~16", "9.1.1")


@dataclass
class Spec:
    """One scenario, structured (see the module docstring). Rules are dicts:
    ``{"type": "node-affinity", "id", "resources", "nodes": {node: prio|None},
    "strict", "disable"}`` or ``{"type": "resource-affinity", "id", "resources",
    "affinity"}``; groups ``{"id", "nodes", "restricted", "nofailback"}``; fence devices
    ``{"name", "agent", "nodes"}``."""

    name: str
    nodes: list[str]
    hardware: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    running: dict[str, list[str]] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    datacenter: dict[str, Any] = field(default_factory=dict)
    fence: list[dict[str, Any]] = field(default_factory=list)
    static_stats: dict[str, dict[str, float]] | None = None
    dynamic_stats: dict[str, dict[str, float]] | None = None
    cmdlist: list[list[str]] = field(default_factory=list)

    def copy(self, **changes: Any) -> Spec:
        """A deep copy (through JSON), with ``changes`` applied."""
        data = self.to_json()
        data.update(changes)
        return Spec.from_json(json.loads(json.dumps(data)))

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        return cls(**data)

    # ------------------------------------------------------------------ size
    def size(self) -> tuple[int, int, int, int, int]:
        """What the shrinker makes smaller: commands, nodes, services, rules+groups and
        other settings (compared as a tuple)."""
        commands = sum(len(b) for b in self.cmdlist) + len(self.cmdlist)
        extra = len(self.datacenter) + len(self.fence) + sum(
            len(v) for v in self.datacenter.values() if isinstance(v, dict))
        extra += sum(len(cd) for cd in self.services.values())
        extra += sum(len(h) for h in self.hardware.values())
        extra += sum(len(s) for s in self.running.values())
        extra += (self.static_stats is not None) + (self.dynamic_stats is not None)
        return (commands, len(self.nodes), len(self.services),
                len(self.rules) + len(self.groups), extra)

    def legal(self) -> bool:
        """The limits of the module docstring hold (the shrinker keeps to them): guests
        that already run do so only where they are configured, not ``ignored``, and the
        first batch powers every node on before a running guest is added."""
        running = [(n, sid) for n, sids in self.running.items() for sid in sids]
        for node, sid in running:
            cd = self.services.get(sid)
            if cd is None or cd["node"] != node or cd.get("state") == "ignored":
                return False
        adds = [(b, c) for b, batch in enumerate(self.cmdlist) for c, cmd in enumerate(batch)
                if cmd.startswith("service ") and " add " in cmd and cmd.endswith(" 1")]
        if not running and not adds:
            return True
        if not self.cmdlist:
            return False
        first = self.cmdlist[0]
        powered = {f"power {n} on" for n in self.nodes}
        if not powered <= set(first):
            return False
        last_power = max(first.index(cmd) for cmd in powered)
        return all(b == 0 and c > last_power for b, c in adds)

    # ------------------------------------------------------------------ rendering
    def files(self) -> dict[str, str]:
        """The scenario directory's files (name -> text), PVE's format (§8.1)."""
        hw = {n: {"power": "off", "network": "off", **self.hardware.get(n, {})}
              for n in self.nodes}
        out = {
            "cmdlist": _dump(self.cmdlist),
            "hardware_status": _dump(hw),
            "manager_status": "{}\n",
            "service_config": _dump(self.services),
        }
        for node in self.nodes:
            sids = self.running.get(node) or []
            if sids:
                out[f"service_status_{node}"] = _dump({sid: 1 for sid in sorted(sids)})
        if self.datacenter:
            out["datacenter.cfg"] = _dump(self.datacenter)
        if self.rules:
            out["rules_config"] = "\n".join(_rule_text(r) for r in self.rules)
        if self.groups:
            out["groups"] = "\n".join(_group_text(g) for g in self.groups)
        if self.fence:
            out["fence.cfg"] = _fence_text(self.fence)
        if self.static_stats is not None:
            out["static_service_stats"] = _dump(self.static_stats)
        if self.dynamic_stats is not None:
            out["dynamic_service_stats"] = _dump(self.dynamic_stats)
        return out

    def scenario(self) -> Scenario:
        """The scenario as :func:`~pvha.sim.scenario.load_scenario` would read the
        directory :meth:`files` describes (JSON texts parsed back, defaults as there)."""
        f = self.files()
        hardware = json.loads(f["hardware_status"])
        return Scenario(
            name=self.name,
            path=Path(self.name),
            cmdlist=json.loads(f["cmdlist"]),
            hardware_status=hardware,
            service_config=json.loads(f["service_config"]),
            manager_status={},
            groups_text=f.get("groups", ""),
            rules_text=f.get("rules_config", ""),
            datacenter=json.loads(f.get("datacenter.cfg", "{}")),
            static_service_stats=_maybe(f.get("static_service_stats")),
            dynamic_service_stats=_maybe(f.get("dynamic_service_stats")),
            service_status={n: json.loads(f.get(f"service_status_{n}", "{}")) for n in hardware},
            fence_cfg=f.get("fence.cfg"),
        )

    def write(self, directory: Path, readme: str = "") -> Path:
        """Write the scenario directory (created; existing files overwritten)."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (directory / name).write_text(text)
        if readme:
            (directory / "README").write_text(readme)
        return directory


def _dump(data: Any) -> str:
    return json.dumps(data, indent=4, sort_keys=True) + "\n"


def _maybe(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _node_list(nodes: dict[str, int | None]) -> str:
    return ",".join(n if p is None else f"{n}:{p}" for n, p in sorted(nodes.items()))


def _rule_text(rule: dict[str, Any]) -> str:
    lines = [f"{rule['type']}: {rule['id']}"]
    lines.append(f"\tresources {','.join(sorted(rule['resources']))}")
    if rule["type"] == "node-affinity":
        lines.append(f"\tnodes {_node_list(rule['nodes'])}")
        if rule.get("strict"):
            lines.append("\tstrict 1")
    else:
        lines.append(f"\taffinity {rule['affinity']}")
    if rule.get("disable"):
        lines.append("\tdisable 1")
    return "\n".join(lines) + "\n"


def _group_text(group: dict[str, Any]) -> str:
    lines = [f"group: {group['id']}", f"\tnodes {_node_list(group['nodes'])}"]
    if group.get("restricted"):
        lines.append("\trestricted 1")
    if group.get("nofailback"):
        lines.append("\tnofailback 1")
    return "\n".join(lines) + "\n"


def _fence_text(devices: list[dict[str, Any]]) -> str:
    lines = []
    for dev in devices:
        lines.append(f"device {dev['name']} {dev['agent']} username=admin")
    for dev in devices:
        for i, node in enumerate(dev["nodes"]):
            lines.append(f"connect {dev['name']} node={node} ip=192.0.2.{i + 1}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- generation
def _pick(rng: random.Random, weighted: dict[Any, float]) -> Any:
    keys = list(weighted)
    return rng.choices(keys, weights=[weighted[k] for k in keys])[0]


def _fa_sid(rng: random.Random, nodes: int, taken: set[str]) -> str:
    """``fa:abcdef`` (semantics §8.2): b failing starts, c failing migrations, d an
    unstoppable guest, e exists, f the only node where b/c fail (0 = all)."""
    for _ in range(50):
        a = rng.randint(1, 9)
        b = _pick(rng, {0: 1, 1: 2, 2: 2, 3: 1, 5: 0.5})
        c = _pick(rng, {0: 3, 1: 1, 2: 1})
        d = 1 if rng.random() < 0.08 else 0
        f = rng.randint(0, nodes) if rng.random() < 0.4 else 0
        sid = f"fa:{a}{b}{c}{d}1{f}"
        if sid not in taken:
            return sid
    return f"fa:{9000 + len(taken)}"


def _service(rng: random.Random, nodes: list[str]) -> dict[str, Any]:
    cd: dict[str, Any] = {"node": rng.choice(nodes)}
    state = rng.choice(STATES)
    if state is not None:
        cd["state"] = state
    if rng.random() < 0.4:
        value = rng.randint(0, 3)
        cd["max_restart"] = str(value) if rng.random() < 0.3 else value
    if rng.random() < 0.4:
        cd["max_relocate"] = rng.randint(0, 3)
    if rng.random() < 0.15:
        cd["failback"] = rng.randint(0, 1)
    if rng.random() < 0.04:
        cd["lock"] = rng.choice(LOCKS)
    return cd


def _node_prios(rng: random.Random, nodes: list[str]) -> dict[str, int | None]:
    # mostly a proper subset: a rule naming every node restricts nothing
    most = len(nodes) - 1 if len(nodes) > 1 and rng.random() < 0.85 else len(nodes)
    chosen = rng.sample(nodes, rng.randint(1, most))
    prio = rng.random() < 0.5
    return {n: (rng.randint(0, 3) if prio and rng.random() < 0.8 else None) for n in chosen}


def _rules(rng: random.Random, nodes: list[str], sids: list[str]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    count = _pick(rng, {0: 3, 1: 3, 2: 2, 3: 1})
    for i in range(count):
        if not sids:
            break
        if rng.random() < 0.55:
            # mostly resources of no other node-affinity rule (else PVE drops both rules)
            bound = {sid for r in rules if r["type"] == "node-affinity" for sid in r["resources"]}
            free = [sid for sid in sids if sid not in bound]
            pool = free if free and rng.random() < 0.85 else sids
            rules.append({
                "type": "node-affinity", "id": f"na{i}",
                "resources": sorted(rng.sample(pool, rng.randint(1, min(3, len(pool))))),
                "nodes": _node_prios(rng, nodes),
                "strict": rng.random() < 0.6,
                "disable": rng.random() < 0.05,
            })
        else:
            rules.append({
                "type": "resource-affinity", "id": f"ra{i}",
                "resources": sorted(rng.sample(sids, rng.randint(1, min(3, len(sids))))),
                "affinity": rng.choice(("positive", "negative")),
                "disable": rng.random() < 0.05,
            })
    return rules


def _groups(rng: random.Random, nodes: list[str], services: dict[str, dict[str, Any]]
            ) -> list[dict[str, Any]]:
    if rng.random() > 0.15:
        return []
    groups = [{"id": f"grp{i}", "nodes": _node_prios(rng, nodes),
               "restricted": rng.random() < 0.5, "nofailback": rng.random() < 0.3}
              for i in range(rng.randint(1, 2))]
    for sid in sorted(services):
        if rng.random() < 0.5:
            services[sid]["group"] = rng.choice(groups)["id"]
    return groups


def _datacenter(rng: random.Random, nodes: list[str], power: bool) -> dict[str, Any]:
    dc: dict[str, Any] = {}
    if rng.random() < 0.8:
        dc["ha"] = {"shutdown_policy": rng.choice(POLICIES)}
    if rng.random() < 0.6:
        crs: dict[str, Any] = {"ha": rng.choice(CRS_MODES)}
        if rng.random() < 0.25:
            crs["ha-rebalance-on-start"] = 1
        if rng.random() < 0.25:
            crs["ha-auto-rebalance"] = 1
            if rng.random() < 0.5:
                crs["ha-auto-rebalance-threshold"] = rng.choice((0.1, 0.3, 0.7))
                crs["ha-auto-rebalance-margin"] = rng.choice((0.0, 0.1, 0.3))
                crs["ha-auto-rebalance-hold-duration"] = rng.choice((0, 1, 3, 6))
                crs["ha-auto-rebalance-method"] = rng.choice(("bruteforce", "topsis"))
        dc["crs"] = crs
    if power or rng.random() < 0.35:
        opts: dict[str, Any] = {}
        if power:
            opts["fencing"] = "power"
        elif rng.random() < 0.3:
            opts["fencing"] = "lock"
        if rng.random() < 0.7:
            opts["fence_delay"] = _pick(rng, {0: 3, 1: 1, 5: 1, 10: 1, 30: 1, 60: 1, 90: 0.5})
        if power and rng.random() < 0.8:
            opts["device_latency"] = _pick(rng, {0: 3, 1: 1, 2: 2, 5: 1, 25: 1, 70: 0.5})
        if rng.random() < 0.2:
            opts["round_interval"] = rng.choice((2 * len(nodes), 10, 20))
        if rng.random() < 0.35:
            opts["detection_delay"] = _pick(rng, {0: 1, 2: 1, 8: 2, 30: 1})
        dc["pvha"] = opts
    return dc


class _Events:
    """Draws command batches; remembers ids so every command names a real node or sid."""

    def __init__(self, rng: random.Random, spec: Spec, power: bool) -> None:
        self.rng = rng
        self.spec = spec
        self.power = power
        self.sids = sorted(spec.services)
        self.deleted: list[str] = []
        self.next_vmid = 900
        self.pending: list[tuple[int, str]] = []  # (batch index, command) to undo faults

    def batch(self, index: int, fresh: bool = True) -> list[str]:
        """The commands of batch ``index``: the undos due then, and (if ``fresh``) new ones."""
        rng = self.rng
        out = [cmd for at, cmd in self.pending if at <= index]
        self.pending = [(at, cmd) for at, cmd in self.pending if at > index]
        if fresh:
            for _ in range(_pick(rng, {0: 1, 1: 4, 2: 3, 3: 1.5, 4: 0.5})):
                out.append(self._command(index))
        return out

    def _later(self, index: int, cmd: str) -> None:
        if self.rng.random() < 0.6:
            self.pending.append((index + self.rng.randint(1, 3), cmd))

    def _toggle(self, index: int, first: Callable[[], str], then: str) -> str:
        """Mostly ``first`` now and maybe ``then`` in a later batch; else ``then`` alone."""
        if self.rng.random() < 0.6:
            self._later(index, then)
            return first()
        return then

    def _command(self, index: int) -> str:
        rng = self.rng
        node = rng.choice(self.spec.nodes)
        kind = _pick(rng, {
            "fault": 6, "reboot": 2, "lrm": 1, "crm": 0.7, "maint": 1.5, "disarm": 0.5,
            "state": 2.5, "move": 2.5, "stop": 0.7, "lock": 0.5, "add": 0.8, "delete": 0.5,
            "stats": 0.4, "cfs": 0.8, "bmc": 2.0 if self.power else 0, "skip": 0.5,
            "delay": 0.5, "version": 0.4 if self.spec.groups else 0,
        })
        sid = rng.choice(self.sids) if self.sids else None
        if kind == "fault":
            what = rng.choice(("power", "network", "network"))
            self._later(index, f"{what} {node} on")
            return f"{what} {node} off"
        if kind == "reboot":
            return f"{rng.choice(('reboot', 'shutdown'))} {node}"
        if kind == "lrm":
            return f"restart-lrm {node}"
        if kind == "crm":
            return self._toggle(index, lambda: f"crm {node} stop", f"crm {node} start")
        if kind == "maint":
            return self._toggle(index, lambda: f"crm {node} enable-node-maintenance",
                                f"crm {node} disable-node-maintenance")
        if kind == "disarm":
            return self._toggle(
                index, lambda: f"crm {node} disarm-ha {rng.choice(('freeze', 'ignore'))}",
                f"crm {node} arm-ha")
        if kind == "cfs":
            what = rng.choice(("rw", "update"))
            self._later(index, f"cfs {node} {what} work")
            return f"cfs {node} {what} fail"
        if kind == "bmc":
            self._later(index, f"bmc {node} work")
            return f"bmc {node} {rng.choice(('fail', 'fail', 'work'))}"
        if kind == "skip":
            return f"skip-round {rng.choice(('crm', 'lrm'))} {_pick(rng, {1: 4, 2: 2, 4: 1})}"
        if kind == "delay":
            return f"delay {rng.choice((0, 20, 60, 200))}"
        if kind == "version":
            return f"pve-manager-version {node} set {rng.choice(VERSIONS)}"
        if kind == "add" or sid is None:
            return self._add(node)
        if kind == "state":
            return f"service {sid} {rng.choice(('started', 'stopped', 'disabled', 'ignored'))}"
        if kind == "move":
            if self.deleted and rng.random() < 0.1:
                sid = rng.choice(self.deleted)  # the CRM answers "no such service"
            return f"service {sid} {rng.choice(('migrate', 'relocate'))} {node}"
        if kind == "stop":
            return f"service {sid} stop {rng.choice((0, 10, 30))}"
        if kind == "lock":
            if rng.random() < 0.5:
                return f"service {sid} lock {rng.choice(LOCKS)}"
            return f"service {sid} unlock"
        if kind == "delete":
            # later commands that need the config entry would stop the simulator
            self.sids.remove(sid)
            self.deleted.append(sid)
            return f"service {sid} delete"
        if rng.random() < 0.5:
            return f"service {sid} set-static-stats maxcpu {rng.randint(1, 16)} " \
                   f"maxmem {rng.choice((1024, 4096, 65536))}"
        return f"service {sid} set-dynamic-stats cpu {rng.randint(0, 8)} " \
               f"mem {rng.choice((512, 2048, 32768))}"

    def _add(self, node: str) -> str:
        self.next_vmid += 1
        sid = f"{self.rng.choice(('vm', 'vm', 'ct'))}:{self.next_vmid}"
        self.sids.append(sid)
        state = self.rng.choice(("started", "started", "stopped", "disabled"))
        return f"service {sid} add {node} {state}"


def generate(rng: random.Random, name: str = "chaos") -> Spec:
    """One random scenario (see the module docstring for what is drawn)."""
    n = _pick(rng, {1: 0.4, 2: 1, 3: 4, 4: 2.5, 5: 1.5, 6: 0.4})
    nodes = [f"node{i}" for i in range(1, n + 1)]
    spec = Spec(name=name, nodes=nodes)
    taken: set[str] = set()
    for i in range(_pick(rng, {1: 1, 2: 2, 3: 3, 4: 2, 5: 1.5, 6: 1, 8: 0.5})):
        kind = _pick(rng, {"vm": 6, "ct": 2, "fa": 2})
        sid = _fa_sid(rng, n, taken) if kind == "fa" else f"{kind}:{101 + i}"
        taken.add(sid)
        spec.services[sid] = _service(rng, nodes)
    sids = sorted(spec.services)
    spec.rules = _rules(rng, nodes, sids)
    spec.groups = _groups(rng, nodes, spec.services)
    power = rng.random() < 0.3
    if power:
        connected = [x for x in nodes if rng.random() < 0.85] or [nodes[0]]
        spec.fence = [{"name": "ipmi", "agent": "fence_ipmilan", "nodes": connected}]
        if rng.random() < 0.3:
            spec.fence.append({"name": "pdu", "agent": "fence_apc", "nodes": connected})
    spec.datacenter = _datacenter(rng, nodes, power)
    crs = (spec.datacenter.get("crs") or {}).get("ha")
    if crs in ("static", "dynamic") or rng.random() < 0.1:
        for node in nodes:
            spec.hardware[node] = {"maxcpu": rng.choice((4, 8, 24, 64)),
                                   "maxmem": rng.choice((16, 64, 128, 512)) * GIB}
        if rng.random() < 0.5:
            spec.static_stats = {sid: {"maxcpu": float(rng.randint(1, 8)),
                                       "maxmem": float(rng.choice((1, 4, 16)) * GIB)}
                                 for sid in sids}
        if rng.random() < 0.5:
            spec.dynamic_stats = {sid: {"cpu": float(rng.randint(0, 4)),
                                        "mem": float(rng.choice((1, 2, 8)) * GIB)}
                                  for sid in sids}
    _first_batch(rng, spec)
    events = _Events(rng, spec, power)
    for index in range(1, _pick(rng, {1: 1, 2: 2, 3: 3, 4: 3, 5: 2, 7: 1}) + 1):
        spec.cmdlist.append(events.batch(index))
    while events.pending:
        spec.cmdlist.append(events.batch(len(spec.cmdlist), fresh=False))
    return spec


def _first_batch(rng: random.Random, spec: Spec) -> None:
    """Power nodes on; guests may already run where they are configured (see the module
    docstring), and then every node is powered on at once."""
    running = rng.random() < 0.25
    nodes = spec.nodes
    if running:
        for sid, cd in sorted(spec.services.items()):
            if cd.get("state") != "ignored" and rng.random() < 0.5:
                spec.running.setdefault(cd["node"], []).append(sid)
        first = list(nodes)
    else:
        first = [n for n in nodes if rng.random() < 0.9] or list(nodes)
    spec.cmdlist.append([f"power {n} on" for n in first])
    if running and rng.random() < 0.3:
        node = rng.choice(nodes)
        sid = f"vm:{800 + len(spec.services)}"
        spec.cmdlist[0].append(f"service {sid} add {node} started 1")
    rest = [n for n in nodes if n not in first]
    if rest:
        spec.cmdlist.append([f"power {n} on" for n in rest if rng.random() < 0.7])


__all__ = ["Spec", "generate"]
