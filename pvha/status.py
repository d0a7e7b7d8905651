"""``pvha status``: ``ha-manager status``'s entries and text, told as pvha really works.

Contract
--------
:func:`status_report` reads nothing and writes nothing; the caller passes the last
``manager_status`` dict (semantics 1.3; ``{}`` or None if there is none), each node's
``lrm_status`` dict (1.4; None if unreadable; unknown keys are ignored), the typed
configuration, the quorum (:class:`Quorum`: seen through the API, or unknown and why),
the fencing in force per node (:class:`Fencing`), the config faults a lenient load
found, and ``now`` (epoch seconds). It returns the entries PVE's
``/cluster/ha/status/current`` returns (``id``, ``type``, ``status`` and, per type,
``node``, ``timestamp``, ``sid``, ``state``, ``crm_state``, ``request_state`` ...) in
PVE's order -- quorum, master, fencing, one ``lrm`` per node of ``node_status``
(sorted), one ``service`` per sid of ``service_status`` (sorted), then configured sids
not in it -- with one ``degraded`` entry per fault after the fencing entry, plus the
exit status of ``pvha status`` (the ``EXIT_*`` codes). :func:`format_status_text`
turns entries into ``ha-manager status`` lines (``<type> <status>``).

Where pvha differs from PVE, the text says what pvha does, never what PVE would:

* Quorum comes only from the API. Files never prove it (a stale ``manager_status``
  says nothing about the cluster now): without an answer the line is ``quorum unknown
  (<why>)``.
* The manager is ``pvha watch``. It runs when ``manager_status["pvha"]`` has no
  ``stopped_at`` and the last flush is at most max(30 s, 3 round intervals) old;
  otherwise the master line says ``no pvha manager running since <time>`` and the lrm
  lines say ``executor not running`` (the executors run inside the manager, so they
  stop with it: the nodes are not dead for that).
* There is no watchdog in this mode. Fencing is by a fence device (``fence.cfg``) or an
  administrator's ``pvha fence-ack``; the fencing and lrm lines name the one in force.
* A config fault is an ``HA degraded: <file>:<line>: ...`` line, not a failure; a
  resource whose section was skipped shows as ``config invalid`` (not ``deleting``:
  nobody removed it). The running manager's own list (``manager_status["pvha"]
  ["degraded"]``) is shown too, without repeating a fault.

Guest location: PVE takes a resource's node from the cluster's guest list. Pass
``guest_nodes`` (sid -> node) when known; when it is None (no cluster information) a
configured resource without a node is shown as ``queued`` instead of ``not found``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pvha.config.faults import ConfigFault
from pvha.core.model import HAConfig, Resource

STALE_AFTER = 30  # seconds; PVE's "old timestamp - dead?" and pvha's minimum
DRIFT_BEFORE = 2  # seconds in the future; "detected time drift!"
MEMORY_KEY = "pvha"  # manager_status key pvha watch writes (pvha.core.manager.MEMORY_KEY)
RESOURCES_CFG = "resources.cfg"
CONFIG_INVALID = "config invalid"  # service state of a resource whose section was skipped
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

# Exit status of ``pvha status`` (a health check); the first that applies wins.
EXIT_OK = 0  # HA operating: a manager running, quorum seen through the API, config readable
EXIT_UNREADABLE = 1  # a config or status file cannot be read (fence.cfg invalid included)
EXIT_NO_MANAGER = 3  # no pvha manager running (stopped, or its last round is too old)
EXIT_NO_QUORUM = 4  # the API answered: the local node has no quorum
EXIT_QUORUM_UNKNOWN = 5  # no API configured: quorum cannot be checked
EXIT_API_FAILED = 6  # the API is configured but failed (unreachable, 401, TLS)

Entry = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Quorum:
    """Quorum as the local node sees it through the API; ``quorate`` None = unknown,
    with ``reason`` saying why, and ``api_failed`` when an API call failed."""

    node: str | None
    quorate: bool | None
    reason: str | None = None
    api_failed: bool = False

    @classmethod
    def no_api(cls) -> Quorum:
        return cls(None, None, "no API configured")

    @classmethod
    def failed(cls) -> Quorum:
        return cls(None, None, "cluster API failed", api_failed=True)


@dataclass(frozen=True, slots=True)
class Fencing:
    """How the manager fences each node: ``devices`` maps a node to the fence devices
    ``fence.cfg`` connects it to, in the order they are tried; ``agents`` maps a node to
    its ``pvha agent``'s state (``active``: the lease is renewed and the watchdog fed, so
    the lease's expiry fences the node; ``shutting-down``: the same, while the manager
    applies the shutdown policy; ``lost``: renewals failed, the node resets; ``waiting``:
    not armed yet; ``stopped`` or ``stopped for node shutdown|reboot``: cleanly stopped,
    no proof). A node with
    neither is fenced only by an administrator's ``pvha fence-ack``; ``acks`` holds the
    nodes with such an ack in force (and who gave it). ``invalid``:
    fence.cfg exists but does not parse (``pvha watch`` refuses to start with it)."""

    devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    invalid: bool = False
    agents: Mapping[str, str] = field(default_factory=dict)
    acks: Mapping[str, str] = field(default_factory=dict)  # node -> who acknowledged it
    renewed_ago: Mapping[str, float] = field(default_factory=dict)  # seconds, per lease
    stale: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # copies it stopped

    def method(self, node: str, detail: bool = True) -> str:
        """``fence device ipmi``, ``fence devices ipmi then pdu``, ``agent lease``,
        ``fence device ipmi or agent lease``, ``fence-ack only``; ``detail`` adds when the
        lease was last renewed."""
        if self.invalid:
            return "fence.cfg invalid"
        if node in self.acks:
            by = f" by {self.acks[node]}" if self.acks[node] else ""
            return f"fence-ack{by} (acknowledged, not verified)"
        parts = []
        devices = self.devices.get(node) or ()
        if devices:
            plural = "s" if len(devices) > 1 else ""
            parts.append(f"fence device{plural} {' then '.join(devices)}")
        agent = self.agents.get(node)
        ago = self.renewed_ago.get(node)
        if agent in ("active", "shutting-down"):
            notes = [f"renewed {ago:.0f} s ago"] if ago is not None and detail else []
            if agent == "shutting-down":
                notes.append("node shutting down")
            parts.append("agent lease" + (f" ({', '.join(notes)})" if notes else ""))
        elif agent == "lost":
            parts.append("agent lease (lost: node resetting)")
        stale = self.stale.get(node) if detail else None
        tail = f"; its agent stopped stale copies of {' '.join(stale)}" if stale else ""
        if not parts:
            return "fence-ack only" + (f" (agent {agent})" if agent else "") + tail
        return " or ".join(parts) + tail

    def summary(self, nodes: Sequence[str]) -> str:
        """The methods by node: ``fence device ipmi for every node``, or ``fence device
        ipmi for node1 node2; fence-ack only for node3``. Without ``nodes`` (no manager
        status yet) the nodes fence.cfg names are listed; with none, ``fence-ack only``."""
        known = bool(nodes)  # else only fence.cfg's nodes: other nodes may exist
        nodes = sorted(nodes) or sorted(self.devices)
        if not nodes:
            return self.method("")
        groups: dict[str, list[str]] = {}
        for node in nodes:
            groups.setdefault(self.method(node, detail=False), []).append(node)
        if len(groups) == 1 and known:
            return f"{next(iter(groups))} for every node"
        return "; ".join(f"{method} for {' '.join(ns)}" for method, ns in groups.items())


@dataclass(frozen=True, slots=True)
class Manager:
    """What ``manager_status`` says about the pvha manager that wrote it."""

    node: str | None
    timestamp: float | None
    running: bool
    state: str  # "active", "detected time drift!", "stopped", "stale", "none"
    stale_after: float
    master_since: float | None = None
    stopped_at: float | None = None
    round_interval: float | None = None
    degraded: tuple[str, ...] = ()

    @property
    def last_seen(self) -> float | None:
        return self.stopped_at if self.stopped_at is not None else self.timestamp


@dataclass(frozen=True, slots=True)
class Report:
    """The status entries and the exit status of ``pvha status``."""

    entries: list[Entry]
    exit_code: int


def perl_localtime(timestamp: float) -> str:
    """Perl's scalar ``localtime``: ``Thu Apr  2 17:58:13 2026``."""
    return time.asctime(time.localtime(timestamp))


