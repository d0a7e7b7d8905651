"""pvha's own settings: one TOML file, overridden by ``PVHA_*`` variables and flags.

Precedence (design §6): flag > environment > file > default. The file is
``--settings`` / ``PVHA_SETTINGS`` / ``/etc/pvha/settings.toml`` (a missing default file
is fine; a missing file that was asked for is an error). Layout::

    [api]
    hosts = ["192.0.2.11", "192.0.2.12"]   # tried in order; failover to the next
    port = 8006
    user = "pvha@pve"                      # or "pvha@pve!ha" (user and token name)
    token_name = "ha"                      # token auth if set, else password (ticket) auth
    token_secret_file = "/etc/pvha/token"  # or password_file
    ca_file = "/etc/pve/pve-root-ca.pem"   # or fingerprint = ["AB:CD:..."]
    connect_timeout = 5
    read_timeout = 40                      # >= 30: PVE waits 30 s on forwarded calls
    task_timeout = 600                     # a guest task running longer is not waited for
    attempts = 3                           # tries per API call (1 = no retry)
    max_answer_bytes = 33554432            # 32 MiB: a larger API answer is refused unread

    [cfs]
    root = "/etc/pve"                      # config_dir defaults to <root>/pvha

    [watch]                                # pvha watch timings (PVE's defaults)
    round_interval = 10                    # seconds between manager rounds
    fence_delay = 60                       # seconds offline before a node is fenced
                                           # (default 60, or 0 with a fence.cfg)
    fence_timeout = 20                     # bound of each fence device call
    max_workers = 4                        # guest tasks in flight per node (PVE's default)
    order_wait = 120                       # seconds a start waits for the guests of a higher
                                           # priority or its "after" (then starts anyway)
    lock_lifetime = 120                    # lock lifetime of the cfs (pmxcfs: 120; a shorter
                                           # value is for a test pmxcfs that expires sooner)
    shutdown_policy = "migrate"            # HA guests of a node that shuts down or reboots:
                                           # conditional | freeze | failover | migrate
                                           # (default: datacenter.cfg's "ha: shutdown_policy",
                                           # else conditional, as PVE)
    metrics_listen = "127.0.0.1:9750"      # Prometheus metrics (default: not served)

    [notify]                               # notifications (pvha.shell.notifications)
    urls_file = "/etc/pvha/notify-urls"    # apprise URLs, one per line (they hold tokens)
    pve_mail = "auto"                      # mail to root: PVE's notification system
                                           # (auto: on a PVE node; or yes / no)

Secrets are never taken from argv or from the TOML file itself: they come from the file
named by ``token_secret_file`` / ``password_file``, or from ``PVHA_TOKEN_SECRET`` /
``PVHA_PASSWORD``. They are held in :class:`Secret`, whose repr and str are masked.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvha.errors import ConfigError

DEFAULT_SETTINGS_PATH = Path("/etc/pvha/settings.toml")
DEFAULT_CFS_ROOT = Path("/etc/pve")
MIN_READ_TIMEOUT = 30.0
"""pveproxy waits 30 s on a forwarded call before answering 595/596; a client that gives
up earlier never sees PVE's answer (pve-api-notes §1.5)."""
DEFAULT_MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""Largest API answer read (decoded bytes). ``/cluster/resources`` of 10,000 guests is
about 4.5 MiB (~450 bytes per guest entry with every RRD, lock, tag, pool and HA field,
plus 32 nodes with 20 storages each), so 32 MiB leaves seven times that. A bigger answer
is refused after reading at most this much: it is never held whole in memory."""
MIN_MAX_ANSWER_BYTES = 64 * 1024
"""Below this even a small cluster's ``/cluster/resources`` would be refused."""


