"""The simulated QEMU guest agent: ``POST .../agent/ping`` as PVE answers it, and the
``sim ctl guest VMID agent ok|hung|broken`` control (vm 100 runs on node1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fakepve_helpers import ctl, token_client, wait_for, wait_task
from proxmoxer.core import ResourceException

from pvha.fakepve.ctl import CtlError
from pvha.fakepve.server import FakePve


def ping_error(px, node: str, vmid: int) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ResourceException) as err:
        px.nodes(node).qemu(vmid).agent.ping.post()
    return err.value.status_code, str(err.value.content).strip()


def test_a_running_vm_with_an_agent_answers_and_its_pings_are_counted(fake: FakePve) -> None:
    px = token_client(fake)
    assert px.nodes("node1").qemu(100).agent.ping.post() == {"result": {}}
    assert ctl(fake, "status")["guests"]["100"]["pings"] == 1
    assert ctl(fake, "status")["guests"]["103"]["pings"] == 0


def test_a_hung_agent_answers_pves_error_after_its_timeout_until_the_vm_restarts(
        fake: FakePve) -> None:
    px = token_client(fake)
    ctl(fake, "guest 100 agent hung")
    assert ping_error(px, "node1", 100) == (500, "QEMU guest agent is not running")
    # the hang survives a stop but not a fresh start
    wait_task(px, "node1", px.nodes("node1").qemu(100).status.stop.post())
    assert ping_error(px, "node1", 100) == (500, "VM 100 not running")
    wait_task(px, "node1", px.nodes("node1").qemu(100).status.start.post())
    assert px.nodes("node1").qemu(100).agent.ping.post() == {"result": {}}
    assert ctl(fake, "status")["guests"]["100"]["agent"] == "ok"


def test_a_broken_agent_stays_broken_across_restarts(fake: FakePve) -> None:
    px = token_client(fake)
    ctl(fake, "guest 100 agent broken")
    ctl(fake, "guest 100 stop")
    ctl(fake, "guest 100 start")
    assert ping_error(px, "node1", 100) == (500, "QEMU guest agent is not running")
    ctl(fake, "guest 100 agent ok")
    assert px.nodes("node1").qemu(100).agent.ping.post() == {"result": {}}


def test_a_paused_vm_does_not_answer(fake: FakePve) -> None:
    ctl(fake, "guest 100 pause")
    assert ping_error(token_client(fake), "node1", 100) == (500,
                                                             "QEMU guest agent is not running")


def test_a_vm_without_agent_in_its_config_has_none(
        fake_factory: Callable[..., FakePve]) -> None:
    fp = fake_factory()
    conf = fp.cfs_root() / "nodes" / "node1" / "qemu-server" / "100.conf"
    conf.write_text(conf.read_text().replace("agent: 1\n", "agent: enabled=0\n"))
    px = token_client(fp)
    wait_for(lambda: ping_error(px, "node1", 100)[1] == "No QEMU guest agent configured")


def test_ping_is_strict_per_schema_and_proxied(fake: FakePve) -> None:
    px = token_client(fake, "node2")  # proxied to node1, as pveproxy does
    assert px.nodes("node1").qemu(100).agent.ping.post() == {"result": {}}
    with pytest.raises(ResourceException) as err:
        px.nodes("node1").qemu(100).agent.ping.post(timeout=3)
    assert err.value.status_code == 400
    assert ping_error(px, "node1", 101)[1] == (
        "Configuration file 'nodes/node1/qemu-server/101.conf' does not exist")
    with pytest.raises(ResourceException) as err:
        px.nodes("node3").lxc(102).agent.ping.post()
    assert err.value.status_code == 501


@pytest.mark.parametrize("command", ["guest 100 agent", "guest 100 agent sleepy",
                                     "guest 102 agent hung"])
def test_bad_agent_commands_are_refused(fake: FakePve, command: str) -> None:
    with pytest.raises(CtlError):
        ctl(fake, command)
