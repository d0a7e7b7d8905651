"""``fence.cfg``: PVE's fence device configuration format (semantics §5.6).

Theory of operation. The file is a list of lines::

    device <name>[:<n>] <agent> <key>=<value> ... [flag] ...
    connect <name>[:<n>] node=<node> <key>=<value> ... [flag] ...

A ``device`` line declares a (sub)device; sub-devices that share a name (``power:1``,
``power:2``) are *parallel*: fencing through that device needs every one of them to
succeed (two power supplies, two switch ports). Devices get their priority from the order
their name is first declared: the first device is level 1, the next level 2, and so on.
A ``connect`` line gives the per-node options of one sub-device (the plug, the port); a
device must be declared before it is connected. Arguments are split like a shell does
(``password="12\\"345"``), ``#`` starts a comment line.

Everything wrong in a file is reported at once: :class:`FenceConfigError` carries every
``(line, message)`` pair, with PVE's own wording for the errors PVE detects.

Options hold secrets (``password=``), so the dataclasses below keep them out of ``repr``;
nothing in this module logs them.

:meth:`FenceConfig.get_commands` renders PVE's command lines (``--key=value``, ``-k``);
it exists to prove the parser matches PVE's test cases. pvha itself never runs those
strings: the agent runner (:mod:`pvha.fence.agent`) passes options on stdin.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pvha.errors import ConfigError

_LINE_RE = re.compile(r"^(device|connect)\s+(\S+)\s+(\S+)(?:\s+(.*))?$")
_DEVICE_RE = re.compile(r"^(\w+)(?::(\d+))?$")
_NODE_RE = re.compile(r"^node=([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$")
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

Option = tuple[str, str | None]
"""One agent option: ``(key, value)``, or ``(flag, None)`` for a bare flag."""


class FenceConfigError(ConfigError):
    """``fence.cfg`` is invalid. ``issues`` lists every ``(line, message)``; the message
    names each as ``path:line: message``, one per line."""

    def __init__(self, issues: list[tuple[int, str]], path: str | None = None) -> None:
        self.issues = tuple(issues)
        first_line, first_reason = self.issues[0]
        super().__init__(first_reason, path, first_line)
        where = path if path is not None else "fence.cfg"
        self.args = ("\n".join(f"{where}:{ln}: {msg}" for ln, msg in self.issues),)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class SubDevice:
    """One declared ``device`` line and its ``connect`` lines, keyed by node."""

    name: str
    index: int
    agent: str
    line: int
    options: tuple[Option, ...] = field(repr=False)
    nodes: tuple[tuple[str, tuple[Option, ...]], ...] = field(default=(), repr=False)

    def node_options(self, node: str) -> tuple[Option, ...] | None:
        """The ``connect`` options for ``node``, or None if it is not connected."""
        for name, options in self.nodes:
            if name == node:
                return options
        return None

    @property
    def label(self) -> str:
        """``name:index`` as PVE writes it in messages."""
        return f"{self.name}:{self.index}"


@dataclass(frozen=True, slots=True)
class FenceDevice:
    """A device name with its parallel sub-devices (sorted by index); ``priority`` is 0
    for the first device declared in the file."""

    name: str
    priority: int
    subdevices: tuple[SubDevice, ...]


@dataclass(frozen=True, slots=True)
class FenceTarget:
    """What it takes to power off one node through one sub-device: the agent and the
    device options followed by the node's ``connect`` options (later ones win)."""

    device: str
    index: int
    agent: str
    options: tuple[Option, ...] = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.device}:{self.index}"


@dataclass(frozen=True, slots=True)
class FenceLevel:
    """One device tried for a node: every target in it must succeed. ``level`` counts
    from 1 in the order the node's devices are tried."""

    level: int
    device: str
    targets: tuple[FenceTarget, ...]


