"""The CRM master's manage() round (semantics §1.11, PVE ``Manager.pm``).

A :class:`Manager` lives as long as its CRM holds the manager lock. Each call of
:meth:`Manager.manage` is one round at instant ``now``: read node membership and LRM
statuses, update node states, add/remove services, compile rules, consume crm commands,
run the service FSM to a fixed point (with the fencing step after every pass) and
flush ``manager_status``. What the round works on (ss, ms, sc, ns, rules, usage, the
setter of service states; glossary there) is :class:`~pvha.core.round_state.RoundState`;
the handlers of each step take it, not the manager. All reads and writes go through the
``env`` port (:mod:`pvha.core.ports`); nothing here touches IO or a clock.
"""

from __future__ import annotations

import marshal
from typing import Any

from pvha.core import start_order
from pvha.core.auto_rebalance import auto_rebalance_step
from pvha.core.commands import update_crm_commands
from pvha.core.disarm import handle_disarm
from pvha.core.group_migration import FIRST_ROUND, try_group_migration
from pvha.core.model import Resource
from pvha.core.node_status import FENCE_DELAY, NodeStatus
from pvha.core.ports import HaEnv
from pvha.core.round_state import RoundState
from pvha.core.rules import compile_rules
from pvha.core.service_fsm import HANDLERS
from pvha.core.transitions import SvcEvent

