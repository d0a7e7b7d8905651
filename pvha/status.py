"""``ha-manager status``: the entries and their text, as a pure function of its inputs.

Contract
--------
:func:`status_entries` reads nothing and writes nothing; the caller passes the last
``manager_status`` dict (semantics 1.3; ``{}`` or None if there is none), each node's
``lrm_status`` dict (1.4; None if unreadable), the typed configuration, the quorum as
seen by the local node, and ``now`` (epoch seconds). It returns the entries PVE's
``/cluster/ha/status/current`` returns (``id``, ``type``, ``status`` and, per type,
``node``, ``timestamp``, ``sid``, ``state``, ``crm_state``, ``request_state`` ...), in
PVE's order: quorum, master, fencing, one ``lrm`` per node of ``node_status`` (sorted),
one ``service`` per sid of ``service_status`` (sorted), then configured sids not in it.
:func:`format_status_text` turns them into ``ha-manager status`` lines (``<type>
<status>``).

Unknown quorum (``quorum=None``, e.g. ``pvha status`` reading files without a cluster):
a master only writes its status while quorate, so a manager status whose timestamp is
fresh (at most 30 s old, at most 2 s in the future) is taken as proof of quorum and
``quorum OK`` is printed; otherwise the quorum line is left out and quorum is treated as
unknown (not quorate) for the master's ``idle`` rule.

Guest location: PVE takes a resource's node from the cluster's guest list. Pass
``guest_nodes`` (sid -> node) when known; when it is None (no cluster information) a
configured resource without a node is shown as ``queued`` instead of ``not found``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pvha.core.model import HAConfig, Resource

STALE_AFTER = 30  # seconds; "old timestamp - dead?"
DRIFT_BEFORE = 2  # seconds in the future; "detected time drift!"
ACTIVE_SERVICE_STATES = frozenset(
    {
        "started",
        "request_start",
        "request_start_balance",
        "request_stop",
        "migrate",
        "relocate",
        "fence",
        "recovery",
        "freeze",
        "error",
    }
)

Entry = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Quorum:
    """Quorum as the local node sees it."""

    node: str
    quorate: bool


def perl_localtime(timestamp: float) -> str:
    """Perl's scalar ``localtime``: ``Thu Apr  2 17:58:13 2026``."""
    return time.asctime(time.localtime(timestamp))


def timestamp_status(now: float, timestamp: float) -> str:
    diff = now - timestamp
    if diff > STALE_AFTER:
        return "old timestamp - dead?"
    if diff < -DRIFT_BEFORE:
        return "detected time drift!"
    return "active"


def status_entries(
    manager_status: Mapping[str, Any] | None,
    lrm_status: Mapping[str, Mapping[str, Any] | None],
    config: HAConfig,
    *,
    now: float,
    quorum: Quorum | None = None,
    crs_mode: str = "basic",
    guest_nodes: Mapping[str, str] | None = None,
    fmt_time: Callable[[float], str] = perl_localtime,
) -> list[Entry]:
    """The status entries (see module contract)."""
    ms = manager_status or {}
    master_fresh = _master_fresh(ms, now)
    quorate = quorum.quorate if quorum is not None else master_fresh
    entries: list[Entry] = []
    if quorum is not None:
        text = "OK" if quorum.quorate else f"No quorum on node '{quorum.node}'!"
        entries.append(
            {
                "id": "quorum",
                "type": "quorum",
                "node": quorum.node,
                "status": text,
                "quorate": int(quorum.quorate),
            }
        )
    elif master_fresh:
        entries.append({"id": "quorum", "type": "quorum", "status": "OK", "quorate": 1})
    master = _master_entry(ms, config, now, quorate, crs_mode, fmt_time)
    if master is not None:
        entries.append(master)
        entries.append(_fencing_entry(ms, master["node"], master_fresh))
    service_status: Mapping[str, Any] = ms.get("service_status") or {}
    for node in sorted(ms.get("node_status") or {}):
        entries.append(_lrm_entry(node, lrm_status.get(node), service_status, now, fmt_time))
    disarm_ignore = _disarm(ms).get("mode") == "ignore"
    for sid in sorted(service_status):
        entries.append(_service_entry(sid, service_status[sid], config, guest_nodes, disarm_ignore))
    for sid in sorted(config.resources):
        if sid not in service_status:
            entries.append(_service_entry(sid, None, config, guest_nodes, disarm_ignore))
    return entries


def format_status_text(entries: Sequence[Entry]) -> str:
    """``ha-manager status`` text: one ``<type> <status>`` line per entry."""
    return "".join(f"{e['type']} {e['status']}\n" for e in entries)


def _disarm(ms: Mapping[str, Any]) -> Mapping[str, Any]:
    disarm = ms.get("disarm")
    return disarm if isinstance(disarm, Mapping) else {}


def _master_fresh(ms: Mapping[str, Any], now: float) -> bool:
    if ms.get("master_node") is None or ms.get("timestamp") is None:
        return False
    return timestamp_status(now, float(ms["timestamp"])) == "active"


