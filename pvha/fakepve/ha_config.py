"""PVE's own HA configuration in the simulated cluster: ``ha/resources.cfg``,
``ha/groups.cfg`` and ``ha/rules.cfg`` in the cluster filesystem, as pve-ha-manager keeps
them (semantics §1.6), and what PVE's HA API makes of them (pve-api-notes §4).

Theory of operation
-------------------
The files are the truth, as on a real cluster, where pve-manager's API reads them from
``/etc/pve/ha``: every read comes from the answering node's pmxcfs view (a change made
on one node reaches the others after the propagation delay), ``sim ctl "guest VMID
pve-ha STATE|off"`` edits resources.cfg as ``ha-manager add|set|remove`` would, and a
test or the demo seeds a PVE-style HA config by writing the three files into
``STATE_DIR/cfs/ha/`` before ``sim serve`` starts (or into a node's mount). No CRM runs
on them: the fake serves PVE's configuration, not PVE's HA stack, so groups stay groups
(PVE 9's migration to rules never happens, as on a cluster whose CRM waits for it).

Reads are lenient as PVE's section-config parser is: a section that does not parse is
left out. Options are served as the section config yields them, strings
(``"max_restart": "2"``; a bare flag line as ``"1"``), with the fields PVE's handlers add:
resources ``sid``, ``type``, ``digest``; groups ``group``, ``type: group``, ``digest``;
rules ``rule``, ``type``, ``order`` (1-based position), ``digest``. The digest is the
SHA-1 of the file, as PVE's.

Writes run as PVE's ``lock_ha_domain`` does: a node without quorum refuses them (500
``<what> failed: cfs-lock 'domain-ha' error: no quorum!``, at once where PVE first waits
about 10 s for the lock), as does a pmxcfs write error. PVE's privileges (Sys.Audit to
read, Sys.Console to delete) are not checked: the fake's one user is root. Deleting a resource also takes it out of every rule (PVE 9's ``purge``, default
1), a rule left without resources is deleted; a group still used by a resource is not
deleted (``ha group is used by service '<sid>'``).
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable
from typing import Any

from pvha.config.resources import resource_key
from pvha.config.sectioncfg import Section, SectionFile, name_key, parse_lenient, render_section
from pvha.fakepve.tree import Tree
from pvha.fakepve.wire import PveError

RESOURCES = "ha/resources.cfg"
GROUPS = "ha/groups.cfg"
RULES = "ha/rules.cfg"
_KEYS: dict[str, Callable[[str, str], str]] = {
    RESOURCES: resource_key, GROUPS: name_key, RULES: name_key}


def read(tree: Tree, viewer: str | None, rel: str) -> tuple[SectionFile, str]:
    """The file as ``viewer`` sees it (missing: empty) and its digest."""
    try:
        data = tree.read(viewer, rel)
    except OSError:
        data = b""
    text = data.decode("utf-8", "replace")
    parsed, _faults = parse_lenient(text, "/etc/pve/" + rel, _KEYS[rel])
    return parsed, hashlib.sha1(data).hexdigest()


def _options(section: Section) -> dict[str, str]:
    return {p.key: "1" if p.value is None else p.value for p in section.props}


def resources(tree: Tree, viewer: str | None, type_: str | None = None) -> list[dict[str, Any]]:
    """``GET /cluster/ha/resources`` (by VMID, as ``ha-manager config`` lists them)."""
    parsed, digest = read(tree, viewer, RESOURCES)
    out = [{**_options(s), "sid": s.key, "type": s.type, "digest": digest}
           for s in parsed.sections if type_ in (None, s.type)]
    return sorted(out, key=_by_vmid)


def _by_vmid(entry: dict[str, Any]) -> tuple[int, str]:
    vmid = entry["sid"].partition(":")[2]  # numeric order of digit strings
    return len(vmid), vmid


def groups(tree: Tree, viewer: str | None) -> list[dict[str, Any]]:
    """``GET /cluster/ha/groups``."""
    parsed, digest = read(tree, viewer, GROUPS)
    return [{**_options(s), "group": s.key, "type": "group", "digest": digest}
            for s in parsed.sections if s.type == "group"]


def rules(tree: Tree, viewer: str | None, type_: str | None = None,
          resource: str | None = None) -> list[dict[str, Any]]:
    """``GET /cluster/ha/rules`` (``resource``: only rules naming that sid)."""
    parsed, digest = read(tree, viewer, RULES)
    out = []
    for order, s in enumerate(parsed.sections, 1):
        if type_ not in (None, s.type) or resource is not None and resource not in _sids(s):
            continue
        out.append({**_options(s), "rule": s.key, "type": s.type, "order": order,
                    "digest": digest})
    return out


def states(tree: Tree, viewer: str | None) -> dict[str, str]:
    """sid -> requested state (``started`` when not set) of every PVE HA resource."""
    parsed, _ = read(tree, viewer, RESOURCES)
    return {s.key: _options(s).get("state", "started") for s in parsed.sections}


def _sids(section: Section) -> list[str]:
    prop = section.get("resources")
    return [x for x in (prop.value or "").replace(";", ",").split(",") if x] if prop else []


def _write(tree: Tree, node: str, rel: str, parsed: SectionFile, what: str) -> None:
    try:
        tree.write(node, rel, parsed.render().encode("utf-8"))
    except OSError as exc:
        why = "no quorum!" if exc.errno == errno.EACCES else (exc.strerror or str(exc))
        raise PveError(500, f"{what} failed: cfs-lock 'domain-ha' error: {why}") from None


def delete_resource(tree: Tree, node: str, sid: str, purge: bool = True) -> None:
    """``DELETE /cluster/ha/resources/{sid}`` on ``node`` (quorum checked by the caller)."""
    parsed, _ = read(tree, node, RESOURCES)
    if parsed.get(sid) is None:
        raise PveError(500, f"cannot delete service '{sid}', not HA managed!")
    if purge:
        rules_file, _ = read(tree, node, RULES)
        changed = rules_file
        for s in rules_file.sections:
            sids = _sids(s)
            if sid not in sids:
                continue
            left = [x for x in sids if x != sid]
            if not left:
                changed = changed.remove(s.key)
                continue
            props = [(p.key, ",".join(left) if p.key == "resources" else p.value)
                     for p in s.props]
            changed = changed.replace(s.key, render_section(s.type, s.name, props))
        if changed is not rules_file:
            _write(tree, node, RULES, changed, "delete resource")
    _write(tree, node, RESOURCES, parsed.remove(sid), "delete resource")


def delete_group(tree: Tree, node: str, group: str) -> None:
    """``DELETE /cluster/ha/groups/{group}`` on ``node`` (quorum checked by the caller)."""
    res, _ = read(tree, node, RESOURCES)
    for s in res.sections:
        if _options(s).get("group") == group:
            raise PveError(500, f"delete ha group failed: ha group is used by service "
                                f"'{s.key}'")
    parsed, _ = read(tree, node, GROUPS)
    if parsed.get(group) is not None:
        _write(tree, node, GROUPS, parsed.remove(group), "delete ha group")


def set_state(tree: Tree, node: str, sid: str, state: str | None) -> None:
    """``ha-manager add SID --state STATE`` (or ``set``; None: ``remove``), written on
    ``node``; other options of the resource are kept."""
    parsed, _ = read(tree, node, RESOURCES)
    section = parsed.get(sid)
    type_, name = sid.split(":", 1)
    if state is None:
        if section is not None:
            _write(tree, node, RESOURCES, parsed.remove(sid), "delete resource")
        return
    props = [(p.key, p.value) for p in section.props if p.key != "state"] if section else []
    text = render_section(type_, name, [("state", state), *props])
    new = parsed.replace(sid, text) if section is not None else parsed.append(text)
    _write(tree, node, RESOURCES, new, "update resource")
