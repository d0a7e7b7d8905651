"""Node usage models of the cluster resource scheduler (CRS), pve-ha-semantics §4.6.

Theory of operation: once per manage round the engine builds a usage model over the
*online* nodes (:func:`make_usage`), feeds every service status entry into it
(:func:`recompute_usage`), and then keeps it current incrementally: before a service
changes state it calls ``usage.remove_service_usage(sid)`` and afterwards
``usage.add_service_usage(sid, state, node, target)`` (both O(1)), so several
placements within one round spread out. Placement asks
``usage.score_nodes_to_start_service(sid)`` — lower is better, ties by node name.

Which service states occupy which node (§4.5 step 2) is :func:`used_service_nodes`.

Models:

* ``basic`` — score = number of services (HA and running non-HA guests) on the node.
* ``static`` — TOPSIS over the cluster load *as if* the service were added to each
  node, using configured maxcpu/maxmem (§4.6). Falls back to basic for the round when
  a node lacks static stats, and to counts for one service whose stats are missing.
* ``dynamic`` — like static but over measured node usage; starting (not yet running)
  services are added with their max values.

Pure: no IO; floats are computed in a fixed (sorted node) order.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import accumulate
from typing import Any

from pvha.core.states import MOVING_STATES, OCCUPYING_STATES

__all__ = [
    "BasicUsage",
    "DynamicUsage",
    "LogLine",
    "NodeStats",
    "ServiceStats",
    "StaticUsage",
    "Usage",
    "make_usage",
    "recompute_usage",
    "topsis_scores",
    "used_service_nodes",
]

LogLine = tuple[str, str]
"""(level, message) — level is PVE's: ``info``, ``notice``, ``warning``, ``err``."""


def used_service_nodes(
    state: str, node: str | None, target: str | None
) -> tuple[str | None, str | None]:
    """(current node, target node) a service in ``state`` occupies; None = not occupied.

    ``stopped`` and ``request_start`` occupy nothing; a moving service occupies both
    its source and its target (PVE ``get_used_service_nodes``).
    """
    current = node if state in OCCUPYING_STATES else None
    tgt = target if state in MOVING_STATES else None
    return current, tgt


@dataclass(frozen=True, slots=True)
class NodeStats:
    """Capacity (``maxcpu`` cores, ``maxmem`` bytes) and, for dynamic mode, current use."""

    maxcpu: float
    maxmem: float
    cpu: float = 0.0
    mem: float = 0.0


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """Configured (``maxcpu``, ``maxmem``; 0 cpu = all node cores) and measured use.

    ``running``: whether the guest actually runs (dynamic mode: its use is then part of
    its node's measured figures). None = unknown, use the ``running`` flag the caller
    passes to :meth:`Usage.add_service_usage` (the sd ``running`` key).
    """

    maxcpu: float = 0.0
    maxmem: float = 0.0
    cpu: float = 0.0
    mem: float = 0.0
    running: bool | None = None


class Usage:
    """Abstract usage model; see module docstring for the calling protocol."""

    mode = "basic"
    __slots__ = ("_counts", "_nodes", "_placed", "messages", "node_set")

    def __init__(self, nodes: Iterable[str]) -> None:
        self._nodes: tuple[str, ...] = tuple(sorted(set(nodes)))
        self.node_set: frozenset[str] = frozenset(self._nodes)
        self._counts: dict[str, int] = {n: 0 for n in self._nodes}
        # sid -> the distinct nodes it was added to (so removal is O(1))
        self._placed: dict[str, tuple[str, ...]] = {}
        # per-service scoring problems, drained by the engine into its log
        self.messages: list[LogLine] = []

    @property
    def nodes(self) -> tuple[str, ...]:
        """The online nodes of this model, sorted."""
        return self._nodes

    def count(self, node: str) -> int:
        """Services (HA + non-HA) occupying ``node``."""
        return self._counts.get(node, 0)

    def add_service_usage(
        self,
        sid: str,
        state: str,
        node: str | None,
        target: str | None = None,
        *,
        running: bool = False,
    ) -> None:
        """Account ``sid`` on the nodes its ``state`` occupies (offline nodes ignored).

        ``running`` (the sd ``running`` flag) matters for the dynamic model only.
        Calling it twice for one sid without :meth:`remove_service_usage` in between
        is a caller bug; the second call replaces the first.
        """
        if sid in self._placed:
            self.remove_service_usage(sid)
        counts = self._counts
        current = node if state in OCCUPYING_STATES and node in counts else None
        tgt = target if state in MOVING_STATES and target in counts else None
        if current is not None:
            placed: tuple[str, ...] = (
                (current,) if tgt is None or tgt == current else (current, tgt)
            )
        elif tgt is not None:
            placed = (tgt,)
        else:
            return
        self._placed[sid] = placed
        for n in placed:
            self._counts[n] += 1
            self._add(sid, n, current=(n == current), running=running)

    def add_guest_usage(self, guest: str, node: str) -> None:
        """A running non-HA guest on ``node`` (counts like a started service)."""
        self.add_service_usage(guest, "started", node, None, running=True)

    def remove_service_usage(self, sid: str) -> None:
        """Forget ``sid`` everywhere (no-op if unknown)."""
        placed = self._placed.pop(sid, None)
        if placed is None:
            return
        for n in placed:
            self._counts[n] -= 1
            self._remove(sid, n)

    def score_nodes_to_start_service(self, sid: str) -> dict[str, float]:
        """node -> score over all nodes of the model; lower is better."""
        return {n: float(c) for n, c in self._counts.items()}

    # hooks for the resource-aware models
    def _add(self, sid: str, node: str, *, current: bool, running: bool) -> None:
        return None

    def _remove(self, sid: str, node: str) -> None:
        return None


