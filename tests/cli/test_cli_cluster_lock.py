"""The CLI's writes to a config dir in a cluster filesystem hold the cluster-wide HA
domain lock, not only a flock (which does not reach other nodes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pvha.adapters.cfs import ClusterFs
from pvha.cli.fast import cluster_root, store_at


def test_a_cli_write_waits_for_the_domain_lock_held_on_another_node(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cfs"
    (root / "priv" / "lock").mkdir(parents=True)
    monkeypatch.delenv("PVHA_CONFIG_DIR", raising=False)
    monkeypatch.setenv("PVHA_CFS_ROOT", str(root))
    store = store_at(None, None)
    assert store.dir == root / "pvha"
    # another node: the same lock directories, but its own flock (a flock is per host)
    other = ClusterFs(root, tmp_path / "other-node-local")
    held, done = threading.Event(), threading.Event()

    def other_node() -> None:
        with other.domain_lock():
            held.set()
            time.sleep(0.5)
            with (store.dir / "crm_commands").open("a") as fh:
                fh.write("first\n")
        done.set()

    store.dir.mkdir()
    thread = threading.Thread(target=other_node)
    thread.start()
    assert held.wait(5)
    store.append_crm_command("second")
    thread.join()
    assert (store.dir / "crm_commands").read_text() == "first\nsecond\n"
    assert not (root / "priv" / "lock" / "pvha_domain_ha").exists()  # released


def test_cluster_root(tmp_path: Path) -> None:
    etc_pve = tmp_path / "pve"
    (etc_pve / "priv" / "lock").mkdir(parents=True)
    assert cluster_root(etc_pve / "pvha", None) == etc_pve  # laid out as /etc/pve
    assert cluster_root(tmp_path / "local" / "pvha", None) is None
    assert cluster_root(tmp_path / "local" / "pvha", str(tmp_path)) == tmp_path
    assert cluster_root(tmp_path / "local" / "pvha", str(etc_pve)) is None  # outside it
