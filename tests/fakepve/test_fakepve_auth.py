"""Auth and wire strictness of the fake PVE, through real proxmoxer over real HTTPS."""

from __future__ import annotations

import pytest
import requests
from fakepve_helpers import ticket_client, token_client, url, wait_task
from proxmoxer import AuthenticationError, ProxmoxAPI
from proxmoxer.core import ResourceException

from pvha.fakepve.server import FakePve


def test_ticket_login_and_csrf_required_on_writes(fake: FakePve) -> None:
    px = ticket_client(fake)
    assert px.version.get()["version"].startswith("9.")
    ticket, csrf = px.get_tokens()
    assert ticket.startswith("PVE:root@pam:") and "::" in ticket and csrf
    ca = str(fake.state / "ca.pem")
    start = url(fake, "node1", "nodes/node1/qemu/100/status/stop")
    # a write with the ticket but no CSRF token: 401, reason in the status line, empty body
    r = requests.post(start, cookies={"PVEAuthCookie": ticket}, verify=ca, timeout=10)
    assert (r.status_code, r.reason, r.content) == (
        401, "Permission denied - invalid csrf token", b"")
    # GET needs no CSRF token; the same write with it works
    assert requests.get(url(fake, "node1", "version"), cookies={"PVEAuthCookie": ticket},
                        verify=ca, timeout=10).status_code == 200
    r = requests.post(start, cookies={"PVEAuthCookie": ticket},
                      headers={"CSRFPreventionToken": csrf}, verify=ca, timeout=10)
    assert r.status_code == 200 and r.json()["data"].startswith("UPID:node1:")
    # proxmoxer sends the CSRF header itself
    upid = px.nodes("node1").qemu(103).status.stop.post()
    assert wait_task(px, "node1", upid)["exitstatus"] == "OK"


def test_ticket_valid_on_every_node_and_renewable(fake: FakePve) -> None:
    px = ticket_client(fake, "node1")
    ticket, _ = px.get_tokens()
    r = requests.post(url(fake, "node2", "access/ticket"),
                      data={"username": "root@pam", "password": ticket},
                      verify=str(fake.state / "ca.pem"), timeout=10)
    assert r.status_code == 200 and r.json()["data"]["ticket"].startswith("PVE:root@pam:")
    r = requests.get(url(fake, "node3", "cluster/status"), cookies={"PVEAuthCookie": ticket},
                     verify=str(fake.state / "ca.pem"), timeout=10)
    assert r.status_code == 200


def test_wrong_password_and_no_ticket(fake: FakePve) -> None:
    ip, port = fake.address("node1")
    with pytest.raises(AuthenticationError):
        ProxmoxAPI(f"{ip}:{port}", user="root@pam", password="wrong",
                   verify_ssl=str(fake.state / "ca.pem"), timeout=10)
    r = requests.get(url(fake, "node1", "cluster/status"), verify=str(fake.state / "ca.pem"),
                     timeout=10)
    assert (r.status_code, r.reason, r.content) == (401, "No ticket", b"")


def test_token_auth(fake: FakePve) -> None:
    px = token_client(fake)
    status = px.cluster.status.get()
    assert status[0]["type"] == "cluster"
    upid = px.nodes("node1").qemu(100).status.stop.post()  # tokens need no CSRF
    assert upid.endswith(":qmstop:100:root@pam!pvha:")
    final = wait_task(px, "node1", upid)
    assert (final["user"], final["tokenid"], final["exitstatus"]) == ("root@pam", "pvha", "OK")
    bad = ProxmoxAPI("{}:{}".format(*fake.address("node1")), user="root@pam",
                     token_name="pvha", token_value="00000000-0000-4000-8000-000000000000",
                     verify_ssl=str(fake.state / "ca.pem"), timeout=10)
    with pytest.raises(ResourceException) as err:
        bad.version.get()
    assert (err.value.status_code, err.value.content) == (401, "Authentication failed!")


