"""Run ClusterLabs fence agents (``fence_ipmilan``, ``fence_redfish``, …).

Theory of operation. Every fence agent reads its options from stdin when it is started
without arguments: one ``key=value`` per line, ``action=`` says what to do. pvha uses
only that protocol, so

* argv is ``[absolute agent path]`` and nothing else: no shell, no option, and so no
  secret ever shows up in ``ps`` or ``/proc/<pid>/cmdline``;
* every call has a timeout; the agent runs in its own session (process group) and the
  whole group is killed at the deadline, because agents start helpers (``ipmitool``)
  that would otherwise outlive them;
* exit codes mean what the fence-agents API says: ``off`` 0 = done; ``status`` 0 = on,
  2 = off, anything else = could not tell;
* the agent's output is kept only redacted (secret option values replaced) and short.

The agent name must look like ``fence_<word>`` and is looked up in ``PATH`` plus
``/usr/sbin`` and ``/sbin``, where Debian's fence-agents package installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from pvha.errors import FenceDeviceConfigError, FenceDeviceError, FenceTimeoutError
from pvha.fence.config import FenceTarget
from pvha.fence.device import PowerState, ResolvedOptions, redact, resolve_secrets

_AGENT_RE = re.compile(r"^fence_[A-Za-z0-9_]+$")
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_STATUS_EXIT = {0: PowerState.ON, 2: PowerState.OFF}
# Options pvha sets itself; a value in fence.cfg (PVE examples carry action=off) is dropped.
_OWN_KEYS = frozenset({"action", "option"})


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """How one agent call ended: exit code and redacted, shortened output."""

    exit_code: int
    output: str


def find_agent(agent: str, search_path: str | None = None) -> str:
    """Absolute path of the fence agent ``agent``; raises FenceDeviceConfigError if the
    name is not ``fence_<word>`` or no executable of that name is found."""
    if not _AGENT_RE.match(agent):
        raise FenceDeviceConfigError(f"'{agent}' is not a fence agent name (fence_<name>)")
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_PATH])
    found = shutil.which(agent, path=search_path)
    if found is None:
        raise FenceDeviceConfigError(f"fence agent {agent} is not installed")
    return os.path.abspath(found)


def agent_stdin(options: Mapping[str, str], action: str) -> bytes:
    """The stdin text for one call: the options as ``key=value`` lines, then ``action``."""
    lines = [f"{k}={v}" for k, v in options.items() if k not in _OWN_KEYS]
    lines.append(f"action={action}")
    return ("\n".join(lines) + "\n").encode("utf-8")


class AgentRunner:
    """Starts fence agents; ``search_path`` and ``env`` are for tests and odd installs."""

    def __init__(
        self, search_path: str | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.search_path = search_path
        base = dict(os.environ if env is None else env)
        # Debian's agents print a DeprecationWarning ('pipes') on every call otherwise.
        base.setdefault("PYTHONWARNINGS", "ignore")
        self.env = base

    def run(
        self, agent: str, options: ResolvedOptions, action: str, timeout: float, *, label: str
    ) -> AgentOutcome:
        """Run ``agent`` once with ``action``; returns its exit code and redacted output.

        Raises FenceTimeoutError if it has not exited after ``timeout`` seconds (its
        process group is killed), FenceDeviceConfigError if it cannot be started."""
        path = find_agent(agent, self.search_path)
        try:
            proc = subprocess.Popen(
                [path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise FenceDeviceConfigError(f"{label}: cannot start {agent}: {exc.strerror}") from None
        try:
            out, _ = proc.communicate(agent_stdin(options.values, action), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise FenceTimeoutError(
                f"{label}: {agent} {action} gave no answer within {timeout:g} s"
            ) from None
        text = out.decode("utf-8", "replace")
        return AgentOutcome(proc.returncode, redact(text, options.secrets))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the agent and every helper it started, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a pipe held open elsewhere
        proc.kill()


class FenceAgentDevice:
    """A :class:`~pvha.fence.device.PowerDevice` backed by a fence agent."""

    def __init__(self, target: FenceTarget, runner: AgentRunner | None = None) -> None:
        self.target = target
        self.runner = runner or AgentRunner()

    @property
    def label(self) -> str:
        return self.target.label

    def _call(self, action: str, timeout: float) -> AgentOutcome:
        options = resolve_secrets(self.target.options, label=self.label)
        return self.runner.run(self.target.agent, options, action, timeout, label=self.label)

    def power_off(self, timeout: float) -> None:
        """``action=off``; exit 0 means the agent did it (pvha still reads back)."""
        outcome = self._call("off", timeout)
        if outcome.exit_code != 0:
            raise FenceDeviceError(self._failure("off", outcome))

    def power_status(self, timeout: float) -> PowerState:
        """``action=status``: exit 0 = on, 2 = off, anything else is an error."""
        outcome = self._call("status", timeout)
        state = _STATUS_EXIT.get(outcome.exit_code)
        if state is None:
            raise FenceDeviceError(self._failure("status", outcome))
        return state

    def _failure(self, action: str, outcome: AgentOutcome) -> str:
        said = f": {outcome.output}" if outcome.output else ""
        return f"{self.label}: {self.target.agent} {action} failed (exit {outcome.exit_code}){said}"
