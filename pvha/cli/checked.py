"""The commands that ask the cluster first: what the HA manager will do with a request.

``migrate``/``relocate`` (and their ``crm-command`` aliases) and ``rules add|set`` check
against one live view when an API is configured, else the last manager status in the
config dir (:mod:`pvha.config.checks`); a configured API that does not answer stops the
command with one error line before anything is written. Notes on what could not be
checked go to stderr after the command succeeded, so a refused command prints one line.
"""

from __future__ import annotations

from collections.abc import Iterable

import typer

from pvha.cli import render
from pvha.config import ops
from pvha.config.checks import Cluster
from pvha.config.store import Store


def cluster_for(store: Store, purpose: str) -> Cluster:
    """The manager status of ``store`` plus the live view when an API is configured."""
    from pvha.settings import load_settings
    from pvha.shell.live import cluster_facts

    return cluster_facts(load_settings(), ops.manager_status(store), purpose)


def notes(lines: Iterable[str]) -> None:
    for line in lines:
        render.note(line)


def move(store: Store, task: str, sid: str, node: str) -> None:
    """``migrate|relocate SID NODE``: refused unless the manager would carry it out;
    prints the resources that move along (positive affinity), as PVE's CLI does."""
    resolved = ops.resolve_sid(sid, configured=store.load().resources.entries)
    ops.check_node(node)
    cluster = cluster_for(store, f"node '{node}'")
    queued = ops.queue_motion(store, task, resolved, node, cluster)
    for partner in queued.also:
        typer.echo(
            f"also {task} resource '{partner}' in positive affinity with resource"
            f" '{resolved}' to target node '{node}'"
        )
    notes(queued.notes)
