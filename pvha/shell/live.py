"""Reads for the administrator's commands against a live cluster (``pvha status``,
``pvha add``, ``pvha migrate``/``relocate``, ``pvha rules add|set``, ``pvha fence-ack``):
at most the 3 snapshot calls, never a write.

``api_from_env(settings)`` builds the API adapter only when an API was configured
(``hosts`` from a flag, ``PVHA_HOSTS`` or the settings file); without one the commands
keep working on the local files alone, and say so where it matters.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from pvha.adapters.pve_api import PveApi
from pvha.config import checks
from pvha.config.checks import ApiFacts, Cluster, GuestFact
from pvha.errors import ApiError, UsageError
from pvha.settings import Settings
from pvha.shell.snapshot import RoundView, take_view


def api_for(settings: Settings) -> PveApi | None:
    """The API adapter, or None when no API is configured. ConfigError if it is
    configured but incomplete (e.g. no secret)."""
    if not settings.api_configured:
        return None
    return PveApi.from_settings(settings.api)


def live_view(settings: Settings) -> RoundView | None:
    """One view of the cluster, or None without a configured API. Raises ApiError."""
    api = api_for(settings)
    return None if api is None else take_view(api)


API_LOGGER = "pvha.api"  # pvha.adapters.pve_client's failover warnings


class _Reasons(logging.Handler):
    """Keeps the adapter's per-host failover warnings (``API host X unusable (why);
    trying the next one``) as ``why`` instead of printing them; its retry warnings on
    one host are dropped (the answer or the final error tells how they ended)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("API host "):
            return
        args = record.args
        why = args[-1] if isinstance(args, tuple) and len(args) >= 2 else record.getMessage()
        self.reasons.append(" ".join(str(why).split()))


@contextlib.contextmanager
def failover_reasons() -> Iterator[list[str]]:
    """While inside: the API adapter's per-host failover warnings are kept (as their
    reasons, in the yielded list) instead of printed, so a failure is told in one line."""
    logger = logging.getLogger(API_LOGGER)
    handler = _Reasons()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.reasons
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def view_with_reasons(settings: Settings) -> tuple[RoundView | None, list[str]]:
    """:func:`live_view` and the per-host failover warnings of hosts that failed while
    another answered. When none answers: ApiError naming each host's reason once, in
    order, on one line."""
    with failover_reasons() as warnings:
        try:
            return live_view(settings), warnings
        except ApiError as err:
            reasons = [*warnings, *(ln.strip() for ln in str(err).splitlines() if ln.strip())]
            raise ApiError("; ".join(dict.fromkeys(reasons))) from None


def quiet_view(settings: Settings) -> RoundView | None:
    """:func:`live_view` for a command that tells a failure in one line: the hosts'
    failover warnings are not printed; when every host failed, the ApiError names each
    host's reason once. A failover that ended in an answer is not told."""
    with failover_reasons() as reasons:
        try:
            return live_view(settings)
        except ApiError as err:
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
            raise ApiError("; ".join(dict.fromkeys([*reasons, *lines]))) from None


def api_facts(view: RoundView) -> ApiFacts:
    """What the CLI's checks need of a view; guests include templates."""
    guests = {
        g.vmid: GuestFact(g.vmid, "vm" if g.kind == "qemu" else "ct", g.node, g.template)
        for g in view.snapshot.resources.guests
    }
    return ApiFacts(view.local_node, view.quorate, view.members, view.online, guests)


def cluster_facts(settings: Settings, manager_status: Mapping[str, Any], purpose: str) -> Cluster:
    """The manager status plus, when an API is configured, one live view. A configured
    API that does not answer is an ApiError naming ``purpose`` (what could not be
    checked), so the command stops before it writes anything."""
    try:
        view = quiet_view(settings)
    except ApiError as err:
        raise ApiError(f"cannot check {purpose}: cluster API not reachable ({err})") from None
    return Cluster(manager_status, None if view is None else api_facts(view))


