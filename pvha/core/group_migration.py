"""Persistent HA-group -> rules migration run by the CRM master (semantics §4.2)."""

from __future__ import annotations

import re
from typing import Any

from pvha.core.model import Resource
from pvha.core.round_state import RoundState
from pvha.core.rules import groups_to_rules, next_rule_order

FIRST_ROUND = 3
RETRY_ROUNDS = 6
MIN_VERSION = "9.0.0~16"


class _Abort(Exception):
    pass


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _cmp_str(a: str, b: str) -> int:
    """dpkg's comparison of non-digit parts (``~`` sorts before everything)."""
    i = 0
    while i < len(a) or i < len(b):
        ca = _order(a[i]) if i < len(a) else 0
        cb = _order(b[i]) if i < len(b) else 0
        if ca != cb:
            return -1 if ca < cb else 1
        i += 1
    return 0


def version_cmp(a: str, b: str) -> int:
    """Compare Debian upstream version strings like dpkg (-1, 0, 1)."""
    pa, pb = re.findall(r"\d+|\D+", a), re.findall(r"\d+|\D+", b)
    while pa or pb:
        # non-digit part
        sa = pa.pop(0) if pa and not pa[0].isdigit() else ""
        sb = pb.pop(0) if pb and not pb[0].isdigit() else ""
        c = _cmp_str(sa, sb)
        if c:
            return c
        da = int(pa.pop(0)) if pa and pa[0].isdigit() else 0
        db = int(pb.pop(0)) if pb and pb[0].isdigit() else 0
        if da != db:
            return -1 if da < db else 1
    return 0


def _check_nodes(rs: RoundState) -> None:
    env = rs.env
    for node in rs.ns.list_nodes():
        state = rs.ns.get_node_state(node)
        rs.log("notice", f"ha groups migration: node '{node}' is in state '{state}'")
        if state != "online":
            raise _Abort(f"node '{node}' is not online")
        lrm = env.read_lrm_status(node)
        lstate, mode = lrm.get("state", "unknown"), lrm.get("mode", "unknown")
        rs.log(
            "notice", f"ha groups migration: lrm '{node}' is in state '{lstate}' and mode '{mode}'"
        )
        if lstate == "wait_for_agent_lock":
            if any(
                sd.get("node") == node
                and sd.get("state") not in ("stopped", "freeze", "error", "request_start")
                for sd in rs.ss.values()
            ):
                raise _Abort(f"lrm '{node}' is not in state 'active'")
        elif lstate != "active":
            raise _Abort(f"lrm '{node}' is not in state 'active'")
        if mode != "active":
            raise _Abort(f"lrm '{node}' is not in mode 'active'")
        version = env.get_node_version(node)
        rs.log("notice", f"ha groups migration: node '{node}' has version '{version}'")
        if version_cmp(version, MIN_VERSION) < 0:
            raise _Abort(f"node '{node}' needs at least pve-manager version '{MIN_VERSION}'")


def _migrate(rs: RoundState, groups: dict[str, Any]) -> None:
    env = rs.env
    sc = env.read_service_config()
    resources = {sid: Resource.from_config(sid, cd) for sid, cd in sc.items()}
    rules = dict(env.read_rules_config())
    rules.update(groups_to_rules(groups, resources, next_rule_order(rules)))
    env.write_rules_config(rules)
    rs.log("notice", "ha groups migration: migration to rules config successful")
    for sid in sorted(sc):
        gid = sc[sid].get("group")
        if gid is None:
            continue
        changes: dict[str, object] = {"group": None}
        group = groups.get(gid)
        if group is not None and group.nofailback:
            changes["failback"] = 0
        env.update_service_config(sid, changes)
    rs.log("notice", "ha groups migration: migration to resources config successful")
    env.delete_group_config()
    rs.log("notice", "ha groups migration: group config deletion successful")


def try_group_migration(rs: RoundState, rounds_left: int) -> int:
    """Called once per manage round with the rounds left before the next attempt (start:
    FIRST_ROUND); returns the new count. Acts on the 3rd round, then every 6 rounds,
    while groups.cfg has groups."""
    groups = dict(rs.env.read_group_config())
    if not groups:
        return rounds_left
    rounds_left -= 1
    if rounds_left > 0:
        return rounds_left
    rs.log("notice", "start ha group migration...")
    try:
        _check_nodes(rs)
        _migrate(rs, groups)
    except _Abort as err:
        rs.log("err", f"abort ha groups migration: {err}")
        rs.log("err", "ha groups migration failed")
        rs.log(
            "notice",
            f"retry ha groups migration in {RETRY_ROUNDS} rounds (~ {RETRY_ROUNDS * 10} seconds)",
        )
        return RETRY_ROUNDS
    rs.log("notice", "ha groups migration successful")
    return RETRY_ROUNDS
