"""Fault trials against the real loop: ``pvha watch`` subprocesses on ``pvha sim serve``'s
fake PVE (in this process), faults injected, safety invariants checked all along.

Usage::

    python bench/faults.py [--trials 100] [--seed S] [--kinds kill9,pause,api,corrupt]
                           [--quick] [--bound 60] [--out DIR] [--keep]
    python bench/faults.py --replay KIND:SEED [--replay KIND:SEED ...]

Kinds (schedules: tests/e2e/faults_plan.py; runner: tests/e2e/faults_harness.py):

* ``kill9``   kill -9 of the watcher at random instants of node2's recovery (power off +
  ``pvha fence-ack node2``, or a hang fenced through its IPMI BMC), restarted, repeated;
* ``pause``   two watchers with their own settings files, SIGSTOP/SIGCONT pauses longer
  (and shorter) than the manager lock's lifetime (``lock_lifetime`` 6 s), kills;
* ``api``     bursts of fail5xx / drop / latency / expire-tickets during a recovery;
* ``corrupt`` a corrupting layer in front of the fake's API (truncated bodies, dropped
  keys, duplicated or conflicting entries, ``online: "yes"``, 200 without ``data``).

Checked every 50 ms (tests/e2e/faults_monitor.py): no split brain, no config moved off a
node never proven off, no config lost or duplicated, no torn status file, no healthy
node fenced, no watcher dying by itself; at the end: every HA guest started and running
within ``--bound`` s, a guest stopped behind HA's back restarted, ``pvha status`` exit
0, no temp file left. Trials are kinds round-robin, their seeds drawn from ``--seed``;
a trial's schedule is a pure function of ``KIND:SEED`` (timing is real, so its outcome
may vary); its directory (watcher logs, trial.json) is kept when anything went wrong.

Output: a line per trial, then ``N trials, V violations`` with per-kind counts and a
line per violation (kind, seed, what was seen, the replay command, the watcher log lines
before it); corrupt-kind violations name the corruptions shown just before. The exit
status is 1 when V > 0 or a trial could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.faults_harness import DEFAULT_BOUND, TrialResult, run_trial
from tests.e2e.faults_plan import KINDS, trial_seeds


def _pairs(args: argparse.Namespace) -> list[tuple[str, int]]:
    if args.replay:
        out = []
        for item in args.replay:
            kind, _, seed = item.partition(":")
            if kind not in KINDS or not seed.isdigit():
                raise SystemExit(f"--replay wants KIND:SEED with KIND in {', '.join(KINDS)}")
            out.append((kind, int(seed)))
        return out
    kinds = tuple(k for k in args.kinds.split(",") if k)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise SystemExit(f"--kinds: unknown {', '.join(bad) or '(none)'}; kinds: {', '.join(KINDS)}")
    return trial_seeds(args.seed, kinds, args.trials)


def _violation_lines(r: TrialResult) -> list[str]:
    lines = []
    for v in r.violations:
        lines.append(f"  [{r.kind} seed {r.seed}] {v.category} at +{v.at:.1f} s: {v.detail}")
        if v.corruptions:
            lines.append(f"      corruptions shown just before: {v.corruptions}")
        lines.append(f"      replay: {r.replay}")
        lines.append(f"      kept: {r.dir} (watcher logs: {', '.join(Path(p).name for p in r.logs)})")
        lines += [f"      | {ln}" for ln in v.logs]
    return lines


def report(results: list[TrialResult], elapsed: float, command: str) -> tuple[int, int]:
    """Print the verdict; returns (violations, bench errors)."""
    total = sum(len(r.violations) for r in results)
    errors = [r for r in results if r.error]
    print()
    print(f"{len(results)} trials, {total} violations, {len(errors)} trials could not run; "
          f"{elapsed:.0f} s")
    print(f"command: {command}")
    for kind in KINDS:
        rs = [r for r in results if r.kind == kind]
        if not rs:
            continue
        vs = [v for r in rs for v in r.violations]
        cats = Counter(v.category for v in vs)
        bad = sum(1 for r in rs if r.violations)
        print(f"  {kind:<8} {len(rs):>3} trials, {len(vs):>3} violations in {bad} trials"
              + (f" ({', '.join(f'{c} {n}' for c, n in sorted(cats.items()))})" if cats else "")
              + f"; median trial {sorted(r.duration for r in rs)[len(rs) // 2]:.0f} s")
    failed = [r for r in results if r.violations]
    if failed:
        print("\nviolations:")
        for r in failed:
            print("\n".join(_violation_lines(r)))
    if errors:
        print("\ntrials that could not run (bench errors, not verdicts):")
        for r in errors:
            print(f"  [{r.kind} seed {r.seed}] {r.error}; replay: {r.replay}; kept: {r.dir}")
    notes: Counter[str] = Counter()
    for r in results:
        notes.update({f"{r.kind}: {k}": 1 for k in r.notes})
    if notes:
        print("\nnotes (not violations; trials in which each was seen):")
        for note, n in sorted(notes.items()):
            print(f"  {n:>3}  {note}")
    return total, len(errors)


def code_under_test() -> str:
    """HEAD and the files changed on top of it (read-only git, no index refresh): the
    watchers run the working tree, which other engineers may be changing."""
    import subprocess

    def git(*argv: str) -> str:
        res = subprocess.run(["git", "--no-optional-locks", *argv], cwd=REPO, text=True,
                             capture_output=True, check=False, timeout=30)
        return res.stdout.rstrip("\n")

    dirty = [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if len(ln) > 3]
    return f"HEAD {git('rev-parse', '--short', 'HEAD') or '?'}" + (
        f" + {len(dirty)} modified files ({', '.join(dirty)})" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials in total (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="master seed (default: time)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds")
    parser.add_argument("--replay", action="append", metavar="KIND:SEED",
                        help="run exactly this trial (repeatable)")
    parser.add_argument("--quick", action="store_true", help="short plans (the CI sample's)")
    parser.add_argument("--bound", type=float, default=DEFAULT_BOUND,
                        help="seconds HA gets to converge after the faults (default 60)")
    parser.add_argument("--out", type=Path, default=None, help="where trial dirs go")
    parser.add_argument("--keep", action="store_true", help="keep every trial's dir")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = int(time.time()) % 100000
    pairs = _pairs(args)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"pvha-faults-{args.seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    command = "python bench/faults.py " + " ".join(sys.argv[1:])
    if "--seed" not in sys.argv[1:] and not args.replay:
        command += f" --seed {args.seed}"
    print(f"{len(pairs)} trials (seed {args.seed}), trial dirs under {out}; 3 nodes, 6 HA "
          "guests, 1 s rounds, 3 s fence delay", flush=True)
    print(f"code under test: {code_under_test()}", flush=True)
    started = time.monotonic()
    results = []
    for i, (kind, seed) in enumerate(pairs, 1):
        r = run_trial(kind, seed, out, quick=args.quick, bound=args.bound, keep=args.keep)
        results.append(r)
        verdict = r.error and f"could not run: {r.error}" or (
            f"{len(r.violations)} violations" + (f" ({', '.join(sorted({v.category for v in r.violations}))})"
                                                  if r.violations else ""))
        print(f"[{i:>3}/{len(pairs)}] {kind:<8} seed {seed:<10} {r.duration:5.1f} s  {verdict}",
              flush=True)
    total, errors = report(results, time.monotonic() - started, command)
    print(f"code under test at the end: {code_under_test()}")
    (out / "summary.json").write_text(json.dumps([{
        "kind": r.kind, "seed": r.seed, "duration": round(r.duration, 1), "error": r.error,
        "violations": [(v.category, v.detail) for v in r.violations],
        "notes": dict(r.notes), "corruptions": r.corruptions, "dir": str(r.dir) if r.kept else None,
    } for r in results], indent=1))
    return 1 if total > 0 or errors else 0


if __name__ == "__main__":
    sys.exit(main())
