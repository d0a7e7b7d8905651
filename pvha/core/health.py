"""Guest health through the QEMU guest agent: the pure decision (a pvha extension).

Theory of operation. A ``vm:`` resource with ``health agent`` in resources.cfg has its
guest agent pinged (by the shell, in the background, every ``health_interval`` s) while
its service is ``started`` and the guest runs. This module turns what the shell saw into
a verdict, from the guest's :class:`HealthRecord` (kept by the shell between rounds),
the ping answers that arrived since the last decision, whether the guest is paused, and
``now``; it never does IO and never reads the clock.

* ``waiting``: nothing is counted. The guest is paused (it holds a config lock such as
  ``backup``, ``migrate``, ``snapshot``; QEMU is paused or suspended; nobody can tell
  its state), or it is within its grace since its last (re)start. Being paused *resets*
  the failures in a row: a backup's fsfreeze or a snapshot may stall the agent, so the
  count starts afresh once the guest is back.
  Once the grace is over the agent is pinged; until its first answer the verdict stays
  ``waiting`` (failures are counted meanwhile).
* ``ok``: the last answer came back.
* ``unhealthy``: ``health_failures`` pings in a row failed after the grace. The record
  then counts one more restart by health and starts a new grace at ``now``, so the
  verdict is given once per restart; the LRM restarts the guest under the restart policy.

Backoff: the grace after a restart by health doubles with each such restart
(``health_grace * 2**restarts``, capped at :data:`GRACE_CAP`, never below
``health_grace``), so a guest that boots slowly is given longer each time instead of
being restart-looped; the count goes back to 0 once the guest has answered for
:data:`STABLE_SECONDS` without a failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_GRACE = 300
DEFAULT_FAILURES = 3
DEFAULT_INTERVAL = 30
GRACE_CAP = 3600
"""Seconds: the longest grace backoff gives."""
STABLE_SECONDS = 3600
"""Seconds of answers without a failure after which restarts by health are forgotten."""

OFF = "off"  # the guest's health is not checked
OK = "ok"
WAITING = "waiting"
UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class HealthSpec:
    """The ``health*`` keys of one resource."""

    grace: int = DEFAULT_GRACE
    failures: int = DEFAULT_FAILURES
    interval: int = DEFAULT_INTERVAL

    @classmethod
    def of(cls, cd: Mapping[str, Any] | None) -> HealthSpec | None:
        """The spec of a service config ``cd``; None when health checks are off."""
        if not cd or cd.get("health") != "agent":
            return None
        return cls(int(cd.get("health_grace", DEFAULT_GRACE)),
                   int(cd.get("health_failures", DEFAULT_FAILURES)),
                   int(cd.get("health_interval", DEFAULT_INTERVAL)))


@dataclass(frozen=True, slots=True)
class HealthRecord:
    """What is known of one guest's health between decisions. ``started_at``: its last
    (re)start as far as anyone knows (None: not known); ``failures``: failed pings in a
    row; ``restarts``: restarts by health not yet forgotten; ``last_restart``: when the
    last one was decided; ``healthy_since``: since when every answer came back."""

    started_at: int | None = None
    failures: int = 0
    restarts: int = 0
    last_restart: int | None = None
    healthy_since: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict, the record to keep, why (a log-ready phrase), and whether the guest's
    agent is to be pinged now (not while paused or in its grace)."""

    verdict: str
    record: HealthRecord
    reason: str
    ping: bool = False


def grace_of(spec: HealthSpec, record: HealthRecord) -> int:
    """The grace now in force: doubled per restart by health, capped."""
    backed_off: int = spec.grace * 2 ** min(record.restarts, 32)
    return max(spec.grace, min(backed_off, GRACE_CAP))


def decide(spec: HealthSpec, record: HealthRecord, answers: Sequence[bool],
           paused: str | None, now: int) -> Decision:
    """Fold the ping ``answers`` (True = the agent answered, in arrival order) into
    ``record`` and give the verdict (see the module docstring). ``paused`` names why
    the guest must not be judged now, or is None."""
    if paused is not None:
        return Decision(WAITING, replace(record, failures=0, healthy_since=None),
                        f"paused: {paused}")
    since = max((t for t in (record.started_at, record.last_restart) if t is not None),
                default=None)
    if since is None:
        return Decision(WAITING, replace(record, failures=0, healthy_since=None),
                        "start time not known")
    grace = grace_of(spec, record)
    if now - since < grace:
        return Decision(WAITING, replace(record, failures=0, healthy_since=None),
                        f"in its grace of {grace} s since its start")
    failures, healthy = record.failures, record.healthy_since
    for answered in answers:
        failures, healthy = (0, healthy if healthy is not None else now) if answered \
            else (failures + 1, None)
    if failures >= spec.failures:
        restarted = HealthRecord(record.started_at, 0, record.restarts + 1, now, None)
        return Decision(UNHEALTHY, restarted,
                        f"guest agent did not answer {failures} pings in a row")
    restarts = record.restarts
    if healthy is not None and now - healthy >= STABLE_SECONDS:
        restarts = 0
    kept = replace(record, failures=failures, healthy_since=healthy, restarts=restarts)
    if healthy is None:
        return Decision(WAITING, kept, f"no answer yet ({failures} of {spec.failures} pings "
                                       "in a row failed)", ping=True)
    return Decision(OK, kept, "guest agent answers", ping=True)