class BasicUsage(Usage):
    """Service counts (PVE ``Usage::Basic``)."""

    __slots__ = ()
    mode = "basic"


# --------------------------------------------------------------------------- TOPSIS

# average CPU, highest CPU, average memory, highest memory — all minimised.
TOPSIS_WEIGHTS: tuple[float, float, float, float] = (1.0, 2.0, 5.0, 10.0)


def _l2(values: Iterable[float]) -> float:
    total = 0.0
    for v in values:
        total += v * v
    return math.sqrt(total)


def topsis_scores(
    matrix: Sequence[Sequence[float]], weights: Sequence[float] = TOPSIS_WEIGHTS
) -> list[float]:
    """TOPSIS closeness per alternative (row), every criterion minimised; higher = better.

    Mirrors proxmox-resource-scheduling 2.0: columns are divided by their L2 norm (a
    zero column stays zero) and multiplied by weight/sum(weights); ideal best = column
    minimum, worst = column maximum; score = d_worst / (d_best + d_worst), 0 when both
    distances are 0.
    """
    if not matrix:
        return []
    total_w = sum(abs(w) for w in weights)
    rows = range(len(matrix))
    d_best = [0.0] * len(matrix)
    d_worst = [0.0] * len(matrix)
    # column by column; each row's squared distances accumulate in criterion order,
    # as a per-row L2 norm over the criteria would
    for j, weight in enumerate(weights):
        col = [row[j] for row in matrix]
        norm = _l2(col)
        w = abs(weight) / total_w
        col = [(v / norm) * w for v in col] if norm != 0.0 else [v * w for v in col]
        best, worst = min(col), max(col)
        for i in rows:
            d_best[i] += (col[i] - best) * (col[i] - best)
            d_worst[i] += (col[i] - worst) * (col[i] - worst)
    scores: list[float] = []
    for i in rows:
        db, dw = math.sqrt(d_best[i]), math.sqrt(d_worst[i])
        scores.append(0.0 if db == 0.0 and dw == 0.0 else dw / (db + dw))
    return scores


def add_cpu(old: float, node_maxcpu: float, service_cpu: float) -> float:
    """A service with ``maxcpu`` 0 ("unlimited") may use every core of the node."""
    return old + (node_maxcpu if service_cpu == 0.0 else service_cpu)


def _prefix_sums(values: Sequence[float]) -> list[float]:
    """prefix[i] = sequential float sum of values[:i] (exactly a left-to-right loop)."""
    return [0.0, *accumulate(values, operator.add)]


def _prefix_max(values: Sequence[float]) -> list[float]:
    return [0.0, *accumulate(values, max)]


def _suffix_max(values: Sequence[float]) -> list[float]:
    """suffix[i] = max(values[i:]), 0 past the end (loads are never negative)."""
    out = [0.0] * (len(values) + 1)
    for i in range(len(values) - 1, -1, -1):
        out[i] = max(values[i], out[i + 1])
    return out


