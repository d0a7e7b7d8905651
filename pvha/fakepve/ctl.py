"""The control channel of a running fake PVE: a unix socket ``DIR/ctl.sock`` (mode 0600)
speaking one JSON line each way per connection.

Request ``{"command": "power node2 off"}``; answer ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. Vocabulary (pve-ha-semantics §8.4 for the hardware
part, plus fault injection):

    power NODE on|off        network NODE on|off       reboot NODE      shutdown NODE
                             (reboot/shutdown are orderly: with --agents the node's agent
                             is stopped as systemd stops it, then the power goes off)
    partition NODE,NODE... [NODE,NODE...]...    partition heal
    guest VMID start|stop    (truth change, no task: as if done on the node itself)
    guest VMID lock NAME     guest VMID unlock   (the config lock, e.g. backup)
    guest VMID pause|resume|suspend|io-error    (a running VM's QEMU state)
    guest VMID fail start|migrate    guest VMID hang start|stop|shutdown|migrate
                             (the guest's next such task fails / never ends)
    guest VMID template      (a stopped guest becomes a template)
    guest VMID agent ok|hung|broken   (a VM's QEMU guest agent answers pings / does not
                             until the VM's next start / never again)
    guest VMID pve-ha started|stopped|disabled|ignored|off   (PVE's own HA manages it)
    latency MS [NODE]        fail5xx COUNT [NODE] [STATUS]    drop COUNT [NODE]
    expire-tickets           clear-faults              status
    requests [reset]         (request counts by method and path template; reset zeroes them)
    bmc NODE fail|work       (with --bmc: the node's BMC stops / starts answering)
    cfs NODE delay SECONDS|stop|resume   (cfs changes reach NODE after SECONDS / never
                             until resumed / after the --cfs-delay again)
    cfs NODE readonly on|off  (writes on NODE's mount fail with EROFS)
    cfs NODE full on|off     (writes that need space on NODE's mount fail with ENOSPC)

``partition`` puts each comma-separated group in its own network segment (nodes not
named share another one); nodes in different segments neither see nor reach each other.
NODE ``*`` or no NODE means every node. ``fail5xx`` answers the next COUNT requests with
STATUS (default 503) and no PVE payload; ``drop`` closes the next COUNT connections
without an answer; ``latency`` delays every answer (0 clears it); ``expire-tickets``
invalidates every ticket and CSRF token issued so far (tokens keep working);
``status`` returns the truth (nodes, guests, where they run, split brains, faults).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvha.errors import PvhaError

if TYPE_CHECKING:
    from pvha.fakepve.server import FakePve

SOCKET_NAME = "ctl.sock"
MAX_LINE = 64 * 1024


class CtlError(PvhaError):
    """A control command failed (bad command, or no simulator listening)."""


def _on_off(word: str) -> bool:
    if word not in ("on", "off"):
        raise CtlError(f"expected on|off, got '{word}'")
    return word == "on"


def _count(word: str, what: str) -> int:
    if not word.isdigit():
        raise CtlError(f"{what} must be a non-negative integer, got '{word}'")
    return int(word)


def execute(fake: FakePve, text: str) -> Any:
    """Run one command against ``fake``; returns a JSON-able result or raises CtlError."""
    words = text.split()
    if not words:
        raise CtlError("empty command")
    cmd, args = words[0], words[1:]
    handler = _COMMANDS.get(cmd)
    if handler is None:
        raise CtlError(f"unknown command '{cmd}'")
    arity, fn = handler
    if not arity[0] <= len(args) <= arity[1]:
        raise CtlError(f"'{cmd}': wrong number of arguments")
    return fn(fake, args)


def _node(fake: FakePve, name: str) -> str:
    if name not in fake.cluster.nodes:
        raise CtlError(f"no such node '{name}'")
    return name


def _target(fake: FakePve, a: list[str], index: int) -> str | None:
    """The optional NODE argument of a fault; absent or ``*`` = every node."""
    if len(a) <= index or a[index] == "*":
        return None
    return _node(fake, a[index])


def _power(fake: FakePve, a: list[str]) -> Any:
    fake.cluster.set_power(_node(fake, a[0]), _on_off(a[1]))


def _network(fake: FakePve, a: list[str]) -> Any:
    fake.cluster.set_network(_node(fake, a[0]), _on_off(a[1]))


def _partition(fake: FakePve, a: list[str]) -> Any:
    if a == ["heal"]:
        return fake.cluster.partition([])
    groups = [[_node(fake, n) for n in word.split(",") if n] for word in a]
    seen = [n for g in groups for n in g]
    if len(seen) != len(set(seen)):
        raise CtlError("a node may be in one group only")
    fake.cluster.partition(groups)


def _reboot(fake: FakePve, a: list[str]) -> Any:
    fake.shut_down(_node(fake, a[0]), reboot=True)


def _shutdown(fake: FakePve, a: list[str]) -> Any:
    fake.shut_down(_node(fake, a[0]), reboot=False)


_TASKS = ("start", "stop", "shutdown", "migrate")
_PVE_HA_STATES = ("started", "stopped", "disabled", "ignored", "off")
_AGENT_STATES = ("ok", "hung", "broken")


def _guest(fake: FakePve, a: list[str]) -> Any:
    vmid = _count(a[0], "VMID")
    action = a[1]
    if action in ("fail", "hang", "template", "io-error", "pve-ha", "agent"):
        return _guest_fault(fake, vmid, a[1:])
    if action not in ("start", "stop", "lock", "unlock", "pause", "resume", "suspend") or (
            len(a) == 3) != (action == "lock"):
        raise CtlError("expected: guest VMID start|stop|pause|resume|suspend|unlock, or "
                       "guest VMID lock NAME")
    try:
        if action in ("pause", "resume", "suspend"):
            state = {"pause": "paused", "resume": None, "suspend": "suspended"}[action]
            fake.cluster.guest_qmp(vmid, state)
        elif action in ("lock", "unlock"):
            fake.cluster.set_lock(vmid, a[2] if action == "lock" else None)
        else:
            fake.cluster.guest_set(vmid, action == "start")
    except (KeyError, ValueError) as exc:
        raise CtlError(str(exc).strip("'\"")) from None
    except OSError as exc:  # the owner node's pmxcfs is read-only (no quorum there)
        raise CtlError(f"cannot write the config of guest {vmid}: {exc.strerror or exc}") from None


def _guest_fault(fake: FakePve, vmid: int, a: list[str]) -> Any:
    """``fail|hang ACTION`` (the guest's next such task; ``fail ha-delete``: the next
    DELETE of its PVE HA resource), ``template``, ``io-error``, ``pve-ha STATE|off``,
    ``agent ok|hung|broken``."""
    what = a[0]
    if what in ("template", "io-error") and len(a) != 1 or (
            what in ("fail", "hang") and (len(a) != 2 or a[1] not in (*_TASKS, "ha-delete"))) or (
            what == "fail" and a[1] in ("stop", "shutdown")) or (
            what == "hang" and a[1] == "ha-delete") or (
            what == "pve-ha" and (len(a) != 2 or a[1] not in _PVE_HA_STATES)) or (
            what == "agent" and (len(a) != 2 or a[1] not in _AGENT_STATES)):
        raise CtlError("expected: guest VMID fail start|migrate|ha-delete, guest VMID hang "
                       "start|stop|shutdown|migrate, guest VMID template, guest VMID io-error, "
                       f"guest VMID pve-ha {'|'.join(_PVE_HA_STATES)}, "
                       f"guest VMID agent {'|'.join(_AGENT_STATES)}")
    try:
        if what == "agent":
            fake.cluster.guest_agent(vmid, a[1])
        elif what == "pve-ha":
            fake.cluster.set_pve_ha(vmid, None if a[1] == "off" else a[1])
        elif what == "template":
            fake.cluster.make_template(vmid)
        elif what == "io-error":
            fake.cluster.guest_qmp(vmid, "io-error")
        else:
            fake.cluster.guest_fault(vmid, what, a[1])
    except (KeyError, ValueError) as exc:
        raise CtlError(str(exc).strip("'\"")) from None


def _latency(fake: FakePve, a: list[str]) -> Any:
    fake.faults.set_latency(_count(a[0], "MS"), _target(fake, a, 1))


def _fail(fake: FakePve, a: list[str]) -> Any:
    status = _count(a[2], "STATUS") if len(a) > 2 else 503
    if not 500 <= status <= 599:
        raise CtlError("STATUS must be 500..599")
    fake.faults.add_fail(_count(a[0], "COUNT"), _target(fake, a, 1), status)


def _drop(fake: FakePve, a: list[str]) -> Any:
    fake.faults.add_drop(_count(a[0], "COUNT"), _target(fake, a, 1))


def _bmc(fake: FakePve, a: list[str]) -> Any:
    if fake.bmcs is None:
        raise CtlError("no BMCs: start the simulator with --bmc ipmi|redfish")
    if a[1] not in ("work", "fail"):
        raise CtlError(f"expected work|fail, got '{a[1]}'")
    fake.bmcs.set_working(_node(fake, a[0]), a[1] == "work")


def _cfs(fake: FakePve, a: list[str]) -> Any:
    store = fake.pmxcfs
    if store is None:
        raise CtlError(f"no pmxcfs mounts: {fake.cfs_notice or 'the simulator is stopping'}")
    node, what = _node(fake, a[0]), a[1]
    if what in ("stop", "resume") and len(a) == 2:
        return store.set_delay(node, None if what == "stop" else fake.cfs_delay)
    if what == "delay" and len(a) == 3:
        try:
            seconds = float(a[2])
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= 3600:
            raise CtlError(f"SECONDS must be 0..3600, got '{a[2]}'")
        return store.set_delay(node, seconds)
    if what in ("readonly", "full") and len(a) == 3:
        on = _on_off(a[2])
        return store.set_readonly(node, on) if what == "readonly" else store.fill(node, on)
    raise CtlError("expected: cfs NODE delay SECONDS|stop|resume, cfs NODE readonly on|off, "
                   "cfs NODE full on|off")


def _status(fake: FakePve, a: list[str]) -> Any:
    truth = fake.cluster.truth()
    for name, info in truth["nodes"].items():
        info["address"] = "{}:{}".format(*fake.address(name))
    truth["faults"] = fake.faults.describe()
    for name, wd in fake.watchdogs.state().items():
        truth["nodes"][name]["watchdog"] = {**wd, "socket": str(fake.watchdogs.muxes[name].path)}
    for name in truth["nodes"]:
        truth["nodes"][name]["cfs"] = (
            fake.pmxcfs.describe(name) if fake.pmxcfs is not None
            else {"mount": None, "shared_dir": str(fake.cfs_root(name)),
                  "notice": fake.cfs_notice})
    if fake.agents is not None:
        for name in truth["nodes"]:
            truth["nodes"][name]["agent"] = fake.agents.describe(name)
            truth["nodes"][name]["shutting_down"] = fake.shutting_down.get(name)
    if fake.bmcs is not None:
        truth["bmc"] = fake.bmcs.describe()
    return truth


def _requests(fake: FakePve, a: list[str]) -> Any:
    if a and a[0] != "reset":
        raise CtlError(f"expected 'requests' or 'requests reset', got '{a[0]}'")
    return fake.api.requests(reset=bool(a))


_COMMANDS: dict[str, tuple[tuple[int, int], Callable[[FakePve, list[str]], Any]]] = {
    "power": ((2, 2), _power),
    "network": ((2, 2), _network),
    "partition": ((1, 32), _partition),
    "reboot": ((1, 1), _reboot),
    "shutdown": ((1, 1), _shutdown),
    "guest": ((2, 3), _guest),
    "bmc": ((2, 2), _bmc),
    "cfs": ((2, 3), _cfs),
    "latency": ((1, 2), _latency),
    "fail5xx": ((1, 3), _fail),
    "drop": ((1, 2), _drop),
    "expire-tickets": ((0, 0), lambda f, a: f.auth.expire_all()),
    "clear-faults": ((0, 0), lambda f, a: f.faults.clear()),
    "status": ((0, 0), _status),
    "requests": ((0, 1), _requests),
}


class _CtlHandler(socketserver.StreamRequestHandler):
    server: CtlServer

    def handle(self) -> None:
        line = self.rfile.readline(MAX_LINE)
        try:
            request = json.loads(line)
            command = request["command"] if isinstance(request, dict) else None
            if not isinstance(command, str):
                raise CtlError("request must be {\"command\": \"...\"}")
            answer = {"ok": True, "result": execute(self.server.fake, command)}
        except CtlError as exc:
            answer = {"ok": False, "error": str(exc)}
        except ValueError:
            answer = {"ok": False, "error": "request is not JSON"}
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the control thread
            answer = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        self.wfile.write(json.dumps(answer).encode() + b"\n")


class CtlServer(socketserver.ThreadingUnixStreamServer):
    """Serves ``DIR/ctl.sock`` for ``fake`` on a daemon thread."""

    daemon_threads = True

    def __init__(self, fake: FakePve) -> None:
        self.fake = fake
        self.path = fake.state / SOCKET_NAME
        if len(str(self.path)) > 100:  # sun_path holds 108 bytes
            raise CtlError(f"state dir path too long for a unix socket: {fake.state}")
        if self.path.exists() or self.path.is_symlink():
            _refuse_if_live(self.path)
            self.path.unlink()
        old = os.umask(0o077)
        try:
            super().__init__(str(self.path), _CtlHandler)
        finally:
            os.umask(old)
        self._thread = threading.Thread(target=self.serve_forever, name="fakepve-ctl",
                                        daemon=True)

    def start(self) -> CtlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _refuse_if_live(path: Path) -> None:
    """Another simulator already answers on this socket: do not steal it."""
    try:
        send(path.parent, "status", timeout=1.0)
    except CtlError:
        return
    raise CtlError(f"a simulator is already running with state dir {path.parent}")


def send(state_dir: Path, command: str, timeout: float = 30.0) -> Any:
    """Send one command to the simulator of ``state_dir``; its result, or CtlError."""
    path = Path(state_dir) / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise CtlError(f"no simulator at {path}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise CtlError("garbled answer from the simulator") from None
    if not answer.get("ok"):
        raise CtlError(str(answer.get("error", "failed")))
    return answer.get("result")