class Secret:
    """A secret string that does not print itself. ``reveal()`` is the only way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __copy__(self) -> Secret:  # immutable; also keeps dataclasses.asdict() working
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:  # pickling would write the secret out: refuse
        raise TypeError("Secret cannot be pickled")


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """How to reach and authenticate to the PVE API. Exactly one of ``token_secret``
    (with ``token_name``) or ``password`` is set; ``ca_file`` and ``fingerprints`` are
    mutually exclusive (neither = the system CA store)."""

    hosts: tuple[str, ...] = ("localhost",)
    port: int = 8006
    user: str = "root@pam"
    token_name: str | None = None
    token_secret: Secret | None = None
    password: Secret | None = None
    ca_file: Path | None = None
    fingerprints: tuple[str, ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 40.0
    task_timeout: float = 600.0
    attempts: int = 3
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES

    @property
    def uses_token(self) -> bool:
        return self.token_name is not None


@dataclass(frozen=True, slots=True)
class CfsSettings:
    """Where the cluster filesystem is (``--cfs-root``) and pvha's config dir in it."""

    root: Path = DEFAULT_CFS_ROOT
    config_dir: Path | None = None

    @property
    def resolved_config_dir(self) -> Path:
        return self.config_dir if self.config_dir is not None else self.root / "pvha"


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """Timings of ``pvha watch``. PVE's values are the defaults; tests and the demo
    shorten them. ``lock_lifetime`` is the cluster filesystem's lock lifetime, and every
    process sharing it must use the same value. On a plain directory pvha enforces it; on
    pmxcfs (which enforces its own 120 s) only a shorter value applies, for a simulated
    pmxcfs that expires locks sooner (``pvha sim serve --cfs-lock-timeout``): a watcher
    never believes it holds a lock longer than the filesystem keeps it."""

    round_interval: float = 10.0
    fence_delay: int | None = None  # None: PVE's 60 s, or 0 s when a fence device exists
    fence_timeout: float = 20.0  # bound of each fence device call and its read-back
    max_workers: int = 4  # guest tasks in flight per node
    order_wait: int = 120  # bound of a start's wait for its priority tier / "after"
    lock_lifetime: float = 120.0
    shutdown_policy: str | None = None  # None: datacenter.cfg's, else conditional
    metrics_listen: str | None = None  # HOST:PORT of the Prometheus metrics, None: none


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """Where notifications go: the apprise URLs in ``urls_file`` (a secret file) and,
    ``pve_mail`` None = auto (on a PVE node), PVE's own notification system."""

    urls_file: Path | None = None
    pve_mail: bool | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    api: ApiSettings = field(default_factory=ApiSettings)
    cfs: CfsSettings = field(default_factory=CfsSettings)
    source: Path | None = None  # the TOML file read, if any
    watch: WatchSettings = field(default_factory=WatchSettings)
    api_configured: bool = False  # hosts came from a flag, the environment or the file
    notify: NotifySettings = field(default_factory=NotifySettings)


# key -> (TOML section, environment variable). Flags use the same keys as the file
# (``cfs_root`` is ``root`` in ``[cfs]``).
_KEYS: dict[str, tuple[str, str]] = {
    "hosts": ("api", "PVHA_HOSTS"),
    "port": ("api", "PVHA_PORT"),
    "user": ("api", "PVHA_USER"),
    "token_name": ("api", "PVHA_TOKEN_NAME"),
    "token_secret_file": ("api", "PVHA_TOKEN_SECRET_FILE"),
    "password_file": ("api", "PVHA_PASSWORD_FILE"),
    "ca_file": ("api", "PVHA_CA_FILE"),
    "fingerprint": ("api", "PVHA_FINGERPRINT"),
    "connect_timeout": ("api", "PVHA_CONNECT_TIMEOUT"),
    "read_timeout": ("api", "PVHA_READ_TIMEOUT"),
    "task_timeout": ("api", "PVHA_TASK_TIMEOUT"),
    "attempts": ("api", "PVHA_ATTEMPTS"),
    "max_answer_bytes": ("api", "PVHA_MAX_ANSWER_BYTES"),
    "cfs_root": ("cfs", "PVHA_CFS_ROOT"),
    "config_dir": ("cfs", "PVHA_CONFIG_DIR"),
    "round_interval": ("watch", "PVHA_ROUND_INTERVAL"),
    "fence_delay": ("watch", "PVHA_FENCE_DELAY"),
    "fence_timeout": ("watch", "PVHA_FENCE_TIMEOUT"),
    "lock_lifetime": ("watch", "PVHA_LOCK_LIFETIME"),
    "max_workers": ("watch", "PVHA_MAX_WORKERS"),
    "order_wait": ("watch", "PVHA_ORDER_WAIT"),
    "shutdown_policy": ("watch", "PVHA_SHUTDOWN_POLICY"),
    "metrics_listen": ("watch", "PVHA_METRICS_LISTEN"),
    "urls_file": ("notify", "PVHA_NOTIFY_URLS_FILE"),
    "pve_mail": ("notify", "PVHA_NOTIFY_PVE_MAIL"),
}
_TEXT_KEYS = frozenset({"user", "token_name", "token_secret_file", "password_file", "ca_file",
                        "cfs_root", "config_dir", "shutdown_policy", "metrics_listen",
                        "urls_file"})
