"""API requests and wall time of one steady ``pvha watch`` round against ``pvha sim serve``.

Usage: ``python bench/api_round.py [--nodes 16] [--guests 2000] [--rounds 5]``

Starts ``pvha sim serve`` (a subprocess: the fake PVE over HTTPS on loopback, with
``--nodes`` nodes and ``--guests`` HA guests, all running), then runs the real watch loop
in this process on the real adapters (proxmoxer, TLS with the simulator's CA, the
cluster-fs directory): a few warm-up rounds until every service is ``started``, then
``--rounds`` measured steady rounds. Every HTTP request the adapters send is counted at
the requests session. Prints requests per steady round, the round wall time (median and
max) and, as the yardstick, the time plain ``requests`` takes to fetch the same three
responses from the same node in the same run (a kept-alive session, JSON decoded, as
pvha does): the ratio of the two medians is what pvha's own work costs on top of the
API (goal <= 1.5). Everything started is stopped at the end. Nothing here is timed in
tests; the figures are for reading.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from pvha.adapters import build_real_adapters
from pvha.settings import load_settings
from pvha.shell.loop import Watcher

SENT: list[str] = []
_send = requests.Session.send


def _counting_send(self: requests.Session, request: Any, **kw: Any) -> Any:
    SENT.append(f"{request.method} {request.path_url.split('?')[0]}")
    return _send(self, request, **kw)


def _serve(state: Path, nodes: int, guests: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "pvha.cli.sim_serve", "serve", "--state-dir", str(state),
            "--nodes", str(nodes), "--guests", str(guests), "--task-seconds", "0.1",
            "--auth-fail-delay", "0"]
    log = (state.parent / "serve.log").open("wb")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def _wait(path: Path, proc: subprocess.Popen[bytes], limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"pvha sim serve did not come up (see {path.parent.parent})")
        time.sleep(0.2)


def measure(env: dict[str, str], rounds: int) -> tuple[list[int], list[float], str]:
    settings = load_settings(env={**env, "PVHA_FENCE_DELAY": "60"})
    api, cfs, clock = build_real_adapters(settings)
    watcher = Watcher(api, cfs, clock, fence_delay=60, round_interval=10)
    said = ""
    for _ in range(20):  # warm-up: services added, every one reported started
        said = watcher.safe_round()
        ss = watcher.crm.manager.ss if watcher.crm and watcher.crm.manager else {}
        if ss and all(sd.get("state") == "started" for sd in ss.values()):
            break
    counts, walls = [], []
    for _ in range(rounds):
        SENT.clear()
        t0 = time.perf_counter()
        said = watcher.safe_round()
        walls.append(time.perf_counter() - t0)
        counts.append(len(SENT))
    watcher.release()
    return counts, walls, said


PATHS = ("cluster/status", "cluster/resources", "cluster/ha/resources")


def plain_fetch(env: dict[str, str], rounds: int) -> list[float]:
    """Wall time of fetching the round's three responses with plain requests."""
    host = env["PVHA_HOSTS"].split(",")[0]
    base = f"https://{host}:{env['PVHA_PORT']}/api2/json"
    secret = Path(env["PVHA_TOKEN_SECRET_FILE"]).read_text().strip()
    session = requests.Session()
    session.trust_env = False  # as pvha: REQUESTS_CA_BUNDLE must not replace the CA
    session.verify = env["PVHA_CA_FILE"]
    session.headers["Authorization"] = (f"PVEAPIToken={env['PVHA_USER']}!"
                                        f"{env['PVHA_TOKEN_NAME']}={secret}")
    for path in PATHS:  # warm the connection, as the watcher's is
        session.get(f"{base}/{path}", timeout=30).json()
    walls = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for path in PATHS:
            session.get(f"{base}/{path}", timeout=30).json()
        walls.append(time.perf_counter() - t0)
    return walls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--guests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    requests.Session.send = _counting_send  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="pvha-bench-") as tmp:
        state = Path(tmp) / "sim"
        proc = _serve(state, args.nodes, args.guests)
        try:
            _wait(state / "env", proc)
            env = _env(state / "env")
            counts, walls, said = measure(env, args.rounds)
            plain = plain_fetch(env, args.rounds)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"pvha watch against pvha sim serve: {args.nodes} nodes, {args.guests} HA guests, "
          f"{args.rounds} steady rounds")
    print(f"last round: {said}")
    print(f"requests per steady round: {max(counts)} (each round: {counts})")
    print(f"round wall time: median {statistics.median(walls) * 1000:.0f} ms, "
          f"max {max(walls) * 1000:.0f} ms")
    print(f"plain requests, same three GETs: median {statistics.median(plain) * 1000:.0f} ms")
    print(f"ratio round / plain fetch: {statistics.median(walls) / statistics.median(plain):.2f}"
          " (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    os.environ.pop("PVHA_SETTINGS", None)
    sys.exit(main())
