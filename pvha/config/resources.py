"""resources.cfg: ``vm: <vmid>`` / ``ct: <vmid>`` sections (PVE ``PVE::HA::Resources``).

pvha extension: guest health checks (:mod:`pvha.core.health`) on ``vm:`` sections only,
``health agent`` with ``health_grace``, ``health_failures`` and ``health_interval``; a
``ct:`` has no QEMU guest agent, so these keys are refused there with one reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from pvha.config import schema
from pvha.config.schema import BOOL, COMMENT, Entry, Key, Kind
from pvha.config.sectioncfg import parse
from pvha.core.model import RESOURCE_TYPES, Resource


def resource_key(type_: str, name: str) -> str:
    """Resources are unique by sid (``vm:100``), not by the bare VMID."""
    return f"{type_}:{name}"


def _check_name(type_: str, name: str) -> None:
    schema.check_vmid(name)


_KEYS: Mapping[str, Key] = {
    "state": Key(schema.check_enum(*schema.RESOURCE_STATES)),
    "group": Key(schema.check_configid),
    "failback": BOOL,
    "max_restart": Key(schema.check_int_min(0)),
    "max_relocate": Key(schema.check_int_min(0)),
    "comment": COMMENT,
    # pvha extensions (pvha.core.start_order): start priority and the resource to run first
    "priority": Key(schema.check_int_min(-1000, 1000)),
    "after": Key(schema.check_sid),
}


def _no_agent(value: str) -> object:
    raise ValueError("a container has no QEMU guest agent (health checks are for vm: only)")


_HEALTH_KEYS: Mapping[str, Key] = {
    "health": Key(schema.check_enum("agent")),
    "health_grace": Key(schema.check_int_min(0)),
    "health_failures": Key(schema.check_int_min(1)),
    "health_interval": Key(schema.check_int_min(1)),
}
_TYPE_KEYS: Mapping[str, Mapping[str, Key]] = {
    "vm": {**_KEYS, **_HEALTH_KEYS},
    "ct": {**_KEYS, **{k: Key(_no_agent) for k in _HEALTH_KEYS}},
}

RESOURCES = Kind(
    file="resources.cfg",
    types={t: _TYPE_KEYS[t] for t in RESOURCE_TYPES},
    check_name=_check_name,
    section_key=resource_key,
)


def to_resource(entry: Entry) -> Resource:
    """Typed resource with PVE's defaults applied; ``enabled`` becomes ``started``."""
    return Resource.from_config(entry.key, entry.values)


def parse_resources_text(text: str, path: str = "<resources>") -> dict[str, Resource]:
    """Typed resources of a resources.cfg text, by sid in file order.

    Raises ConfigError (path, line) on syntax or value errors. A ``group`` naming a
    group that does not exist is accepted: cross-references are checked by the store.
    """
    parsed = parse(text, path, resource_key)
    return {key: to_resource(e) for key, e in schema.validate_file(RESOURCES, parsed).items()}
