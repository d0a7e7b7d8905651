"""rules.cfg: ``node-affinity`` and ``resource-affinity`` sections (PVE ``PVE::HA::Rules``).

PVE quirk kept on purpose: a rule is disabled when its ``disable`` key is present at
all, even as ``disable 0``; the writer therefore omits a false ``disable``. As PVE's
writer does, resource and node lists of rules are written sorted.
"""

from __future__ import annotations

from pvha.config import schema
from pvha.config.schema import BOOL, COMMENT, Entry, Key, Kind
from pvha.config.sectioncfg import name_key, parse
from pvha.core.model import (
    SIM_RESOURCE_TYPES,
    NodeAffinityRule,
    NodePriorities,
    ResourceAffinityRule,
    Rule,
)

NODE_AFFINITY = "node-affinity"
RESOURCE_AFFINITY = "resource-affinity"


def _check_name(type_: str, name: str) -> None:
    schema.check_configid(name)


def _sorted_list(value: object) -> str:
    return ",".join(sorted(value))  # type: ignore[call-overload]


def _sorted_nodes(value: object) -> str:
    return schema.format_node_list(value, sort=True)


def rules_kind(sid_types: tuple[str, ...]) -> Kind:
    """The rules.cfg schema accepting resource ids of ``sid_types``."""
    resources = Key(schema.check_sid_list(sid_types), required=True, fmt=_sorted_list)
    return Kind(
        file="rules.cfg",
        types={
            NODE_AFFINITY: {
                "resources": resources,
                "nodes": Key(schema.check_node_list, required=True, fmt=_sorted_nodes),
                "strict": BOOL,
                "disable": BOOL,
                "comment": COMMENT,
            },
            RESOURCE_AFFINITY: {
                "resources": resources,
                "affinity": Key(schema.check_enum(*schema.AFFINITIES), required=True),
                "disable": BOOL,
                "comment": COMMENT,
            },
        },
        check_name=_check_name,
        section_key=name_key,
    )


RULES = rules_kind(("vm", "ct"))
# The simulator's scenario files also use the failing test resource type ``fa``.
SIM_RULES = rules_kind(SIM_RESOURCE_TYPES)


def to_rule(entry: Entry, order: int) -> Rule:
    values = entry.values
    resources: tuple[str, ...] = values["resources"]  # type: ignore[assignment]
    disable = "disable" in values
    comment: str | None = values.get("comment")  # type: ignore[assignment]
    if entry.type == NODE_AFFINITY:
        nodes: NodePriorities = values["nodes"]  # type: ignore[assignment]
        strict = bool(values.get("strict", False))
        return NodeAffinityRule(entry.key, resources, nodes, strict, disable, comment, order)
    return ResourceAffinityRule(
        entry.key, resources, str(values["affinity"]), disable, comment, order
    )


def parse_rules_text(text: str, path: str = "<rules>", sim_types: bool = True) -> dict[str, Rule]:
    """Typed rules of a rules.cfg text, by id in file order; ``order`` is the 1-based position.

    Raises ConfigError (path, line) on syntax or value errors. Resources and nodes not
    configured elsewhere are accepted (the simulator tolerates them). ``sim_types``
    also accepts the simulator-only ``fa:`` resource type.
    """
    parsed = parse(text, path, name_key)
    entries = schema.validate_file(SIM_RULES if sim_types else RULES, parsed)
    return {key: to_rule(e, i) for i, (key, e) in enumerate(entries.items(), start=1)}
