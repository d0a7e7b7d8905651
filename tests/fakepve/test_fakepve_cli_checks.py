"""The CLI's checks against a live cluster (issue 8.6): the real adapters (proxmoxer over
HTTPS) against the fake PVE, pointed at it with ``PVHA_*`` variables as an administrator
would, the commands run in this process through CliRunner.

Refused: one ``pvha: error:`` line on stderr, nothing on stdout, nothing written. The
token secret never appears in any output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fakepve_helpers import ctl
from typer.testing import CliRunner, Result

from pvha.cli.app import app
from pvha.fakepve.server import FakePve

Pvha = Callable[..., Result]


def _env(fp: FakePve, tmp: Path, **extra: str) -> dict[str, str]:
    settings = tmp / "empty-settings.toml"
    settings.touch()
    env = {
        "PVHA_HOSTS": ",".join(fp.hosts), "PVHA_PORT": str(fp.port), "PVHA_USER": "root@pam",
        "PVHA_TOKEN_NAME": "pvha", "PVHA_TOKEN_SECRET_FILE": str(fp.state / "token"),
        "PVHA_CA_FILE": str(fp.state / "ca.pem"), "PVHA_SETTINGS": str(settings),
        "PVHA_CONFIG_DIR": str(fp.cfs_root() / "pvha"), "PVHA_ATTEMPTS": "1",
        "PVHA_CONNECT_TIMEOUT": "2", "COLUMNS": "120",
    }
    env.update(extra)
    return env


def _runner(fp: FakePve, tmp: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Pvha:
    for var in [v for v in os.environ if v.startswith("PVHA_")]:
        monkeypatch.delenv(var)
    env = _env(fp, tmp, **extra)
    secret = (fp.state / "token").read_text().strip()

    def pvha(*args: str) -> Result:
        result = CliRunner().invoke(app, list(args), env=env)
        assert secret not in result.output
        assert "Traceback" not in result.output
        return result

    return pvha


def _files(fp: FakePve) -> dict[str, bytes]:
    d = fp.cfs_root() / "pvha"
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()
            and p.name != ".pvha.lock"}


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def _refused(result: Result, line: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr == f"pvha: error: {line}\n"


def test_add_checks_the_guest_in_the_cluster(fake_factory: Callable[..., FakePve],
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fp = fake_factory(guests=5, ha_guests=2)  # 100 101 103 104 qemu, 102 lxc; 100, 101 HA
    conf = fp.cfs_root() / "nodes/node2/qemu-server/104.conf"
    conf.write_text(conf.read_text() + "template: 1\n")
    pvha = _runner(fp, tmp_path, monkeypatch)
    before = _files(fp)
    _refused(pvha("add", "vm:999"), "resource 'vm:999' does not exist in cluster")
    _refused(pvha("add", "vm:102"), "resource 'vm:102' - guest with ID 102 is not a VM")
    _refused(pvha("add", "ct:103"), "resource 'ct:103' - guest with ID 103 is not a container")
    _refused(pvha("add", "103", "--type", "ct"),
             "resource 'ct:103' - guest with ID 103 is not a container")
    _refused(pvha("add", "999"), "unable to detect SID from VMID - VM/CT 999 does not exist")
    template = "resource 'vm:104' - guest with ID 104 is a template, which cannot be started"
    _refused(pvha("add", "vm:104"), template)
    _refused(pvha("add", "104"), template)
    assert _files(fp) == before
    assert _ok(pvha("add", "102", "--state", "stopped")).output == ""
    assert _ok(pvha("add", "103")).output == ""
    text = (fp.cfs_root() / "pvha/resources.cfg").read_text()
    assert text.endswith("vm: 101\n\tstate started\n\nct: 102\n\tstate stopped\n\nvm: 103\n\n")


def test_move_to_an_offline_or_unknown_node_is_refused(fake: FakePve, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pvha = _runner(fake, tmp_path, monkeypatch)
    queue = fake.cfs_root() / "pvha/crm_commands"
    _refused(pvha("migrate", "vm:100", "node9"), "no such cluster node 'node9'")
    ctl(fake, "power node2 off")
    for cmd, task in ((["migrate"], "migrate"), (["relocate"], "relocate"),
                      (["crm-command", "migrate"], "migrate")):
        _refused(pvha(*cmd, "vm:100", "node2"),
                 f"cannot {task} resource 'vm:100' to node 'node2': node 'node2' is not online")
    assert not queue.exists()
    assert _ok(pvha("migrate", "vm:100", "node3")).output == ""
    assert queue.read_text() == "migrate vm:100 node3\n"


def test_affinity_partners_are_located_through_the_api(fake: FakePve, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No manager status yet: the partners sit where the cluster says their guests are
    (vm:100, vm:103 on node1, vm:101 on node2, ct:102 on node3)."""
    pvha = _runner(fake, tmp_path, monkeypatch)
    rules = ["rules", "add", "resource-affinity"]
    assert _ok(pvha(*rules, "apart", "--resources", "vm:100,vm:101",
                    "--affinity", "negative")).output == ""
    assert _ok(pvha(*rules, "together", "--resources", "vm:100,vm:103",
                    "--affinity", "positive")).output == ""
    before = _files(fake)
    _refused(pvha("relocate", "vm:103", "node2"),
             "cannot relocate resource 'vm:103' to node 'node2': resource 'vm:101' on target"
             " node 'node2' in negative affinity with resource 'vm:103'")
    assert _files(fake) == before
    result = _ok(pvha("migrate", "vm:100", "node3"))
    assert result.stdout == ("also migrate resource 'vm:103' in positive affinity with"
                             " resource 'vm:100' to target node 'node3'\n")
    assert result.stderr == ""
    assert (fake.cfs_root() / "pvha/crm_commands").read_text() == "migrate vm:100 node3\n"


