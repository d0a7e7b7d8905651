"""The error hierarchy. The CLI edge turns each into one line on stderr and an exit code."""

from __future__ import annotations


class PvhaError(Exception):
    """Base of every error pvha reports to a user. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(PvhaError):
    """Bad arguments or references given by the user (exit 2)."""

    exit_code = 2


class ConfigError(PvhaError):
    """A configuration file or value is invalid; carries file and line when known."""

    def __init__(self, reason: str, path: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{reason}")


class StoreError(PvhaError):
    """The configuration store cannot be read or written (permissions, missing dir, ...)."""


class LockError(PvhaError):
    """A lock could not be taken in time."""


class ApiError(PvhaError):
    """The PVE API answered with an error or could not be reached."""


class FenceError(PvhaError):
    """A fence device failed or could not prove a node is off."""


class IllegalTransition(PvhaError):
    """A state machine got an event that is not legal in its current state."""