# failback values that mean PVE's default (1); None = not set
_DEFAULT_FAILBACK = (None, 1, "1", True)
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
    """The CRM master: runs one manage() round per call over its :class:`RoundState`.

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
        old = env.read_manager_status()
        ms: dict[str, Any] = {"master_node": env.nodename()}
        if old.get("node_request") is not None:
            ms["node_request"] = old["node_request"]
        if old.get("disarm") is not None:
            ms["disarm"] = old["disarm"]
        ns = NodeStatus(env, old.get("node_status") or {}, now, fence_delay)
        self.rs = RoundState(env, now, ns, old.get("service_status") or {}, ms)
        self._rules_key: tuple[Any, ...] | None = None
        self._auto_rebalance_hold = 0
        self._group_migration_rounds = FIRST_ROUND
        if resume:
            self._resume(old.get(MEMORY_KEY))
        self.update_crs_scheduler_mode()

    # the shell and the simulator read these
    @property
    def now(self) -> int:
        """The instant of the current (or last) round."""
        return self.rs.now

    @property
    def ss(self) -> dict[str, dict[str, Any]]:
        """Service status, sid -> sd (see the glossary of :mod:`~pvha.core.round_state`)."""
        return self.rs.ss

    @property
    def ms(self) -> dict[str, Any]:
        """Manager status as written by the last flush (plus this round's changes)."""
        return self.rs.ms

    @property
    def ns(self) -> NodeStatus:
        """The master's view of node states."""
        return self.rs.ns

    def _resume(self, memory: Any) -> None:
        """Take over the memory a previous master flushed (see the class docstring).
        A last-online time in the future (another node's clock ahead of ours) counts as
        now: the fence delay then starts later, never earlier."""
        if not isinstance(memory, dict):
            return
        ns = self.rs.ns
        last = memory.get("last_online")
        if isinstance(last, dict):
            for node, t in last.items():
                if isinstance(t, int) and not isinstance(t, bool) and node in ns.status:
                    ns.last_online[node] = min(t, self.rs.now)
        seq = memory.get("uid_seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
            self.rs.uid_seq = seq

    def memory(self) -> dict[str, Any]:
        """What :meth:`_resume` reads back (JSON-shaped)."""
        return {"last_online": dict(self.rs.ns.last_online), "uid_seq": self.rs.uid_seq}

    # ------------------------------------------------------------------ round steps
    def update_crs_scheduler_mode(self) -> None:
        """Take the CRS settings of datacenter.cfg; log a scheduler mode change as PVE."""
        dc = self.env.get_datacenter_settings()
        crs = dc.get("crs") or {}
        rs_crs = self.rs.crs
        rs_crs["rebalance_on_request_start"] = bool(int(crs.get("ha-rebalance-on-start", 0) or 0))
        rs_crs["auto_rebalance"] = crs
        old = rs_crs.get("scheduler")
        new = crs.get("ha") or "basic"
        if old is None:
            if new != "basic":
                self.rs.log("info", f"using scheduler mode '{new}'")
        elif new == old:
            return
        else:
            self.rs.log("info", f"switching scheduler mode from '{old}' to '{new}'")
        rs_crs["scheduler"] = new

    def _read_lrm_status(self) -> None:
        modes: dict[str, str] = {}
        per_node: list[dict[str, dict[str, Any]]] = []
        for node in self.rs.ns.list_nodes():
            st = self.env.read_lrm_status(node)
            modes[node] = st.get("mode") or "active"
            per_node.append(st.get("results") or {})
        # a uid reported by several nodes: the first node in list order wins
        results: dict[str, dict[str, Any]] = {}
        for node_results in reversed(per_node):
            results.update(node_results)
        self.rs.lrm_results, self.rs.lrm_modes = results, modes

    def _update_rules(self) -> None:
        """Recompile rules when rules, groups, resources or the node table changed (§1.11/9)."""
        rs = self.rs
        groups = self.env.read_group_config()
        rules = self.env.read_rules_config()
        nodes = rs.ns.list_nodes()
        # compile_rules reads resources for group membership and failback only, and a
        # service without a group and with the default failback changes nothing it
        # computes (its effective failback is the default select_node falls back to)
        res_key: dict[str, tuple[Any, Any]] = {}
        for sid, cd in rs.sc.items():
            group, failback = cd.get("group"), cd.get("failback")
            if group is not None or failback not in _DEFAULT_FAILBACK:
                res_key[sid] = (group, failback)
        key = (rules, groups, res_key, nodes)
        if key == self._rules_key:  # unchanged parsed objects compare by identity first
            return
        self._rules_key = key
        resources = {sid: Resource.from_config(sid, cd) for sid, cd in rs.sc.items()}
        res = compile_rules(rules, groups, resources, nodes)
        for line in res.log:
            rs.log("info", line)
        rs.set_rules(res.compiled, dict(res.failback))

    def _sync_services(self) -> None:
        rs = self.rs
        sc, ss = rs.sc, rs.ss
        for sid in sorted(sc.keys() - ss.keys()):
            if sc[sid]["state"] != "ignored":
                rs.add_service(sid, sc[sid])
        stale = [sid for sid in ss if sid not in sc or sc[sid]["state"] == "ignored"]
        for sid in sorted(stale):
            rs.remove_service(sid, "ignored state requested" if sid in sc else "no config")

    # ------------------------------------------------------------------ the round
    def manage(self, now: int) -> None:
        """One manage() round at ``now`` (semantics §1.11)."""
        rs = self.rs
        rs.now = rs.ns.now = now
        rs.mark_usage_fresh(False)
        node_info, _quorate = self.env.get_node_info()
        self._read_lrm_status()
        rs.ns.update(node_info, rs.lrm_modes)
        if not rs.ns.node_is_operational(self.env.nodename()):
            rs.log("info", "master seems offline")
            return
        self.update_crs_scheduler_mode()
        self._group_migration_rounds = try_group_migration(rs, self._group_migration_rounds)
        rs.sc = self.env.read_service_config()
        if not rs.disarm:
            self._sync_services()
        rs.recompute_online_node_usage()
        # only an arm-ha (possible while disarmed) moves services behind the model's back
        rs.mark_usage_fresh(not rs.disarm)
        self._update_rules()
        update_crm_commands(rs)
        only: set[str] | None = None
        if rs.disarm:
            only = handle_disarm(rs)
            if only is None:
                self.flush_master_status()
                return
        else:
            self._auto_rebalance_hold = auto_rebalance_step(rs, self._auto_rebalance_hold)
        self._fixed_point(only)
        self.flush_master_status()

    def _one_pass(self, order: list[str], only: set[str] | None, quiet: set[str]) -> bool:
        """One FSM pass in sid order; True if any service changed state.

        A ``started`` service without an LRM result is skipped when its handler would
        leave it alone: requested ``started``, no pending command, on an online node
        whose LRM is not restarting, and placement keeps its node
        (:meth:`RoundState.keeps_current_node`) - nothing changes, not even the uid.
        Those are the bulk of every pass. None of these conditions can change later in
        the round (online nodes stay online, nobody else touches such a service), so
        they are collected in ``quiet`` and not even looked at by the following passes.
        """
        repeat = False
        rs = self.rs
        ss, sc, results, modes = rs.ss, rs.sc, rs.lrm_results, rs.lrm_modes
        node_status = rs.ns.status
        keeps_current_node = rs.keeps_current_node
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
                    and keeps_current_node(sid, sd)
                ):
                    quiet.add(sid)
                    continue
            HANDLERS[last](rs, sid, cd, sd, lrm_res)
            mode = modes.get(sd["node"]) if sd.get("node") else None
            if mode == "restart" and sd["state"] in ("started", "stopped", "request_stop"):
                rs.change_service_state(sid, SvcEvent.FREEZE)
            if sd["state"] != last:
                repeat = True
        return repeat

    def _fencing_step(self, order: list[str]) -> bool:
        """Fence the nodes of ``fence`` services (one agent-lock try per node and pass);
        a fenced node's services go to recovery. True if anything changed."""
        rs = self.rs
        ns = rs.ns
        repeat = False
        fenced: dict[str, bool] = {}
        for sid in order:
            sd = rs.ss[sid]
            if sd["state"] != "fence":
                continue
            node = sd["node"]
            if node not in fenced:
                fenced[node] = bool(ns.fence_node(node))
            if not fenced[node]:
                continue
            rs.change_service_state(sid, SvcEvent.FENCED)
            repeat = True
        for node in sorted(n for n in ns.status if n not in fenced):
            if ns.get_node_state(node) != "fence":
                continue
            rs.log(
                "notice",
                f"node '{node}' in fence state but no services to-fence! admin interference?!",
            )
            if ns.fence_node(node):
                repeat = True
        return repeat

    def _fixed_point(self, only: set[str] | None) -> None:
        # the passes change states, never the set of services; higher priorities first
        order = start_order.order(list(self.rs.ss), self.rs.sc)
        quiet: set[str] = set()
        while True:
            repeat = self._one_pass(order, only, quiet)
            if self._fencing_step(order):
                repeat = True
            if not repeat:
                break

    def flush_master_status(self) -> None:
        """Write manager_status (node and service status, timestamp, memory) through
        the port, as a snapshot: the manager keeps mutating its own."""
        rs = self.rs
        ms = rs.ms
        ms["node_status"] = rs.ns.status
        ms["service_status"] = rs.ss
        ms["timestamp"] = rs.now
        ms[MEMORY_KEY] = self.memory()
        self.env.write_manager_status(_copy_status(ms))
