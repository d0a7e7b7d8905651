"""A CA and one server certificate for all simulated nodes, made with the ``openssl``
CLI (argv lists, no shell, no secrets on the command line: keys are written to files).

EC P-256 keys keep start-up fast. The server certificate names every node address and
``localhost``; ``ca.pem`` is what pvha trusts (``PVHA_CA_FILE``). Existing files are
reused, so a restarted simulator keeps the CA its clients already trust.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
from pathlib import Path

from pvha.errors import PvhaError


class CertError(PvhaError):
    """openssl is missing or failed."""


def _run(argv: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CertError(f"cannot run openssl: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise CertError(f"openssl {argv[1]} failed: {last}")


def ensure_certs(state: Path, ips: list[str], names: list[str]) -> tuple[Path, Path, Path]:
    """Create (or reuse) ``ca.pem`` and ``server.pem``/``server.key`` in ``state``.
    Returns (ca, cert, key). A server cert missing one of ``ips`` is remade."""
    ca, ca_key = state / "ca.pem", state / "ca.key"
    cert, key = state / "server.pem", state / "server.key"
    old = os.umask(0o077)  # keys are born 0600
    try:
        if not (ca.exists() and ca_key.exists()):
            _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key.name,
                  "-out", ca.name, "-days", "3650", "-subj", "/CN=pvha sim CA",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], state)
            cert.unlink(missing_ok=True)
        sans = [f"IP:{ip}" for ip in ips] + ["IP:127.0.0.1"]
        sans += [f"DNS:{n}" for n in ["localhost", *names]]
        ext = state / "server.ext"
        wanted = (f"subjectAltName={','.join(sans)}\nbasicConstraints=CA:FALSE\n"
                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        if not (cert.exists() and key.exists() and ext.exists()
                and ext.read_text() == wanted):
            ext.write_text(wanted)
            _run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key.name,
                  "-out", "server.csr", "-subj", "/CN=pvha-sim"], state)
            _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", ca.name,
                  "-CAkey", ca_key.name, "-CAcreateserial", "-out", cert.name,
                  "-days", "825", "-extfile", ext.name], state)
            (state / "server.csr").unlink(missing_ok=True)
    finally:
        os.umask(old)
    os.chmod(ca, 0o644)
    return ca, cert, key


def fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate in PVE's ``AB:CD:...`` form."""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
