"""``pvha explain SID``: why a guest is where it is, or did not move.

Theory of operation. :func:`explain` is pure: it takes what ``pvha watch`` itself works
from (:class:`Inputs`: the configuration, the last ``manager_status``, the executors'
restart counters, the fence jobs, stale copies, and, when an API is configured, one
live view) and answers with the engine's own functions, never a copy of their logic:

* the rules that apply come from :func:`pvha.core.rules.compile_rules` (groups as
  ``ha-group-<id>``, merged and implicit rules, and the rules it drops with PVE's
  reasons);
* the placement is :func:`pvha.core.placement.explain_service_node` over the node set
  and usage model the manager's next round would use (the CRM node states, narrowed by
  the live view when there is one; basic CRS, as ``pvha watch`` runs it; nodes with a
  stale copy left out, as :meth:`RoundState.select_node` does): its choice is
  :func:`select_service_node`'s, and every other node carries the reason it was left
  out, with the rule or partner that did it;
* the preference is the one the service's state handler asks for: ``best-score`` for
  a guest to recover (``fence``, ``recovery``), else ``none`` (stay unless failback or
  a rule moves it).

The answer (:func:`explain`) is a JSON-shaped dict; :func:`text` makes it one fact per
line. What it waits for is said in words (a proof that its node is off, quorum, a
manager, a migration, ``--state disabled`` for ``error``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pvha.config.checks import ApiFacts
from pvha.core.model import HAConfig, NodeAffinityRule, ResourceAffinityRule, Rule
from pvha.core.placement import explain_service_node
from pvha.core.rules import compile_rules, groups_to_rules, next_rule_order
from pvha.core.scheduler import BasicUsage, recompute_usage

RECOVERING = ("fence", "recovery")
REASONS = {
    "offline": "not online",
    "not-in-rule": "not in its node-affinity rule",
    "lower-priority": "lower priority in its node-affinity rule",
    "tried": "tried already (start failed there)",
    "negative": "negative resource affinity with",
    "positive": "positive resource affinity: its partners run on",
    "stale-copy": "blocked:",
}
WHY = {
    "maintenance": "its node is back from maintenance",
    "nofailback": "failback off: it stays on its allowed current node",
    "current": "its current node qualifies",
    "score": "best CRS score",
    "next": "the next node in score order (start failed on the current one)",
}


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything :func:`explain` reads (see the module docstring)."""

    sid: str
    config: HAConfig
    manager_status: Mapping[str, Any]
    manager_running: bool
    restart_tries: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # node ->
    fence_wait: Mapping[str, str] = field(default_factory=dict)  # node -> what it waits for
    start_wait: str | None = None  # the guest its executor's start waits for (start order)
    blocked: frozenset[str] = frozenset()  # nodes with a stale copy their agent cannot stop
    live: ApiFacts | None = None  # one live view, when an API is configured and answered
    api_problem: str | None = None  # an API is configured but failed