"""Settings whose value in the file must be a TOML string (paths and names)."""
TRUE_WORDS = ("1", "yes", "on", "true")
FALSE_WORDS = ("0", "no", "off", "false")
SHUTDOWN_POLICIES = ("conditional", "freeze", "failover", "migrate")
_SECRET_KEYS = {"token_secret", "token_value", "password", "secret"}
_FP_RE = re.compile(r"^[0-9A-Fa-f]{2}(:?[0-9A-Fa-f]{2}){31}$")


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    path: str | Path | None = None,
) -> Settings:
    """Build Settings from flags (keys as in ``_KEYS``; None values = not given), the
    environment (default ``os.environ``) and the TOML file; validate; read the secret.
    Raises ConfigError (never showing a secret)."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    bad = sorted(set(flags) & _SECRET_KEYS)
    if bad:
        raise ConfigError(f"secrets are not accepted as flags ({', '.join(bad)}); use a file")
    unknown = sorted(set(flags) - set(_KEYS))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    file_path, explicit = _settings_path(path, env)
    file_values = _read_toml(file_path, explicit)
    merged = _merge(flags, env, file_values)
    where = str(file_path) if file_values else None
    in_file = {k for k in merged if k not in flags and not env.get(_KEYS[k][1])}
    api = _build_api(merged, env, where, in_file)
    cfs = _build_cfs(merged)
    watch = _build_watch(merged, where)
    mail = merged.get("pve_mail", "auto")
    notify = NotifySettings(
        urls_file=Path(merged["urls_file"]) if merged.get("urls_file") else None,
        pve_mail=None if str(mail).lower() == "auto" else parse_bool(mail, "pve_mail", where))
    return Settings(api=api, cfs=cfs, source=file_path if file_values else None, watch=watch,
                    api_configured="hosts" in merged, notify=notify)


def cfs_settings(path: str | Path | None = None,
                 env: Mapping[str, str] | None = None) -> CfsSettings | None:
    """The ``[cfs]`` settings alone, resolved as :func:`load_settings` resolves them
    (environment > file), for the commands that need only the config dir; None when
    neither ``PVHA_CFS_ROOT``/``PVHA_CONFIG_DIR`` nor the settings file names one. The
    whole file is read and checked: a bad file is a ConfigError here too."""
    env = os.environ if env is None else env
    merged = _merge({}, env, _read_toml(*_settings_path(path, env)))
    if "cfs_root" not in merged and "config_dir" not in merged:
        return None
    return _build_cfs(merged)


def _merge(flags: Mapping[str, Any], env: Mapping[str, str],
           file_values: Mapping[str, Any]) -> dict[str, Any]:
    """Each setting from the first that has it: flags, environment (set and not empty),
    file."""
    merged: dict[str, Any] = {}
    for key, (_section, var) in _KEYS.items():
        if key in flags:
            merged[key] = flags[key]
        elif var in env and env[var] != "":
            merged[key] = env[var]
        elif key in file_values:
            merged[key] = file_values[key]
    return merged


def _build_cfs(m: Mapping[str, Any]) -> CfsSettings:
    return CfsSettings(root=Path(m.get("cfs_root", DEFAULT_CFS_ROOT)),
                       config_dir=Path(m["config_dir"]) if "config_dir" in m else None)


def parse_bool(value: Any, name: str, where: str | None = None) -> bool:
    """A boolean as PVE spells them: 1/0, yes/no, on/off, true/false (any case)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}: expected a boolean (yes/no, on/off, true/false, 1/0), "
                      f"got {value!r}", where)


