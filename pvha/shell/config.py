"""The HA configuration as the watch loop uses it: resources, groups and rules from the
config dir, and the core's service config (PVE-shaped dicts with each guest's node).

Config faults degrade, never stop (issue 8 point 5, PVE's behaviour): a section that
does not parse or validate is skipped with a warning naming ``file:line``, and the rest
keeps being managed. A resource whose section turned bad keeps its last good settings
while this process has seen them, rather than dropping out of HA over a typo (PVE would
drop it); a file that cannot be read at all keeps the last good configuration. Until
fixed, :attr:`ConfigSource.degraded` lists the faults; the round's sentence and
``pvha status`` say "HA degraded: ...".
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from pvha.config.faults import ConfigFault
from pvha.config.store import Store
from pvha.core.model import HAConfig
from pvha.core.ports import CfsError
from pvha.errors import PvhaError
from pvha.shell.snapshot import RoundView

CONFIG_FILES = ("resources.cfg", "groups.cfg", "rules.cfg")
log = logging.getLogger("pvha.watch")


class ConfigSource:
    """Reads the config once per round (:meth:`refresh`), parses it again only when the
    text changed; :meth:`config` is the one in force for the round."""

    def __init__(self, cfs: Any) -> None:
        self.cfs = cfs
        self._key: tuple[str | None, ...] | None = None
        self._cfg: HAConfig | None = None
        self.degraded: list[str] = []
        self._warned: set[str] = set()
        self.skipped: dict[str, str] = {}  # sid -> why it is not managed (logged once)
        self._entries: dict[str, dict[str, Any]] = {}  # service config entries of ...
        self._entries_of: HAConfig | None = None  # ... this configuration

    def config(self) -> HAConfig:
        """The configuration in force. CfsError when no good one was ever read."""
        if self._cfg is None:
            return self.refresh()
        return self._cfg

    def refresh(self) -> HAConfig:
        """Read the files (see the module docstring). CfsError only when no good
        configuration was ever read."""
        try:
            key = tuple(self.cfs.read_config(n) for n in CONFIG_FILES)
        except PvhaError as err:
            return self._unreadable(str(err))
        if key == self._key and self._cfg is not None:
            return self._cfg
        try:
            snapshot, faults = Store(self.cfs.config_dir).parse_lenient(
                dict(zip(CONFIG_FILES, key, strict=True)))
        except PvhaError as err:
            return self._unreadable(str(err))
        cfg = snapshot.ha_config()
        previous = self._cfg
        if previous is not None:
            cfg = _keep_last_good(cfg, previous, faults)
        self._key, self._cfg = key, cfg
        self._set_degraded([str(f) for f in faults])
        return cfg

    def _unreadable(self, why: str) -> HAConfig:
        if self._cfg is None:
            raise CfsError(f"cannot read HA configuration: {why}")
        self._set_degraded([(f"cannot read the HA configuration ({why}); "
                            "keeping the last one read")])
        return self._cfg

    def _set_degraded(self, faults: list[str]) -> None:
        for fault in faults:
            if fault not in self._warned:
                log.warning("HA config: %s (section skipped; the rest is managed)", fault)
        self._warned = set(faults)
        self.degraded = faults

    def service_config(self, view: RoundView, node_of: Any) -> dict[str, dict[str, Any]]:
        """The core's ``read_service_config``: PVE-shaped dicts with the guest's node
        (``node_of(sid)``). Guests PVE's own HA manages, and resources without a guest,
        are left out (logged once). An entry is built again only when its resource or
        its node changed (the core changes no key but ``node``, and only to where the
        config really is: the recovery's move)."""
        cfg = self.config()
        if cfg is not self._entries_of:
            self._entries, self._entries_of = {}, cfg
        entries = self._entries
        out: dict[str, dict[str, Any]] = {}
        for sid, res in cfg.resources.items():
            why = None
            if sid in view.pve_ha:
                why = "managed by PVE's own HA (ha-manager); pvha leaves it alone"
            node = node_of(sid)
            if why is None and node is None:
                why = "no such guest in the cluster"
            if why is not None:
                if self.skipped.get(sid) != why:
                    log.warning("service '%s' skipped: %s", sid, why)
                    self.skipped[sid] = why
                continue
            if sid in self.skipped:
                del self.skipped[sid]
            entry = entries.get(sid)
            if entry is None or entry["node"] != node:
                entry = {
                    "type": res.type, "name": res.name, "state": res.state, "node": node,
                    "failback": int(res.failback), "max_restart": res.max_restart,
                    "max_relocate": res.max_relocate,
                }
                if res.group is not None:
                    entry["group"] = res.group
                if res.priority:
                    entry["priority"] = res.priority
                if res.after is not None:
                    entry["after"] = res.after
                if res.health is not None:
                    entry.update(health=res.health, health_grace=res.health_grace,
                                 health_failures=res.health_failures,
                                 health_interval=res.health_interval)
                entries[sid] = entry
            out[sid] = entry
        return out


def _keep_last_good(cfg: HAConfig, previous: HAConfig, faults: list[ConfigFault]) -> HAConfig:
    """Put back the previous version of every resource whose section is now bad."""
    bad = {f.key for f in faults if f.file == "resources.cfg"}
    keep = {sid: previous.resources[sid] for sid in bad
            if sid in previous.resources and sid not in cfg.resources}
    if not keep:
        return cfg
    return replace(cfg, resources={**cfg.resources, **keep})
