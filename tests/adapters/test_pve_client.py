"""PveClient: auth (token, ticket, CSRF, renewal), error classes, retries, failover."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from pve_fake import (
    PASSWORD,
    TOKEN_SECRET,
    FakePve,
    FakeTime,
    api_settings,
    version,
)

from pvha.adapters.pve_api import PveApi
from pvha.adapters.pve_client import TICKET_RENEW_AGE, PveClient, system_ca
from pvha.errors import (
    ApiAuthError,
    ApiError,
    ApiPermanentError,
    ApiTlsError,
    ApiTransientError,
    ConfigError,
)
from pvha.ports import GuestRef

VM100 = GuestRef("qemu", 100, "pve1")


def make(fake_time: FakeTime, **over: object) -> PveApi:
    settings = api_settings(**over)
    client = PveClient(settings, monotonic=fake_time.monotonic, sleep=fake_time.sleep)
    return PveApi(client, clock=fake_time.time)


# --- auth ------------------------------------------------------------------------------------


def test_token_auth_sends_header_and_no_cookie_or_csrf(fake_pve: FakePve, fake_time: FakeTime):
    api = make(fake_time)
    assert version(api)["version"] == "9.2.11"
    api.post_start(VM100)
    for call in fake_pve.calls:
        assert call.headers["Authorization"] == f"PVEAPIToken=pvha@pve!ha={TOKEN_SECRET}"
        assert "Cookie" not in call.headers
        assert "CSRFPreventionToken" not in call.headers
    assert "access/ticket" not in fake_pve.paths()


def test_ticket_auth_logs_in_once_and_sends_csrf_only_on_writes(
    fake_pve: FakePve, fake_time: FakeTime
):
    api = make(fake_time, password_auth=True)
    api.get_cluster_status()
    api.post_start(VM100)
    version(api)
    assert fake_pve.paths() == ["access/ticket", "cluster/status",
                                "nodes/pve1/qemu/100/status/start", "version"]
    login, get1, post, get2 = fake_pve.calls
    assert login.params == {"username": "pvha@pve", "password": PASSWORD}
    ticket = next(iter(fake_pve.tickets))
    for call in (get1, post, get2):
        assert call.headers["Cookie"] == f"PVEAuthCookie={ticket}"
        assert "Authorization" not in call.headers
    assert post.headers["CSRFPreventionToken"] == fake_pve.tickets[ticket]
    assert "CSRFPreventionToken" not in get1.headers and "CSRFPreventionToken" not in get2.headers


def test_ticket_is_renewed_with_the_ticket_after_an_hour(fake_pve: FakePve, fake_time: FakeTime):
    api = make(fake_time, password_auth=True)
    version(api)
    first = next(iter(fake_pve.tickets))
    fake_time.now += TICKET_RENEW_AGE + 1
    version(api)
    renew = [c for c in fake_pve.calls if c.path == "access/ticket"][1]
    assert renew.params["password"] == first  # renewal uses the ticket, not the password
    second = list(fake_pve.tickets)[1]
    assert fake_pve.calls[-1].headers["Cookie"] == f"PVEAuthCookie={second}"


def test_expired_ticket_leads_to_a_fresh_password_login(fake_pve: FakePve, fake_time: FakeTime):
    api = make(fake_time, password_auth=True)
    version(api)
    fake_time.now += 3 * 3600  # process was suspended: the ticket is dead
    version(api)
    logins = [c for c in fake_pve.calls if c.path == "access/ticket"]
    assert [c.params["password"] for c in logins] == [PASSWORD, PASSWORD]


def test_rejected_ticket_triggers_one_relogin_and_one_repeat(
    fake_pve: FakePve, fake_time: FakeTime
):
    api = make(fake_time, password_auth=True)
    version(api)
    fake_pve.tickets.clear()  # e.g. the cluster's auth key was replaced
    assert api.get_cluster_status().quorate
    assert fake_pve.paths()[-3:] == ["cluster/status", "access/ticket", "cluster/status"]


def test_wrong_password_is_an_auth_error_without_the_password(fake_pve, fake_time):
    from pvha.settings import Secret

    api = make(fake_time, password_auth=True, password=Secret("wrong-SECRET-pw"))
    with pytest.raises(ApiAuthError) as err:
        version(api)
    assert err.value.status == 401
    assert "authentication failure" in str(err.value)
    assert "wrong-SECRET-pw" not in str(err.value) and "wrong-SECRET-pw" not in repr(err.value)
    assert fake_pve.paths() == ["access/ticket"]  # 401 is not retried


def test_wrong_token_is_an_auth_error_and_not_retried(fake_pve, fake_time):
    from pvha.settings import Secret

    api = make(fake_time, token_secret=Secret("bad-SECRET-token"))
    with pytest.raises(ApiAuthError) as err:
        version(api)
    assert "Authentication failed!" in str(err.value)
    assert "bad-SECRET-token" not in str(err.value)
    assert len(fake_pve.calls) == 1 and fake_time.sleeps == []


def test_secret_echoed_by_a_server_is_masked(fake_pve, fake_time):
    fake_pve.fault("GET", "version", (500, f"token {TOKEN_SECRET} is odd", None))
    with pytest.raises(ApiError) as err:
        version(make(fake_time))
    assert TOKEN_SECRET not in str(err.value) and "***" in str(err.value)
    assert TOKEN_SECRET not in repr(make(fake_time).client)


# --- error classes ---------------------------------------------------------------------------


def test_400_carries_pve_message_and_errors_map(fake_pve, fake_time):
    body = {"data": None, "errors": {"target": "target is local node."}}
    fake_pve.fault("POST", "nodes/pve1/qemu/100/migrate",
                   (400, "Parameter verification failed.", body))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).post_qemu_migrate("pve1", 100, "pve1", online=True)
    e = err.value
    assert (e.status, e.pve_message) == (400, "Parameter verification failed.")
    assert e.errors == {"target": "target is local node."}
    assert "target: target is local node." in str(e)
    assert len(fake_pve.calls) == 1


@pytest.mark.parametrize(
    "status, reason",
    [(403, "Permission check failed (/vms/100, VM.PowerMgmt"),
     (500, "CT 102 already running"),
     (500, "cluster not ready - no quorum?"),
     (501, "Method 'POST /nodes/pve1/foo' not implemented")],
)
def test_refusals_are_permanent_and_not_retried(fake_pve, fake_time, status, reason):
    fake_pve.fault("POST", "nodes/pve1/lxc/102/status/start", (status, reason, {"data": None}))
    with pytest.raises(ApiPermanentError) as err:
        make(fake_time).post_start(GuestRef("lxc", 102, "pve1"))
    assert not isinstance(err.value, ApiAuthError)
    assert err.value.status == status and err.value.pve_message == reason
    assert reason in str(err.value)
    assert len(fake_pve.calls) == 1 and fake_time.sleeps == []


def test_595_on_a_read_is_retried_with_exponential_backoff(fake_pve, fake_time):
    fake_pve.fault("GET", "nodes/pve2/status", (595, "No route to host", None),
                   (596, "Connection timed out", None))
    status = make(fake_time).get_node_status("pve2")
    assert status.loadavg == (0.1, 0.2, 0.3) and status.memory_used == 40
    assert fake_time.sleeps == [1.0, 2.0]
    assert fake_pve.paths() == ["nodes/pve2/status"] * 3


def test_transient_errors_give_up_after_the_configured_attempts(fake_pve, fake_time):
    with pytest.raises(ApiTransientError) as err:
        make(fake_time).get_node_status("pve3")  # the fake forwards to a dead pve3
    assert err.value.status == 595 and err.value.pve_message == "No route to host"
    assert err.value.request_sent is False
    assert len(fake_pve.calls) == 3 and fake_time.sleeps == [1.0, 2.0]
    assert {c.host for c in fake_pve.calls} == {"pve1.test"}  # 595 is no reason to fail over


def test_595_on_a_write_is_retried_because_nothing_was_sent(fake_pve, fake_time):
    fake_pve.fault("POST", "nodes/pve1/qemu/100/status/start", (595, "Connection refused", None))
    assert make(fake_time).post_start(VM100).startswith("UPID:pve1:")
    assert fake_pve.paths("POST") == ["nodes/pve1/qemu/100/status/start"] * 2


@pytest.mark.parametrize("status, reason", [(596, "Connection timed out"), (503, "busy"),
                                            (597, "Broken pipe")])
def test_maybe_delivered_write_is_not_repeated(fake_pve, fake_time, status, reason):
    fake_pve.fault("POST", "nodes/pve1/qemu/100/status/start", (status, reason, None))
    with pytest.raises(ApiTransientError) as err:
        make(fake_time).post_start(VM100)
    assert err.value.status == status
    assert len(fake_pve.calls) == 1


def test_lock_timeout_500_is_transient(fake_pve, fake_time):
    fake_pve.fault("GET", "cluster/ha/resources",
                   (500, "cfs-lock 'domain-ha' error: got lock request timeout", None))
    assert make(fake_time).get_ha_resources()[0].sid == "vm:200"
    assert fake_time.sleeps == [1.0]


def test_read_timeout_on_a_write_is_transient_and_not_repeated(fake_pve, fake_time):
    fake_pve.fault("POST", "nodes/pve1/qemu/100/status/start",
                   (0, "", requests.exceptions.ReadTimeout("read timed out")))
    with pytest.raises(ApiTransientError) as err:
        make(fake_time).post_start(VM100)
    assert err.value.status is None and err.value.request_sent is None
    assert len(fake_pve.calls) == 1


def test_unreachable_host_fails_over_to_the_next_and_sticks_to_it(fake_pve, fake_time):
    fake_pve.down_hosts.add("pve1.test")
    api = make(fake_time)
    assert api.get_cluster_status().cluster_name == "lab"
    assert api.client.current_host == "pve2.test"
    api.post_start(VM100)  # a write may fail over too: nothing reached pve1
    assert [c.host for c in fake_pve.calls] == ["pve1.test", "pve2.test", "pve2.test"]
    assert fake_time.sleeps == []


def test_all_hosts_down_is_transient_after_retries(fake_pve, fake_time):
    fake_pve.down_hosts.update({"pve1.test", "pve2.test"})
    with pytest.raises(ApiTransientError) as err:
        version(make(fake_time))
    assert "cannot connect" in str(err.value) and err.value.request_sent is False
    assert len(fake_pve.calls) == 6 and fake_time.sleeps == [1.0, 2.0]


def test_tls_failure_is_permanent_but_fails_over(fake_pve, fake_time):
    fake_pve.fault("GET", "version", (0, "", requests.exceptions.SSLError("fingerprint mismatch")))
    api = make(fake_time)
    assert version(api)["release"] == "9.2"
    assert [c.host for c in fake_pve.calls] == ["pve1.test", "pve2.test"]
    fake_pve.fault("GET", "version", *[(0, "", requests.exceptions.SSLError("bad cert"))] * 2)
    with pytest.raises(ApiTlsError):
        version(api)


# --- wire details --------------------------------------------------------------------------


def test_booleans_go_out_as_1_and_0(fake_pve, fake_time):
    api = make(fake_time)
    api.post_qemu_migrate("pve1", 100, "pve2", online=True, with_local_disks=True)
    api.post_qemu_migrate("pve1", 100, "pve2", online=False)
    api.post_shutdown(VM100, timeout=30, force_stop=True)
    api.post_lxc_migrate("pve1", 102, "pve2", restart=True, timeout=120)
    sent = [c.params for c in fake_pve.calls]
    assert sent == [
        {"target": "pve2", "online": "1", "with-local-disks": "1"},
        {"target": "pve2", "online": "0"},
        {"timeout": "30", "forceStop": "1"},
        {"target": "pve2", "restart": "1", "timeout": "120"},
    ]


def test_the_fake_is_strict_about_python_booleans(fake_pve, fake_time):
    """Guards the guard: the mock rejects True as PVE does, so the test above means it."""
    client = make(fake_time).client
    with pytest.raises(ApiPermanentError) as err:
        client.call("POST", "nodes/pve1/qemu/100/migrate", {"target": "pve2", "online": True},
                    idempotent=False)
    assert err.value.errors == {"online": "type check ('boolean') failed - got 'True'"}


def test_timeout_and_ca_path_are_passed_on_every_request(fake_pve, fake_time, monkeypatch,
                                                         tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    ca = tmp_path / "pve-root-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    api = make(fake_time, ca_file=ca, read_timeout=40.0, connect_timeout=5.0,
               password_auth=True)
    version(api)
    api.post_start(VM100)
    for call in fake_pve.calls:
        assert call.timeout == (5.0, 40.0)
        assert call.verify == str(ca)


def test_a_missing_ca_file_is_refused_before_any_request(fake_pve, fake_time, tmp_path):
    with pytest.raises(ConfigError, match="CA file not found"):
        make(fake_time, ca_file=tmp_path / "missing.pem")
    assert fake_pve.calls == []


def test_system_ca_store_is_the_default(fake_pve, fake_time):
    version(make(fake_time))
    assert fake_pve.calls[0].verify == system_ca()
    assert fake_pve.calls[0].verify is True or Path(fake_pve.calls[0].verify).is_file()


def test_two_factor_accounts_are_refused_with_advice(fake_pve, fake_time):
    fake_pve.fault("POST", "access/ticket",
                   (200, "OK", {"data": {"username": "pvha@pve", "ticket": "PVE:half",
                                         "CSRFPreventionToken": "x", "NeedTFA": 1}}))
    with pytest.raises(ApiAuthError, match="two-factor.*API token"):
        version(make(fake_time, password_auth=True))


def test_missing_csrf_token_is_caught_by_the_strict_fake(fake_pve, fake_time):
    """The fake refuses a ticket write without CSRF, so the CSRF test above is meaningful."""
    api = make(fake_time, password_auth=True)
    version(api)
    ticket = next(iter(fake_pve.tickets))
    resp = requests.post("https://pve1.test:8006/api2/json/nodes/pve1/qemu/100/status/start",
                         headers={"Cookie": f"PVEAuthCookie={ticket}"}, timeout=5)
    assert (resp.status_code, resp.reason) == (401, "Permission denied - invalid csrf token")


@given(status=st.integers(400, 599),
       reason=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_every_http_error_maps_to_exactly_one_class_without_secrets(status, reason):
    from proxmoxer.core import ResourceException

    from pvha.adapters.pve_client import map_error

    exc = ResourceException(status, "x", f"{reason} {TOKEN_SECRET}", errors={"errors": b""})
    err = map_error(exc, "pve1.test", (TOKEN_SECRET,))
    assert TOKEN_SECRET not in str(err) and err.status == status
    if status == 401:
        assert isinstance(err, ApiAuthError)
    elif status in (502, 503, 504) or status >= 595 or status == 500 and re.search(r"got (lock request )?timeout", reason, re.IGNORECASE):
        assert isinstance(err, ApiTransientError)
    else:
        assert isinstance(err, ApiPermanentError) and not isinstance(err, ApiAuthError)