def _build_watch(m: dict[str, Any], where: str | None) -> WatchSettings:
    watch = WatchSettings(
        round_interval=_number(m, "round_interval", 10.0, float, where),
        fence_delay=_number(m, "fence_delay", None, int, where) if "fence_delay" in m else None,
        fence_timeout=_number(m, "fence_timeout", 20.0, float, where),
        lock_lifetime=_number(m, "lock_lifetime", 120.0, float, where),
        max_workers=_number(m, "max_workers", 4, int, where),
        order_wait=_number(m, "order_wait", 120, int, where),
        shutdown_policy=str(m["shutdown_policy"]) if "shutdown_policy" in m else None,
        metrics_listen=str(m["metrics_listen"]) if m.get("metrics_listen") else None,
    )
    if watch.shutdown_policy is not None and watch.shutdown_policy not in SHUTDOWN_POLICIES:
        raise ConfigError(f"shutdown_policy {watch.shutdown_policy!r} is not one of "
                          f"{', '.join(SHUTDOWN_POLICIES)}", where)
    if (watch.round_interval <= 0 or (watch.fence_delay or 0) < 0 or watch.lock_lifetime <= 0
            or watch.fence_timeout <= 0 or watch.max_workers < 1 or watch.order_wait < 0):
        raise ConfigError(
            "round_interval, fence_delay, fence_timeout, max_workers, order_wait or "
            "lock_lifetime out of range", where
        )
    return watch


