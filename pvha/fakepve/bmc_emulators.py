"""BMC emulators on loopback for tests and the fake cluster: IPMI (pyghmi) and Redfish
(sushy-emulator's fake driver). Both are optional dependencies (the ``test`` extra);
they are imported only when an emulator starts. Test-side parts of the fake PVE: the
product's fence code (:mod:`pvha.fence`) never imports them.

IPMI. :func:`make_bmc` builds an in-process pyghmi BMC on ``127.0.0.1`` (port 0 = a free
one) whose power state lives behind :class:`PowerHooks`, so a simulator can wire a BMC's
"off" to its own node power. :func:`serve_bmcs` runs pyghmi's event loop until a stop
event is set. :class:`IpmiEmulatorProcess` runs N such BMCs in a child process
(``python -m pvha.fakepve.bmc_emulators ipmi``): tests can kill it, or freeze it (SIGSTOP) to
get a BMC that stops answering. The password goes to the child on stdin, not argv.

pyghmi's BMC answers "cipher suite 3" even to a client that asked for another one;
pyghmi's own client then fails, so the open-session reply is patched to refuse any auth
algorithm but RAKP-HMAC-SHA1 (the client then retries with it). ipmitool and
fence_ipmilan (``lanplus``) are unaffected.

Redfish. :class:`RedfishEmulatorProcess` runs sushy-emulator with its fake systems driver
over HTTPS (a CA and certificate from :mod:`pvha.fakepve.certs`), basic auth from a
bcrypt htpasswd (cost 4: the default cost adds ~0.3 s per request), and a per-instance
state directory (sushy keeps state in sqlite). The fake driver delays power changes by
a random 1–11 s; ``power_delay`` fixes that delay (None keeps the random one).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

_READY_TIMEOUT = 30.0


class EmulatorError(RuntimeError):
    """An emulator did not start (its last output lines are in the message)."""


# --- IPMI ---------------------------------------------------------------------------------


@dataclass(slots=True)
class PowerHooks:
    """Where a fake BMC's power state lives. ``get`` returns ``"on"``/``"off"``."""

    get: Callable[[], str]
    on: Callable[[], None]
    off: Callable[[], None]


class MemoryPower:
    """A power switch in memory; ``hooks()`` gives the BMC's view of it."""

    def __init__(self, state: str = "on") -> None:
        self.state = state

    def hooks(self) -> PowerHooks:
        def set_state(value: str) -> Callable[[], None]:
            return lambda: setattr(self, "state", value)

        return PowerHooks(lambda: self.state, set_state("on"), set_state("off"))


_patched = False


def patch_pyghmi() -> None:
    """Make pyghmi's BMC refuse any auth algorithm but RAKP-HMAC-SHA1 (see the module
    docstring); idempotent."""
    global _patched
    if _patched:
        return
    import pyghmi.ipmi.private.serversession as ss  # type: ignore[import-untyped]

    original = ss.ServerSession.create_open_session_response

    def open_response(self: Any, request: bytearray) -> Any:
        if len(request) > 12 and request[12] not in (0, 1):  # 1 = RAKP-HMAC-SHA1
            self.clientsessionid = request[4:8]
            return bytearray([request[0], 0x11, 0, 0]) + request[4:8] + bytearray(4)
        return original(self, request)

    ss.ServerSession.create_open_session_response = open_response
    _patched = True


def reserve_wakeup_socket() -> None:
    """pyghmi wakes its IO thread through ``iosockets[0]``; make that a client socket of
    its own before any BMC exists, so closing BMCs (a stopped farm, tests starting many
    BMCs in one process) never removes it. Idempotent; :func:`make_bmc` calls it."""
    patch_pyghmi()
    from pyghmi.ipmi.private import session

    if not session.iosockets:
        session.Session._assignsocket()


