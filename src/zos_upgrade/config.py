"""The daemon's config (TOML, a main file and its fragments): defaults, strict validation, node paths.

Unknown keys and wrong types are errors that name the file and the key; a node that silently
ignores a misspelt ``probation`` would run without the safety the operator asked for.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from zos_upgrade.configd import merge, read_documents
from zos_upgrade.errors import ConfigError

__all__ = [
    "Config",
    "FleetLockConfig",
    "LoadedConfig",
    "MetricsConfig",
    "NodeConfig",
    "PeriodicConfig",
    "ReportConfig",
    "RolloutConfig",
    "SourceConfig",
    "SupervisorConfig",
    "TrustConfig",
    "TrustRequired",
    "UpgradeConfig",
    "WindowConfig",
    "check_loopback",
    "load_config",
    "load_config_files",
    "parse_config",
]

# key -> the file (main or fragment) to name in a message about that key's value
Where = Callable[[str], str]

# Every duration, in seconds, as (lowest, highest) sane value. Checked after decoding, in one place,
# because TOML's legal floats include inf, nan, 1e-9 and 1e308: a probation that never ends or a
# poll loop that spins is refused here, so `daemon` and `status` refuse exactly the same files.
DURATION_BOUNDS: dict[str, tuple[float, float]] = {
    "source.interval": (0.5, 7 * 86400.0),  # under half a second a node only loads its hub
    "source.jitter": (0.0, 86400.0),
    "upgrade.probation": (0.0, 3600.0),
    "upgrade.hook_timeout": (0.1, 86400.0),
    "upgrade.stop_timeout": (0.1, 3600.0),
}

# what `[node] compatible` may be: the names a release's `compatible` tag lists (upgrade/compat.py)
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")

# Top-level folders of a node's system: releases install into them, so none may be the upgrader's
# state directory (item 7 refuses a release writing under the state dir: it could install nothing).
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run",
    "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
})


class NodeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    root: str = "/"  # node root; every node path below is resolved under it
    state_dir: str = "/var/cache/modules/upgrade"
    # which releases this node takes (upgrade/compat.py): None takes only untagged releases
    compatible: str | None = None
    # the node's identity in the fleet (rollout buckets, FleetLock): None: generated once, kept in
    # the state dir (node/identity.py)
    id: str | None = None
    group: str = "default"  # FleetLock's group: the nodes that share a semaphore


class SourceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    hub: str | None = None  # hub base URL ...
    flist: str | None = None  # "repo/name" of the boot flist link on that hub
    bins_repo: str | None = None
    publisher: str | None = None  # ... or a release server
    trusted_keys: list[str] = msgspec.field(default_factory=list)
    jump_to_latest: bool = False  # publisher mode: skip intermediate versions
    interval: float = 600  # bounds: DURATION_BOUNDS
    jitter: float = 60


class TrustConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Release authenticity (issue 15): the pinned TUF roots of what the node follows."""

    root: str | None = None       # node path: pinned root of the followed hub repo / release tree
    bins_root: str | None = None  # node path: pinned root of [source] bins_repo's TUF repository
    metadata_url: str | None = None  # overrides <hub>/tuf/<repo>/metadata/ (e.g. a CDN)
    # follow a hub with no authenticity at all: explicit, warned, shown (a release server's releases
    # are still checked against trusted_keys: there it changes nothing)
    insecure: bool = False


class TrustRequired(ConfigError):
    """A hub-following node with neither a pinned TUF root nor ``[trust] insecure = true``."""


MAX_ROOT_BYTES = 512_000  # python-tuf's cap for one root file


class SupervisorConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    kind: Literal["zinit", "supervisord"] = "zinit"
    socket: str = "/var/run/zinit.sock"
    protocol: Literal["auto", "line", "jsonrpc"] = "auto"  # zinit only
    include_dir: str = "/etc/supervisor/conf.d"  # supervisord only: where [program:x] files go


class UpgradeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    self_update: bool = True
    program: str = "/bin/zos-upgrade"  # the upgrader's own program inside releases
    protected: list[str] = msgspec.field(default_factory=lambda: ["upgrade"])
    probation: float = 30  # seconds a restarted service must stay up
    hook_timeout: float = 300
    stop_timeout: float = 30
    # file-writer processes while a release is written: "auto" is one per core for a release of more
    # than 4 MiB or 100 files; 0 keeps the upgrader to one process (a node whose cores are spoken for)
    writer_processes: Annotated[int, msgspec.Meta(ge=0, le=64)] | Literal["auto"] = "auto"
    # bytes the preflight keeps free on the node's file systems beyond what a transaction writes (the
    # default, 64 MiB, leaves room for logs and the services; a node on a small root may lower it)
    space_margin: Annotated[int, msgspec.Meta(ge=0, le=1 << 40)] = 64 * 1024 * 1024
    # seconds the new program of a self-update has to prove it starts (`self-test`, upgrade/probe.py)
    probe_timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30

    @property
    def workers(self) -> int | None:
        """``writer_processes`` as ``materialize`` takes it (None: automatic)."""
        return None if self.writer_processes == "auto" else self.writer_processes


class MetricsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 9108
    # both off unless said explicitly: metrics leave loopback only because the operator wants them to
    allow_remote: bool = False  # `host` may be any IP address of the node (0.0.0.0, ::, ...)
    socket: str | None = None  # a node path: serve on this unix socket instead of host:port


Day = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class WindowConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One ``[[rollout.periodic.window]]``: Zincati's shape, UTC (rollout/windows.py)."""

    days: list[Day]
    start_time: str  # "HH:MM"
    length_minutes: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)]


class PeriodicConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    window: list[WindowConfig] = msgspec.field(default_factory=list)


class FleetLockConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    base_url: str | None = None  # the FleetLock server (our hub's URL serves it at its root)


class RolloutConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    # when a transaction may start (Zincati's update strategies): at once, only inside a
    # maintenance window, or once a FleetLock server gave this node a slot (before services stop)
    strategy: Literal["immediate", "periodic", "fleet_lock"] = "immediate"
    periodic: PeriodicConfig = msgspec.field(default_factory=PeriodicConfig)
    fleet_lock: FleetLockConfig = msgspec.field(default_factory=FleetLockConfig)


class ReportConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``[report]``: fleet feedback to the followed hub (issue 20): how each boot transaction ended,
    sent with this node's token (`zos-upgrade hub node-token ID` on the hub). No token: no report
    is sent, and the hub's halt flag is not read either."""

    # it goes into an HTTP header: printable token characters only (what `hub node-token` prints)
    token: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._~+/=-]{16,512}$")] | None = None
    queue: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64  # undelivered reports kept


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    node: NodeConfig = msgspec.field(default_factory=NodeConfig)
    source: SourceConfig = msgspec.field(default_factory=SourceConfig)
    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    upgrade: UpgradeConfig = msgspec.field(default_factory=UpgradeConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    rollout: RolloutConfig = msgspec.field(default_factory=RolloutConfig)
    trust: TrustConfig = msgspec.field(default_factory=TrustConfig)
    report: ReportConfig = msgspec.field(default_factory=ReportConfig)

    @property
    def root(self) -> Path:
        return Path(self.node.root)

    def node_path(self, path: str) -> Path:
        """``path`` (absolute on the node) as seen from here: resolved under the node root."""
        return self.root / path.lstrip("/")

    @property
    def state_dir(self) -> Path:
        return self.node_path(self.node.state_dir)

    @property
    def supervisor_socket(self) -> Path:
        return self.node_path(self.supervisor.socket)

    @property
    def tuf(self) -> bool:
        """Whether releases are believed through TUF metadata (a pinned root is configured)."""
        return self.trust.root is not None

    @property
    def unauthenticated(self) -> bool:
        """A hub followed with ``[trust] insecure = true``: nothing vouches for its releases."""
        return self.source.hub is not None and self.trust.root is None and self.trust.insecure

    @property
    def trust_dir(self) -> Path:
        """``<state_dir>/trust``: ngclient's metadata caches and the trust status files."""
        return self.state_dir / "trust"

    @property
    def trusted_key_paths(self) -> list[Path]:
        return [self.node_path(p) for p in self.source.trusted_keys]

    def reserved_paths(self) -> dict[str, str]:
        """Node paths no release may write, each -> what it is: the upgrader's state, the files the
        node's supervisor owns (its socket; for supervisord the folder its configs are rendered into)
        and the keys releases are verified with (a release replacing them would choose its own trust)."""
        reserved = {
            self.node.state_dir: "the upgrader's state directory",
            self.supervisor.socket: "the supervisor's socket",
        }
        if self.supervisor.kind == "supervisord":
            reserved[self.supervisor.include_dir] = "the folder of supervisord's rendered program configs"
        for key in self.source.trusted_keys:
            reserved[key] = "a trusted release key"
        for pinned in (self.trust.root, self.trust.bins_root):
            if pinned is not None:
                reserved[pinned] = "a pinned TUF root"
        return reserved


def _check_url(value: str, key: str, where: Where) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where(key)}: {key} = {value!r} is not an http(s) URL")


