"""Incidents: the history of ``pvha watch`` grouped into one timeline per node failure.

Theory of operation. :func:`group` reads the flat journal (:mod:`pvha.shell.history`,
oldest first) once and keeps one open incident per node:

* an incident opens with the first event of a failure of its node: the manager's
  detection (``node`` ``offline``), its entering ``fence`` (``node`` ``fence``), or a
  fence device's attempt (``fence`` ``started``/``failed``, for a journal written
  before detection events were recorded); the same events on a node whose incident
  already has its proof open the next incident;
* the first proof (``verified off``, ``lease expired``, ``acknowledged, not
  verified``) ends its fencing; failed attempts and retries stay steps of it;
* each guest's recovery (``placed``, ``running``, ``no recovery node``, repeated every
  round while it finds none) joins the incident of the fenced node;
* ``node`` ``online`` is a step of an open incident (without a proof: the node came
  back before it was fenced, and the incident ends there); without one (a manager's
  first round seeing its nodes) it is ignored.

An incident is *open* while it waits for something: a proof, a placed guest to run, a
guest with no recovery node. Durations are measured between the events' own times:
detection to fencing, detection to proof, proof to each guest running, detection to the
last guest running (the total). Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROOFS = {"verified off": "verified off", "lease expired": "lease expired",
          "acknowledged, not verified": "acknowledged (fence-ack, not verified)"}
_OPENING = {("node", "offline"), ("node", "fence"), ("fence", "started"),
            ("fence", "failed")}


@dataclass(slots=True)
class Guest:
    """One guest of the fenced node: where it went and when."""

    sid: str
    target: str | None = None
    placed: float | None = None
    running: float | None = None
    no_node: float | None = None  # first "no recovery node" since the last placement
    no_node_rounds: int = 0


@dataclass(slots=True)
class Incident:
    """One failure of ``node`` (see the module docstring); ``steps`` are (time, text)."""

    node: str
    detected: float
    detected_by: str  # "offline", "fence", "fence started", ...
    steps: list[tuple[float, str]] = field(default_factory=list)
    fence_started: float | None = None
    proof: str | None = None
    proven: float | None = None
    attempts: int = 0
    back_online: float | None = None
    guests: dict[str, Guest] = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        """The node came back before it was fenced: nothing was recovered."""
        return self.proof is None and self.back_online is not None

    def waiting(self) -> list[str]:
        """What the incident still waits for (empty: it is over)."""
        if self.cancelled:
            return []
        out = [] if self.proof is not None else ["a fence proof"]
        for g in sorted(self.guests.values(), key=lambda g: g.sid):
            if g.no_node is not None:
                out.append(f"a recovery node for {g.sid}")
            elif g.placed is not None and g.running is None:
                out.append(f"{g.sid} to run on {g.target}")
        return out

    def state(self) -> str:
        if self.cancelled:
            return "cancelled"
        return "open" if self.waiting() else "closed"

    def durations(self) -> dict[str, float | None]:
        """Seconds: ``detection_to_fence``, ``detection_to_proof``, ``total`` (detection
        to the last guest running; None while one is not running)."""
        runs = [g.running for g in self.guests.values()]
        total = None
        if self.proven is not None and not self.waiting():
            total = max([self.proven, *(r for r in runs if r is not None)]) - self.detected
        return {"detection_to_fence": _since(self.detected, self.fence_started),
                "detection_to_proof": _since(self.detected, self.proven),
                "total": _round(total)}

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node, "state": self.state(), "waiting": self.waiting(),
            "detected": self.detected, "detected_by": self.detected_by,
            "fence_started": self.fence_started, "attempts": self.attempts,
            "proof": self.proof, "proven": self.proven, "back_online": self.back_online,
            "durations": self.durations(),
            "guests": [{"sid": g.sid, "target": g.target, "placed": g.placed,
                        "running": g.running, "no_recovery_node": g.no_node,
                        "proof_to_running": _since(self.proven, g.running)}
                       for g in sorted(self.guests.values(), key=lambda g: g.sid)],
            "steps": [{"time": t, "step": text} for t, text in self.steps],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _since(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 3)


def group(events: Iterable[Mapping[str, Any]]) -> list[Incident]:
    """The incidents of a journal (any order; sorted by time, stable), oldest first."""
    current: dict[str, Incident] = {}
    out: list[Incident] = []
    for ev in sorted(events, key=lambda e: float(e.get("time") or 0.0)):
        node, kind, outcome = ev.get("node"), ev.get("event"), str(ev.get("outcome") or "")
        if not isinstance(node, str) or kind not in ("node", "fence", "recovery"):
            continue
        when = float(ev["time"])
        inc = current.get(node)
        if kind == "node" and outcome == "online":
            if inc is not None and inc.back_online is None:
                inc.back_online = when
                inc.steps.append((when, "back online"))
            continue
        ended = inc is None or inc.proof is not None or inc.back_online is not None
        if ended and ((kind, outcome) in _OPENING or inc is None):
            inc = current[node] = Incident(node, when, _opener(kind, outcome))
            out.append(inc)
        assert inc is not None
        _apply(inc, ev, kind, outcome, when)
    return out


def _opener(kind: str, outcome: str) -> str:
    return outcome if kind == "node" else f"{kind} {outcome}"


def _apply(inc: Incident, ev: Mapping[str, Any], kind: str, outcome: str,
           when: float) -> None:
    step = inc.steps.append
    if kind == "node":
        if outcome == "offline":
            step((when, "detected offline"))
        elif outcome == "fence":
            if inc.fence_started is None:
                inc.fence_started = when
            step((when, "fencing began"))
        return
    if kind == "fence":
        device = f" via {ev['device']}" if ev.get("device") else ""
        attempt = f" (attempt {ev['attempt']})" if ev.get("attempt") else ""
        if outcome == "started":
            inc.attempts += 1
            if inc.fence_started is None:
                inc.fence_started = when
            step((when, f"power-off{device} started{attempt}"))
        elif outcome == "failed":
            why = f": {ev['detail']}" if ev.get("detail") else ""
            step((when, f"power-off{device} failed{attempt}{why}"))
        elif outcome in PROOFS:
            if inc.proof is None:
                inc.proof, inc.proven = outcome, when
            by = f" by {ev['device']}" if ev.get("device") else (
                f" by {ev['by']}" if ev.get("by") else "")
            step((when, f"proof: {PROOFS[outcome]}{by}"))
        return
    sid = ev.get("sid")
    if not isinstance(sid, str):
        return
    g = inc.guests.setdefault(sid, Guest(sid))
    target = ev.get("target")
    if outcome == "placed":
        g.target, g.placed, g.running, g.no_node = target, when, None, None
        step((when, f"{sid} placed on {target}"))
    elif outcome == "running":
        g.target, g.running = target or g.target, when
        step((when, f"{sid} running on {g.target}"))
    elif outcome == "no recovery node":
        g.no_node_rounds += 1
        if g.no_node is None:
            g.no_node = when
            step((when, f"{sid}: no recovery node"))


def text(incidents: Iterable[Incident], fmt_time: Callable[[float], str],
         fmt_clock: Callable[[float], str]) -> str:
    """One block per incident: a header (``fmt_time`` of the detection), its timeline
    (``fmt_clock`` of each step, offset from detection, step), then its durations; blocks
    separated by a blank line."""
    blocks = []
    for inc in incidents:
        waiting = inc.waiting()
        state = {"open": f"open, waiting for {', '.join(waiting)}",
                 "closed": "closed", "cancelled": "cancelled: back online before it was "
                 "fenced"}[inc.state()]
        lines = [f"incident {inc.node}, detected {fmt_time(inc.detected)}: {state}"]
        lines += [f"  {fmt_clock(t)}  +{t - inc.detected:.1f} s  {what}"
                  for t, what in inc.steps]
        d = inc.durations()
        parts = [f"detection to {label} {d[key]:.1f} s"
                 for key, label in (("detection_to_fence", "fencing"),
                                    ("detection_to_proof", "proof")) if d[key] is not None]
        parts += [f"proof to {g.sid} running {g.running - inc.proven:.1f} s"
                  for g in sorted(inc.guests.values(), key=lambda g: g.sid)
                  if g.running is not None and inc.proven is not None]
        if d["total"] is not None:
            parts.append(f"total {d['total']:.1f} s")
        if parts:
            lines.append("  " + "; ".join(parts))
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
