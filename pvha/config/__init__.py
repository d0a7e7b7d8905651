"""HA configuration files in PVE's section-config syntax.

Text parsers for other layers (engine, simulator loader), each returning the typed
dataclasses of :mod:`pvha.core.model` and raising :class:`pvha.errors.ConfigError`
with path and line on syntax or value errors (never on cross-references such as an
unknown group or a rule naming an unconfigured resource):

* :func:`parse_resources_text` -> ``dict[sid, Resource]``
* :func:`parse_groups_text` -> ``dict[id, Group]``
* :func:`parse_rules_text` -> ``dict[id, Rule]`` (``order`` = 1-based file position;
  a rule with a ``disable`` key at all is disabled, as in PVE)

The byte-preserving parser/writer is :mod:`pvha.config.sectioncfg`, key schemas are in
:mod:`pvha.config.schema`, and the on-disk store (directory, lock, atomic writes,
``crm_commands``) is :mod:`pvha.config.store`.
"""

from pvha.config.groups import parse_groups_text
from pvha.config.resources import parse_resources_text
from pvha.config.rules import parse_rules_text

__all__ = ["parse_groups_text", "parse_resources_text", "parse_rules_text"]
