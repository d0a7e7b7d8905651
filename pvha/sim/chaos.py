"""``pvha sim chaos``: random scenarios, safety invariants after every step, shrinking.

Theory of operation. Run ``i`` of seed ``S`` draws its scenario from
``random.Random(f"{S}:{i}")`` (:func:`pvha.sim.chaos_gen.generate`), so every run is
reproducible on its own, in any order and in any process. Each run:

1. runs in the simulator with a :class:`~pvha.sim.chaos_invariants.Monitor` on
   :attr:`~pvha.sim.runner.Simulator.step_hooks`, which checks every invariant after
   every step and stops the run at the first violation;
2. runs again from a fresh copy of the same files, without the monitor: the two logs
   must be byte-identical (``replay``; this also proves the monitor only looks);
3. a run that raises is a violation too (``crash``), except the combinations PVE's own
   simulator refuses as "not implemented" (e.g. ``restart-lrm`` during a reboot): such
   a draw is replaced by the next one (``S:i:1``, ``S:i:2``, ...), so N runs are N
   scenarios that ran.

For a violation, :func:`pvha.sim.chaos_shrink.shrink` removes batches, commands, nodes,
services, rules and settings while the same invariant still fails, and the minimal
scenario is written as a PVE scenario directory (no ``log.expect``: a golden log needs a
review) with a README naming the violation and how to reproduce it. The directory is
loaded back and run again before it is reported, so what is printed is what fails.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pvha.sim.chaos_gen import Spec, generate
from pvha.sim.chaos_invariants import (
    DEFAULT_INVARIANTS,
    InvariantFactory,
    Monitor,
    Stop,
    Violation,
)
from pvha.sim.chaos_shrink import shrink
from pvha.sim.hardware import SimulationError
from pvha.sim.runner import Simulator
from pvha.sim.scenario import Scenario, load_scenario

MAX_REDRAWS = 20


class Refused(Exception):
    """The drawn scenario asks for something PVE's simulator does not model."""


@dataclass(frozen=True, slots=True)
class RunResult:
    spec: Spec
    violation: Violation | None
    log: str
    steps: int
    accepted: tuple[str, ...] = ()  # guests run twice as PVE does (chaos_invariants.unmanaged)


def run_spec(spec: Spec, invariants: Sequence[InvariantFactory] = DEFAULT_INVARIANTS,
             replay: bool = True) -> RunResult:
    """Run ``spec`` with the invariants, then (if it passed and ``replay``) once more
    without them, comparing logs. Raises :class:`Refused` for the simulator's "not
    implemented" combinations."""
    return run_scenario_checked(spec.scenario(), spec, invariants, replay)


def run_scenario_checked(scenario: Scenario, spec: Spec,
                         invariants: Sequence[InvariantFactory] = DEFAULT_INVARIANTS,
                         replay: bool = True,
                         again: Callable[[], Scenario] | None = None) -> RunResult:
    """:func:`run_spec` for an already built scenario; ``again`` builds the replay's."""
    sim = Simulator(scenario)
    monitor = Monitor(sim.hw, [make() for make in invariants], lambda: [
        nd.crm.wd for nd in sim.d.values() if nd.crm is not None])
    sim.step_hooks.append(monitor)
    try:
        log = _run(sim)
    except Stop as stop:
        return RunResult(spec, stop.violation, sim.log.text(), monitor.steps)
    except _Crash as crash:
        return RunResult(spec, crash.violation(sim), sim.log.text(), monitor.steps)
    if replay:
        second = Simulator((again or spec.scenario)())
        try:
            log2 = _run(second)
        except _Crash as crash:
            return RunResult(spec, crash.violation(second, "replay"), log, monitor.steps)
        if log2 != log:
            return RunResult(spec, Violation("replay", sim.hw.cur_time, "run", _first_diff(
                log, log2)), log, monitor.steps)
    return RunResult(spec, None, log, monitor.steps, tuple(sorted(monitor.accepted)))


class _Crash(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def violation(self, sim: Simulator, name: str = "crash") -> Violation:
        return Violation(name, sim.hw.cur_time, "simulator", self.text)


def _run(sim: Simulator) -> str:
    try:
        return sim.run()
    except Stop:
        raise
    except SimulationError as err:
        if "not implemented" in str(err):
            raise Refused(str(err)) from err
        raise _Crash(f"SimulationError: {err}") from err
    except Exception as err:
        where = traceback.extract_tb(err.__traceback__)[-1]
        raise _Crash(f"{type(err).__name__}: {err} ({Path(where.filename).name}:"
                     f"{where.lineno})") from err


def _first_diff(a: str, b: str) -> str:
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb, strict=False)):
        if x != y:
            return f"logs differ at line {i + 1}: {x!r} != {y!r}"
    return f"logs differ in length: {len(la)} != {len(lb)} lines"


# ---------------------------------------------------------------------- the campaign
def draw(seed: int | str, index: int) -> Iterator[Spec]:
    """The scenario of run ``index`` and, should the simulator refuse it, the redraws."""
    for redraw in range(MAX_REDRAWS):
        key = f"{seed}:{index}" if redraw == 0 else f"{seed}:{index}:{redraw}"
        yield generate(random.Random(key), f"chaos-{seed}-{index}")


