"""groups.cfg: legacy HA groups, ``group: <id>`` sections (PVE ``PVE::HA::Groups``).

PVE refuses new groups once they were migrated to rules (and rules while groups exist).
pvha's store is standalone and has no migration step, so groups and rules coexist; the
engine converts groups to node-affinity rules in memory as PVE does (semantics 4.2).
"""

from __future__ import annotations

from pvha.config import schema
from pvha.config.schema import BOOL, COMMENT, Entry, Key, Kind
from pvha.config.sectioncfg import name_key, parse
from pvha.core.model import Group, NodePriorities

GROUP_TYPE = "group"


def _check_name(type_: str, name: str) -> None:
    schema.check_configid(name)


# Group node lists keep the order the administrator gave (PVE stores the string as is).
GROUPS = Kind(
    file="groups.cfg",
    types={
        GROUP_TYPE: {
            "nodes": Key(schema.check_node_list, required=True, fmt=schema.format_node_list),
            "restricted": BOOL,
            "nofailback": BOOL,
            "comment": COMMENT,
        }
    },
    check_name=_check_name,
    section_key=name_key,
)


def to_group(entry: Entry) -> Group:
    values = entry.values
    nodes: NodePriorities = values["nodes"]  # type: ignore[assignment]
    return Group(
        id=entry.key,
        nodes=nodes,
        restricted=bool(values.get("restricted", False)),
        nofailback=bool(values.get("nofailback", False)),
        comment=values.get("comment"),  # type: ignore[arg-type]
    )


def parse_groups_text(text: str, path: str = "<groups>") -> dict[str, Group]:
    """Typed groups of a groups.cfg text, by id in file order; ConfigError (path, line) if invalid.

    Node names are checked for syntax only, not against cluster membership.
    """
    parsed = parse(text, path, name_key)
    return {key: to_group(e) for key, e in schema.validate_file(GROUPS, parsed).items()}
