"""TLS against a real local HTTPS server (loopback only) with a self-signed certificate
made for the test by the ``openssl`` CLI (``cryptography`` is not installed here)."""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import requests
from pve_fake import PASSWORD, TOKEN_SECRET, api_settings, version

from pvha.adapters.pve_api import PveApi
from pvha.adapters.tls import PinnedFingerprintAdapter, cert_fingerprint
from pvha.errors import ApiTlsError
from pvha.ports import GuestRef

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@dataclass
class TlsServer:
    port: int
    cert: Path
    fingerprint: str
    requests: list[str]


def _make_cert(tmp: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = _make_cert(tmp, "server")
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            seen.append(self.path + " " + self.headers.get("Authorization", ""))
            self._json({"data": {"version": "9.2.11", "release": "9.2"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            seen.append(f"POST {self.path} {sorted(form)}")
            if self.path.endswith("/access/ticket") and form.get("password") == PASSWORD:
                self._json({"data": {"ticket": "PVE:t", "CSRFPreventionToken": "c"}})
            elif self.headers.get("CSRFPreventionToken") == "c":
                self._json({"data": "UPID:pve1:00000001:00000002:00000003:qmstart:100:a@pve:"})
            else:
                self.send_response(401, "Permission denied - invalid csrf token")
                self.send_header("Content-Length", "0")
                self.end_headers()

        def _json(self, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    try:
        yield TlsServer(server.server_address[1], cert, cert_fingerprint(der), seen)
    finally:
        server.shutdown()
        server.server_close()


def _api(srv: TlsServer, **over: object) -> PveApi:
    settings = api_settings(hosts=("127.0.0.1",), port=srv.port, attempts=1, **over)
    return PveApi.from_settings(settings, sleep=lambda s: None)


def test_fingerprint_is_pvestyle_sha256(tls_server: TlsServer):
    der = ssl.PEM_cert_to_DER_cert(tls_server.cert.read_text())
    assert tls_server.fingerprint == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_pinned_fingerprint_accepts_the_right_certificate(tls_server: TlsServer):
    session = requests.Session()
    session.mount("https://", PinnedFingerprintAdapter([tls_server.fingerprint.lower()]))
    # verify=True and a CA bundle that does not know the cert: the pin replaces CA checks
    resp = session.get(f"https://127.0.0.1:{tls_server.port}/api2/json/version", verify=True,
                       timeout=10)
    assert resp.json()["data"]["release"] == "9.2"


def test_pinned_fingerprint_rejects_another_certificate_before_sending(tls_server: TlsServer):
    before = len(tls_server.requests)
    wrong = "AA:" * 31 + "AA"
    session = requests.Session()
    session.mount("https://", PinnedFingerprintAdapter([wrong]))
    with pytest.raises(requests.exceptions.SSLError, match="fingerprint mismatch"):
        session.get(f"https://127.0.0.1:{tls_server.port}/api2/json/version", timeout=10)
    assert len(tls_server.requests) == before  # not a byte of the request went out


def test_client_with_pinned_fingerprint_talks_to_the_server(tls_server: TlsServer):
    api = _api(tls_server, fingerprints=("00" * 32, tls_server.fingerprint))  # any of a set
    assert version(api)["version"] == "9.2.11"
    assert tls_server.requests[-1].endswith(f"!ha={TOKEN_SECRET}")


def test_client_with_wrong_fingerprint_gets_a_tls_error_and_sends_no_token(tls_server: TlsServer):
    before = len(tls_server.requests)
    with pytest.raises(ApiTlsError) as err:
        version(_api(tls_server, fingerprints=("11" * 32,)))
    assert "fingerprint mismatch" in str(err.value)
    assert TOKEN_SECRET not in str(err.value)
    assert len(tls_server.requests) == before


def test_client_with_ca_file_verifies_and_ignores_requests_ca_bundle(
    tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert version(_api(tls_server, ca_file=tls_server.cert))["release"] == "9.2"


def test_client_with_system_store_rejects_the_self_signed_cert(tls_server: TlsServer):
    with pytest.raises(ApiTlsError):
        version(_api(tls_server))


def test_client_with_another_ca_rejects_the_server(tls_server: TlsServer, tmp_path: Path):
    other, _ = _make_cert(tmp_path, "other")
    with pytest.raises(ApiTlsError):
        version(_api(tls_server, ca_file=other))


def test_password_login_goes_through_the_pin(tls_server: TlsServer):
    api = _api(tls_server, fingerprints=(tls_server.fingerprint,), password_auth=True)
    assert api.post_start(GuestRef("qemu", 100, "pve1")).startswith("UPID:pve1:")
    assert tls_server.requests[-2:] == [
        "POST /api2/json/access/ticket ['password', 'username']",
        "POST /api2/json/nodes/pve1/qemu/100/status/start []"]


def test_wrong_pin_means_the_password_is_never_sent(tls_server: TlsServer):
    before = len(tls_server.requests)
    with pytest.raises(ApiTlsError):
        version(_api(tls_server, fingerprints=("22" * 32,), password_auth=True))
    assert len(tls_server.requests) == before
