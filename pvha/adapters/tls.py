"""TLS verification for the PVE API: a CA file, or pinned SHA-256 certificate fingerprints.

PVE nodes serve self-signed certificates signed by the cluster CA
(``/etc/pve/pve-root-ca.pem``). PVE's own tools trust either that CA or a pinned
fingerprint of the node certificate. Pinning here means: the handshake is done without
CA or hostname checks, then the SHA-256 of the peer's DER certificate must be one of the
pinned values, before a single byte of the request (or a credential) is sent. A mismatch
raises an SSLError from urllib3, which requests turns into ``requests.exceptions.SSLError``.
A set is allowed because every node of a cluster has its own certificate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import SSLError


def normalise_fingerprint(fp: str) -> bytes:
    """``AB:CD:...`` or ``abcd...`` (64 hex digits) -> the 32 raw digest bytes."""
    digits = fp.replace(":", "").strip()
    raw = bytes.fromhex(digits)
    if len(raw) != 32:
        raise ValueError("a SHA-256 fingerprint has 32 bytes")
    return raw


def format_fingerprint(raw: bytes) -> str:
    """Raw digest -> PVE's display form, upper-case hex pairs joined by colons."""
    return ":".join(f"{b:02X}" for b in raw)


def cert_fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, in PVE's display form."""
    return format_fingerprint(hashlib.sha256(der).digest())


class _PinnedHTTPSConnection(HTTPSConnection):
    """Checks the peer certificate right after the handshake, before any request."""

    pinned: frozenset[bytes] = frozenset()

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) if self.sock is not None else None
        if der is None or hashlib.sha256(der).digest() not in self.pinned:
            got = cert_fingerprint(der) if der else "no certificate"
            self.close()
            raise SSLError(f"certificate fingerprint mismatch: peer presented {got}")
        self.is_verified = True


class PinnedFingerprintAdapter(HTTPAdapter):
    """A requests adapter that accepts a server only if its certificate's SHA-256 is
    pinned. Mount it on ``https://`` of a session; CA verification is switched off for
    this adapter alone (the pin replaces it), so ``verify``/``REQUESTS_CA_BUNDLE`` do not
    matter."""

    def __init__(self, fingerprints: Iterable[str], **kwargs: Any) -> None:
        pins = frozenset(normalise_fingerprint(fp) for fp in fingerprints)
        if not pins:
            raise ValueError("at least one fingerprint is needed")
        conn_cls = type("PinnedConnection", (_PinnedHTTPSConnection,), {"pinned": pins})
        self._pool_cls = type("PinnedPool", (HTTPSConnectionPool,), {"ConnectionCls": conn_cls})
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme,
            "https": self._pool_cls,
        }

    def send(self, request: Any, **kwargs: Any) -> Any:
        kwargs["verify"] = False  # the pin check in connect() is the verification
        return super().send(request, **kwargs)