def _settings_path(path: str | Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    if path is not None:
        return Path(path), True
    if env.get("PVHA_SETTINGS"):
        return Path(env["PVHA_SETTINGS"]), True
    return DEFAULT_SETTINGS_PATH, False


def _read_toml(path: Path, explicit: bool) -> dict[str, Any]:
    """Flatten ``[api]`` and ``[cfs]`` into setting keys; reject unknown keys and secrets."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        if explicit:
            raise ConfigError("settings file not found", str(path)) from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read settings file: {exc.strerror}", str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", str(path)) from None
    out: dict[str, Any] = {}
    for section, table in data.items():
        if section not in ("api", "cfs", "watch", "notify") or not isinstance(table, dict):
            raise ConfigError(f"unknown section [{section}]", str(path))
        for name, value in table.items():
            if name in _SECRET_KEYS:
                raise ConfigError(
                    f"[{section}] {name}: secrets do not belong in the settings file; "
                    f"use {name.split('_')[0]}_file or the environment",
                    str(path),
                )
            key = "cfs_root" if (section, name) == ("cfs", "root") else name
            if key not in _KEYS or _KEYS[key][0] != section:
                raise ConfigError(f"unknown setting [{section}] {name}", str(path))
            if key in _TEXT_KEYS and not isinstance(value, str):
                raise ConfigError(f"[{section}] {name} must be a string", str(path))
            out[key] = value
    return out


def _build_api(m: dict[str, Any], env: Mapping[str, str], where: str | None,
               in_file: frozenset[str] | set[str] = frozenset()) -> ApiSettings:
    user = str(m.get("user", "root@pam"))
    token_name = m.get("token_name")
    if "!" in user:  # "pvha@pve!ha" names user and token at once, as PVE shows it
        user, _, from_user = user.partition("!")
        token_name = token_name or from_user
    if "@" not in user:
        raise ConfigError(f"user {user!r} needs a realm (e.g. root@pam)", where)
    token_secret = password = None
    # precedence flag > environment > file: a secret in the environment wins over a secret
    # file the settings file names, not over one named by a flag or a variable
    if token_name:
        value = env.get("PVHA_TOKEN_SECRET")
        named = None if value and "token_secret_file" in in_file else m.get("token_secret_file")
        token_secret = _secret(named, value, "token")
    else:
        value = env.get("PVHA_PASSWORD")
        named = None if value and "password_file" in in_file else m.get("password_file")
        password = _secret(named, value, "password")
    fps = _fingerprints(m.get("fingerprint"), where)
    ca = Path(m["ca_file"]) if m.get("ca_file") else None
    if ca is not None and fps:
        raise ConfigError("set either ca_file or fingerprint, not both", where)
    api = ApiSettings(
        hosts=_hosts(m.get("hosts", ("localhost",)), where),
        port=_number(m, "port", 8006, int, where),
        user=user,
        token_name=str(token_name) if token_name else None,
        token_secret=token_secret,
        password=password,
        ca_file=ca,
        fingerprints=fps,
        connect_timeout=_number(m, "connect_timeout", 5.0, float, where),
        read_timeout=_number(m, "read_timeout", 40.0, float, where),
        task_timeout=_number(m, "task_timeout", 600.0, float, where),
        attempts=_number(m, "attempts", 3, int, where),
        max_answer_bytes=_number(m, "max_answer_bytes", DEFAULT_MAX_ANSWER_BYTES, int, where),
    )
    if api.read_timeout < MIN_READ_TIMEOUT:
        raise ConfigError(
            f"read_timeout {api.read_timeout:g} s is shorter than PVE's 30 s proxy wait", where
        )
    if not 0 < api.port < 65536 or api.connect_timeout <= 0 or api.attempts < 1:
        raise ConfigError("port, connect_timeout or attempts out of range", where)
    if api.max_answer_bytes < MIN_MAX_ANSWER_BYTES:
        raise ConfigError(f"max_answer_bytes {api.max_answer_bytes} is below "
                          f"{MIN_MAX_ANSWER_BYTES} (64 KiB)", where)
    return api


def _secret(file_value: Any, env_value: str | None, what: str) -> Secret | None:
    """A secret from its file, else the variable's value; stripped of the newline."""
    if file_value:
        p = Path(str(file_value))
        try:
            text = p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {what} file: {exc.strerror}", str(p)) from None
        if not text:
            raise ConfigError(f"{what} file is empty", str(p))
        return Secret(text)
    if env_value:
        return Secret(env_value)
    return None


def _hosts(value: Any, where: str | None) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    hosts = tuple(str(h).strip() for h in items if str(h).strip())
    if not hosts:
        raise ConfigError("hosts is empty", where)
    return hosts


def _fingerprints(value: Any, where: str | None) -> tuple[str, ...]:
    """Normalise to upper-case colon-separated SHA-256 (PVE's ``ssl_fingerprint`` form)."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for raw in (str(i).strip() for i in items):
        if not _FP_RE.match(raw):
            raise ConfigError(f"fingerprint {raw!r} is not a SHA-256 fingerprint", where)
        hexdigits = raw.replace(":", "").upper()
        out.append(":".join(hexdigits[i : i + 2] for i in range(0, 64, 2)))
    return tuple(out)


def _number(m: dict[str, Any], key: str, default: Any, kind: type, where: str | None) -> Any:
    value = m.get(key, default)
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}", where)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number, got {value!r}", where) from None


# The settings reference (README and man page, written by tools/gen_docs.py): every key of
# the TOML file with its variable, default and meaning, then the variables with no key.
REFERENCE: tuple[tuple[str, str, str], ...] = (
    # (key or "", default, meaning); the section and the variable come from _KEYS
    ("hosts", "localhost", ("API hosts, tried in order (failover to the next); a list, or "
     "comma-separated in the variable")),
    ("port", "8006", "API port"),
    ("user", "root@pam", "API user; \"user@realm!tokenname\" names a token at once"),
    ("token_name", "(none)", "API token name: token auth (else password/ticket auth)"),
    ("token_secret_file", "(none)", "file holding the token secret"),
    ("password_file", "(none)", "file holding the password (ticket auth)"),
    ("ca_file", "system CAs", "CA certificate of the API (PVE: /etc/pve/pve-root-ca.pem)"),
    ("fingerprint", "(none)", ("pinned SHA-256 fingerprint(s) of the API certificate, instead "
     "of ca_file")),
    ("connect_timeout", "5", "seconds to connect"),
    ("read_timeout", "40", "seconds to wait for an answer (at least 30: pveproxy's proxy wait)"),
    ("task_timeout", "600", "seconds a guest task is waited for"),
    ("attempts", "3", "tries per API call (1: no retry)"),
    ("max_answer_bytes", "33554432", "largest API answer read"),
    ("cfs_root", "/etc/pve", "cluster filesystem root (ROOT)"),
    ("config_dir", "ROOT/pvha", "pvha's configuration directory"),
    ("round_interval", "10", "seconds between manager rounds"),
    ("fence_delay", "60 (0 with fence.cfg)", "seconds offline before a node is fenced"),
    ("fence_timeout", "20", "bound of each fence device call"),
    ("lock_lifetime", "120", "lock lifetime of the cluster filesystem (pmxcfs: 120)"),
    ("max_workers", "4", "guest tasks in flight per node"),
    ("order_wait", "120", ("seconds a start waits for higher priorities and its after "
     "resource to run, then starts anyway")),
    ("shutdown_policy", "datacenter.cfg, else conditional",
     "HA guests of a node that shuts down: conditional, freeze, failover or migrate"),
    ("metrics_listen", "(none)", "HOST:PORT of pvha watch's Prometheus metrics"),
    ("urls_file", "(none)", "file of apprise notification URLs, one per line (a secret)"),
    ("pve_mail", "auto", ("notify through PVE's notification system (mail to root): auto, "
     "yes or no")),
)
VARIABLES: tuple[tuple[str, str], ...] = (
    ("PVHA_SETTINGS", "the settings file (default /etc/pvha/settings.toml)"),
    ("PVHA_TOKEN_SECRET", ("the API token secret (wins over a token_secret_file of the "
     "settings file)")),
    ("PVHA_PASSWORD", "the API password (wins over a password_file of the settings file)"),
    ("PVHA_NODE", "pvha agent: this node's name (default: the short host name)"),
    ("PVHA_WATCHDOG_SOCKET", "pvha agent: watchdog-mux's socket (/run/watchdog-mux.sock)"),
    ("PVHA_DEBUG", "set to 1: a traceback for an internal error"),
)
PRIVILEGES = ("Sys.Audit", "VM.Audit", "VM.PowerMgmt", "VM.Migrate", "Sys.Console")
"""What pvha's API user (and its token) needs on ``/``, propagated: read the cluster, its
quorum, PVE's own HA and other nodes' tasks (Sys.Audit), the guests (VM.Audit), start and
stop them (VM.PowerMgmt), migrate them (VM.Migrate), and, for ``pvha import-pve`` only,
remove resources and groups from PVE's own HA (Sys.Console, as PVE's HA API asks for any
change). Recovery moves configs on the cluster filesystem, not through the API, so no
config privilege is needed."""
TOKEN_SETUP = (
    'pveum role add PVHA --privs "Sys.Audit VM.Audit VM.PowerMgmt VM.Migrate Sys.Console"',
    "pveum user add pvha@pve",
    "pveum acl modify / --users pvha@pve --roles PVHA",
    ("pveum user token add pvha@pve ha --privsep 0 --output-format json  # its \"value\": "
    "into /etc/pvha/token (mode 0600), token_secret_file"),
)
