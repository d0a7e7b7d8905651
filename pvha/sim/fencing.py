"""pvha's simulator extension: power fencing through simulated BMCs (design §3, §4.1).

Theory of operation. PVE's simulator fences a node only by its agent lock: the master
gets ``ha_agent_<node>_lock`` once the dead node's LRM stopped renewing it for 120 s
(semantics §5.3), which takes about two minutes. pvha adds a second proof, a fence
device that powers the node off and reads the power state back. A scenario turns it on
with two inputs, both required:

* a ``fence.cfg`` in the scenario directory (PVE's format): which device fences which
  node (``device ipmi fence_ipmilan ...`` / ``connect ipmi node=node2 ...``);
* a ``pvha`` key in ``datacenter.cfg`` (JSON; PVE ignores unknown keys)::

      {"pvha": {"fencing": "power", "fence_delay": 10, "device_latency": 2,
                "round_interval": 20, "detection_delay": 0}}

  ``fencing``: ``"power"`` enables it (``"lock"``, the default, is PVE's behaviour;
  ``"lease"`` models ``pvha agent``: see below);
  ``fence_delay``: seconds a node must be offline before its services are fenced
  (default 60 without power fencing, :data:`DEVICE_FENCE_DELAY` with it);
  ``device_latency``: seconds between a BMC's off command and the node losing power
  (0: at once, and the read-back happens in the same fencing call);
  ``round_interval``: length of a simulator round (PVE: 20; at least 2 s per node);
  ``detection_delay``: seconds a node that lost power or network still counts as a
  cluster member (a model of corosync's token timeout; PVE's simulator: 0).

Without the ``pvha`` key (every PVE scenario) nothing here is active and runs are
PVE's byte for byte.

``"fencing": "lease"`` models ``pvha agent`` and ``pvha watch``'s fencing by lease expiry
(pvha.shell.lease): each LRM's agent lock stands for the node's lease, renewed and
followed by a watchdog feed in every LRM round as in PVE, and the master counts a dead
node fenced once the lock has not been renewed for :data:`LEASE_FENCE_AFTER` seconds
(the watchdog's 60 s + the hardware watchdog's 10 s + pvha's 5 s margin) instead of
pmxcfs's 120 s lock expiry. It then takes the lock and logs ``fencing: node '<node>'
fenced by lease expiry (lock not renewed for N s)``. A lock released by a clean LRM stop
(a node shutdown under the conditional or failover policy, an idle LRM) or never taken
proves nothing, as for ``pvha watch`` (PVE takes it at once): the node waits for the
cmdlist command ``fence-ack <node>`` (pvha extension, an administrator's ``pvha
fence-ack``), logged ``fencing: node '<node>' acknowledged by fence-ack (not verified)``.
No fence.cfg is needed.

With power fencing, the master's "get the agent lock of the dead node" step (the port
call ``get_ha_agent_lock(node)`` in :mod:`pvha.core.node_status`) is answered by
:class:`SimFencing` for every node that ``fence.cfg`` connects to a device; the
pure core is unchanged. One call per manager round:

1. no fence job yet (or the last one failed): send the off command to the node's BMC
   (attempt N). The BMC switches the node off ``device_latency`` seconds later
   (logged as ``bmc: execute power <node> off``). A failed BMC (``bmc <node> fail`` in
   the cmdlist) does not answer: the attempt fails, and the next round tries again.
2. an off command is pending: read the power state back. Only a read-back of "off"
   counts: the master takes the node's agent lock (so the node cannot take it back
   when it boots) and the call succeeds; the core then logs its usual
   ``fencing: acknowledged`` line and recovers the services in the same round. A
   read-back of "on" (the BMC lost the command, or someone powered the node back on)
   or no answer starts a new attempt next round.

The agent lock itself is *not* a proof for such a node: this models ``pvha watch``,
which has no agent on the nodes, so a failed BMC means no recovery until it answers
again (or an administrator runs ``pvha fence-ack``). Nodes without a device keep PVE's
agent-lock proof. Log lines (origin ``<master>/crm``)::

    fencing: powering off node 'node2' via device 'ipmi' (attempt 1)
    fencing: device 'ipmi' does not answer for node 'node2' (attempt 1), retrying
    fencing: node 'node2' still on after off command via device 'ipmi' (attempt 1), retrying
    fencing: node 'node2' powered off by device 'ipmi' (verified)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pvha.core.node_status import FENCE_DELAY
from pvha.errors import ConfigError
from pvha.fence.config import FenceConfig, parse_fence_config

DEVICE_FENCE_DELAY = 5
"""Default fence delay (s) when a fence device proves power-off (PVE: 60 s, kept without
a device). Corosync has already waited out its token timeout before a node counts as
offline (Pacemaker fences at that point); the 5 s only ride out a membership flap. The
60 s exist in PVE for the watchdog self-fence, which a verified power-off replaces."""

PVE_ROUND = 20
LEASE_FENCE_AFTER = 60 + 10 + 5
"""Seconds without a renewal after which a lease proves its node reset (pvha.shell.lease:
watchdog-mux's 60 s, the hardware watchdog's 10 s, pvha's 5 s margin)."""
_KEYS = {"fencing", "fence_delay", "device_latency", "round_interval", "detection_delay"}

LogFn = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class PvhaSimOptions:
    """The ``pvha`` key of a scenario's ``datacenter.cfg`` (see the module docstring)."""

    fencing: str = "lock"
    fence_delay: int = FENCE_DELAY
    device_latency: int = 2
    round_interval: int = PVE_ROUND
    detection_delay: int = 0

    @property
    def power(self) -> bool:
        return self.fencing == "power"

    @property
    def lease(self) -> bool:
        return self.fencing == "lease"


def _int_option(raw: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"pvha.{key} must be an integer", where)
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"pvha.{key} must be an integer", where) from None
    if number < 0:
        raise ConfigError(f"pvha.{key} cannot be negative", where)
    return number


