"""The CRM master's manage() round (semantics §1.11, PVE ``Manager.pm``).

A :class:`Manager` lives as long as its CRM holds the manager lock. Each call of
:meth:`Manager.manage` is one round at instant ``now``: read node membership and LRM
statuses, update node states, add/remove services, compile rules, consume crm commands,
run the service FSM to a fixed point (with the fencing step after every pass) and
flush ``manager_status``. All reads and writes go through the ``env`` port
(:mod:`pvha.core.ports`); nothing here touches IO or a clock.
"""

from __future__ import annotations

import marshal
from typing import Any

from pvha.core import placement, scheduler
from pvha.core.auto_rebalance import auto_rebalance_step
from pvha.core.commands import update_crm_commands
from pvha.core.config_view import to_resource
from pvha.core.disarm import handle_disarm
from pvha.core.group_migration import FIRST_ROUND, try_group_migration
from pvha.core.node_status import FENCE_DELAY, NodeStatus
from pvha.core.ports import HaEnv
from pvha.core.rules import EMPTY_COMPILED, compile_rules
from pvha.core.service_fsm import HANDLERS
from pvha.core.transitions import SERVICE, SvcEvent, next_state

# keys that survive a service state change
_KEPT_KEYS = ("node", "failed_nodes", "maintenance_node")
MEMORY_KEY = "pvha"
"""manager_status key of the manager's own memory (pvha extension, see Manager)."""


def _copy_json(value: Any) -> Any:
    """Deep copy of JSON-shaped data (dicts, lists, scalars) without deepcopy's memo."""
    kind = type(value)
    if kind is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    if kind is list:
        return [_copy_json(v) for v in value]
    return value


def _copy_status(value: Any) -> Any:
    """Snapshot of the manager status handed to the port (the manager keeps mutating
    its own). A marshal round trip copies plain data at C speed (~5x faster than
    ``copy.deepcopy`` on a 10,000-service status); anything marshal cannot carry
    falls back to a structural copy."""
    try:
        return marshal.loads(marshal.dumps(value))
    except ValueError:
        return _copy_json(value)


