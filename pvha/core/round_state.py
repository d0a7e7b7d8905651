"""What the CRM master's rounds work on, and the one setter of service states.

Glossary (PVE's ``Manager.pm`` names, kept because PVE's code, its logs and
``manager_status`` use them; semantics "Conventions"):

* ``sid``: a service (resource) id, ``<type>:<name>``, e.g. ``vm:100``.
* ``ss``: service status, sid -> ``sd``: the master's runtime state of every service,
  persisted as ``manager_status["service_status"]``.
* ``sd``: one entry of ``ss``: ``state``, ``node``, ``uid`` and, while they matter,
  ``target`` (of a move), ``cmd`` (a queued user command), ``failed_nodes``,
  ``maintenance_node`` (where to return after maintenance), ``running``, ``timeout``.
* ``sc``: service configuration (resources.cfg), sid -> ``cd``, re-read every round.
* ``cd``: one entry of ``sc``: the requested ``state``, ``node``, ``group``,
  ``failback``, ``max_restart``, ``max_relocate``.
* ``ns``: node status (:class:`~pvha.core.node_status.NodeStatus`), the master's view
  of each node's state (``online``, ``maintenance``, ``unknown``, ``fence``, ``gone``).
* ``ms``: manager status, what the master writes every round: ``master_node``,
  ``node_status``, ``service_status``, ``node_request``, ``disarm``, ``timestamp``.
* ``uid``: a fresh id an ``sd`` gets on every state change (and when its LRM must act
  again); an LRM reports its result under the uid it acted on, so the master matches a
  result to the request that caused it and ignores stale ones.
* ``crs``: the cluster resource scheduler settings of datacenter.cfg.

A :class:`RoundState` lives as long as its master: the handlers of a round
(:mod:`~pvha.core.service_fsm`, :mod:`~pvha.core.commands`, :mod:`~pvha.core.disarm`,
:mod:`~pvha.core.group_migration`, :mod:`~pvha.core.auto_rebalance`) read it and change
it only through its methods; :mod:`~pvha.core.manager` fills it and runs the round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pvha.core import placement, scheduler
from pvha.core.node_status import NodeStatus
from pvha.core.ports import HaEnv
from pvha.core.rules import EMPTY_COMPILED, CompiledRules
from pvha.core.transitions import SERVICE, SvcEvent, next_state

Sd = dict[str, Any]
"""One service status entry (see the glossary)."""

# keys that survive a service state change
_KEPT_KEYS = ("node", "failed_nodes", "maintenance_node")


class RoundState:
    """The master's ss, ms, sc and ns, the compiled rules, the usage model, uids, the log.

    ``now`` is the instant of the current round (the manager sets it, with ``ns.now``).
    ``lrm_modes``/``lrm_results`` are this round's LRM reports (node -> mode, uid ->
    result); ``crs`` the scheduler settings (``scheduler``, ``rebalance_on_request_start``,
    ``auto_rebalance``: the raw ``crs`` options).
    """

    def __init__(
        self,
        env: HaEnv,
        now: int,
        ns: NodeStatus,
        ss: dict[str, Sd],
        ms: dict[str, Any],
    ) -> None:
        self.env = env
        self.now = now
        self.ns = ns
        self.ss = ss
        self.ms = ms
        self.sc: dict[str, dict[str, Any]] = {}
        self.crs: dict[str, Any] = {}
        self.lrm_modes: dict[str, str] = {}
        self.lrm_results: dict[str, dict[str, Any]] = {}
        self.usage: scheduler.Usage = scheduler.BasicUsage([])
        self.compiled = EMPTY_COMPILED
        self.failback: Mapping[str, bool] = {}
        # sids with a node-affinity rule or a resource-affinity partner
        self.ruled: frozenset[str] = frozenset()
        self.uid_seq = 0
        self._uid_prefix = f"{env.nodename()}-{now}"
        self._recovery_usage_fresh = False

    # ------------------------------------------------------------------ log and uids
    def log(self, level: str, msg: str) -> None:
        """One line of the manager's log (PVE's levels: info, notice, warning, err)."""
        self.env.log(level, msg)

    def new_uid(self) -> str:
        """A uid never handed out before by this master (nor, resumed, by its
        predecessor): ``<master node>-<start instant>-<sequence>``."""
        self.uid_seq += 1
        return f"{self._uid_prefix}-{self.uid_seq}"

    # ------------------------------------------------------------------ the setter
    def change_service_state(
        self, sid: str, event: SvcEvent, *, message: str | None = None, **params: Any
    ) -> None:
        """The one setter of service states: table-checked, logged, usage updated.

        The successor comes from :data:`~pvha.core.transitions.SERVICE` (an illegal
        event raises IllegalTransition and changes nothing). The entry keeps ``node``,
        ``failed_nodes`` and ``maintenance_node``, takes ``params`` and a new uid. The
        log line is PVE's ``state changed from 'a' to 'b'  (k = v, ...)`` unless
        ``message`` replaces it (disarm's ``freezing`` line).
        """
        sd = self.ss[sid]
        old_state = sd["state"]
        new_state = next_state(SERVICE, old_state, event)
        kept = {k: sd[k] for k in _KEPT_KEYS if sd.get(k) is not None}
        sd.clear()
        sd["state"] = new_state
        sd.update(kept)
        sd.update(params)
        self.usage.remove_service_usage(sid)
        self.usage.add_service_usage(sid, new_state, sd.get("node"), sd.get("target"))
        sd["uid"] = self.new_uid()
        if message is None:
            text = ", ".join(f"{k} = {params[k]}" for k in sorted(params))
            suffix = f"  ({text})" if text else ""
            message = f"service '{sid}': state changed from '{old_state}' to '{new_state}'{suffix}"
        self.env.log("info", message)

    # ------------------------------------------------------------------ services
    def add_service(self, sid: str, cd: Mapping[str, Any]) -> None:
        """A newly configured service enters as request_start or request_stop."""
        self.log("info", f"adding new service '{sid}' on node '{cd['node']}'")
        state = "request_start" if cd["state"] == "started" else "request_stop"
        self.ss[sid] = {"state": state, "node": cd["node"], "uid": self.new_uid()}

    def remove_service(self, sid: str, reason: str) -> None:
        """Forget a service that lost its config or is now ``ignored``."""
        self.log("info", f"removing stale service '{sid}' ({reason})")
        del self.ss[sid]

    def queue_command(self, sid: str, cmd: list[str]) -> None:
        """Store a user command (``[op, arg]``) for the FSM handler of ``sid``."""
        self.ss[sid]["cmd"] = cmd

    # ------------------------------------------------------------------ ms requests
    @property
    def disarm(self) -> dict[str, Any] | None:
        """The disarm request (``{"mode": freeze|ignore, "state": ...}``) or None."""
        return self.ms.get("disarm") or None

    def start_disarm(self, mode: str) -> None:
        """A disarm-ha command: the stack is ``disarming`` until every LRM follows."""
        self.ms["disarm"] = {"mode": mode, "state": "disarming"}

    def finish_disarm(self) -> None:
        """Every online LRM is disarmed: the stack is ``disarmed``."""
        self.ms["disarm"]["state"] = "disarmed"

    def arm(self) -> None:
        """An arm-ha command: forget the disarm request."""
        del self.ms["disarm"]

    def request_maintenance(self, node: str, enable: bool) -> None:
        """Set or clear the maintenance request of ``node`` (node_request, read by LRMs)."""
        requests = self.ms.setdefault("node_request", {}).setdefault(node, {})
        if enable:
            requests["maintenance"] = 1
        else:
            requests.pop("maintenance", None)

    # ------------------------------------------------------------------ rules
    def set_rules(self, compiled: CompiledRules, failback: Mapping[str, bool]) -> None:
        """Install freshly compiled rules and the effective failback per sid."""
        self.compiled = compiled
        self.failback = failback
        self.ruled = frozenset(compiled.node_affinity).union(compiled.positive, compiled.negative)

    # ------------------------------------------------------------------ placement
    def keeps_current_node(self, sid: str, sd: Sd) -> bool:
        """True when placement with preference ``none`` keeps ``sd``'s node without
        scoring: the node is online this round, there is no maintenance fallback node,
        and ``sid`` has no rule and no partner (select_service_node, §4.5 step 7)."""
        return (
            sd.get("node") in self.usage.node_set
            and sd.get("maintenance_node") is None
            and sid not in self.ruled
        )

    def select_node(self, sid: str, cd: Mapping[str, Any], sd: Sd, preference: str) -> str | None:
        """The node ``sid`` should run on (None: none qualifies), by PVE's
        ``select_service_node`` over this round's online nodes (less the env's blocked
        nodes) and usage model; the model's scoring messages go to the log."""
        current: str | None = sd.get("node")
        if preference == "none" and self.keeps_current_node(sid, sd):
            return current
        # a guest already on a blocked node stays; none is placed there anew
        blocked = self.env.blocked_nodes() - {current}
        node = placement.select_service_node(
            sid,
            preference,
            compiled=self.compiled,
            usage=self.usage,
            ss=self.ss,
            current_node=current,
            online_nodes=self.usage.node_set - blocked if blocked else None,
            failed_nodes=sd.get("failed_nodes") or (),
            maintenance_node=sd.get("maintenance_node"),
            failback=self.failback.get(sid, bool(int(cd.get("failback", 1)))),
        )
        for level, msg in self.usage.messages:
            self.log(level, msg)
        self.usage.messages.clear()
        return node

    # ------------------------------------------------------------------ usage
    def recompute_online_node_usage(self) -> None:
        """Rebuild the usage model over the online nodes from every sd (PVE's
        ``recompute_online_node_usage``); static/dynamic stats come from the port."""
        mode = self.crs.get("scheduler", "basic")
        online = self.ns.list_online_nodes()
        node_stats = service_stats = None
        if mode in ("static", "dynamic"):
            node_stats, service_stats = self.env.get_usage_stats(mode, self.ss)
        usage, msgs = scheduler.make_usage(mode, online, node_stats, service_stats)
        for level, msg in msgs:
            self.log(level, msg)
        self.usage = scheduler.recompute_usage(usage, self.ss)

    def mark_usage_fresh(self, fresh: bool) -> None:
        """Whether the model just recomputed stays exact for the round (see
        :meth:`refresh_usage_for_recovery`)."""
        self._recovery_usage_fresh = fresh

    def refresh_usage_for_recovery(self) -> None:
        """Bring the usage model up to date before a recovery placement.

        PVE recomputes the whole model before every recovered service ("most current
        node state"). In ``basic`` mode the model is only the count of services per
        node by (state, node, target) over the round's online nodes, which do not change
        during the round; every FSM change updates it incrementally
        (:meth:`change_service_state`) and nothing else moves a counted service after
        the round's recompute - except an ``arm-ha`` command (node updates of services
        moved while disarmed), so the manager marks the model fresh only when the
        stack was not disarmed. A recompute then gives the same counts: skip it (it
        costs O(services) per recovered service).
        """
        if self._recovery_usage_fresh and self.crs.get("scheduler", "basic") == "basic":
            return
        self.recompute_online_node_usage()
        self._recovery_usage_fresh = True
