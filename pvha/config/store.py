"""The configuration store: one directory with resources.cfg, groups.cfg, rules.cfg.

Contract
--------
* Readers (:meth:`Store.load`) take no lock: every write is a rename of a complete
  file, so a reader sees the old or the new file, never a torn one.
* :meth:`Store.load` is strict (the CLI's edits: a bad file is refused whole).
  :meth:`Store.load_lenient` (``pvha watch``, ``pvha status``) skips each section that
  does not parse or validate and returns one :class:`~pvha.config.faults.ConfigFault`
  per skipped section, as PVE's parser warns and goes on; a file that cannot be read
  at all still raises StoreError. Its snapshot is for reading only: an edit of it is
  re-parsed strictly and refused while a skipped section remains.
* Writers run inside :meth:`Store.transaction`, which holds an exclusive ``flock`` on
  ``<dir>/.pvha.lock`` from before reading until after the last rename, so two
  concurrent commands serialise and neither loses the other's update (PVE takes its
  ``ha`` domain lock for the same reason). Files whose text did not change are not
  rewritten; a transaction left by an exception writes nothing.
* Each file is written atomically: temp file in the same directory, write, fsync,
  rename over the target, fsync the directory.
* An edit touching several files (``remove`` purging rules) writes them one after the
  other, each atomically, in the order resources.cfg, groups.cfg, rules.cfg.
* ``crm_commands`` lines are appended under the same lock, one command per line, as
  PVE's API does (semantics 1.5).
* A flock serialises commands on one host only. A store in a cluster filesystem
  (``cluster_lock``, given by the CLI when it knows the cfs root) holds instead the
  cluster-wide HA domain lock (:meth:`pvha.adapters.cfs.ClusterFs.domain_lock`, a lock
  directory as PVE's ``cfs_lock_domain('ha')``, then the same flock), which ``pvha
  watch`` on any node also takes to read and truncate ``crm_commands``: two CLIs on two
  nodes and the manager never lose or double a command or an edit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from pvha.config import schema
from pvha.config.faults import ConfigFault
from pvha.config.groups import GROUPS, to_group
from pvha.config.resources import RESOURCES, to_resource
from pvha.config.rules import RULES, to_rule
from pvha.config.schema import Entry, Kind
from pvha.config.sectioncfg import SectionFile, parse, parse_lenient
from pvha.core.model import HAConfig
from pvha.errors import StoreError
from pvha.fsutil import atomic_write, flock_wait, reason

ENV_VAR = "PVHA_CONFIG_DIR"
LOCK_FILE = ".pvha.lock"
CRM_COMMANDS = "crm_commands"
MANAGER_STATUS = "manager_status"
LRM_STATUS_DIR = "lrm_status"
LOCK_TIMEOUT = 10.0
KINDS: dict[str, Kind] = {"resources": RESOURCES, "groups": GROUPS, "rules": RULES}


def resolve_config_dir(
    option: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    etc_pve: Path = Path("/etc/pve"),
    euid: int | None = None,
) -> Path:
    """The config directory: ``--config-dir``, else $PVHA_CONFIG_DIR, else a default.

    Default: ``/etc/pve/pvha`` when ``/etc/pve`` exists (a PVE node: the cluster
    filesystem shares it), else ``/etc/pvha`` for root, else ``$XDG_CONFIG_HOME/pvha``
    (``~/.config/pvha``).
    """
    env = os.environ if env is None else env
    if option:
        return Path(option)
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR])
    if etc_pve.is_dir():
        return etc_pve / "pvha"
    if (os.geteuid() if euid is None else euid) == 0:
        return Path("/etc/pvha")
    xdg = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(xdg) / "pvha"


@dataclass(frozen=True, slots=True)
class Loaded:
    """One config file: parsed text (for byte-exact edits) and its validated entries."""

    kind: Kind
    file: SectionFile
    entries: dict[str, Entry]

    def with_file(self, new: SectionFile) -> Loaded:
        """Same kind with ``new`` text; re-validated so a bad edit never reaches disk."""
        return Loaded(self.kind, new, schema.validate_file(self.kind, new))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The three files as read at one moment."""

    resources: Loaded
    groups: Loaded
    rules: Loaded

    def ha_config(self) -> HAConfig:
        """Typed view for the engine and for status."""
        return HAConfig(
            resources={k: to_resource(e) for k, e in self.resources.entries.items()},
            groups={k: to_group(e) for k, e in self.groups.entries.items()},
            rules={k: to_rule(e, i) for i, (k, e) in enumerate(self.rules.entries.items(), 1)},
        )