def run_index(seed: int | str, index: int,
              invariants: Sequence[InvariantFactory] = DEFAULT_INVARIANTS,
              replay: bool = True) -> RunResult:
    """Run ``index`` of ``seed`` (redrawn while the simulator refuses it)."""
    last: Refused | None = None
    for spec in draw(seed, index):
        try:
            return run_spec(spec, invariants, replay)
        except Refused as err:
            last = err
    raise SimulationError(f"run {index}: {MAX_REDRAWS} draws refused ({last})")


@dataclass(frozen=True, slots=True)
class Finding:
    index: int
    violation: Violation
    minimal: Spec
    minimal_violation: Violation
    path: Path | None


def still_fails(invariant: str, invariants: Sequence[InvariantFactory] = DEFAULT_INVARIANTS
                ) -> Callable[[Spec], Violation | None]:
    """The shrinker's test: the violation of ``invariant`` when ``spec`` still has it."""

    def test(spec: Spec) -> Violation | None:
        try:
            res = run_spec(spec, invariants, replay=invariant == "replay")
        except Refused:
            return None
        v = res.violation
        return v if v is not None and v.invariant == invariant else None

    return test


def investigate(index: int, result: RunResult, out: Path | None, seed: int | str,
                invariants: Sequence[InvariantFactory] = DEFAULT_INVARIANTS,
                budget: int = 400) -> Finding:
    """Shrink a failing run and write the minimal scenario under ``out``."""
    assert result.violation is not None
    test = still_fails(result.violation.invariant, invariants)
    minimal, violation = shrink(result.spec, test, budget)
    path = None
    if out is not None:
        path = out / f"chaos-{seed}-{index}-{violation.invariant}"
        minimal = minimal.copy(name=path.name)
        minimal.write(path, _readme(seed, index, violation, minimal))
        confirmed = _confirm(path, minimal, violation.invariant, invariants)
        if confirmed is not None:
            violation = confirmed
    return Finding(index, result.violation, minimal, violation, path)


def _confirm(path: Path, spec: Spec, invariant: str,
             invariants: Sequence[InvariantFactory]) -> Violation | None:
    """The written directory, loaded as `pvha sim run` loads it, still fails."""
    res = run_scenario_checked(load_scenario(path), spec, invariants,
                               replay=invariant == "replay",
                               again=lambda: load_scenario(path))
    if res.violation is None or res.violation.invariant != invariant:
        raise SimulationError(f"{path}: the written scenario does not fail again")
    (path / "log.chaos").write_text(res.log)
    return res.violation


def _readme(seed: int | str, index: int, violation: Violation, spec: Spec) -> str:
    return (
        f"pvha sim chaos: minimal scenario of run {index} of seed {seed}.\n"
        f"Violation ({violation.invariant}): {violation.line()}\n"
        f"Size (commands, nodes, services, rules, settings): {spec.size()}\n"
        "Reproduce: pvha sim run DIR (log.chaos holds the failing run's log, cut at the\n"
        "violation); the invariants are described in pvha/sim/chaos_invariants.py.\n"
    )


@dataclass(frozen=True, slots=True)
class Report:
    runs: int
    findings: tuple[Finding, ...]
    steps: int
    accepted: int = 0  # runs that ran a guest twice the way PVE does

    def accepted_line(self) -> str | None:
        """A note on the runs with PVE-accepted double runs (None if there are none)."""
        if not self.accepted:
            return None
        return (f"{self.accepted} runs ran a guest twice the way PVE does (an unprotected "
                "guest recovered, see pvha.sim.chaos_invariants.unmanaged): not counted")

    @property
    def violations(self) -> int:
        return len(self.findings)

    def line(self) -> str:
        return f"{self.runs} runs, {self.violations} violations"


def run_chaos(runs: int, seed: int | str, out: Path | None = None,
              invariants: Sequence[InvariantFactory] = DEFAULT_INVARIANTS,
              on_finding: Callable[[Finding], None] | None = None,
              start: int = 0, do_shrink: bool = True,
              out_factory: Callable[[], Path] | None = None) -> Report:
    """Runs ``start .. start+runs-1`` of ``seed``; every violation is shrunk (unless
    ``do_shrink`` is False) and written under ``out`` (or the directory ``out_factory``
    returns, asked at the first violation), if given."""
    findings: list[Finding] = []
    steps = accepted = 0
    for index in range(start, start + runs):
        result = run_index(seed, index, invariants)
        steps += result.steps
        accepted += bool(result.accepted)
        if result.violation is None:
            continue
        if do_shrink:
            target = out if out is not None or out_factory is None else out_factory()
            finding = investigate(index, result, target, seed, invariants)
        else:
            finding = Finding(index, result.violation, result.spec, result.violation, None)
        findings.append(finding)
        if on_finding is not None:
            on_finding(finding)
    return Report(runs, tuple(findings), steps, accepted)