def _sq_sum_with(squares: Sequence[float], prefix: Sequence[float], t: int, new_sq: float) -> float:
    """Sum of ``squares`` with element ``t`` replaced by ``new_sq``, summed left to right.

    Same float result as PVE's loop (prefix sums are exact partial results; the tail is
    added in order), at O(n - t) instead of O(n).
    """
    return reduce(operator.add, squares[t + 1 :], prefix[t] + new_sq)


def cluster_alternatives(
    loads: Sequence[tuple[float, float, float, float]],
    add: tuple[float, float],
) -> list[tuple[float, float, float, float]]:
    """One TOPSIS alternative per node: cluster figures as if ``add`` ran there.

    ``loads`` = per node (cpu used, maxcpu, mem used, maxmem), in model order;
    ``add`` = (cpu, mem) of the service (cpu 0 = whole node). Each alternative is
    (1 + rms cpu load, 1 + max cpu load, 1 + rms mem load, 1 + max mem load); the 1 keeps
    tiny differences from being amplified (as PVE does). Float-identical to summing the
    squares node by node in model order for every candidate.
    """
    n = float(len(loads))
    cpu = [c / mc for c, mc, _, _ in loads]
    mem = [m / mm for _, _, m, mm in loads]
    sq_cpu, sq_mem = [x * x for x in cpu], [x * x for x in mem]
    pre_cpu, pre_mem = _prefix_sums(sq_cpu), _prefix_sums(sq_mem)
    pmax_cpu, pmax_mem = _prefix_max(cpu), _prefix_max(mem)
    smax_cpu, smax_mem = _suffix_max(cpu), _suffix_max(mem)
    out: list[tuple[float, float, float, float]] = []
    for t, (c, mc, m, mm) in enumerate(loads):
        new_cpu = add_cpu(c, mc, add[0]) / mc
        new_mem = (m + add[1]) / mm
        hi_c = max(pmax_cpu[t], new_cpu, smax_cpu[t + 1])
        hi_m = max(pmax_mem[t], new_mem, smax_mem[t + 1])
        sc = _sq_sum_with(sq_cpu, pre_cpu, t, new_cpu * new_cpu)
        sm = _sq_sum_with(sq_mem, pre_mem, t, new_mem * new_mem)
        out.append((1.0 + math.sqrt(sc / n), 1.0 + hi_c, 1.0 + math.sqrt(sm / n), 1.0 + hi_m))
    return out


# --------------------------------------------------------------------------- resource models


class _ResourceUsage(Usage):
    """Shared part of the static and dynamic models: per-node cpu/mem sums + TOPSIS."""

    __slots__ = ("_added", "_cpu", "_mem", "_node_stats", "_service_stats")

    def __init__(
        self,
        nodes: Iterable[str],
        node_stats: Mapping[str, NodeStats],
        service_stats: Mapping[str, ServiceStats],
    ) -> None:
        super().__init__(nodes)
        for n in self._nodes:
            if n not in node_stats:
                raise KeyError(f"no node stats for node '{n}'")
        self._node_stats = node_stats
        self._service_stats = service_stats
        self._cpu: dict[str, float] = {n: self._base(node_stats[n])[0] for n in self._nodes}
        self._mem: dict[str, float] = {n: self._base(node_stats[n])[1] for n in self._nodes}
        # (sid, node) -> (cpu, mem) actually added, so removal subtracts the same values
        self._added: dict[tuple[str, str], tuple[float, float]] = {}

    def _base(self, stats: NodeStats) -> tuple[float, float]:
        return 0.0, 0.0

    def _service_add(
        self, sid: str, node: str, *, current: bool, running: bool
    ) -> tuple[float, float] | None:
        raise NotImplementedError

    def _add(self, sid: str, node: str, *, current: bool, running: bool) -> None:
        add = self._service_add(sid, node, current=current, running=running)
        if add is None:
            return
        cpu = add_cpu(0.0, self._node_stats[node].maxcpu, add[0])
        self._cpu[node] += cpu
        self._mem[node] += add[1]
        self._added[(sid, node)] = (cpu, add[1])

    def _remove(self, sid: str, node: str) -> None:
        added = self._added.pop((sid, node), None)
        if added is not None:
            self._cpu[node] -= added[0]
            self._mem[node] -= added[1]

    def node_loads(self) -> list[tuple[float, float, float, float]]:
        """Per node (model order): (cpu used, maxcpu, mem used, maxmem)."""
        st = self._node_stats
        return [(self._cpu[n], st[n].maxcpu, self._mem[n], st[n].maxmem) for n in self._nodes]

    def _start_usage(self, sid: str) -> tuple[float, float] | None:
        raise NotImplementedError

    def score_nodes_to_start_service(self, sid: str) -> dict[str, float]:
        add = self._start_usage(sid)
        if add is None:
            msg = (
                f"unable to score nodes according to {self.mode} usage for service '{sid}'"
                f" - did not get {self.mode} service usage information for '{sid}'"
            )
            self.messages.append(("err", msg))
            return super().score_nodes_to_start_service(sid)
        scores = topsis_scores(cluster_alternatives(self.node_loads(), add))
        # PVE negates so that lower is better for its callers.
        return {n: -s for n, s in zip(self._nodes, scores)}