def timestamp_status(now: float, timestamp: float, stale_after: float = STALE_AFTER) -> str:
    diff = now - timestamp
    if diff > stale_after:
        return "old timestamp - dead?"
    if diff < -DRIFT_BEFORE:
        return "detected time drift!"
    return "active"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def manager_of(manager_status: Mapping[str, Any] | None, now: float) -> Manager:
    """The pvha manager as ``manager_status`` describes it (keys read defensively: old
    files lack ``manager_status["pvha"]``)."""
    ms = manager_status or {}
    memory = ms.get(MEMORY_KEY)
    memory = memory if isinstance(memory, Mapping) else {}
    interval = _number(memory.get("round_interval"))
    stale_after = max(float(STALE_AFTER), 3 * interval) if interval and interval > 0 else 30.0
    node = ms.get("master_node")
    node = str(node) if node is not None else None
    timestamp = _number(ms.get("timestamp"))
    stopped_at = _number(memory.get("stopped_at"))
    degraded = memory.get("degraded")
    faults = tuple(str(d) for d in degraded) if isinstance(degraded, list) else ()
    if node is None or timestamp is None:
        state = "none"
    elif stopped_at is not None:
        state = "stopped"
    else:
        state = timestamp_status(now, timestamp, stale_after)
        state = "stale" if state == "old timestamp - dead?" else state
    return Manager(
        node=node,
        timestamp=timestamp,
        running=state in ("active", "detected time drift!"),
        state=state,
        stale_after=stale_after,
        master_since=_number(memory.get("master_since")),
        stopped_at=stopped_at,
        round_interval=interval,
        degraded=faults,
    )


