"""The state directory of ``pvha sim serve``::

    DIR/ca.pem                the CA pvha trusts (PVHA_CA_FILE)
    DIR/server.pem, .key      the nodes' certificate (key 0600), ca.key (0600)
    DIR/token                 API token secret of root@pam!pvha (0600, never printed)
    DIR/password              root@pam's password for ticket logins (0600)
    DIR/cfs/                  the cluster filesystem's saved tree (pmxcfs's config.db)
        nodes/<node>/qemu-server/<vmid>.conf, nodes/<node>/lxc/<vmid>.conf
        pvha/resources.cfg    the HA guests pvha manages
        ha/resources.cfg, groups.cfg, rules.cfg   PVE's own HA config (fakepve.ha_config)
    DIR/nodes/<node>/pve/     the node's pmxcfs mount, laid out like /etc/pve (node1's is
                              PVHA_CFS_ROOT); without FUSE, DIR/cfs is used live instead
    DIR/settings.toml         pvha settings pointing at the simulator
    DIR/env                   ``export PVHA_...`` lines (source it)
    DIR/ctl.sock              control socket (while running)
    DIR/nodes/<node>/watchdog-mux.sock   the node's watchdog-mux (pvha.fakepve.watchdog)
    DIR/serve.lock            flock held by the running simulator

An existing ``cfs/nodes`` is kept as it is (configs may have moved); a fresh one gets
``guests`` guests spread round-robin over the nodes (every third one a container). The
mounts start from ``cfs/`` and their tree is saved back there when the simulator stops.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shlex
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from pvha.fakepve.cluster import CONF_DIRS

if TYPE_CHECKING:
    from pvha.fakepve.pmxcfs import Pmxcfs

TOKEN_USER = "root@pam"
TOKEN_ID = "pvha"


def write_secret(path: Path, value: str) -> None:
    """Write a secret file with mode 0600 from the start (no window where it is 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    os.chmod(path, 0o600)


def read_or_make_secret(path: Path, make: bool) -> str:
    """Reuse a secret from an earlier run (clients may hold it) or make a new one."""
    if path.exists() and not make:
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text
    value = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    write_secret(path, value)
    return value


def guest_plan(names: list[str], guests: int) -> list[tuple[int, str, str]]:
    """(vmid, kind, node) for a fresh cluster: vmids from 100, round-robin over nodes."""
    return [(100 + i, "lxc" if i % 3 == 2 else "qemu", names[i % len(names)])
            for i in range(guests)]


def conf_text(vmid: int, kind: str) -> str:
    if kind == "qemu":
        return (f"name: vm{vmid}\nmemory: 1024\ncores: 1\nsockets: 1\nostype: l26\n"
                f"scsi0: shared:vm-{vmid}-disk-0,size=8G\nboot: order=scsi0\nagent: 1\n")
    return (f"hostname: ct{vmid}\nmemory: 512\ncores: 1\nostype: debian\n"
            f"rootfs: shared:subvol-{vmid}-disk-0,size=8G\narch: amd64\n")


def make_cfs(cfs: Path, names: list[str], guests: int,
             ha_guests: int | None) -> list[tuple[int, str, str]]:
    """Create node dirs and, if there are no guests yet, guest configs and the HA
    resources. Returns the guests created (empty when the cfs already existed)."""
    fresh = not (cfs / "nodes").exists()
    for node in names:
        for sub in CONF_DIRS.values():
            (cfs / "nodes" / node / sub).mkdir(parents=True, exist_ok=True)
    (cfs / "pvha").mkdir(parents=True, exist_ok=True)
    (cfs / "ha").mkdir(parents=True, exist_ok=True)  # PVE's own HA config (fakepve.ha_config)
    (cfs / "priv" / "lock").mkdir(parents=True, exist_ok=True)
    if not fresh:
        return []
    plan = guest_plan(names, guests)
    for vmid, kind, node in plan:
        path = cfs / "nodes" / node / CONF_DIRS[kind] / f"{vmid}.conf"
        path.write_text(conf_text(vmid, kind), encoding="utf-8")
    ha = plan if ha_guests is None else plan[:max(0, ha_guests)]
    resources = cfs / "pvha" / "resources.cfg"
    if not resources.exists():
        text = "".join(f"{'vm' if k == 'qemu' else 'ct'}: {v}\n\tstate started\n\n"
                       for v, k, _ in ha)
        resources.write_text(text, encoding="utf-8")
    return plan


def seed_pmxcfs(store: Pmxcfs, backing: Path) -> None:
    """Load the saved tree into a fresh pmxcfs (every directory and file under it)."""
    for top, dirs, files in os.walk(backing):
        rel = posixpath.normpath(posixpath.join("/", os.path.relpath(top, backing)))
        store.seed(rel)
        for name in files:
            store.seed(posixpath.join(rel, name), (Path(top) / name).read_bytes())
        dirs.sort()


def save_pmxcfs(store: Pmxcfs, backing: Path) -> None:
    """Write the pmxcfs tree back to ``backing`` (replacing it as a whole)."""
    fresh = backing.with_name(backing.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    for path, entry in sorted(store.latest().items()):
        target = fresh / path.lstrip("/")
        if entry.is_dir:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entry.data)
    old = backing.with_name(backing.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if backing.exists():
        backing.rename(old)
    fresh.rename(backing)
    shutil.rmtree(old, ignore_errors=True)


def write_env(state: Path, hosts: list[str], port: int, cfs_root: Path) -> Path:
    """Write ``settings.toml`` and ``env`` (exports of the PVHA_* variables that
    ``pvha.settings`` reads, PVHA_SETTINGS pointing at the TOML); ``cfs_root`` is node1's
    /etc/pve. Returns the env path."""
    values = {
        "PVHA_HOSTS": ",".join(hosts), "PVHA_PORT": str(port), "PVHA_USER": TOKEN_USER,
        "PVHA_TOKEN_NAME": TOKEN_ID, "PVHA_TOKEN_SECRET_FILE": str(state / "token"),
        "PVHA_CA_FILE": str(state / "ca.pem"), "PVHA_CFS_ROOT": str(cfs_root),
        "PVHA_CONFIG_DIR": str(cfs_root / "pvha"),
        "PVHA_SETTINGS": str(state / "settings.toml"),
    }
    toml = (
        "# written by pvha sim serve\n[api]\n"
        f"hosts = [{', '.join(_q(h) for h in hosts)}]\nport = {port}\n"
        f"user = {_q(TOKEN_USER)}\ntoken_name = {_q(TOKEN_ID)}\n"
        f"token_secret_file = {_q(values['PVHA_TOKEN_SECRET_FILE'])}\n"
        f"ca_file = {_q(values['PVHA_CA_FILE'])}\n\n[cfs]\n"
        f"root = {_q(values['PVHA_CFS_ROOT'])}\nconfig_dir = {_q(values['PVHA_CONFIG_DIR'])}\n"
    )
    (state / "settings.toml").write_text(toml, encoding="utf-8")
    env = state / "env"
    lines = ["# source this file: pvha then talks to the simulated cluster"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    bin_dir = Path(sys.executable).parent  # the pvha that runs this simulator, first in PATH
    if (bin_dir / "pvha").exists():
        lines.append(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"')
    env.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return env


def _q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
