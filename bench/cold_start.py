"""Cold start of the ``pvha`` commands a shell runs most: help, ``config``, completion.

Usage: ``python bench/cold_start.py [--runs 20] [--pvha PATH]``

Runs each command as a fresh subprocess (stdin from /dev/null, stdout and stderr pipes,
the caller's environment) and prints the median wall time of ``--runs`` runs after one
warm-up run, next to ``python -c pass`` on the same interpreter (``sys.executable``, the
one pvha runs on) and the ratio of the two medians (goal <= 4):

* ``pvha --help``;
* ``pvha --config-dir DIR config`` (DIR: a temporary directory with a few resources and
  a group);
* ``pvha config --output-format json`` (DIR through ``PVHA_CONFIG_DIR``);
* ``pvha _complete sids`` (what every TAB on a SID runs; DIR through ``PVHA_CONFIG_DIR``).

``pvha`` is the console script next to ``sys.executable`` (``--pvha`` to choose another),
else ``python -m pvha``. A command that fails or prints nothing aborts the run. Nothing
here is timed in tests; the figures are for reading.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 4.0
RESOURCES = "".join(
    f"{kind}: {vmid}\n\tgroup g1\n\tmax_restart 2\n\tstate started\n\n"
    for kind, vmid in (("vm", 100), ("vm", 101), ("ct", 200), ("ct", 201), ("vm", 102))
)
GROUPS = "group: g1\n\tnodes node1:2,node2\n\tnofailback 1\n\n"


def _pvha(chosen: str | None) -> list[str]:
    if chosen:
        return [chosen]
    script = Path(sys.executable).with_name("pvha")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pvha"]


def _once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or (argv[1:] != ["-c", "pass"] and not result.stdout):
        sys.exit(f"{' '.join(argv)}: exit {result.returncode}\n{result.stderr.decode()}")
    return elapsed


def _median(argv: list[str], env: dict[str, str], runs: int) -> float:
    _once(argv, env)  # warm-up: page cache, .pyc files
    return statistics.median(_once(argv, env) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs per command")
    parser.add_argument("--pvha", help="pvha executable (default: the console script)")
    args = parser.parse_args()
    pvha = _pvha(args.pvha)
    with tempfile.TemporaryDirectory(prefix="pvha-cold-") as tmp:
        cfg = Path(tmp) / "cfg"
        cfg.mkdir()
        (cfg / "resources.cfg").write_text(RESOURCES)
        (cfg / "groups.cfg").write_text(GROUPS)
        env = dict(os.environ)
        with_dir = {**env, "PVHA_CONFIG_DIR": str(cfg)}
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], env),
            ("pvha --help", [*pvha, "--help"], env),
            ("pvha --config-dir DIR config", [*pvha, "--config-dir", str(cfg), "config"], env),
            (
                "pvha config --output-format json",
                [*pvha, "config", "--output-format", "json"],
                with_dir,
            ),
            ("pvha _complete sids", [*pvha, "_complete", "sids"], with_dir),
        ]
        print(f"{sys.executable}; pvha: {' '.join(pvha)}; median of {args.runs} runs")
        base = 0.0
        for label, argv, case_env in cases:
            median = _median(argv, case_env, args.runs)
            base = base or median
            ratio = median / base
            verdict = (
                ""
                if argv[1:] == ["-c", "pass"]
                else ("  ok" if ratio <= GOAL else f"  over the goal (<= {GOAL:g})")
            )
            print(f"{label:<36} {median * 1000:7.1f} ms  x{ratio:5.2f}{verdict}")


if __name__ == "__main__":
    main()