def test_rules_are_checked_against_the_cluster_nodes(fake: FakePve, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pvha = _runner(fake, tmp_path, monkeypatch)
    before = _files(fake)
    _refused(pvha("rules", "add", "node-affinity", "pin", "--resources", "vm:100",
                  "--nodes", "node1,node9"), "cannot use non-existent node(s) node9.")
    _refused(pvha("rules", "add", "resource-affinity", "apart", "--resources",
                  "vm:100,vm:101,ct:102,vm:103", "--affinity", "negative"),
             "Rule 'apart' is invalid: rule defines more resources than available nodes")
    assert _files(fake) == before
    assert _ok(pvha("rules", "add", "node-affinity", "pin", "--resources", "vm:100",
                    "--nodes", "node1,node2:2")).output == ""


def test_an_unreachable_api_stops_the_checked_commands(fake: FakePve, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind((fake.hosts[0], 0))
        port = s.getsockname()[1]
    pvha = _runner(fake, tmp_path, monkeypatch, PVHA_PORT=str(port))
    before = _files(fake)
    for args in (["migrate", "vm:100", "node2"],
                 ["rules", "add", "node-affinity", "pin", "--resources", "vm:100",
                  "--nodes", "node1"],
                 ["add", "105"]):
        result = pvha(*args)
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("pvha: error: cannot "), lines
        assert "cluster API not reachable" in lines[0], lines
    assert _files(fake) == before
    # as a process: the adapter's per-host failover warnings are not printed either
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVHA_")}
    env.update(_env(fake, tmp_path, PVHA_PORT=str(port)))
    proc = subprocess.run([sys.executable, "-m", "pvha", "migrate", "vm:100", "node2"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("pvha: error: cannot check node 'node2': cluster API not"
                                  f" reachable ({fake.hosts[0]}: ")
    assert (fake.state / "token").read_text().strip() not in proc.stderr
    assert _files(fake) == before