def status_report(
    manager_status: Mapping[str, Any] | None,
    lrm_status: Mapping[str, Mapping[str, Any] | None],
    config: HAConfig,
    *,
    now: float,
    quorum: Quorum | None = None,
    fencing: Fencing | None = None,
    faults: Sequence[ConfigFault] = (),
    crs_mode: str = "basic",
    guest_nodes: Mapping[str, str] | None = None,
    fmt_time: Callable[[float], str] = perl_localtime,
) -> Report:
    """The status entries and exit status (see module contract). ``quorum`` None is
    unknown quorum (not checked); ``fencing`` None is no fence device at all."""
    ms = manager_status or {}
    quorum = quorum or Quorum(None, None, "not checked")
    fencing = fencing or Fencing()
    manager = manager_of(ms, now)
    # PVE's "idle": a quorate cluster with nothing to protect (no master flushes then)
    idle = quorum.quorate is True and manager.state == "stale" and not config.resources
    service_status: Mapping[str, Any] = ms.get("service_status") or {}
    if not isinstance(service_status, Mapping):
        service_status = {}
    node_status = ms.get("node_status")
    nodes = sorted(node_status) if isinstance(node_status, Mapping) else []
    entries: list[Entry] = [_quorum_entry(quorum)]
    entries.append(_master_entry(ms, manager, idle, crs_mode, fmt_time))
    entries.append(_fencing_entry(ms, manager, fencing, nodes))
    entries.extend(_degraded_entries(faults, manager))
    executor = "running" if manager.running else ("idle" if idle else "not running")
    for node in nodes:
        lrm = lrm_status.get(node)
        # the manager runs no executor for a node it does not see online: say so rather
        # than show its last (still fresh-looking) status
        state = node_status.get(node) if isinstance(node_status, Mapping) else None
        here = executor
        if executor == "running" and state in ("unknown", "fence", "gone"):
            here = "not running: node offline" if state != "fence" else \
                "not running: node being fenced"
        entries.append(
            _lrm_entry(node, lrm, service_status, now, manager, here, fencing, fmt_time)
        )
    disarm_ignore = _disarm(ms).get("mode") == "ignore"
    invalid = {f.key: str(f) for f in faults if f.file == RESOURCES_CFG and f.key is not None}
    invalid = {sid: text for sid, text in invalid.items() if sid not in config.resources}
    for sid in sorted(service_status):
        entries.append(_service_entry(sid, service_status[sid], config, guest_nodes,
                                      disarm_ignore, invalid.get(sid)))
    for sid in sorted(config.resources):
        if sid not in service_status:
            entries.append(_service_entry(sid, None, config, guest_nodes, disarm_ignore))
    for sid in sorted(invalid):
        if sid not in service_status:
            entries.append(_service_entry(sid, None, config, guest_nodes, disarm_ignore,
                                          invalid[sid]))
    return Report(entries, _exit_code(quorum, manager, idle, fencing))