def test_token_refused_for_ticket_endpoint(fake: FakePve) -> None:
    secret = (fake.state / "token").read_text().strip()
    r = requests.post(url(fake, "node1", "access/ticket"),
                      data={"username": "root@pam", "password": "x"},
                      headers={"Authorization": f"PVEAPIToken=root@pam!pvha={secret}"},
                      verify=str(fake.state / "ca.pem"), timeout=10)
    assert (r.status_code, r.reason) == (
        403, ("Permission check failed (URI '/access/ticket' not available with API token, "
              "need proper ticket."))


def test_booleans_only_as_1_or_0(fake: FakePve) -> None:
    px = token_client(fake)
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(100).migrate.post(target="node2", online=True)
    e = err.value
    assert e.status_code == 400 and e.content == "Parameter verification failed."
    assert e.errors == {"online": "type check ('boolean') failed - got 'True'"}
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(100).migrate.post(target="node2", online="true")
    assert err.value.errors == {"online": "type check ('boolean') failed - got 'true'"}
    upid = px.nodes("node1").qemu(100).migrate.post(target="node2", online=1)
    assert wait_task(px, "node1", upid)["exitstatus"] == "OK"


def test_unknown_parameter_and_bad_types(fake: FakePve) -> None:
    px = token_client(fake)
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(100).status.start.post(bogus=1)
    assert err.value.status_code == 400
    assert err.value.errors == {"bogus": "property is not defined in schema and the schema "
                                         "does not allow additional properties"}
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(100).status.stop.post(timeout="soon")
    assert err.value.errors == {"timeout": "type check ('integer') failed - got 'soon'"}
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(100).migrate.post()
    assert err.value.errors == {"target": "property is missing and it is not optional"}
    with pytest.raises(ResourceException) as err:
        px.cluster.resources.get(type="vms")
    assert "enumeration" in err.value.errors["type"]
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(99).status.current.get()
    assert err.value.errors == {"vmid": "value does not look like a valid VM ID"}


def test_unknown_path_is_501_and_errors_carry_message(fake: FakePve) -> None:
    px = token_client(fake)
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").foo.get()
    assert err.value.status_code == 501
    assert err.value.content == "Method 'GET /nodes/node1/foo' not implemented"
    secret = (fake.state / "token").read_text().strip()
    r = requests.get(url(fake, "node1", "nodes/node1/qemu/150/status/current"),
                     headers={"Authorization": f"PVEAPIToken=root@pam!pvha={secret}"},
                     verify=str(fake.state / "ca.pem"), timeout=10)
    msg = "Configuration file 'nodes/node1/qemu-server/150.conf' does not exist"
    assert (r.status_code, r.reason) == (500, msg)
    assert r.json() == {"data": None, "message": msg + "\n"}
    assert r.headers["Server"] == "pve-api-daemon/3.0"


def test_json_body_and_localhost(fake: FakePve) -> None:
    secret = (fake.state / "token").read_text().strip()
    auth = {"Authorization": f"PVEAPIToken=root@pam!pvha={secret}"}
    ca = str(fake.state / "ca.pem")
    r = requests.post(url(fake, "node2", "nodes/localhost/qemu/101/status/shutdown"),
                      json={"forceStop": True, "timeout": 5}, headers=auth, verify=ca,
                      timeout=10)
    assert r.status_code == 200 and r.json()["data"].startswith("UPID:node2:")


def test_compression_and_proxy_loop(fake: FakePve) -> None:
    secret = (fake.state / "token").read_text().strip()
    auth = {"Authorization": f"PVEAPIToken=root@pam!pvha={secret}"}
    ca = str(fake.state / "ca.pem")
    r = requests.get(url(fake, "node1", "cluster/resources"), headers=auth, verify=ca,
                     timeout=10)
    assert r.headers["Content-Encoding"] == "gzip" and len(r.json()["data"]) > 4
    r = requests.get(url(fake, "node1", "nodes/node2/status"),
                     headers={**auth, "PVEDisableProxy": "true"}, verify=ca, timeout=10)
    assert (r.status_code, r.reason) == (500, "proxy loop detected")