class Manager:
    """Master-side state: node status (ns), service status (ss), manager status (ms).

    Memory (a pvha extension): every flush also writes ``ms["pvha"]`` with what PVE keeps
    only in the master's process: the last-online time of each node and the uid
    counter. ``resume=True`` (``pvha watch``) starts from it, so a restarted watcher, a
    series of ``--once`` runs or another node's watcher taking over count fence delays
    from when the node was really last seen and never reuse a uid. ``resume=False`` is
    PVE's behaviour (a new master rebuilds both), which the simulator keeps.
    """

    def __init__(
        self, env: HaEnv, now: int, fence_delay: int = FENCE_DELAY, resume: bool = False
    ) -> None:
        self.env = env
        self.now = now
        old = env.read_manager_status()
        self.ns = NodeStatus(env, old.get("node_status") or {}, now, fence_delay)
        self.ss: dict[str, dict[str, Any]] = old.get("service_status") or {}
        self.ms: dict[str, Any] = {"master_node": env.nodename()}
        if old.get("node_request") is not None:
            self.ms["node_request"] = old["node_request"]
        if old.get("disarm") is not None:
            self.ms["disarm"] = old["disarm"]
        self.crs: dict[str, Any] = {}
        self.sc: dict[str, dict[str, Any]] = {}
        self.lrm_modes: dict[str, str] = {}
        self.lrm_results: dict[str, dict[str, Any]] = {}
        self.usage: scheduler.Usage = scheduler.BasicUsage([])
        self.compiled = EMPTY_COMPILED
        self.failback: dict[str, bool] = {}
        self._rules_key: tuple[Any, ...] | None = None
        self._uid_counter = 0
        self._uid_prefix = f"{env.nodename()}-{now}"
        self.auto_rebalance_hold = 0
        self.group_migration_round = FIRST_ROUND
        self._recovery_usage_fresh = False
        if resume:
            self._resume(old.get(MEMORY_KEY))
        self.update_crs_scheduler_mode()

    def _resume(self, memory: Any) -> None:
        """Take over the memory a previous master flushed (see the class docstring).
        A last-online time in the future (another node's clock ahead of ours) counts as
        now: the fence delay then starts later, never earlier."""
        if not isinstance(memory, dict):
            return
        last = memory.get("last_online")
        if isinstance(last, dict):
            for node, t in last.items():
                if isinstance(t, int) and not isinstance(t, bool) and node in self.ns.status:
                    self.ns.last_online[node] = min(t, self.now)
        seq = memory.get("uid_seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
            self._uid_counter = seq

    def memory(self) -> dict[str, Any]:
        """What :meth:`_resume` reads back (JSON-shaped)."""
        return {"last_online": dict(self.ns.last_online), "uid_seq": self._uid_counter}

    # ------------------------------------------------------------------ helpers
    def new_uid(self) -> str:
        self._uid_counter += 1
        return f"{self._uid_prefix}-{self._uid_counter}"

    def change_service_state(self, sid: str, event: SvcEvent, **params: Any) -> None:
        """The one setter of service states: table-checked, logged, usage updated."""
        sd = self.ss[sid]
        old_state = sd["state"]
        new_state = next_state(SERVICE, old_state, event)
        kept = {k: sd[k] for k in _KEPT_KEYS if sd.get(k) is not None}
        sd.clear()
        sd["state"] = new_state
        sd.update(kept)
        text = ", ".join(f"{k} = {params[k]}" for k in sorted(params))
        sd.update(params)
        self.usage.remove_service_usage(sid)
        self.usage.add_service_usage(sid, new_state, sd.get("node"), sd.get("target"))
        sd["uid"] = self.new_uid()
        suffix = f"  ({text})" if text else ""
        self.env.log(
            "info", f"service '{sid}': state changed from '{old_state}' to '{new_state}'{suffix}"
        )

    def select_node(
        self, sid: str, cd: dict[str, Any], sd: dict[str, Any], preference: str
    ) -> str | None:
        current: str | None = sd.get("node")
        compiled = self.compiled
        if (
            preference == "none"
            and current in self.usage.node_set
            and sd.get("maintenance_node") is None
            and sid not in compiled.node_affinity
            and sid not in compiled.positive
            and sid not in compiled.negative
        ):
            # no rule, no partner, no fallback node: select_service_node keeps the
            # online current node (§4.5 step 7); the common case of every round
            return current
        # the usage model spans exactly the online nodes of this round
        node = placement.select_service_node(
            sid,
            preference,
            compiled=self.compiled,
            usage=self.usage,
            ss=self.ss,
            current_node=sd.get("node"),
            failed_nodes=sd.get("failed_nodes") or (),
            maintenance_node=sd.get("maintenance_node"),
            failback=self.failback.get(sid, bool(int(cd.get("failback", 1)))),
        )
        for level, msg in self.usage.messages:
            self.env.log(level, msg)
        self.usage.messages.clear()
        return node

    def update_crs_scheduler_mode(self) -> None:
        dc = self.env.get_datacenter_settings()
        crs = dc.get("crs") or {}
        self.crs["rebalance_on_request_start"] = bool(int(crs.get("ha-rebalance-on-start", 0) or 0))
        self.crs["auto_rebalance"] = crs
        old = self.crs.get("scheduler")
        new = crs.get("ha") or "basic"
        if old is None:
            if new != "basic":
                self.env.log("info", f"using scheduler mode '{new}'")
        elif new == old:
            return
        else:
            self.env.log("info", f"switching scheduler mode from '{old}' to '{new}'")
        self.crs["scheduler"] = new

    def recompute_online_node_usage(self) -> None:
        mode = self.crs.get("scheduler", "basic")
        online = self.ns.list_online_nodes()
        node_stats = service_stats = None
        if mode in ("static", "dynamic"):
            node_stats, service_stats = self.env.get_usage_stats(mode, self.ss)
        usage, msgs = scheduler.make_usage(mode, online, node_stats, service_stats)
        for level, msg in msgs:
            self.env.log(level, msg)
        self.usage = scheduler.recompute_usage(usage, self.ss)

    def refresh_usage_for_recovery(self) -> None:
        """Bring the usage model up to date before a recovery placement.

        PVE recomputes the whole model before every recovered service ("most current
        node state"). In ``basic`` mode the model is only the count of services per
        node by (state, node, target) over the round's online nodes, which do not change
        during the round; every FSM change updates it incrementally
        (:meth:`change_service_state`) and nothing else moves a counted service after
        the round's recompute - except an ``arm-ha`` command (node updates of services
        moved while disarmed), so :meth:`manage` marks the model fresh only when the
        stack was not disarmed. A recompute then gives the same counts: skip it (it
        costs O(services) per recovered service).
        """
        if self._recovery_usage_fresh and self.crs.get("scheduler", "basic") == "basic":
            return
        self.recompute_online_node_usage()
        self._recovery_usage_fresh = True

    def _read_lrm_status(self) -> None:
        modes: dict[str, str] = {}
        per_node: list[dict[str, dict[str, Any]]] = []
        for node in self.ns.list_nodes():
            st = self.env.read_lrm_status(node)
            modes[node] = st.get("mode") or "active"
            per_node.append(st.get("results") or {})
        # a uid reported by several nodes: the first node in list order wins
        results: dict[str, dict[str, Any]] = {}
        for node_results in reversed(per_node):
            results.update(node_results)
        self.lrm_results, self.lrm_modes = results, modes

    def _update_rules(self) -> None:
        """Recompile rules when rules, groups, resources or the node table changed (§1.11/9)."""
        groups = self.env.read_group_config()
        rules = self.env.read_rules_config()
        nodes = self.ns.list_nodes()
        # compile_rules reads resources for group membership and failback only
        res_key = {sid: (cd.get("group"), cd.get("failback")) for sid, cd in self.sc.items()}
        key = (rules, groups, res_key, nodes)
        if key == self._rules_key:  # unchanged parsed objects compare by identity first
            return
        self._rules_key = key
        resources = {sid: to_resource(sid, cd) for sid, cd in self.sc.items()}
        res = compile_rules(rules, groups, resources, nodes)
        for line in res.log:
            self.env.log("info", line)
        self.compiled = res.compiled
        self.failback = dict(res.failback)

    def _sync_services(self) -> None:
        for sid in sorted(self.sc.keys() - self.ss.keys()):
            cd = self.sc[sid]
            if cd["state"] == "ignored":
                continue
            self.env.log("info", f"adding new service '{sid}' on node '{cd['node']}'")
            state = "request_start" if cd["state"] == "started" else "request_stop"
            self.ss[sid] = {"state": state, "node": cd["node"], "uid": self.new_uid()}
        sc = self.sc
        stale = [sid for sid in self.ss if sid not in sc or sc[sid]["state"] == "ignored"]
        for sid in sorted(stale):
            conf = sc.get(sid)
            reason = "ignored state requested" if conf is not None else "no config"
            self.env.log("info", f"removing stale service '{sid}' ({reason})")
            del self.ss[sid]

    # ------------------------------------------------------------------ the round
    def manage(self, now: int) -> None:
        """One manage() round at ``now`` (semantics §1.11)."""
        self.now = self.ns.now = now
        self._recovery_usage_fresh = False
        node_info, _quorate = self.env.get_node_info()
        self._read_lrm_status()
        self.ns.update(node_info, self.lrm_modes)
        if not self.ns.node_is_operational(self.env.nodename()):
            self.env.log("info", "master seems offline")
            return
        self.update_crs_scheduler_mode()
        try_group_migration(self)
        self.sc = self.env.read_service_config()
        if not self.ms.get("disarm"):
            self._sync_services()
        self.recompute_online_node_usage()
        # only an arm-ha (possible while disarmed) moves services behind the model's back
        self._recovery_usage_fresh = not self.ms.get("disarm")
        self._update_rules()
        update_crm_commands(self)
        only: set[str] | None = None
        if self.ms.get("disarm"):
            only = handle_disarm(self)
            if only is None:
                self.flush_master_status()
                return
        else:
            self._auto_rebalance()
        self._fixed_point(only)
        self.flush_master_status()

    def _auto_rebalance(self) -> None:
        auto_rebalance_step(self)

    def _one_pass(self, order: list[str], only: set[str] | None, quiet: set[str]) -> bool:
        """One FSM pass in sid order; True if any service changed state.

        A ``started`` service without an LRM result is skipped when its handler would
        leave it alone: requested ``started``, no pending command, on an online node
        whose LRM is not restarting, no maintenance fallback node, no rule and no
        partner - the placement then keeps the current node (§4.5 step 7) and nothing
        changes, not even the uid. Those are the bulk of every pass. None of these
        conditions can change later in the round (online nodes stay online, nobody
        else touches such a service), so they are collected in ``quiet`` and not even
        looked at by the following passes.
        """
        repeat = False
        ss, sc, results, modes = self.ss, self.sc, self.lrm_results, self.lrm_modes
        node_status = self.ns.status
        affinity, positive, negative = (
            self.compiled.node_affinity,
            self.compiled.positive,
            self.compiled.negative,
        )
        for sid in order:
            if sid in quiet or (only is not None and sid not in only):
                continue
            sd = ss.get(sid)
            if sd is None:
                continue
            cd: dict[str, Any] = sc.get(sid) or {"state": "disabled", "node": sd.get("node")}
            uid = sd.get("uid")
            lrm_res = results.get(uid) if uid else None
            last = sd["state"]
            if last == "started" and lrm_res is None and cd["state"] == "started":
                node: str = sd["node"]
                if (
                    node_status.get(node) == "online"
                    and modes.get(node) != "restart"
                    and not sd.get("cmd")
                    and sd.get("maintenance_node") is None
                    and node in self.usage.node_set
                    and sid not in affinity
                    and sid not in positive
                    and sid not in negative
                ):
                    quiet.add(sid)
                    continue
            HANDLERS[last](self, sid, cd, sd, lrm_res)
            mode = modes.get(sd["node"]) if sd.get("node") else None
            if mode == "restart" and sd["state"] in ("started", "stopped", "request_stop"):
                self.change_service_state(sid, SvcEvent.FREEZE)
            if sd["state"] != last:
                repeat = True
        return repeat

    def _fencing_step(self, order: list[str]) -> bool:
        repeat = False
        fenced: dict[str, bool] = {}
        for sid in order:
            sd = self.ss[sid]
            if sd["state"] != "fence":
                continue
            node = sd["node"]
            if node not in fenced:
                fenced[node] = bool(self.ns.fence_node(node))
            if not fenced[node]:
                continue
            self.change_service_state(sid, SvcEvent.FENCED)
            repeat = True
        for node in sorted(n for n in self.ns.status if n not in fenced):
            if self.ns.get_node_state(node) != "fence":
                continue
            self.env.log(
                "notice",
                f"node '{node}' in fence state but no services to-fence! admin interference?!",
            )
            if self.ns.fence_node(node):
                repeat = True
        return repeat

    def _fixed_point(self, only: set[str] | None) -> None:
        order = sorted(self.ss)  # the passes change states, never the set of services
        quiet: set[str] = set()
        while True:
            repeat = self._one_pass(order, only, quiet)
            if self._fencing_step(order):
                repeat = True
            if not repeat:
                break

    def flush_master_status(self) -> None:
        self.ms["node_status"] = self.ns.status
        self.ms["service_status"] = self.ss
        self.ms["timestamp"] = self.now
        self.ms[MEMORY_KEY] = self.memory()
        self.env.write_manager_status(_copy_status(self.ms))
