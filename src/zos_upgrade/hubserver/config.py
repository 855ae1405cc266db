"""The hub server's configuration file (TOML): tokens, limits, official repositories, block store.

official = ["official-apps"]          # repositories listed with "official": true
max_upload_bytes = 67108864           # largest accepted flist upload (request body)
max_block_bytes = 4194304             # largest accepted PUT /blocks/<id> body
max_inflated_bytes = 268435456        # a v1 upload may inflate to at most this many bytes...
max_inflate_ratio = 100               # ...and to at most this times its own size (1 MiB floor)
upload_check_seconds = 60.0           # deadline of one upload's check (parse, blocks)
upload_checks = 4                     # upload checks running at once, over all repositories...
upload_checks_per_repo = 2            # ...and per repository; an upload waits at most the
                                      # deadline for a slot, then is answered 503
blocks = "blocks"                     # optional: serve and accept blocks from this folder
                                      # (relative to the config file); uploads must then
                                      # have every block present
header_timeout = 10.0                 # seconds a request head may take (then 408 and close)
max_headers = 100                     # header fields in one request (more: 431)
max_header_bytes = 16384              # bytes of one request head (more: 431)
max_connections = 512                 # open connections (one more: 503 and close at once)
[fleet_lock]                          # the FleetLock endpoint at the hub's root (/v1/pre-reboot)
slots = 1                             # nodes of a group upgrading at once, unless...
groups = { workers = 3 }              # ... the group has its own size
[tokens]                              # bearer token = the one repository it may write
"a-long-random-secret" = "myrepo"
[rollout]                             # fleet feedback and the automatic halt (issue 20)
node_secret = "another-long-secret"   # node tokens are derived from it (`hub node-token`);
                                      # without it the hub accepts no reports
threshold_percent = 2.0               # halt once failures pass this share of the attempts...
min_reports = 20                      # ...out of at least this many nodes that tried
max_nodes = 100000                    # nodes one release's record keeps
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zos_upgrade.config import NODE_GROUP
from zos_upgrade.errors import ConfigError
from zos_upgrade.hub.models import InvalidName
from zos_upgrade.hub.names import validate_name
from zos_upgrade.hubserver.rollout.record import HaltPolicy

__all__ = ["HubConfig", "load_hub_config"]

MiB = 1024 * 1024
_LIMIT_KEYS = {"header_timeout", "max_headers", "max_header_bytes", "max_connections"}
_UPLOAD_CHECK_KEYS = {"max_inflated_bytes", "max_inflate_ratio", "upload_check_seconds", "upload_checks",
                      "upload_checks_per_repo"}
_TUF_KEYS = {"online_keys", "online_resign_seconds"}
_KEYS = {"official", "max_upload_bytes", "max_block_bytes", "blocks", "tokens", "fleet_lock", "rollout",
         *_LIMIT_KEYS, *_UPLOAD_CHECK_KEYS, *_TUF_KEYS}
_ROLLOUT_KEYS = {"node_secret", "threshold_percent", "min_reports", "max_nodes"}
MAX_SLOTS = 100_000
MIN_TOKEN_CHARS = 16
MAX_CHECK_SECONDS = 3600.0


@dataclass(frozen=True)
class HubConfig:
    root: Path
    tokens: Mapping[str, str] = field(default_factory=dict)  # token -> repository
    official: frozenset[str] = frozenset()
    max_upload_bytes: int = 64 * MiB
    max_block_bytes: int = 4 * MiB
    blocks: Path | None = None
    # what a connection may cost before it has sent a request (hubserver/protocol.py)
    header_timeout: float = 10.0
    max_headers: int = 100
    max_header_bytes: int = 16 * 1024
    max_connections: int = 512
    # upload checks: small by default, so a 1 MiB upload cannot make the hub inflate 1 GiB
    max_inflated_bytes: int = 256 * MiB
    max_inflate_ratio: int = 100
    upload_check_seconds: float = 60.0
    upload_checks: int = 4
    upload_checks_per_repo: int = 2
    # fleet feedback: None accepts no reports (no node token can be checked)
    node_secret: str | None = None
    halt: HaltPolicy = field(default_factory=HaltPolicy)
    max_report_nodes: int = 100_000
    # FleetLock: the slots of a group without its own size, and the groups that have one
    fleet_lock_slots: int = 1
    fleet_lock_groups: Mapping[str, int] = field(default_factory=dict)
    # online TUF keys (issue 15): <online_keys>/<repo>/timestamp.*.pem (+ snapshot), checked this often
    online_keys: Path | None = None
    online_resign_seconds: float = 300.0


def _fleet_lock(doc: Mapping[str, Any], where: str) -> tuple[int, dict[str, int]]:
    table = doc.get("fleet_lock", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [fleet_lock] must be a table (slots, groups)")
    unknown = set(table) - {"slots", "groups"}
    if unknown:
        raise ConfigError(f"{where}: [fleet_lock]: unknown key(s) {sorted(unknown)} (expected slots, groups)")
    slots = _positive_int(table, "slots", 1, f"{where}: [fleet_lock]", high=MAX_SLOTS)
    groups_doc = table.get("groups", {})
    if not isinstance(groups_doc, dict):
        raise ConfigError(f"{where}: [fleet_lock] groups must be a table of group = slots")
    groups: dict[str, int] = {}
    for name, _size in groups_doc.items():
        if not NODE_GROUP.fullmatch(name):
            raise ConfigError(f"{where}: [fleet_lock.groups]: {name!r} is not a group name "
                              "(^[a-zA-Z0-9.-]+$, at most 63 characters)")
        groups[name] = _positive_int(groups_doc, name, 1, f"{where}: [fleet_lock.groups]", high=MAX_SLOTS)
    return slots, groups


def _positive_int(doc: Mapping[str, Any], key: str, default: int, where: str, high: int | None = None) -> int:
    value = doc.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {key} must be at most {high}, got {value!r}")
    return value


def _seconds(doc: Mapping[str, Any], key: str, default: float, high: float, where: str) -> float:
    value = doc.get(key, default)
    # `not 0 < value <= high` is also true of nan, so nan and inf are refused with the rest
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
        raise ConfigError(f"{where}: {key} must be a number above 0 and at most {high:g}, got {value!r}")
    return float(value)


def load_hub_config(path: Path | None, root: Path, *, blocks: Path | None = None) -> HubConfig:
    """Read ``path`` (or use defaults when ``None``); ``blocks`` given here wins over the file's."""
    if path is None:
        return HubConfig(root=root, blocks=blocks)
    where = str(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read hub config: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
    unknown = set(doc) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (expected some of {sorted(_KEYS)})")
    tokens_doc = doc.get("tokens", {})
    if not isinstance(tokens_doc, dict):
        raise ConfigError(f"{where}: [tokens] must be a table of token = repository")
    tokens: dict[str, str] = {}
    for token, repo in tokens_doc.items():
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{where}: token of {repo!r} is shorter than {MIN_TOKEN_CHARS} chars")
        if not isinstance(repo, str):
            raise ConfigError(f"{where}: token for {repo!r} must map to a repository name (a string)")
        try:
            validate_name(repo, "repository")
        except InvalidName as exc:
            raise ConfigError(f"{where}: [tokens]: {exc}") from exc
        tokens[token] = repo
    official = doc.get("official", [])
    if not isinstance(official, list) or not all(isinstance(name, str) for name in official):
        raise ConfigError(f"{where}: official must be a list of repository names")
    slots, groups = _fleet_lock(doc, where)
    blocks_value = doc.get("blocks")
    if blocks is None and blocks_value is not None:
        if not isinstance(blocks_value, str) or not blocks_value:
            raise ConfigError(f"{where}: blocks must be a folder path (a string)")
        blocks = (path.parent / blocks_value).resolve()
    online_value = doc.get("online_keys")
    online_keys = None
    if online_value is not None:
        if not isinstance(online_value, str) or not online_value:
            raise ConfigError(f"{where}: online_keys must be a folder path (a string)")
        online_keys = (path.parent / online_value).resolve()
        if not online_keys.is_dir():
            raise ConfigError(f"{where}: online_keys {online_keys} is not a folder")
    rollout = doc.get("rollout", {})
    if not isinstance(rollout, dict):
        raise ConfigError(f"{where}: [rollout] must be a table")
    unknown = set(rollout) - _ROLLOUT_KEYS
    if unknown:
        raise ConfigError(f"{where}: [rollout]: unknown key(s) {sorted(unknown)} "
                          f"(expected some of {sorted(_ROLLOUT_KEYS)})")
    secret = rollout.get("node_secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < MIN_TOKEN_CHARS):
        raise ConfigError(f"{where}: [rollout] node_secret must be a string of at least "
                          f"{MIN_TOKEN_CHARS} chars")
    threshold = rollout.get("threshold_percent", HaltPolicy.threshold_percent)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold < 100:
        raise ConfigError(f"{where}: [rollout] threshold_percent must be a number from 0 to below 100, "
                          f"got {threshold!r}")
    halt = HaltPolicy(float(threshold), _positive_int(rollout, "min_reports", HaltPolicy.min_reports,
                                                      f"{where}: [rollout]", high=1_000_000))
    return HubConfig(
        root=root,
        online_keys=online_keys,
        online_resign_seconds=_seconds(doc, "online_resign_seconds", 300.0, 86400.0, where),
        node_secret=secret,
        halt=halt,
        max_report_nodes=_positive_int(rollout, "max_nodes", 100_000, f"{where}: [rollout]", high=10_000_000),
        tokens=tokens,
        official=frozenset(official),
        max_upload_bytes=_positive_int(doc, "max_upload_bytes", 64 * MiB, where),
        max_block_bytes=_positive_int(doc, "max_block_bytes", 4 * MiB, where),
        blocks=blocks,
        header_timeout=_seconds(doc, "header_timeout", 10.0, 300.0, where),
        max_headers=_positive_int(doc, "max_headers", 100, where, high=10_000),
        max_header_bytes=_positive_int(doc, "max_header_bytes", 16 * 1024, where, high=1024 * 1024),
        max_connections=_positive_int(doc, "max_connections", 512, where, high=100_000),
        max_inflated_bytes=_positive_int(doc, "max_inflated_bytes", HubConfig.max_inflated_bytes, where),
        max_inflate_ratio=_positive_int(doc, "max_inflate_ratio", HubConfig.max_inflate_ratio, where),
        upload_check_seconds=_seconds(doc, "upload_check_seconds", HubConfig.upload_check_seconds,
                                      MAX_CHECK_SECONDS, where),
        upload_checks=_positive_int(doc, "upload_checks", HubConfig.upload_checks, where),
        upload_checks_per_repo=_positive_int(doc, "upload_checks_per_repo", HubConfig.upload_checks_per_repo,
                                             where),
        fleet_lock_slots=slots,
        fleet_lock_groups=groups,
    )
