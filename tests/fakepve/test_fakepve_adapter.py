"""pvha's own adapter (PveClient + PveApi) against the fake, configured from DIR/env."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from fakepve_helpers import ctl

from pvha.adapters.cfs import ClusterFs
from pvha.adapters.pve_api import PveApi
from pvha.config.resources import parse_resources_text
from pvha.errors import ApiPermanentError, StoreError
from pvha.fakepve.server import FakePve
from pvha.ports import GuestRef, TaskStatus
from pvha.settings import load_settings

T = TypeVar("T")


def done(api: PveApi, upid: str, limit: float = 20.0) -> TaskStatus:
    """The task's final status: the test polls, as the watch loop does across rounds."""
    deadline = time.monotonic() + limit
    while True:
        st = api.task_status(upid)
        if not st.running or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def env_of(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
    return env


def _visible(call: Callable[[], T], limit: float = 5.0) -> T:
    """``call()`` once the answering node sees the config ("does not exist" until then)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return call()
        except ApiPermanentError as err:
            if "does not exist" not in str(err) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def test_env_file_points_pvha_at_the_fake(fake: FakePve) -> None:
    env = env_of(fake.state / "env")
    settings = load_settings(env=env)
    assert settings.api.hosts == tuple(fake.hosts) and settings.api.port == fake.port
    assert settings.api.uses_token and settings.api.ca_file == fake.state / "ca.pem"
    assert settings.cfs.root == fake.cfs_root()
    secret = (fake.state / "token").read_text().strip()
    assert (fake.state / "token").stat().st_mode & 0o077 == 0
    assert secret not in (fake.state / "env").read_text()
    # the TOML file says the same (PVHA_SETTINGS points at it)
    from_file = load_settings(env={}, path=env["PVHA_SETTINGS"])
    assert from_file.api == settings.api and from_file.cfs == settings.cfs
    # HA guests for pvha to manage: all of them by default
    text = (settings.cfs.resolved_config_dir / "resources.cfg").read_text()
    assert sorted(parse_resources_text(text)) == ["ct:102", "vm:100", "vm:101", "vm:103"]


def test_adapter_snapshot_start_migrate(fake: FakePve) -> None:
    settings = load_settings(env=env_of(fake.state / "env"))
    api = PveApi.from_settings(settings.api)
    snap = api.snapshot()
    assert snap.status.quorate and [n.name for n in snap.status.nodes] == fake.names
    assert {g.vmid: (g.node, g.status) for g in snap.resources.guests} == {
        100: ("node1", "running"), 101: ("node2", "running"), 102: ("node3", "running"),
        103: ("node1", "running")}
    assert snap.pve_ha_resources == ()
    ref = GuestRef("qemu", 100, "node1")
    upid = api.post_stop(ref)
    assert api.task_status(upid).running  # posted, not waited for
    assert done(api, upid).ok
    assert api.guest_status(ref).status == "stopped"
    assert done(api, api.post_start(ref)).ok
    assert done(api, api.post_migrate(ref, "node2", online=True)).ok
    # node1 renamed the config; node2 answers once pmxcfs has delivered the rename there
    assert _visible(lambda: api.guest_status(GuestRef("qemu", 100, "node2"))).status == "running"
    lxc = GuestRef("lxc", 102, "node3")
    assert done(api, api.post_migrate(lxc, "node1", online=True)).ok  # restart mode
    assert api.node_status("node3").memory_total > 0


def test_adapter_sees_dead_node_and_recovers_by_steal(fake: FakePve) -> None:
    settings = load_settings(env=env_of(fake.state / "env"))
    api = PveApi.from_settings(settings.api)
    ctl(fake, "power node1 off")  # the first API host: the client fails over
    snap = api.snapshot()
    assert snap.api_host != fake.hosts[0]
    g = {g.vmid: g for g in snap.resources.guests}
    assert g[100].status == "running" and g[100].status_stale  # stale, node offline
    with pytest.raises(StoreError, match="Permission denied"):  # node1's cfs: no quorum
        ClusterFs(settings.cfs.root).steal_guest_config("qemu", 100, "node1", "node2")
    cfs = ClusterFs(fake.cfs_root("node2"))  # the manager runs on a live node
    assert cfs.steal_guest_config("qemu", 100, "node1", "node2")
    assert done(api, api.post_start(GuestRef("qemu", 100, "node2"))).ok
    assert fake.cluster.truth()["guests"]["100"]["running_on"] == ["node2"]


def test_after_sourcing_the_env_file_pvha_is_a_command(fake: FakePve) -> None:
    """A shell whose PATH lacks pvha gets it from the env file (``. DIR/env; pvha ...``)."""
    import subprocess

    clean = {"PATH": "/usr/bin:/bin", "HOME": str(fake.state)}
    assert subprocess.run(["bash", "-c", "command -v pvha"], env=clean, check=False,
                          capture_output=True).returncode != 0
    res = subprocess.run(["bash", "-c", f'. "{fake.state / "env"}" && pvha --version'],
                         env=clean, check=False, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("pvha "), res.stderr
