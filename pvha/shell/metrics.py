"""Prometheus metrics of ``pvha watch`` (prometheus-client), served when a listen address
is set (``--metrics-listen``, ``[watch] metrics_listen``, ``PVHA_METRICS_LISTEN``).

Theory of operation. The watcher updates one :class:`Metrics` after every round (what the
round saw: quorum, the manager, nodes and services by state, the round's duration and its
API read) and on every history event (fence attempts and outcomes by proof, recoveries
and their durations), through the same hook as notifications. Scrapes are answered by
prometheus-client's own HTTP server thread from a private registry, so a scrape never
waits on a round and a round never waits on a scrape.

Metrics (all prefixed ``pvha_``):

* ``quorate`` 1/0: the watcher's API node sees a quorate cluster;
* ``manager{node}`` 1 for the node whose watcher holds the manager lock (manager_status);
  ``master`` 1 when this watcher is the active manager;
* ``nodes{state}``, ``services{state}``: counts by PVE's node and service states
  (every known state is always exported, 0 included);
* ``fence_events_total{outcome,proof}``: started, verified, failed, acknowledged, by
  device name, ``lease`` or ``fence-ack``;
* ``recoveries_total{outcome}`` (placed, running, failed) and
  ``recovery_seconds`` (placed to running, a histogram);
* ``round_seconds`` (a histogram), ``rounds_total``;
* ``api_view_seconds`` (reading the cluster through the API, a histogram) and
  ``api_errors_total`` (rounds whose API read failed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pvha.errors import ConfigError

NODE_STATES = ("online", "maintenance", "unknown", "fence", "gone")
SERVICE_STATES = ("started", "stopped", "request_start", "request_stop", "migrate",
                  "relocate", "fence", "recovery", "freeze", "error", "disabled")
_FENCE = {"started": "started", "verified off": "verified", "lease expired": "verified",
          "failed": "failed", "acknowledged, not verified": "acknowledged"}
_RECOVERY = {"placed": "placed", "running": "running", "no recovery node": "failed"}
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The watcher's metrics (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.quorate = Gauge("pvha_quorate", "1 when the API node sees a quorate cluster",
                             registry=r)
        self.master = Gauge("pvha_master", "1 when this watcher is the active manager",
                            registry=r)
        self.manager = Gauge("pvha_manager", "1 for the node holding the manager lock",
                             ["node"], registry=r)
        self.nodes = Gauge("pvha_nodes", "Nodes by HA state", ["state"], registry=r)
        self.services = Gauge("pvha_services", "HA services by state", ["state"], registry=r)
        self.fence = Counter("pvha_fence_events", "Fence events by outcome and proof",
                             ["outcome", "proof"], registry=r)
        self.recoveries = Counter("pvha_recoveries", "Recoveries by outcome", ["outcome"],
                                  registry=r)
        self.recovery_seconds = Histogram("pvha_recovery_seconds", "Recovery placed to "
                                          "running", buckets=SECONDS, registry=r)
        self.round_seconds = Histogram("pvha_round_seconds", "Duration of a manager round",
                                       buckets=SECONDS, registry=r)
        self.rounds = Counter("pvha_rounds", "Manager rounds", registry=r)
        self.api_seconds = Histogram("pvha_api_view_seconds", "Reading the cluster through "
                                     "the API", buckets=SECONDS, registry=r)
        self.api_errors = Counter("pvha_api_errors", "Rounds whose API read failed",
                                  registry=r)
        self._placed: dict[str, float] = {}
        self._managers: set[str] = set()

    def history(self, record: Mapping[str, Any]) -> None:
        """A history event (pvha.shell.history)."""
        event, outcome = record.get("event"), str(record.get("outcome"))
        if event == "fence" and outcome in _FENCE:
            proof = ("lease" if outcome == "lease expired" else "fence-ack"
                     if outcome.startswith("acknowledged") else str(record.get("device") or ""))
            self.fence.labels(_FENCE[outcome], proof).inc()
        elif event == "recovery" and outcome in _RECOVERY:
            self.recoveries.labels(_RECOVERY[outcome]).inc()
            sid, when = str(record.get("sid")), float(record.get("time") or 0.0)
            if outcome == "placed":
                self._placed[sid] = when
            elif outcome == "running" and sid in self._placed:
                self.recovery_seconds.observe(max(0.0, when - self._placed.pop(sid)))

    def api_read(self, seconds: float, ok: bool) -> None:
        self.api_seconds.observe(seconds)
        if not ok:
            self.api_errors.inc()

    def round_done(self, seconds: float, quorate: bool | None, master: bool,
                   manager_status: Mapping[str, Any] | None) -> None:
        """After a round: what it saw (``quorate`` None: the API could not be read)."""
        self.rounds.inc()
        self.round_seconds.observe(seconds)
        if quorate is not None:
            self.quorate.set(1 if quorate else 0)
        self.master.set(1 if master else 0)
        if manager_status is None:
            return
        holder = manager_status.get("master_node")
        for node in self._managers | ({holder} if isinstance(holder, str) else set()):
            self.manager.labels(node).set(1 if node == holder else 0)
            self._managers.add(node)
        counts = dict.fromkeys(NODE_STATES, 0)
        for state in (manager_status.get("node_status") or {}).values():
            counts[str(state)] = counts.get(str(state), 0) + 1
        for state, n in counts.items():
            self.nodes.labels(state).set(n)
        counts = dict.fromkeys(SERVICE_STATES, 0)
        for sd in (manager_status.get("service_status") or {}).values():
            if isinstance(sd, dict):
                state = str(sd.get("state"))
                counts[state] = counts.get(state, 0) + 1
        for state, n in counts.items():
            self.services.labels(state).set(n)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` or ``PORT`` (loopback) -> (host, port). ConfigError."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"metrics_listen {text!r}: expected HOST:PORT (e.g. 127.0.0.1:9750)")
    return host, int(port)


def serve(metrics: Metrics, listen: str) -> Any:
    """Start answering scrapes at ``listen``; returns the server (``shutdown()`` stops it).
    ConfigError, in one line, when the address cannot be bound."""
    from prometheus_client import start_http_server

    host, port = parse_listen(listen)
    try:
        server, _thread = start_http_server(port, host, registry=metrics.registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: "
                          f"{exc.strerror or exc}") from None
    return server