def _table(ms: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = ms.get(key)
    return value if isinstance(value, Mapping) else {}


def _all_rules(cfg: HAConfig) -> dict[str, Rule]:
    """rules.cfg plus the groups as the engine sees them (before drops and transforms)."""
    out: dict[str, Rule] = dict(cfg.rules)
    out.update(groups_to_rules(cfg.groups, cfg.resources, next_rule_order(cfg.rules)))
    return out


def explain(inp: Inputs) -> dict[str, Any]:
    """The explanation of ``inp.sid`` (JSON-shaped; see the module docstring)."""
    cfg, ms, sid = inp.config, inp.manager_status, inp.sid
    res = cfg.resources[sid]
    ss = {k: v for k, v in _table(ms, "service_status").items() if isinstance(v, Mapping)}
    sd = ss.get(sid)
    node_states = {str(n): str(s) for n, s in _table(ms, "node_status").items()}
    live = inp.live
    table_nodes = sorted(node_states) or (list(live.members) if live else [])
    nodes = sorted(set(table_nodes) | set(live.members if live else ()))
    result = compile_rules(cfg.rules, cfg.groups, cfg.resources, table_nodes)
    state = str(sd.get("state")) if sd else None
    guest = live.guests.get(int(res.name)) if live is not None else None
    current = str(sd["node"]) if sd and sd.get("node") else (
        guest.node if guest is not None else res.node)
    doc: dict[str, Any] = {
        "sid": sid, "state": state, "node": current,
        "source": _source(inp),
        "requested": {"state": res.state, "group": res.group, "failback": int(res.failback),
                      "max_restart": res.max_restart, "max_relocate": res.max_relocate,
                      "priority": res.priority, "after": res.after},
        "group": _group(cfg, res.group),
        "rules": _rules(inp, result, ss),
    }
    online = _online(node_states, live, nodes)
    doc["nodes"] = [{"node": n, "state": _node_state(n, node_states, live)} for n in nodes]
    placing = res.state == "started" and state not in ("error", "stopped", "request_stop")
    if placing:
        doc["placement"] = _place(inp, result, ss, sd or {}, current, online, nodes, doc)
    doc["counters"] = _counters(inp, sd or {}, res.max_restart, res.max_relocate)
    doc["waiting_for"] = _waiting(inp, sd, state, doc.get("placement"))
    return doc


def _source(inp: Inputs) -> str:
    if inp.live is not None:
        quorum = "quorate" if inp.live.quorate else "NOT quorate"
        return f"live view from {inp.live.local_node} ({quorum}) and the status files"
    if inp.api_problem is not None:
        return f"the status files only (the API failed: {inp.api_problem})"
    return "the status files only (no API configured: node states as the manager last saw them)"


def _online(node_states: Mapping[str, str], live: ApiFacts | None, nodes: list[str]) -> set[str]:
    """The nodes the next round counts online: the manager's ``online`` ones; with a
    live view, those the view shows online, where a node seen again (``unknown``,
    ``gone``, or new) becomes online in that round."""
    if live is None:
        return {n for n in nodes if node_states.get(n) == "online"}
    return {n for n in nodes if n in live.online
            and node_states.get(n, "unknown") in ("online", "unknown", "gone")}


def _node_state(node: str, node_states: Mapping[str, str], live: ApiFacts | None) -> str:
    crm = node_states.get(node, "not in the manager's node table")
    if live is None:
        return crm
    return f"{crm}, {'online' if node in live.online else 'offline'} in the cluster"


def _group(cfg: HAConfig, gid: str | None) -> dict[str, Any] | None:
    if gid is None:
        return None
    g = cfg.groups.get(gid)
    if g is None:
        return {"id": gid, "missing": True}
    return {"id": gid, "nodes": [f"{n}:{p}" if p else n for n, p in g.nodes],
            "restricted": g.restricted, "nofailback": g.nofailback}


def _rules(inp: Inputs, result: Any, ss: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every rule naming the sid: in force (after transforms), dropped, or disabled."""
    sid = inp.sid
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rid, rule in sorted(result.rules.items()):
        if sid in rule.resources:
            seen.add(rid)
            out.append(_rule_doc(rid, rule, sid, ss, "disabled" if rule.disable else "in force"))
    for rid, rule in sorted(_all_rules(inp.config).items()):
        if sid in rule.resources and rid in result.dropped:
            reasons = "; ".join(result.dropped[rid])
            out.append(_rule_doc(rid, rule, sid, ss, f"dropped: {reasons}"))
    return out


def _rule_doc(rid: str, rule: Rule, sid: str, ss: Mapping[str, Mapping[str, Any]],
              status: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": rid, "type": rule.type, "status": status}
    if isinstance(rule, NodeAffinityRule):
        doc.update(strict=rule.strict, nodes=[f"{n}:{p}" for n, p in rule.nodes])
    elif isinstance(rule, ResourceAffinityRule):
        doc["affinity"] = rule.affinity
        doc["partners"] = [{"sid": p, "node": (ss.get(p) or {}).get("node"),
                            "state": (ss.get(p) or {}).get("state")}
                           for p in sorted(rule.resources) if p != sid]
    return doc


def _place(inp: Inputs, result: Any, ss: Mapping[str, Mapping[str, Any]],
           sd: Mapping[str, Any], current: str | None, online: set[str], nodes: list[str],
           doc: dict[str, Any]) -> dict[str, Any]:
    """The engine's placement over the next round's nodes; fills each node's verdict."""
    sid = inp.sid
    state = sd.get("state")
    preference = "best-score" if state in RECOVERING else "none"
    usage = recompute_usage(BasicUsage(sorted(online)), ss)
    blocked = inp.blocked - {current}
    choice = explain_service_node(
        sid, preference, compiled=result.compiled, usage=usage, ss=ss,
        current_node=current, nodes=nodes, online_nodes=online - blocked,
        failed_nodes=sd.get("failed_nodes") or (), maintenance_node=sd.get("maintenance_node"),
        failback=result.failback.get(sid, True))
    na_rule = next((r["id"] for r in doc["rules"] if r["type"] == "node-affinity"
                    and r["status"] == "in force"), None)
    for entry in doc["nodes"]:
        n = entry["node"]
        if n in choice.candidates:
            entry.update(verdict="candidate", score=choice.scores[n])
            continue
        reason, detail = choice.excluded[n]
        if reason == "offline" and n in blocked:
            reason, detail = "stale-copy", "its agent cannot stop a stale copy of a guest"
        entry.update(verdict="excluded", reason=reason, detail=detail,
                     rule=_blamed(reason, detail, na_rule, doc["rules"]))
    moves = choice.chosen is not None and choice.chosen != current
    return {"preference": preference, "chosen": choice.chosen, "why": choice.why,
            "moves": moves, "crs": "basic (HA services per node; lower is better)"}


def _blamed(reason: str, detail: str, na_rule: str | None,
            rules: list[dict[str, Any]]) -> str | None:
    """The rule behind an exclusion (the node-affinity rule, or the affinity rule with
    the partners named in ``detail``)."""
    if reason in ("not-in-rule", "lower-priority"):
        return na_rule
    if reason in ("negative", "positive"):
        affinity = reason
        partners = set(detail.split(", ")) if reason == "negative" else set()
        for r in rules:
            if r.get("affinity") == affinity and r["status"] == "in force" and (
                    not partners or partners & {p["sid"] for p in r["partners"]}):
                return str(r["id"])
    return None


def _counters(inp: Inputs, sd: Mapping[str, Any], max_restart: int,
              max_relocate: int) -> dict[str, Any]:
    node = sd.get("node")
    tries = (inp.restart_tries.get(node) or {}).get(inp.sid, 0) if isinstance(node, str) else 0
    failed = [str(n) for n in sd.get("failed_nodes") or ()]
    return {"restarts": tries, "max_restart": max_restart, "relocations": len(failed),
            "max_relocate": max_relocate, "failed_nodes": failed}


def _waiting(inp: Inputs, sd: Mapping[str, Any] | None, state: str | None,
             placement: Mapping[str, Any] | None) -> list[str]:
    """What the guest waits for, in words (empty: nothing; it is where it should be)."""
    out: list[str] = []
    ms, res = inp.manager_status, inp.config.resources[inp.sid]
    if not inp.manager_running:
        out.append("a pvha manager: none is running (start pvha watch)")
    if inp.live is not None and not inp.live.quorate:
        out.append(f"quorum: {inp.live.local_node} sees no quorate cluster")
    disarm = ms.get("disarm")
    if isinstance(disarm, Mapping):
        out.append(f"HA to be armed again (disarmed, mode {disarm.get('mode')})")
    node = sd.get("node") if sd else None
    if sd is None:
        out.append("the manager to add it (not in the manager status yet)")
    elif state == "error":
        out.append(f"an administrator: error state, run pvha set {inp.sid} --state disabled, "
                   "fix it, then enable it again")
    elif state == "fence":
        out.append(f"a proof that {node} is off: {inp.fence_wait.get(str(node), 'fencing')}")
    elif state in ("migrate", "relocate", "request_start_balance"):
        out.append(f"the {state} from {node} to {sd.get('target')} (its task)")
    elif state == "freeze":
        out.append(f"the executor of {node} to become active again (frozen)")
    elif state in ("request_stop", "request_start"):
        out.append(f"its {state.split('_')[1]} on {node}")
    elif state == "started" and inp.start_wait:
        out.append(f"{inp.start_wait} to run first (start order: priority {res.priority}"
                   + (f", after {res.after})" if res.after else ")"))
    if placement is not None and placement["chosen"] is None:
        out.append("a node it may run on: none qualifies (see the nodes)")
    elif placement is not None and placement["moves"] and state not in RECOVERING:
        out.append(f"the next round: it moves to {placement['chosen']}")
    if res.state != "started" and state not in ("stopped", None) and state != "error":
        out.append(f"its stop (requested state {res.state})")
    return out


def text(doc: Mapping[str, Any]) -> str:
    """One fact per line."""
    req = doc["requested"]
    where = doc["node"] or "no node"
    head = f"{doc['sid']}: {doc['state'] or 'not managed yet'} on {where}"
    lines = [f"{head} (requested {req['state']})", f"from: {doc['source']}"]
    g = doc["group"]
    if g is not None:
        lines.append(f"group {g['id']}: " + ("does not exist" if g.get("missing") else
                     f"nodes {','.join(g['nodes'])}, restricted {int(g['restricted'])}, "
                     f"nofailback {int(g['nofailback'])}"))
    for r in doc["rules"]:
        lines.append(f"rule '{r['id']}' ({_rule_text(r)}): {r['status']}")
    if not doc["rules"]:
        lines.append("rules: none (it may run on every online node)")
    lines += [_node_text(entry) for entry in doc["nodes"]]
    p = doc.get("placement")
    if p is not None:
        recovering = p["preference"] == "best-score"
        chosen = (f"{p['chosen']} ({WHY[p['why']]})" if p["chosen"] is not None
                  else "no node qualifies")
        moves = f", it would move from {where}" if p["moves"] and not recovering else ""
        lines.append(f"{'recovery to' if recovering else 'placement'}: {chosen}{moves}")
    c = doc["counters"]
    tried = f" (tried: {', '.join(c['failed_nodes'])})" if c["failed_nodes"] else ""
    lines.append(f"restarts {c['restarts']} of max_restart {c['max_restart']}; relocations "
                 f"{c['relocations']} of max_relocate {c['max_relocate']}{tried}")
    if req.get("priority") or req.get("after"):
        lines.append(f"start order: priority {req['priority']}"
                     + (f", after {req['after']}" if req["after"] else ""))
    lines += [f"waiting for {w}" for w in doc["waiting_for"]] or ["waiting for nothing"]
    return "\n".join(lines) + "\n"


def _rule_text(r: Mapping[str, Any]) -> str:
    if r["type"] == "node-affinity":
        return f"node-affinity{', strict' if r['strict'] else ''}: {','.join(r['nodes'])}"
    partners = ", ".join(f"{p['sid']} on {p['node'] or '?'}" for p in r["partners"])
    return f"{r['affinity']} resource-affinity with {partners}"


def _node_text(entry: Mapping[str, Any]) -> str:
    head = f"node {entry['node']} ({entry['state']})"
    verdict = entry.get("verdict")
    if verdict is None:
        return head
    if verdict == "candidate":
        return f"{head}: candidate, score {entry['score']:g}"
    reason = REASONS.get(entry["reason"], entry["reason"])
    detail = f" {entry['detail']}" if entry["detail"] else ""
    if entry["reason"] == "lower-priority":
        reason, detail = f"{reason} ({entry['detail']})", ""
    rule = f" (rule '{entry['rule']}')" if entry.get("rule") else ""
    return f"{head}: excluded, {reason}{detail}{rule}"