class StaticUsage(_ResourceUsage):
    """Configured maxcpu/maxmem of every occupying service (PVE ``Usage::Static``)."""

    __slots__ = ()
    mode = "static"

    def _service_add(
        self, sid: str, node: str, *, current: bool, running: bool
    ) -> tuple[float, float] | None:
        st = self._service_stats.get(sid)
        if st is None:
            msg = (
                f"unable to add service '{sid}' usage to node '{node}'"
                f" - did not get static service usage information for '{sid}'"
            )
            self.messages.append(("warning", msg))
            return None
        return st.maxcpu, st.maxmem

    def _start_usage(self, sid: str) -> tuple[float, float] | None:
        st = self._service_stats.get(sid)
        return None if st is None else (st.maxcpu, st.maxmem)


class DynamicUsage(_ResourceUsage):
    """Measured node usage plus services not yet reflected in it (PVE ``Usage::Dynamic``).

    A service running on its current node is already part of the node's measured
    ``cpu``/``mem``; anything else that occupies a node (a start in progress, the target
    of a move) is added: its measured use when it runs somewhere, else its max values.
    """

    __slots__ = ()
    mode = "dynamic"

    def _base(self, stats: NodeStats) -> tuple[float, float]:
        return stats.cpu, stats.mem

    def _service_add(
        self, sid: str, node: str, *, current: bool, running: bool
    ) -> tuple[float, float] | None:
        st = self._service_stats.get(sid)
        if st is not None and st.running is not None:
            running = st.running
        if current and running:
            return None
        if st is None:
            return None
        return (st.cpu, st.mem) if running else (st.maxcpu, st.maxmem)

    def _start_usage(self, sid: str) -> tuple[float, float] | None:
        st = self._service_stats.get(sid)
        return None if st is None else (st.maxcpu, st.maxmem)


# --------------------------------------------------------------------------- construction


def make_usage(
    mode: str,
    online_nodes: Iterable[str],
    node_stats: Mapping[str, NodeStats] | None = None,
    service_stats: Mapping[str, ServiceStats] | None = None,
) -> tuple[Usage, tuple[LogLine, ...]]:
    """Build an empty usage model for ``mode`` over the online nodes.

    ``static``/``dynamic`` need ``node_stats`` for every online node; otherwise the
    round falls back to ``basic`` with PVE's warning
    ``fallback to 'basic' scheduler mode, init for '<mode>' failed - <err>``.
    ``service_stats`` are keyed by sid (HA and non-HA guests alike).
    """
    nodes = list(online_nodes)
    if mode in ("static", "dynamic"):
        cls = StaticUsage if mode == "static" else DynamicUsage
        if node_stats is None:
            err = f"did not get {mode} node usage information"
        else:
            try:
                return cls(nodes, node_stats, service_stats or {}), ()
            except KeyError as exc:
                err = str(exc.args[0])
        return BasicUsage(nodes), (
            ("warning", f"fallback to 'basic' scheduler mode, init for '{mode}' failed - {err}"),
        )
    return BasicUsage(nodes), ()


def recompute_usage(
    usage: Usage,
    ss: Mapping[str, Mapping[str, Any]],
    non_ha_guests: Iterable[tuple[str, str]] = (),
) -> Usage:
    """Feed every service status entry (sorted sid order) and running non-HA guests.

    ``non_ha_guests`` = (guest id, node) of running guests that HA does not manage.
    Returns ``usage`` for chaining. O(len(ss)).
    """
    for sid in sorted(ss):
        sd = ss[sid]
        usage.add_service_usage(
            sid,
            sd.get("state", ""),
            sd.get("node"),
            sd.get("target"),
            running=bool(sd.get("running")),
        )
    for guest, node in non_ha_guests:
        usage.add_guest_usage(guest, node)
    return usage