@dataclass(frozen=True, slots=True)
class FenceCommand:
    """PVE's rendering of one fence call (for the parser's conformance tests only)."""

    agent: str
    args: tuple[Option, ...] = field(repr=False)

    def render(self) -> str:
        """``agent --key=value -k value --flag``, values shell-quoted as PVE prints them."""
        parts = [self.agent]
        for key, value in self.args:
            dash = "-" if len(key) == 1 else "--"
            if value is None:
                parts.append(f"{dash}{key}")
            elif len(key) == 1:
                parts.append(f"-{key} {shlex.quote(value)}")
            else:
                parts.append(f"--{key}={shlex.quote(value)}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class FenceConfig:
    """A parsed ``fence.cfg``: devices by priority."""

    devices: tuple[FenceDevice, ...] = ()
    path: str | None = None

    def nodes(self) -> tuple[str, ...]:
        """Every node connected to some device, sorted."""
        found = {n for d in self.devices for s in d.subdevices for n, _ in s.nodes}
        return tuple(sorted(found))

    def levels(self, node: str) -> tuple[FenceLevel, ...]:
        """The devices connected to ``node`` in the order they are tried; each holds the
        node's sub-devices of that device (only those the node is connected to)."""
        levels: list[FenceLevel] = []
        for device in self.devices:
            targets = []
            for sub in device.subdevices:
                node_opts = sub.node_options(node)
                if node_opts is not None:
                    targets.append(
                        FenceTarget(sub.name, sub.index, sub.agent, sub.options + node_opts)
                    )
            if targets:
                levels.append(FenceLevel(len(levels) + 1, device.name, tuple(targets)))
        return tuple(levels)

    def count_devices(self, node: str) -> int:
        """How many devices ``node`` is connected to (PVE's ``count_devices``)."""
        return len(self.levels(node))

    def get_commands(self, node: str, try_: int) -> list[FenceCommand] | None:
        """PVE's ``get_commands``: the commands of the device with priority ``try_``
        (counted over the whole file) for ``node``; None if there is no such device,
        an empty list if the node is not connected to it."""
        try_ = max(try_, 0)
        for device in self.devices:
            if device.priority != try_:
                continue
            commands = []
            for sub in device.subdevices:
                node_opts = sub.node_options(node)
                if node_opts is not None:
                    commands.append(FenceCommand(sub.agent, sub.options + node_opts))
            return commands
        return None


def parse_options(text: str) -> tuple[Option, ...]:
    """Split an argument string like a shell (quotes, backslashes) into options.
    Raises ValueError with a reason on bad quoting or a bad key."""
    options: list[Option] = []
    for word in shlex.split(text, comments=False, posix=True):
        key, sep, value = word.partition("=")
        if not _KEY_RE.match(key):
            raise ValueError(f"invalid option '{key}'")
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"option '{key}' has a line break or NUL in its value")
        options.append((key, value if sep else None))
    return tuple(options)


class _Builder:
    """Accumulates devices while lines are read; records issues instead of stopping."""

    def __init__(self) -> None:
        self.devices: dict[str, dict[int, SubDevice]] = {}
        self.issues: list[tuple[int, str]] = []

    def device(
        self, lineno: int, name: str, index: int, agent: str, options: tuple[Option, ...]
    ) -> None:
        subs = self.devices.setdefault(name, {})
        if index in subs:
            self.issues.append((lineno, f"device '{name}:{index}' already declared"))
            return
        subs[index] = SubDevice(name, index, agent, lineno, options)

    def connect(
        self, lineno: int, name: str, index: int, target: str, options: tuple[Option, ...]
    ) -> None:
        sub = self.devices.get(name, {}).get(index)
        if sub is None:
            self.issues.append(
                (lineno, f"device '{name}' must be declared before you can connect to it")
            )
            return
        match = _NODE_RE.match(target)
        if match is None:
            self.issues.append((lineno, f"expected node=<node> after the device, got '{target}'"))
            return
        node = match.group(1)
        if sub.node_options(node) is not None:
            self.issues.append((lineno, f"node '{node}' already connected to device '{sub.label}'"))
            return
        self.devices[name][index] = SubDevice(
            sub.name, sub.index, sub.agent, sub.line, sub.options, sub.nodes + ((node, options),)
        )

    def build(self, path: str | None) -> FenceConfig:
        devices = tuple(
            FenceDevice(name, prio, tuple(subs[i] for i in sorted(subs)))
            for prio, (name, subs) in enumerate(self.devices.items())
        )
        return FenceConfig(devices, path)


def _usage(word: str) -> str:
    if word == "device":
        return "expected: device <name>[:<n>] <agent> [<key>=<value>|<flag>] ..."
    if word == "connect":
        return "expected: connect <name>[:<n>] node=<node> [<key>=<value>|<flag>] ..."
    return f"unknown command '{word}' (expected device or connect)"


def _parse_line(builder: _Builder, lineno: int, line: str) -> None:
    match = _LINE_RE.match(line)
    if match is None:
        builder.issues.append((lineno, _usage(line.split()[0])))
        return
    command, dev, target, rest = match.groups()
    dev_match = _DEVICE_RE.match(dev)
    if dev_match is None:
        builder.issues.append((lineno, f"invalid device name '{dev}'"))
        return
    name, index = dev_match.group(1), int(dev_match.group(2) or 1)
    if index < 1:
        builder.issues.append((lineno, f"invalid device index in '{dev}' (counts from 1)"))
        return
    try:
        options = parse_options(rest or "")
    except ValueError as exc:
        builder.issues.append((lineno, str(exc)))
        return
    if command == "device":
        if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", target):
            builder.issues.append((lineno, f"invalid agent name '{target}'"))
            return
        builder.device(lineno, name, index, target, options)
    else:
        builder.connect(lineno, name, index, target, options)


def parse_fence_config(text: str, path: str | None = None) -> FenceConfig:
    """Parse the text of a ``fence.cfg``. ``path`` is only used in messages.

    Raises :class:`FenceConfigError` listing every bad line (duplicates, connect before
    device, bad quoting, unknown commands); returns the config otherwise."""
    builder = _Builder()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        _parse_line(builder, lineno, line)
    if builder.issues:
        raise FenceConfigError(builder.issues, path)
    return builder.build(path)


def load_fence_config(path: Path | str) -> FenceConfig:
    """Read and parse a ``fence.cfg`` file; a missing file is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read fence config: {exc.strerror}", str(path)) from None
    return parse_fence_config(text, str(path))