class Transaction:
    """Holds the snapshot being edited; assign ``resources``/``groups``/``rules`` to change it."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.before = snapshot
        self.after = snapshot

    def update(self, name: str, new: SectionFile) -> None:
        loaded: Loaded = getattr(self.after, name)
        self.after = replace(self.after, **{name: loaded.with_file(new)})

    def changed(self) -> list[tuple[str, str]]:
        """(file name, new text) of each file whose text differs from what was read."""
        out = []
        for name, kind in KINDS.items():
            old: Loaded = getattr(self.before, name)
            new: Loaded = getattr(self.after, name)
            if new.file.render() != old.file.render():
                out.append((kind.file, new.file.render()))
        return out


class Store:
    """A configuration directory (see module docstring for the locking contract)."""

    def __init__(self, directory: Path,
                 cluster_lock: Callable[[float], AbstractContextManager[None]] | None = None
                 ) -> None:
        """``cluster_lock(timeout)``: the cluster-wide lock writers hold (see the module
        docstring); None = the local flock alone."""
        self.dir = Path(directory)
        self._cluster_lock = cluster_lock

    def path(self, name: str) -> Path:
        return self.dir / name

    def load(self) -> Snapshot:
        """Read and validate all files; missing files are empty. ConfigError / StoreError."""
        return Snapshot(**{name: self._load(kind) for name, kind in KINDS.items()})

    def load_lenient(self) -> tuple[Snapshot, list[ConfigFault]]:
        """Read all files, skipping every section that fails to parse or validate (bad
        header, bad property line, unknown key, bad value, duplicate id...); the rest of
        each file is loaded. Returns the snapshot and one fault per skipped section, in
        file order (resources.cfg, groups.cfg, rules.cfg), then line order. StoreError if
        a file cannot be read at all."""
        return self.parse_lenient({kind.file: self.read_text(kind.file)
                                   for kind in KINDS.values()})

    def parse_lenient(self, texts: Mapping[str, str | None]) -> tuple[Snapshot,
                                                                     list[ConfigFault]]:
        """:meth:`load_lenient` on texts already read (file name -> text, None or
        missing = no such file), so a caller that read the files once parses that."""
        parts: dict[str, Loaded] = {}
        faults: list[ConfigFault] = []
        for name, kind in KINDS.items():
            parts[name], found = self._parse_lenient(kind, texts.get(kind.file) or "")
            faults.extend(found)
        return Snapshot(**parts), faults

    def exists(self) -> bool:
        """True if the config directory exists (StoreError if it is not a directory)."""
        if self.dir.exists() and not self.dir.is_dir():
            raise StoreError(f"config dir {self.dir} is not a directory")
        return self.dir.is_dir()

    def require_dir(self) -> None:
        """StoreError unless the config directory exists: a read-only command on a
        directory that is not there is a wrong ``--config-dir`` or a node where nothing
        was configured yet, and must not look like an empty, healthy configuration."""
        if not self.exists():
            raise StoreError(
                f"config dir {self.dir} does not exist (nothing configured yet? "
                "pvha add creates it; see --config-dir)"
            )

    def _parse_lenient(self, kind: Kind, text: str) -> tuple[Loaded, list[ConfigFault]]:
        parsed, faults = parse_lenient(text, str(self.path(kind.file)), kind.section_key,
                                       kind.file)
        parsed, entries, invalid = schema.validate_lenient(kind, parsed)
        return Loaded(kind, parsed, entries), sorted(faults + invalid, key=lambda f: f.line)

    def _load(self, kind: Kind) -> Loaded:
        path = self.path(kind.file)
        text = self.read_text(kind.file)
        parsed = parse(text, str(path), kind.section_key)
        return Loaded(kind, parsed, schema.validate_file(kind, parsed))

    def read_text(self, name: str) -> str:
        """Contents of ``name`` in the directory, '' if it does not exist."""
        try:
            return self.path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
        except NotADirectoryError:
            raise StoreError(f"config dir {self.dir} is not a directory") from None
        except (OSError, UnicodeDecodeError) as err:
            raise StoreError(f"cannot read {self.path(name)}: {reason(err)}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Lock, load, let the caller edit, then write the changed files atomically."""
        with self.locked():
            txn = Transaction(self.load())
            yield txn
            for name, text in txn.changed():
                self._atomic_write(name, text)

    def append_crm_command(self, line: str) -> None:
        """Queue one crm command line (no newline inside) for the manager."""
        if "\n" in line or "\r" in line:
            raise StoreError("crm command must be a single line")
        with self.locked():
            try:
                fd = os.open(self.path(CRM_COMMANDS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, (line + "\n").encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as err:
                raise StoreError(
                    f"cannot write {self.path(CRM_COMMANDS)}: {reason(err)}"
                ) from None

    @contextlib.contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Exclusive lock on the directory (cluster-wide when the store has a
        ``cluster_lock``); creates the directory if needed."""
        if self.dir.exists() and not self.dir.is_dir():
            raise StoreError(f"config dir {self.dir} is not a directory")
        if self._cluster_lock is not None:
            with self._cluster_lock(timeout):
                yield
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot write to config dir {self.dir}: {reason(err)}") from None
        try:
            flock_wait(fd, timeout, f"config dir {self.dir}")
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _atomic_write(self, name: str, text: str) -> None:
        atomic_write(self.path(name), text.encode("utf-8"))