def status_entries(
    manager_status: Mapping[str, Any] | None,
    lrm_status: Mapping[str, Mapping[str, Any] | None],
    config: HAConfig,
    **kw: Any,
) -> list[Entry]:
    """The entries of :func:`status_report`."""
    return status_report(manager_status, lrm_status, config, **kw).entries


def _exit_code(quorum: Quorum, manager: Manager, idle: bool, fencing: Fencing) -> int:
    if fencing.invalid:
        return EXIT_UNREADABLE
    if quorum.api_failed:
        return EXIT_API_FAILED
    if quorum.quorate is None:
        return EXIT_QUORUM_UNKNOWN
    if not quorum.quorate:
        return EXIT_NO_QUORUM
    if not manager.running and not idle:
        return EXIT_NO_MANAGER
    return EXIT_OK


_TEXT_TYPE = {"degraded": "HA degraded:"}


def format_status_text(entries: Sequence[Entry]) -> str:
    """``ha-manager status`` text: one ``<type> <status>`` line per entry (``degraded``
    entries read ``HA degraded: <fault>``)."""
    return "".join(f"{_TEXT_TYPE.get(e['type'], e['type'])} {e['status']}\n" for e in entries)


def _disarm(ms: Mapping[str, Any]) -> Mapping[str, Any]:
    disarm = ms.get("disarm")
    return disarm if isinstance(disarm, Mapping) else {}


def _quorum_entry(quorum: Quorum) -> Entry:
    entry: Entry = {"id": "quorum", "type": "quorum", "node": quorum.node}
    if quorum.quorate is None:
        entry.update(status=f"unknown ({quorum.reason or 'not checked'})", quorate=None,
                     reason=quorum.reason)
    elif quorum.quorate:
        entry.update(status="OK", quorate=1)
    else:
        entry.update(status=f"No quorum on node '{quorum.node}'!", quorate=0)
    return entry


def _master_entry(
    ms: Mapping[str, Any],
    manager: Manager,
    idle: bool,
    crs_mode: str,
    fmt_time: Callable[[float], str],
) -> Entry:
    entry: Entry = {
        "id": "master",
        "type": "master",
        "node": manager.node,
        "timestamp": ms.get("timestamp"),
        "running": int(manager.running),
        "manager_state": "idle" if idle else manager.state,
        "master_since": manager.master_since,
        "stopped_at": manager.stopped_at,
        "round_interval": manager.round_interval,
    }
    if manager.state == "none" or manager.timestamp is None:
        entry["status"] = "--- (no pvha manager running, no manager status found)"
        return entry
    if manager.running:
        head = f"{manager.state}, {fmt_time(manager.timestamp)}"
    elif idle:
        head = f"idle, {fmt_time(manager.timestamp)}"
    else:
        head = f"no pvha manager running since {fmt_time(manager.last_seen or manager.timestamp)}"
    extra = ""
    disarm = _disarm(ms)
    if disarm:
        extra += f" - {disarm.get('state')}, resource mode: {disarm.get('mode')}"
    if crs_mode and crs_mode != "basic":
        extra += f" - {crs_mode} load CRS"
    if manager.running and manager.master_since is not None:
        extra += f" - master since {fmt_time(manager.master_since)}"
    entry["status"] = f"{manager.node} ({head}){extra}"
    return entry