def check_add(settings: Settings, sid: str) -> tuple[str, str | None]:
    """Before ``add`` of ``sid`` (a checked ``<type>:<vmid>``, or a bare VMID whose type
    the cluster's guest list gives, as PVE finds it): the sid to add, and a note when
    the checks could not be made.

    Refuses (UsageError) a guest that does not exist in the cluster, is of the other
    type, is a template, or is managed by PVE's own HA; a bare VMID without a configured
    API (its type cannot be found). With a full sid and no API, or an API that does not
    answer, the resource is accepted with a note (``pvha watch`` still skips a guest
    PVE's HA manages); a bare VMID then is an ApiError. One view, at most 3 GETs.
    """
    bare = sid.isascii() and sid.isdigit()
    try:
        view = quiet_view(settings)
    except ApiError as err:
        if bare:
            raise ApiError(f"cannot find the type of VMID {sid}: cluster API not reachable "
                           f"({err}); give vm:{sid} or ct:{sid}") from None
        return sid, f"warning: could not check {sid} through the API ({err})"
    if view is None:
        if bare:
            raise UsageError(f"unable to detect SID from VMID '{sid}' without a PVE API (none"
                             f" configured): give vm:{sid} or ct:{sid}, or --type")
        return sid, None
    facts = api_facts(view)
    if bare:
        sid = checks.sid_of_vmid(facts, sid)
    checks.check_guest(facts, sid)
    _refuse_pve_ha(view, sid)
    return sid, None


def _refuse_pve_ha(view: RoundView, sid: str) -> None:
    if sid in view.pve_ha:
        raise UsageError(
            f"{sid} is managed by PVE's own HA (ha-manager); remove it there first "
            "(two HA managers on one guest is a split brain)"
        )


def check_fence_ack(settings: Settings, node: str, now: float) -> RoundView:
    """Checks before recording a fence-ack; refuses (UsageError, one line) whenever
    ``node`` might still run: no API to check with, an API that fails, a view without
    quorum, ``node`` not a member, online, answering its API through another node, or
    its agent still renewing its lease. Returns the view it checked."""
    refuse = "refusing the fence-ack"
    api = api_for(settings)
    if api is None:
        raise UsageError(f"cannot check that {node} is off: no API configured (PVHA_HOSTS "
                         f"or [api] hosts); {refuse}")
    try:
        view = take_view(api)
    except ApiError as err:
        raise UsageError(f"cannot check {node} through the API ({err}); {refuse}") from None
    if node not in view.members:
        raise UsageError(f"no such cluster node '{node}' (members: {', '.join(view.members)})")
    if not view.quorate:
        raise UsageError(f"{view.local_node} has no quorum: cannot check {node}; {refuse}")
    if node in view.online:
        raise UsageError(f"node '{node}' is online in the cluster; fence-ack is only for a "
                         "node that is powered off")
    try:
        api.node_status(node)
    except ApiError:
        pass  # what a node that is off does: no answer (595 through another node)
    else:
        raise UsageError(f"node '{node}' still answers its API; {refuse}")
    renewed = lease_age(settings, node, now)
    if renewed is not None:
        raise UsageError(f"node '{node}' has an armed agent (lease renewed {renewed:.0f} s "
                         "ago): its watchdog resets it and the lease's expiry fences it; "
                         f"{refuse}")
    return view


def lease_age(settings: Settings, node: str, now: float) -> float | None:
    """Seconds since ``node``'s armed agent last renewed its lease, while that is under
    the time its watchdog may let the node live (then the lease itself fences the node and
    an ack could only let its guests run twice); else None."""
    from pvha.shell.agent import lease_mtime, read_status
    from pvha.shell.lease import MARGIN

    status = read_status(settings.cfs.resolved_config_dir, node)
    mtime = lease_mtime(settings.cfs.root / "priv" / "lock", node)
    if status is None or not status.armed or mtime is None:
        return None
    age = max(0.0, now - mtime)
    return age if age <= status.fence_after + MARGIN else None
