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



# --- API error classes (added by the real-path adapters, issue #4) -------------------------
# ``ApiError`` stays the one class the CLI edge has to know; the subclasses tell the
# imperative shell whether trying again can help (transient) or not (permanent).
# Messages carry PVE's own text (its reason phrase or JSON ``message``), never a secret.


class _ApiErrorFields(ApiError):
    """Shared fields: HTTP ``status`` (None if no HTTP answer), PVE's ``pve_message``,
    the per-parameter ``errors`` map of a 400, the API ``host`` that answered, and
    ``request_sent``: False if the request certainly never reached the node meant to act
    (so repeating a write is safe), None if unknown."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        pve_message: str | None = None,
        errors: dict[str, str] | None = None,
        host: str | None = None,
        request_sent: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.pve_message = pve_message
        self.errors = errors or {}
        self.host = host
        self.request_sent = request_sent


class ApiTransientError(_ApiErrorFields):
    """A failure that may go away on its own: PVE (or the node it forwards to) could not
    be reached, timed out, or answered 502/503/504/595-599 or a lock timeout."""


class ApiPermanentError(_ApiErrorFields):
    """PVE refused the request; repeating it unchanged gives the same answer
    (400 parameter errors, 403, 500 handler errors such as ``CT 100 already running``)."""


class ApiAuthError(ApiPermanentError):
    """Authentication failed (401, bad token or password, ticket not renewable)."""


class ApiTlsError(ApiPermanentError):
    """The TLS peer could not be verified (CA mismatch or pinned fingerprint mismatch)."""


class TaskFailedError(ApiPermanentError):
    """A PVE task stopped with an exit status other than ``OK`` / ``WARNINGS: n``.
    ``upid`` and ``exitstatus`` say which task and what PVE reported."""

    def __init__(self, message: str, *, upid: str, exitstatus: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.upid = upid
        self.exitstatus = exitstatus


class TaskTimeoutError(ApiTransientError):
    """A PVE task was still running when pvha stopped waiting; it may still finish."""

    def __init__(self, message: str, *, upid: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.upid = upid


# --- fence errors (issue #5) ----------------------------------------------------------------
# Messages name the device and what went wrong, never an option value: fence options hold
# passwords, and agent output is redacted before it is quoted.


class FenceDeviceError(FenceError):
    """One fence device call failed (agent exit code, HTTP error, bad answer)."""


class FenceTimeoutError(FenceDeviceError):
    """A fence device did not answer, or did not read back off, in time."""


class FenceDeviceConfigError(FenceDeviceError):
    """A fence device's options cannot be used (unknown agent, unreadable password file)."""
