"""Native Redfish fence backend (requests only, no fence-agents binaries).

Selected in ``fence.cfg`` with the agent name ``pvha_redfish``; it takes the option names
of ``fence_redfish`` so a device line can switch between the two by its agent alone::

    device bmc1 pvha_redfish ip=10.0.0.11 ipport=443 username=admin password_file=/etc/pvha/bmc1
    connect bmc1 node=node1 systems_uri=/redfish/v1/Systems/1

Options: ``ip`` (or ``ipaddr``), ``ipport`` (443), ``username`` (or ``login``),
``password`` / ``passwd`` / ``password_file``, ``systems_uri`` (required when the BMC
lists more than one system: picking "the first" could power off the wrong machine),
``ssl_ca=/path`` (CA bundle to verify against), ``ssl_insecure`` (no verification; TLS
verification is on by default). Authentication is HTTP basic.

Off is ``POST <system>/Actions/ComputerSystem.Reset {"ResetType": "ForceOff"}``; the
proof is a later ``GET <system>`` whose ``PowerState`` is ``Off`` (the fencer polls
:meth:`RedfishDevice.power_status`). Anything but ``Off`` (``PoweringOff`` included)
reads as on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

import requests

from pvha.errors import FenceDeviceConfigError, FenceDeviceError, FenceTimeoutError
from pvha.fence.config import FenceTarget
from pvha.fence.device import PowerState, ResolvedOptions, redact, resolve_secrets

AGENT_NAME = "pvha_redfish"
_RESET_OK = (200, 202, 204)


class RedfishDevice:
    """A :class:`~pvha.fence.device.PowerDevice` speaking Redfish through requests."""

    def __init__(
        self,
        target: FenceTarget,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self.target = target
        self._session_factory = session_factory

    @property
    def label(self) -> str:
        return self.target.label

    def power_off(self, timeout: float) -> None:
        """Send ForceOff unless the system already reads Off."""
        with _Client(self, timeout) as client:
            uri = client.system_uri()
            system = client.get_json(uri)
            if system.get("PowerState") == "Off":
                return
            action = system.get("Actions", {}).get("#ComputerSystem.Reset", {})
            target = action.get("target") or f"{uri.rstrip('/')}/Actions/ComputerSystem.Reset"
            client.post_reset(target)

    def power_status(self, timeout: float) -> PowerState:
        """``PowerState`` of the system: ``Off`` → OFF, any other value → ON."""
        with _Client(self, timeout) as client:
            state = client.get_json(client.system_uri()).get("PowerState")
        if not isinstance(state, str):
            raise FenceDeviceError(f"{self.label}: the system has no PowerState")
        return PowerState.OFF if state == "Off" else PowerState.ON


class _Client:
    """One short-lived HTTP session for one device call, bounded by ``timeout``."""

    def __init__(self, device: RedfishDevice, timeout: float) -> None:
        self.label = device.label
        self.options: ResolvedOptions = resolve_secrets(device.target.options, label=self.label)
        values = self.options.values
        host = values.get("ip") or values.get("ipaddr")
        if not host:
            raise FenceDeviceConfigError(f"{self.label}: {AGENT_NAME} needs ip=")
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.base = f"https://{host}:{values.get('ipport', '443')}"
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.session = device._session_factory()
        user = values.get("username") or values.get("login")
        password = values.get("password") or values.get("passwd")
        if user is not None:
            self.session.auth = (user, password or "")
        # Passed on every request: a Session-level ``verify`` loses to REQUESTS_CA_BUNDLE.
        self.verify = _verify(values)
        self.session.headers.update({"Accept": "application/json"})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FenceTimeoutError(f"{self.label}: no answer within {self.timeout:g} s")
        try:
            return self.session.request(
                method, self.base + path, timeout=(left, left), verify=self.verify, **kw
            )
        except requests.Timeout:
            raise FenceTimeoutError(
                f"{self.label}: {method} {path} gave no answer within {self.timeout:g} s"
            ) from None
        except requests.exceptions.SSLError:
            raise FenceDeviceError(f"{self.label}: TLS verification failed") from None
        except requests.RequestException as exc:
            raise FenceDeviceError(
                f"{self.label}: {method} {path} failed: {type(exc).__name__}"
            ) from None

    def _check(
        self, resp: requests.Response, method: str, path: str, ok: tuple[int, ...] = (200,)
    ) -> None:
        if resp.status_code in ok:
            return
        if resp.status_code == 401:
            raise FenceDeviceError(f"{self.label}: authentication failed (HTTP 401)")
        body = redact(resp.text[:2000], self.options.secrets)
        raise FenceDeviceError(f"{self.label}: {method} {path}: HTTP {resp.status_code} {body}")

    def get_json(self, path: str) -> dict[str, Any]:
        resp = self._request("GET", path)
        self._check(resp, "GET", path)
        try:
            data = resp.json()
        except ValueError:
            raise FenceDeviceError(f"{self.label}: GET {path} did not return JSON") from None
        if not isinstance(data, dict):
            raise FenceDeviceError(f"{self.label}: GET {path} did not return an object")
        return data

    def post_reset(self, path: str) -> None:
        resp = self._request("POST", path, json={"ResetType": "ForceOff"})
        self._check(resp, "POST", path, _RESET_OK)

    def system_uri(self) -> str:
        """``systems_uri`` if set; else the only member of ``/redfish/v1/Systems``."""
        uri = self.options.values.get("systems_uri")
        if uri:
            return uri if uri.startswith("/") else "/" + uri
        members = self.get_json("/redfish/v1/Systems").get("Members", [])
        if len(members) != 1 or "@odata.id" not in members[0]:
            raise FenceDeviceConfigError(
                f"{self.label}: the BMC lists {len(members)} systems; set systems_uri="
            )
        return str(members[0]["@odata.id"])


def _verify(values: dict[str, str] | Any) -> bool | str:
    """requests' ``verify``: a CA file, False for ``ssl_insecure``, else True."""
    if values.get("ssl_ca"):
        return str(values["ssl_ca"])
    insecure = values.get("ssl_insecure", "0")
    return insecure.lower() not in ("1", "on", "yes", "true")