def make_bmc(
    user: str,
    password: str,
    *,
    port: int = 0,
    address: str = "127.0.0.1",
    hooks: PowerHooks | None = None,
    on_event: Callable[[str, int], None] | None = None,
) -> Any:
    """An in-process pyghmi BMC bound to ``address:port`` (0 = free port; read the bound
    port from ``bmc.port``). Power actions go to ``hooks`` (a MemoryPower if None);
    ``on_event(event, port)`` is told about each power action."""
    reserve_wakeup_socket()
    from pyghmi.ipmi import bmc

    power = hooks or MemoryPower().hooks()

    class FakeBmc(bmc.Bmc):  # type: ignore[misc]
        def _event(self, what: str) -> None:
            if on_event is not None:
                on_event(what, self.port)

        def get_power_state(self) -> str:
            return power.get()

        def power_off(self) -> None:
            power.off()
            self._event("power_off")

        def power_shutdown(self) -> None:
            power.off()
            self._event("power_shutdown")

        def power_on(self) -> None:
            power.on()
            self._event("power_on")

        def power_cycle(self) -> None:
            power.on()
            self._event("power_cycle")

        def power_reset(self) -> None:
            self._event("power_reset")

        def is_active(self) -> bool:
            return power.get() == "on"

        def get_boot_device(self) -> str:
            return "default"

        def cold_reset(self) -> None:
            self._event("cold_reset")

    server = FakeBmc({user: password}, port=port, address=address)
    server.port = server.serversocket.getsockname()[1]
    return server


def serve_bmcs(stop: threading.Event, poll: float = 0.5) -> None:
    """Run pyghmi's event loop (it serves every BMC of this process) until ``stop``
    (checked every ``poll`` seconds). Run it in a thread to serve BMCs in-process."""
    from pyghmi.ipmi.private import session

    while not stop.is_set():
        session.Session.wait_for_rsp(timeout=poll)


def close_bmc(server: Any) -> None:
    """Stop serving ``server`` (from :func:`make_bmc`) and free its port. pyghmi's IO
    thread reads a shared socket list, so the socket leaves that list before it closes."""
    from pyghmi.ipmi.private import session

    sock = server.serversocket
    session.Session.bmc_handlers.pop(sock, None)
    if sock in session.iosockets:
        session.iosockets.remove(sock)
    sock.close()


def _ipmi_main(count: int, user: str) -> int:
    password = sys.stdin.readline().rstrip("\n")
    lock = threading.Lock()

    def emit(record: dict[str, Any]) -> None:
        with lock:
            print(json.dumps(record), flush=True)

    def on_event(what: str, port: int) -> None:
        emit({"t": round(time.time(), 3), "port": port, "event": what})

    bmcs = [make_bmc(user, password, on_event=on_event) for _ in range(count)]
    emit({"listening": [b.port for b in bmcs]})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serve_bmcs(stop)
    return 0


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str | None:
    """One stdout line from ``proc`` before ``deadline``, None if it exited or timed out."""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            return line if line else None
        if proc.poll() is not None:
            return None
    return None


