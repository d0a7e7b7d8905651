"""What every fence backend offers the fencer, and the option helpers they share.

A :class:`PowerDevice` is one sub-device aimed at one node (a BMC, a PDU outlet). It can
switch the node off and read the power state back; it never decides whether a node is
fenced: that is the fencer's job, and it only believes a read-back of ``OFF``.

Secrets. Options come from ``fence.cfg`` and may hold ``password=`` (PVE's format keeps
it there) or ``password_file=/path`` (read at call time, so the secret need not live in
the file). :func:`resolve_secrets` returns the options to hand to a backend plus the
secret values, and :func:`redact` removes those values from any text (agent output,
HTTP bodies) before it reaches an exception or a log line.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pvha.errors import FenceDeviceConfigError
from pvha.fence.config import Option

_SECRET_KEY_RE = re.compile(r"(passw|secret|token|community|identity)", re.IGNORECASE)
_FILE_KEYS = {"password_file": "password", "passwd_file": "password"}
_MAX_DETAIL = 300


class PowerState(enum.Enum):
    """A power state read back from a device."""

    ON = "on"
    OFF = "off"


class PowerDevice(Protocol):
    """One sub-device that can switch one node off and read its power state back.

    Both methods finish within ``timeout`` seconds or raise
    :class:`pvha.errors.FenceTimeoutError`; any other failure raises
    :class:`pvha.errors.FenceDeviceError`. Messages carry no secret."""

    @property
    def label(self) -> str:
        """``device:index`` from fence.cfg (what logs and results name)."""
        ...

    def power_off(self, timeout: float) -> None:
        """Ask the device to switch the node off (hard off, no graceful shutdown)."""
        ...

    def power_status(self, timeout: float) -> PowerState:
        """Read the node's power state from the device."""
        ...


@dataclass(frozen=True, slots=True)
class ResolvedOptions:
    """Options ready for a backend (``password_file`` replaced by ``password``), flags
    as ``"1"``, and the secret values to redact. Keep it out of logs."""

    values: Mapping[str, str]
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"ResolvedOptions(keys={sorted(self.values)!r})"


def is_secret_key(key: str) -> bool:
    """True for option names that hold a credential (password, passwd, snmp community…)."""
    return bool(_SECRET_KEY_RE.search(key))


def resolve_secrets(options: Iterable[Option], *, label: str) -> ResolvedOptions:
    """Turn fence.cfg options into backend options: later keys win, flags become ``1``,
    ``password_file=/path`` is read now (first line, without its line break).

    Raises FenceDeviceConfigError (naming the file, never its content) if a password file
    cannot be read or holds a line break inside the secret."""
    values: dict[str, str] = {}
    for key, value in options:
        if key in _FILE_KEYS:
            values[_FILE_KEYS[key]] = _read_secret_file(value or "", label=label)
        else:
            values[key] = "1" if value is None else value
    secrets = tuple(v for k, v in values.items() if v and is_secret_key(k))
    return ResolvedOptions(values, secrets)


def _read_secret_file(path: str, *, label: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FenceDeviceConfigError(
            f"{label}: cannot read password file {path}: {exc.strerror}"
        ) from None
    secret = text.rstrip("\r\n")
    if "\n" in secret or "\r" in secret or "\0" in secret:
        raise FenceDeviceConfigError(f"{label}: password file {path} holds more than one line")
    return secret


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***``, cut to its last 300
    characters (the part that says why something failed)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else "…" + text[-_MAX_DETAIL:]
