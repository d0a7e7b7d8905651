"""The native Redfish backend's HTTP edge, with ``responses`` (no server)."""

from __future__ import annotations

import pytest
import responses

from pvha.errors import FenceDeviceConfigError, FenceDeviceError
from pvha.fence.config import parse_fence_config
from pvha.fence.device import PowerState
from pvha.fence.redfish import RedfishDevice

BASE = "https://bmc.example:8443"
PW = "pw-r3dfish"


def device(extra: str = "") -> RedfishDevice:
    cfg = parse_fence_config(
        f"device r pvha_redfish ip=bmc.example ipport=8443 username=u "
        f"password={PW} {extra}\nconnect r node=n1\n"
    )
    return RedfishDevice(cfg.levels("n1")[0].targets[0])


@responses.activate
def test_force_off_uses_the_advertised_target_and_basic_auth() -> None:
    responses.get(f"{BASE}/redfish/v1/Systems", json={"Members": [{"@odata.id": "/sys/1"}]})
    responses.get(
        f"{BASE}/sys/1",
        json={
            "PowerState": "On",
            "Actions": {"#ComputerSystem.Reset": {"target": "/sys/1/Actions/Reset"}},
        },
    )
    post = responses.post(f"{BASE}/sys/1/Actions/Reset", status=204)
    device().power_off(5)
    assert post.calls[0].request.body == b'{"ResetType": "ForceOff"}'
    assert post.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_powering_off_is_not_off() -> None:
    responses.get(f"{BASE}/s", json={"PowerState": "PoweringOff"})
    assert device("systems_uri=/s").power_status(5) is PowerState.ON


@responses.activate
def test_several_systems_need_systems_uri() -> None:
    responses.get(
        f"{BASE}/redfish/v1/Systems", json={"Members": [{"@odata.id": "/a"}, {"@odata.id": "/b"}]}
    )
    with pytest.raises(FenceDeviceConfigError, match="lists 2 systems; set systems_uri"):
        device().power_status(5)


@responses.activate
def test_http_errors_are_redacted() -> None:
    responses.get(f"{BASE}/s", json={"PowerState": "On"})
    responses.post(
        f"{BASE}/s/Actions/ComputerSystem.Reset",
        status=500,
        body=f"internal error for password {PW}",
    )
    with pytest.raises(FenceDeviceError) as info:
        device("systems_uri=s").power_off(5)
    assert "HTTP 500" in str(info.value) and PW not in str(info.value)


@responses.activate
def test_missing_power_state_is_an_error() -> None:
    responses.get(f"{BASE}/s", json={"Id": "1"})
    with pytest.raises(FenceDeviceError, match="no PowerState"):
        device("systems_uri=/s").power_status(5)


def test_ip_is_required() -> None:
    cfg = parse_fence_config("device r pvha_redfish username=u\nconnect r node=n1\n")
    with pytest.raises(FenceDeviceConfigError, match="needs ip="):
        RedfishDevice(cfg.levels("n1")[0].targets[0]).power_status(5)