def _master_entry(
    ms: Mapping[str, Any],
    config: HAConfig,
    now: float,
    quorate: bool,
    crs_mode: str,
    fmt_time: Callable[[float], str],
) -> Entry | None:
    master, timestamp = ms.get("master_node"), ms.get("timestamp")
    if master is None or timestamp is None:
        return None
    state = timestamp_status(now, float(timestamp))
    if quorate and state != "active" and not config.resources:
        state = "idle"
    extra = ""
    disarm = _disarm(ms)
    if disarm:
        extra += f" - {disarm.get('state')}, resource mode: {disarm.get('mode')}"
    if crs_mode and crs_mode != "basic":
        extra += f" - {crs_mode} load CRS"
    status = f"{master} ({state}, {fmt_time(float(timestamp))}){extra}"
    return {
        "id": "master",
        "type": "master",
        "node": master,
        "status": status,
        "timestamp": timestamp,
    }


def _fencing_entry(ms: Mapping[str, Any], node: str, master_active: bool) -> Entry:
    """``armed`` while the master is active (it holds its watchdog), ``standby`` otherwise."""
    disarm = _disarm(ms)
    entry: Entry = {"id": "fencing", "type": "fencing", "node": node}
    if disarm:
        state, mode = disarm.get("state"), disarm.get("mode")
        watchdog = "released" if state == "disarmed" else "active"
        entry.update(
            status=f"{state}, resource mode: {mode} (CRM watchdog {watchdog})",
            **{"armed-state": state, "resource_mode": mode},
        )
    elif master_active:
        entry.update(status="armed (CRM watchdog active)", **{"armed-state": "armed"})
    else:
        entry.update(status="standby (CRM watchdog standby)", **{"armed-state": "standby"})
    return entry


def _lrm_entry(
    node: str,
    lrm: Mapping[str, Any] | None,
    service_status: Mapping[str, Any],
    now: float,
    fmt_time: Callable[[float], str],
) -> Entry:
    entry: Entry = {"id": f"lrm:{node}", "type": "lrm", "node": node}
    if not lrm or not lrm.get("timestamp"):
        entry["status"] = f"{node} (unable to read lrm status)"
        return entry
    timestamp = float(lrm["timestamp"])
    state_text = timestamp_status(now, timestamp)
    fresh = state_text == "active"
    mode = lrm.get("mode") or ("active" if fresh else None)
    lrm_state = lrm.get("state") or "unknown"
    if fresh:
        if mode != "active":
            state_text = f"{mode} mode"
        elif lrm_state == "wait_for_agent_lock" and not _active_count(service_status, node):
            state_text = "idle"
        else:
            state_text = lrm_state
    elif mode in ("maintenance", "disarm"):
        state_text = f"{mode} mode"
    if mode == "disarm":
        watchdog = "watchdog released"
    elif fresh and lrm_state in ("active", "maintenance"):
        watchdog = "watchdog active"
    else:
        watchdog = "watchdog standby"
    entry.update(
        status=f"{node} ({state_text}, {watchdog}, {fmt_time(timestamp)})",
        timestamp=lrm["timestamp"],
    )
    return entry


def _active_count(service_status: Mapping[str, Any], node: str) -> int:
    return sum(
        1
        for sd in service_status.values()
        if isinstance(sd, Mapping)
        and sd.get("node") == node
        and sd.get("state") in ACTIVE_SERVICE_STATES
    )


def verbose_state(
    sd: Mapping[str, Any] | None, res: Resource | None, node: str | None, node_known: bool
) -> str:
    """PVE's ``get_verbose_service_state``; ``node_known`` False skips the ``not found`` rule."""
    if res is None:
        return "deleting"
    if res.state == "ignored":
        return "ignored"
    if node_known and node is None:
        return "not found"
    if sd is None or sd.get("state") is None:
        return "queued"
    cur, req = str(sd["state"]), res.state
    if cur == "stopped":
        return {"started": "starting", "disabled": "disabled"}.get(req, cur)
    if cur == "started":
        if not sd.get("running"):
            return "starting"
        return "stopping" if req in ("stopped", "disabled") else cur
    if cur == "error" and req == "disabled":
        return "clearing error flag"
    return cur


def _service_entry(
    sid: str,
    sd: Mapping[str, Any] | None,
    config: HAConfig,
    guest_nodes: Mapping[str, str] | None,
    disarm_ignore: bool,
) -> Entry:
    res = config.resources.get(sid)
    config_node = guest_nodes.get(sid) if guest_nodes is not None else (res.node if res else None)
    node = sd.get("node") if sd else config_node
    state = (
        "ignore" if disarm_ignore else verbose_state(sd, res, config_node, guest_nodes is not None)
    )
    entry: Entry = {
        "id": f"service:{sid}",
        "type": "service",
        "sid": sid,
        "node": node,
        "state": state,
        "status": f"{sid} ({node or '---'}, {state})",
    }
    if sd:
        entry["crm_state"] = sd.get("state")
    if res is not None:
        entry.update(
            request_state=res.state,
            max_restart=res.max_restart,
            max_relocate=res.max_relocate,
            failback=int(res.failback),
        )
        entry.update(
            {k: v for k, v in (("group", res.group), ("comment", res.comment)) if v is not None}
        )
    return entry