def _fencing_entry(
    ms: Mapping[str, Any], manager: Manager, fencing: Fencing, nodes: Sequence[str]
) -> Entry:
    """``armed`` while a manager runs (it fences failed nodes), ``standby`` otherwise;
    PVE's disarm wording while disarmed. The parenthesis names the fencing methods."""
    disarm = _disarm(ms)
    summary = fencing.summary(nodes)
    entry: Entry = {
        "id": "fencing",
        "type": "fencing",
        "node": manager.node,
        "fencing": {n: fencing.method(n) for n in sorted(nodes) or sorted(fencing.devices)},
    }
    if disarm:
        state, mode = disarm.get("state"), disarm.get("mode")
        how = "no fencing while disarmed" if state == "disarmed" else summary
        entry.update(
            status=f"{state}, resource mode: {mode} ({how})",
            **{"armed-state": state, "resource_mode": mode},
        )
    elif manager.running:
        entry.update(status=f"armed ({summary})", **{"armed-state": "armed"})
    else:
        entry.update(status=f"standby ({summary})", **{"armed-state": "standby"})
    return entry


def _degraded_entries(faults: Sequence[ConfigFault], manager: Manager) -> list[Entry]:
    """One entry per fault of the config as read now, then the running manager's own
    faults not already listed (it may run with a config read earlier)."""
    found: list[Entry] = []
    for fault in faults:
        found.append({"status": str(fault), "source": "config", "file": fault.file,
                      "line": fault.line, "key": fault.key, "message": fault.message})
    if manager.running:
        shown = {e["status"] for e in found}
        for text in manager.degraded:
            if text not in shown:
                shown.add(text)
                found.append({"status": text, "source": "manager"})
    return [{"id": f"degraded:{i}", "type": "degraded", **e} for i, e in enumerate(found, 1)]


def _lrm_entry(
    node: str,
    lrm: Mapping[str, Any] | None,
    service_status: Mapping[str, Any],
    now: float,
    manager: Manager,
    executor: str,
    fencing: Fencing,
    fmt_time: Callable[[float], str],
) -> Entry:
    method = fencing.method(node)
    entry: Entry = {"id": f"lrm:{node}", "type": "lrm", "node": node, "fencing": method,
                    "executor": executor}
    timestamp = _number(lrm.get("timestamp")) if isinstance(lrm, Mapping) else None
    if not isinstance(lrm, Mapping) or not timestamp:
        entry["status"] = (
            f"{node} (unable to read lrm status)"
            if executor == "running"
            else f"{node} (executor {executor})"
        )
        return entry
    mode = lrm.get("mode")
    if mode == "disarm":
        method = "fencing disarmed"
    if executor != "running":
        state_text = f"executor {executor}"
    else:
        state_text = _lrm_state_text(node, lrm, service_status, now, manager.stale_after)
    entry.update(
        status=f"{node} ({state_text}, {method}, {fmt_time(timestamp)})",
        timestamp=lrm["timestamp"],
    )
    return entry


def _lrm_state_text(
    node: str,
    lrm: Mapping[str, Any],
    service_status: Mapping[str, Any],
    now: float,
    stale_after: float,
) -> str:
    """PVE's lrm status word, with the manager's staleness limit (its executors write
    once per round)."""
    state_text = timestamp_status(now, float(lrm["timestamp"]), stale_after)
    fresh = state_text == "active"
    mode = lrm.get("mode") or ("active" if fresh else None)
    lrm_state = lrm.get("state") or "unknown"
    if fresh:
        if mode != "active":
            return f"{mode} mode"
        if lrm_state == "wait_for_agent_lock" and not _active_count(service_status, node):
            return "idle"
        return str(lrm_state)
    if mode in ("maintenance", "disarm"):
        return f"{mode} mode"
    return state_text


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
    config_fault: str | None = None,
) -> Entry:
    """``config_fault``: the resource's section was skipped as invalid; it shows as
    ``config invalid`` (not ``deleting``: the administrator did not remove it)."""
    sd = sd if isinstance(sd, Mapping) else None
    res = config.resources.get(sid)
    config_node = guest_nodes.get(sid) if guest_nodes is not None else (res.node if res else None)
    node = sd.get("node") if sd else config_node
    if config_fault is not None:
        state = CONFIG_INVALID
    elif disarm_ignore:
        state = "ignore"
    else:
        state = verbose_state(sd, res, config_node, guest_nodes is not None)
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
    if config_fault is not None:
        entry["config_fault"] = config_fault
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