class IpmiEmulatorProcess:
    """``count`` fake BMCs in a child process on 127.0.0.1, each on its own free UDP
    port (``ports``). Power events the child reports collect in ``events``.

    Use as a context manager, or call ``stop()``; it always kills the child."""

    def __init__(self, count: int = 1, user: str = "admin", password: str = "password") -> None:
        self.events: list[dict[str, Any]] = []
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pvha.fakepve.bmc_emulators",
                "ipmi",
                "--count",
                str(count),
                "--user",
                user,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(password + "\n")
        self._proc.stdin.close()
        line = _read_line(self._proc, time.monotonic() + _READY_TIMEOUT)
        if line is None or "listening" not in line:
            self.stop()
            raise EmulatorError("the IPMI emulator did not start")
        self.ports: list[int] = json.loads(line)["listening"]
        self._reader = threading.Thread(target=self._read_events, daemon=True)
        self._reader.start()

    def _read_events(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    def pause(self) -> None:
        """Freeze the BMCs: they stop answering (SIGSTOP) until ``resume``."""
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the child (also when paused) and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- Redfish ------------------------------------------------------------------------------


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redfish_main(config: str) -> int:
    # The fake driver applies a power change randomly 1-11 s later; a fixed delay makes
    # runs repeatable (None = the stock random delay).
    delay = os.environ.get("PVHA_FAKE_POWER_DELAY")
    if delay not in (None, ""):
        import types

        from sushy_tools.emulator.resources.systems import fakedriver  # type: ignore[import-untyped]

        fakedriver.random = types.SimpleNamespace(randint=lambda a, b: int(delay))
    from sushy_tools.emulator.main import main  # type: ignore[import-untyped]

    sys.argv = ["sushy-emulator", "--config", config]
    return int(main() or 0)


class RedfishEmulatorProcess:
    """sushy-emulator (fake driver) over HTTPS on 127.0.0.1 with fake ``systems``
    (names; all powered on). ``ca`` verifies its certificate, ``port`` is its port,
    ``system_uri(name)`` the Redfish path of one system."""

    def __init__(
        self,
        workdir: Path,
        systems: Sequence[str] = ("node1",),
        *,
        user: str = "admin",
        password: str = "password",
        power_delay: int | None = 0,
    ) -> None:
        from pvha.fakepve.certs import ensure_certs

        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "certs").mkdir(exist_ok=True)
        self.ca, cert, key = ensure_certs(workdir / "certs", ["127.0.0.1"], ["localhost"])
        self.user, self.password = user, password
        self.uuids = {name: str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.pvha")) for name in systems}
        self.port = free_tcp_port()
        config = self._write_config(workdir, cert, key)
        env = dict(os.environ)
        env["PVHA_FAKE_POWER_DELAY"] = "" if power_delay is None else str(power_delay)
        self._log = (workdir / "emulator.log").open("w")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pvha.fakepve.bmc_emulators", "redfish", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._logpath = workdir / "emulator.log"
        self._wait_ready()

    def _write_config(self, workdir: Path, cert: Path, key: Path) -> Path:
        import bcrypt

        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(f"{self.user}:{hashed}\n")
        systems = [
            {"uuid": u, "name": n, "power_state": "On", "external_notifier": False, "nics": []}
            for n, u in self.uuids.items()
        ]
        config = workdir / "emulator.conf"
        config.write_text(
            f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
            f"SUSHY_EMULATOR_LISTEN_PORT = {self.port}\n"
            f"SUSHY_EMULATOR_FAKE_DRIVER = True\n"
            f"SUSHY_EMULATOR_STATE_DIR = {str(workdir / 'state')!r}\n"
            f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}\n"
            f"SUSHY_EMULATOR_SSL_CERT = {str(cert)!r}\n"
            f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}\n"
            f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}\n"
        )
        return config

    def _wait_ready(self) -> None:
        import requests

        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                resp = requests.get(f"{self.url}/redfish/v1", verify=str(self.ca), timeout=2)
                if resp.status_code in (200, 401):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        tail = self._logpath.read_text(errors="replace").strip().splitlines()[-5:]
        self.stop()
        raise EmulatorError("sushy-emulator did not start: " + " | ".join(tail))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def system_uri(self, name: str) -> str:
        return f"/redfish/v1/Systems/{self.uuids[name]}"

    def power_state(self, name: str) -> str:
        """The system's PowerState as the emulator reports it now."""
        import requests

        resp = requests.get(
            self.url + self.system_uri(name),
            verify=str(self.ca),
            timeout=10,
            auth=(self.user, self.password),
        )
        resp.raise_for_status()
        return str(resp.json()["PowerState"])

    def stop(self) -> None:
        """Kill the emulator and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pvha.fakepve.bmc_emulators ipmi --count N --user U`` (password on stdin) or
    ``python -m pvha.fakepve.bmc_emulators redfish --config FILE``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pvha.fakepve.bmc_emulators")
    sub = parser.add_subparsers(dest="kind", required=True)
    ipmi = sub.add_parser("ipmi")
    ipmi.add_argument("--count", type=int, default=1)
    ipmi.add_argument("--user", default="admin")
    redfish = sub.add_parser("redfish")
    redfish.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    if args.kind == "ipmi":
        return _ipmi_main(args.count, args.user)
    return _redfish_main(args.config)


if __name__ == "__main__":
    sys.exit(main())