def parse_options(datacenter: Mapping[str, Any], fence_cfg: str | None,
                  where: str = "datacenter.cfg") -> PvhaSimOptions:
    """Options from ``datacenter["pvha"]``; PVE's defaults when the key is absent.

    Raises ConfigError for unknown keys, bad values, and ``fencing: power`` without a
    ``fence.cfg``."""
    raw = datacenter.get("pvha")
    if raw is None:
        return PvhaSimOptions()
    if not isinstance(raw, Mapping):
        raise ConfigError("pvha must be an object", where)
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown pvha option(s): {', '.join(unknown)}", where)
    fencing = raw.get("fencing", "lock")
    if fencing not in ("lock", "power", "lease"):
        raise ConfigError("pvha.fencing must be 'lock', 'power' or 'lease'", where)
    if fencing == "power" and not (fence_cfg or "").strip():
        raise ConfigError("pvha.fencing 'power' needs a fence.cfg in the scenario", where)
    delay = DEVICE_FENCE_DELAY if fencing == "power" else FENCE_DELAY
    return PvhaSimOptions(
        fencing=str(fencing),
        fence_delay=_int_option(raw, "fence_delay", delay, where),
        device_latency=_int_option(raw, "device_latency", 2, where),
        round_interval=_int_option(raw, "round_interval", PVE_ROUND, where),
        detection_delay=_int_option(raw, "detection_delay", 0, where),
    )


@dataclass(slots=True)
class FenceJob:
    """The fencing of one node in progress: ``attempt`` counts off commands tried;
    ``off_sent`` is True while an off command waits for its read-back."""

    device: str
    attempt: int = 0
    off_sent: bool = False
    last_step: int | None = None


@dataclass(slots=True)
class SimFencing:
    """Simulated BMCs (one per node with a device) and the fence jobs of the master.

    ``power_of(node)`` reads the hardware; ``pending_off`` (node -> time) is what the
    runner executes as ``power <node> off`` (origin ``bmc``) when the time comes."""

    config: FenceConfig
    latency: int
    power_of: Callable[[str], str]
    failed: set[str] = field(default_factory=set)
    jobs: dict[str, FenceJob] = field(default_factory=dict)
    pending_off: dict[str, int] = field(default_factory=dict)
    power_off_now: Callable[[str], None] | None = None

    @classmethod
    def from_text(cls, text: str, latency: int, power_of: Callable[[str], str],
                  where: str = "fence.cfg") -> SimFencing:
        return cls(parse_fence_config(text, where), latency, power_of)

    def has_device(self, node: str) -> bool:
        return bool(self.config.levels(node))

    def device_of(self, node: str, attempt: int) -> str:
        """The device tried at ``attempt`` (1-based): the levels in turn, round robin."""
        levels = self.config.levels(node)
        return levels[(attempt - 1) % len(levels)].device

    def set_bmc(self, node: str, working: bool) -> None:
        """``bmc <node> work|fail``: a failed BMC drops commands and reads."""
        if working:
            self.failed.discard(node)
        else:
            self.failed.add(node)
            self.pending_off.pop(node, None)

    def due(self, now: int) -> list[str]:
        """Nodes whose pending off command takes effect at ``now`` (removed from the list)."""
        nodes = sorted(n for n, at in self.pending_off.items() if at <= now)
        for node in nodes:
            del self.pending_off[node]
        return nodes

    def forget(self, node: str) -> None:
        self.jobs.pop(node, None)
        self.pending_off.pop(node, None)

    def attempt(self, node: str, now: int, log: LogFn) -> bool:
        """One fencing step for ``node`` (see the module docstring); True once its BMC
        read back "off" after an off command of this job. At most one step per ``now``."""
        job = self.jobs.get(node)
        if job is None:
            job = self.jobs[node] = FenceJob(self.device_of(node, 1))
        if job.last_step == now:
            # the manager's fixed point may ask twice in one round: one step per round
            return False
        job.last_step = now
        if job.off_sent:
            return self._read_back(node, job, log)
        return self._send_off(node, job, now, log)

    def _read_back(self, node: str, job: FenceJob, log: LogFn) -> bool:
        job.off_sent = False
        if node in self.failed:
            log("warning", f"fencing: device '{job.device}' does not answer for node "
                           f"'{node}' (attempt {job.attempt}), retrying")
        elif self.power_of(node) == "off":
            log("info", f"fencing: node '{node}' powered off by device '{job.device}' "
                        "(verified)")
            self.forget(node)
            return True
        else:
            log("warning", f"fencing: node '{node}' still on after off command via device "
                           f"'{job.device}' (attempt {job.attempt}), retrying")
            self.pending_off.pop(node, None)
        return False

    def _send_off(self, node: str, job: FenceJob, now: int, log: LogFn) -> bool:
        job.attempt += 1
        job.device = self.device_of(node, job.attempt)
        if node in self.failed:
            log("warning", f"fencing: device '{job.device}' does not answer for node "
                           f"'{node}' (attempt {job.attempt}), retrying")
            return False
        log("info", f"fencing: powering off node '{node}' via device '{job.device}' "
                    f"(attempt {job.attempt})")
        job.off_sent = True
        if self.latency == 0 and self.power_off_now is not None:
            # A BMC that switches at once is read back within the same fencing call, as
            # the real fencer's off-then-status does (a daemon step costs no virtual time).
            self.power_off_now(node)
            return self._read_back(node, job, log)
        self.pending_off[node] = now + self.latency
        return False