def check_loopback(host: str, key: str, source: str) -> None:
    """Metrics are served on loopback unless the config says otherwise explicitly (``allow_remote``,
    ``socket``): an operator exposes them deliberately, never by a typo in a config file."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"{source}: {key} = {host!r}: metrics are served on loopback only (127.0.0.1 or ::1) unless "
            "metrics.allow_remote = true"
        )


def _check_node_path(key: str, value: str, where: Where) -> None:
    """The one rule for every path the config names on the node: absolute, no ``..``, no NUL, so
    resolving it under the node root (:meth:`Config.node_path`) can never leave the root."""
    if not value.startswith("/"):
        raise ConfigError(f"{where(key)}: {key} = {value!r} must be an absolute path (a path on the node)")
    if "\x00" in value or ".." in PurePosixPath(value).parts:
        raise ConfigError(
            f"{where(key)}: {key} = {value!r} must not contain '..' or NUL: it would leave the node root"
        )


def _canonical(value: str) -> PurePosixPath:
    # PurePosixPath keeps a leading "//" (POSIX leaves its meaning open); a node path never means that
    return PurePosixPath("/", *PurePosixPath(value).parts[1:])


def _node_paths(cfg: Config) -> dict[str, str]:
    """Every configured node path by its key (``source.trusted_keys[0]`` for list items)."""
    paths = {
        "node.root": cfg.node.root,
        "node.state_dir": cfg.node.state_dir,
        "supervisor.socket": cfg.supervisor.socket,
        "supervisor.include_dir": cfg.supervisor.include_dir,
        "upgrade.program": cfg.upgrade.program,
    }
    paths.update({f"source.trusted_keys[{i}]": p for i, p in enumerate(cfg.source.trusted_keys)})
    if cfg.metrics.socket is not None:
        paths["metrics.socket"] = cfg.metrics.socket
    for key in ("root", "bins_root"):
        value = getattr(cfg.trust, key)
        if value is not None:
            paths[f"trust.{key}"] = value
    return paths


def _check_durations(cfg: Config, where: Where) -> None:
    values = {
        "source.interval": cfg.source.interval,
        "source.jitter": cfg.source.jitter,
        "upgrade.probation": cfg.upgrade.probation,
        "upgrade.hook_timeout": cfg.upgrade.hook_timeout,
        "upgrade.stop_timeout": cfg.upgrade.stop_timeout,
    }
    for key, value in values.items():
        low, high = DURATION_BOUNDS[key]
        # `not (low <= v <= high)` is also true for NaN, which compares false with everything
        if not math.isfinite(value) or not low <= value <= high:
            raise ConfigError(
                f"{where(key)}: {key} = {value!r} is out of range: expected {low:g} to {high:g} seconds"
            )


def _check_state_dir(cfg: Config, where: Where) -> None:
    state = _canonical(cfg.node.state_dir)
    if str(state) in SYSTEM_DIRS:
        raise ConfigError(
            f"{where('node.state_dir')}: node.state_dir = {cfg.node.state_dir!r} is a system folder "
            "releases install into; "
            "expected a folder of the upgrader's own, such as /var/cache/modules/upgrade"
        )
    for key, value in _node_paths(cfg).items():
        if key != "node.state_dir" and key != "node.root" and _canonical(value).is_relative_to(state):
            raise ConfigError(
                f"{where(key)}: {key} = {value!r} lies inside node.state_dir = {cfg.node.state_dir!r}: "
                "the state directory holds the upgrader's own files only"
            )
    if str(_canonical(cfg.supervisor.include_dir)) == "/":
        raise ConfigError(
            f"{where('supervisor.include_dir')}: supervisor.include_dir = '/': "
            "expected a folder of the supervisor's own, such as /etc/supervisor/conf.d"
        )


def _check_compatible(cfg: Config, where: Where) -> None:
    value = cfg.node.compatible
    if value is not None and not NODE_NAME.fullmatch(value):
        raise ConfigError(
            f"{where('node.compatible')}: node.compatible = {value!r} is not a node name: expected 1 to 64 "
            "letters, digits or . _ : + - (starting with a letter or digit), e.g. \"zos-x86_64\""
        )


# a node id: what the fleet knows the node by (FleetLock's `id`, the rollout bucket's input)
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# FleetLock's group rule (airlock and the protocol document: ^[a-zA-Z0-9.-]+$), at most 63 characters
NODE_GROUP = re.compile(r"[A-Za-z0-9.-]{1,63}")
HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _check_identity(cfg: Config, where: Where) -> None:
    node = cfg.node
    if node.id is not None and not NODE_ID.fullmatch(node.id):
        raise ConfigError(
            f"{where('node.id')}: node.id = {node.id!r} is not a node id: expected 1 to 128 letters, digits "
            "or . _ : - (starting with a letter or digit), or no node.id to have one generated"
        )
    if not NODE_GROUP.fullmatch(node.group):
        raise ConfigError(
            f"{where('node.group')}: node.group = {node.group!r} is not a group name: expected 1 to 63 "
            "letters, digits, . or - (FleetLock's rule), e.g. \"default\" or \"workers\""
        )


def _check_rollout(cfg: Config, where: Where) -> None:
    rollout = cfg.rollout
    windows = rollout.periodic.window
    for i, window in enumerate(windows):
        key = f"rollout.periodic.window[{i}]"
        if not window.days:
            raise ConfigError(f"{where('rollout.periodic.window')}: {key}.days is empty: expected the days "
                              "the window opens, e.g. [\"Sat\", \"Sun\"]")
        if len(set(window.days)) != len(window.days):
            raise ConfigError(f"{where('rollout.periodic.window')}: {key}.days = {window.days!r} names a "
                              "day twice")
        if not HHMM.fullmatch(window.start_time):
            raise ConfigError(f"{where('rollout.periodic.window')}: {key}.start_time = "
                              f"{window.start_time!r} is not a time of day: expected HH:MM (UTC), "
                              "e.g. \"22:30\"")
    if rollout.strategy == "periodic" and not windows:
        raise ConfigError(f"{where('rollout.strategy')}: rollout.strategy = \"periodic\" needs at least one "
                          "[[rollout.periodic.window]] (days, start_time, length_minutes): without one the "
                          "node would never upgrade")
    base = rollout.fleet_lock.base_url
    if rollout.strategy == "fleet_lock" and base is None:
        raise ConfigError(f"{where('rollout.strategy')}: rollout.strategy = \"fleet_lock\" needs "
                          "rollout.fleet_lock.base_url (the FleetLock server, e.g. the hub's URL)")
    if base is not None:
        _check_url(base, "rollout.fleet_lock.base_url", where)


def _validate(cfg: Config, where: Where) -> Config:
    """Every rule on the values; ``where(key)`` names the file that set ``key`` for the message."""
    _check_compatible(cfg, where)
    _check_identity(cfg, where)
    _check_rollout(cfg, where)
    for key, value in _node_paths(cfg).items():
        _check_node_path(key, value, where)
    _check_state_dir(cfg, where)
    _check_durations(cfg, where)
    src = cfg.source
    if src.hub is None and src.publisher is None:
        raise ConfigError(f"{where('source')}: [source] needs `hub` (with `flist`) or `publisher`")
    if src.hub is not None and src.publisher is not None:
        raise ConfigError(f"{where('source.publisher')}: [source] takes `hub` or `publisher`, not both")
    if src.hub is not None:
        _check_url(src.hub, "source.hub", where)
        if not src.flist or src.flist.count("/") != 1 or src.flist.startswith("/") or src.flist.endswith("/"):
            raise ConfigError(
                f"{where('source.flist')}: source.flist = {src.flist!r} must be 'repo/name' of the boot flist"
            )
    if src.publisher is not None:
        _check_url(src.publisher, "source.publisher", where)
    if src.bins_repo is not None and src.hub is None:
        raise ConfigError(
            f"{where('source.bins_repo')}: source.bins_repo names a repository of a hub: it needs `hub`"
        )
    if src.bins_repo is not None and (not src.bins_repo or "/" in src.bins_repo):
        raise ConfigError(
            f"{where('source.bins_repo')}: source.bins_repo = {src.bins_repo!r} must be a repository name"
        )
    # here, not where the daemon is wired: `zos-upgrade status` must refuse what the daemon does
    if src.publisher is not None and not src.trusted_keys and cfg.trust.root is None:
        raise ConfigError(
            f"{where('source.publisher')}: [source] publisher needs trusted_keys (public key files) or "
            "[trust] root (the release tree's pinned TUF root): the daemon never applies a release it "
            "cannot verify"
        )
    _check_metrics(cfg.metrics, where)
    _check_trust(cfg, where)
    return cfg


def _check_trust(cfg: Config, where: Where) -> None:
    trust, src = cfg.trust, cfg.source
    if trust.insecure and (trust.root is not None or trust.bins_root is not None):
        raise ConfigError(f"{where('trust.insecure')}: [trust] insecure = true and a pinned root: choose "
                          "one (remove insecure to verify releases through the root)")
    if trust.metadata_url is not None:
        _check_url(trust.metadata_url, "trust.metadata_url", where)
        if trust.root is None:
            raise ConfigError(f"{where('trust.metadata_url')}: trust.metadata_url needs [trust] root")
    if trust.bins_root is not None and src.bins_repo is None:
        raise ConfigError(f"{where('trust.bins_root')}: trust.bins_root is the root of [source] bins_repo, "
                          "which is not set")
    if trust.bins_root is not None and trust.root is None:
        raise ConfigError(f"{where('trust.bins_root')}: trust.bins_root needs [trust] root (the boot "
                          "flist's repository) too")
    if src.hub is not None and trust.root is None and not trust.insecure:
        raise TrustRequired(
            f"{where('trust')}: this node follows the hub {src.hub} without any release authenticity: "
            "set [trust] root = \"/etc/zos-upgrade/trust/<repo>.root.json\" (the pinned TUF root of "
            f"{src.flist.split('/')[0] if src.flist else 'the repository'}, from its release engineers), "
            "or, knowingly, [trust] insecure = true")
    if trust.root is not None and src.bins_repo is not None and trust.bins_root is None:
        raise ConfigError(f"{where('trust.root')}: [source] bins_repo = {src.bins_repo!r} needs "
                          "trust.bins_root (its repository's pinned TUF root)")
    for key in ("root", "bins_root"):
        value = getattr(trust, key)
        if value is not None:
            _check_root_file(cfg.node_path(value), f"trust.{key}", value, where)


def _check_root_file(path: Path, key: str, value: str, where: Where) -> None:
    """The pinned root is there, readable and a TUF root document (its signatures: trust/client.py)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ROOT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where(key)}: {key} = {value!r}: the pinned root cannot be read ({path}: "
                          f"{exc.strerror or exc}); copy the repository's root.json there") from exc
    if len(data) > MAX_ROOT_BYTES:
        raise ConfigError(f"{where(key)}: {key} = {value!r} is over {MAX_ROOT_BYTES} bytes: not a TUF root")
    try:
        doc = json.loads(data)
        kind = doc["signed"]["_type"]
    except (ValueError, KeyError, TypeError):
        kind = None
    if kind != "root":
        raise ConfigError(f"{where(key)}: {key} = {value!r} is not a TUF root metadata file (expected a "
                          f"JSON document whose signed._type is 'root', got {kind!r})")


