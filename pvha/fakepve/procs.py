"""Guest processes on the simulated nodes (with ``--agents``), so that a node agent can
find and stop a stale copy of a guest as it would on a real node
(:mod:`pvha.adapters.guestprocs`).

Every guest running on a node (``Runtime.running``) has a real placeholder process whose
command line reads ``kvm -id VMID`` (a ``sleep``), and a pidfile at
``STATE_DIR/nodes/NODE/run/qemu-server/VMID.pid`` (``lxc/VMID.pid`` for a container).
A thread keeps them in step with the cluster's truth every ``interval`` seconds: it
starts a placeholder for a guest that started, kills the one of a guest that stopped or
whose node lost power, and when a placeholder dies of something else (killed by a node
agent), the guest has died on that node.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pvha.adapters.guestprocs import DIRS

if TYPE_CHECKING:
    from pvha.fakepve.cluster import Cluster

log = logging.getLogger("pvha.fakepve")
Key = tuple[int, str]  # vmid, node


class GuestProcs:
    def __init__(self, cluster: Cluster, state: Path, interval: float = 0.1) -> None:
        self.cluster, self.state, self.interval = cluster, state, interval
        self._procs: dict[Key, tuple[subprocess.Popen[bytes], Path]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fakepve-procs", daemon=True)

    def run_dir(self, node: str) -> Path:
        return self.state / "nodes" / node / "run"

    def start(self) -> GuestProcs:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._procs):
            self._end(key)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception:
                log.exception("guest process sync failed")

    def sync(self) -> None:
        with self.cluster.lock:
            want = {(vmid, node) for vmid, rt in self.cluster.runtime.items()
                    for node in rt.running}
            died = False
            for key, (proc, _) in list(self._procs.items()):
                if proc.poll() is not None:  # killed from outside: the guest died there
                    vmid, node = key
                    self.cluster.rt(vmid).running.discard(node)
                    want.discard(key)
                    died = True
                    log.warning("guest %s's process on %s was killed: it stopped there",
                                vmid, node)
                    self._end(key)
                elif key not in want:
                    self._end(key)
            missing = sorted(want - set(self._procs))
            if missing:
                kinds = {v: c.kind for v, c in self.cluster.configs().items()}
                for key in missing:
                    self._spawn(key, kinds.get(key[0], "qemu"))
            if died:
                self.cluster.refresh()

    def _spawn(self, key: Key, kind: str) -> None:
        vmid, node = key
        pidfile = self.run_dir(node) / DIRS[kind] / f"{vmid}.pid"
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(["bash", "-c", f'exec -a "kvm -id {vmid}" sleep infinity'],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        pidfile.write_text(f"{proc.pid}\n", encoding="ascii")
        self._procs[key] = (proc, pidfile)

    def _end(self, key: Key) -> None:
        proc, pidfile = self._procs.pop(key)
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        pidfile.unlink(missing_ok=True)