def _check_metrics(metrics: MetricsConfig, where: Where) -> None:
    if metrics.socket is not None and metrics.allow_remote:
        raise ConfigError(f"{where('metrics.allow_remote')}: metrics.allow_remote is for a host address; "
                          f"metrics.socket = {metrics.socket!r} is a unix socket: set one of them")
    if metrics.socket is not None:
        return
    if not metrics.allow_remote:
        check_loopback(metrics.host, "metrics.host", where("metrics.host"))
        return
    try:
        ipaddress.ip_address(metrics.host)
    except ValueError:
        raise ConfigError(f"{where('metrics.host')}: metrics.host = {metrics.host!r} is not an IP address "
                          "(with metrics.allow_remote = true it must be one of the node's addresses, "
                          "or 0.0.0.0 / :: for all)") from None


def parse_config(text: str | bytes, *, source: str = "<config>") -> Config:
    """Decode and validate one config document; raise :class:`ConfigError` naming what is wrong."""
    try:
        cfg = msgspec.toml.decode(text, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    return _validate(cfg, lambda _key: source)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where each of its keys came from (the main file or a fragment)."""

    config: Config
    files: list[Path]  # the main file, then its fragments in the order they were merged
    origins: dict[str, Path]  # "table.key" -> the file that set it last; absent: the default

    def rows(self) -> list[tuple[str, Any, Path | None]]:
        """Every key of the config as (``table.key``, value, file that set it or None for the default)."""
        rows: list[tuple[str, Any, Path | None]] = []
        for table, values in msgspec.to_builtins(self.config).items():
            for key, value in values.items():
                name = f"{table}.{key}"
                # a table inside a table (rollout.periodic) was set by whoever set a key of it
                origin = self.origins.get(name) or next(
                    (path for k, path in self.origins.items() if k.startswith(name + ".")), None)
                rows.append((name, value, origin))
        return rows


def load_config_files(path: Path | str) -> LoadedConfig:
    """Read the config file at ``path`` and its fragments (:mod:`zos_upgrade.configd`), merge, validate.

    Each document must be valid on its own (known keys, right types), so a bad fragment is refused
    naming that fragment; a rule on the merged values names the file that set the offending key.
    """
    main = Path(path)
    docs = read_documents(main)
    for doc in docs:
        try:
            msgspec.convert(doc.data, type=Config)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{doc.path}: {exc}") from exc
    merged = merge(docs)
    cfg = msgspec.convert(merged.data, type=Config)

    def where(key: str) -> str:
        # a rule on a table or on a key left at its default is the main file's to answer for
        return str(merged.origins.get(key, main))

    return LoadedConfig(_validate(cfg, where), [doc.path for doc in docs], merged.origins)


def load_config(path: Path | str) -> Config:
    """Read and validate the config file at ``path`` with its fragments (the daemon and status both)."""
    return load_config_files(path).config
