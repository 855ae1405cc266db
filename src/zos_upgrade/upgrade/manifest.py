"""Install manifests (``<state>/manifests/``): the durable truth of what is installed on the node.

One manifest per installed flist: ``boot.json`` for the boot release, ``bins/<quoted fqdn>.json`` for
each bins package. The manifest a commit replaces is kept under ``previous/`` (same names) until the
next commit replaces it in turn: it is what ``zos-upgrade rollback`` goes back to. A manifest lists
every path the release put on the node (with a content digest, so a plan can tell what changed),
the service configs it shipped, and the hub info the boot files are rebuilt from. Renaming a new
manifest in place is the transaction's commit point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from zos_upgrade.fsutil import atomic_write_bytes, fsync_dir
from zos_upgrade.supervisor import parse_service_config, validate_service_name
from zos_upgrade.upgrade.dirs import ensure_dir
from zos_upgrade.upgrade.errors import PlanRefused, UpgradeError

__all__ = [
    "HOOK_NAMES",
    "RELEASE_CONTROL_FILES",
    "SERVICE_DIR",
    "FileRecord",
    "Manifest",
    "ManifestStore",
    "digest_file",
    "record_of",
    "release_services",
    "scan_release",
    "service_name",
]

log = logging.getLogger(__name__)

# Executables at the flist root that run during the transaction and are never copied onto the node;
# ``rollback`` runs only when the node rolls back FROM the release that ships it (``upgrade/rollback.py``).
HOOK_NAMES = ("pre-copy", "post-copy", "migrate", "post-start", "rollback")
# Control files at the flist root, never copied onto the node: the hooks and the list of node paths
# they may change (``datapaths.DATA_PATHS_FILE``).
RELEASE_CONTROL_FILES = (*HOOK_NAMES, "hooks.paths")
# Where a release ships its zinit service configs (SPEC 10), relative to its root.
SERVICE_DIR = "etc/zinit"
_MAX_SERVICE_FILE = 64 * 1024
_MAX_MANIFEST_BYTES = 256 * 1024 * 1024

FileKind = Literal["file", "link", "dir"]


class FileRecord(msgspec.Struct, forbid_unknown_fields=True, array_like=True):
    kind: FileKind
    mode: int      # permission bits only
    size: int
    digest: str    # file: blake2b-256 of the content; link: the target; dir: ""


class Manifest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: Literal["boot", "bin"]
    fqdn: str                    # boot: the link name the node follows (flist.name); bins: repo/name
    source: str                  # what was mounted (resolved target fqdn or URL)
    version: str
    md5: str
    info: dict[str, Any]         # the /light JSON (boot files are rebuilt from it)
    files: dict[str, FileRecord]  # relative POSIX path -> record, directories included
    services: dict[str, str]     # service name -> zinit yaml text
    installed: float


def digest_file(path: Path) -> str:
    import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need

    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def record_of(path: Path, digest: Callable[[Path], str] = digest_file) -> FileRecord | None:
    """The record of whatever is at ``path`` (not following a final symlink); None if nothing/special.

    ``digest`` names a regular file's content (``preview.py`` passes the flist's block fingerprint)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return FileRecord("link", mode, 0, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return FileRecord("dir", mode, 0, "")
    if stat.S_ISREG(st.st_mode):
        return FileRecord("file", mode, st.st_size, digest(path))
    return None


def _walk(tree: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(tree, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            full = base / name
            yield full.relative_to(tree).as_posix(), full


def scan_release(tree: Path) -> tuple[dict[str, FileRecord], dict[str, str]]:
    """Every path of a staged release (root control files excluded: hooks, hooks.paths) and its services.

    Service configs (``etc/zinit/<name>.yaml``) are parsed strictly here, at the boundary, so a bad
    one refuses the release before anything on the node changes.
    """
    files: dict[str, FileRecord] = {}
    for rel, full in _walk(tree):
        if rel in RELEASE_CONTROL_FILES:
            continue
        record = record_of(full)
        if record is None:
            log.warning("special file in release skipped", extra={"path": rel})
            continue
        files[rel] = record
    return files, release_services(tree, files)


def service_name(rel: str) -> str | None:
    """The service whose config a release path is (``etc/zinit/<name>.yaml``), or None."""
    prefix = SERVICE_DIR + "/"
    if not rel.startswith(prefix) or "/" in rel[len(prefix):] or not rel.endswith(".yaml"):
        return None
    return rel[len(prefix):-len(".yaml")]


def release_services(tree: Path, files: dict[str, FileRecord]) -> dict[str, str]:
    """The service configs among ``files`` (read from ``tree``), each parsed strictly: a bad one
    refuses the release before anything on the node changes."""
    services: dict[str, str] = {}
    for rel, record in files.items():
        name = service_name(rel)
        if name is None:
            continue
        where = f"release file /{rel}"
        if record.kind != "file":
            raise PlanRefused(f"{where}: a service config must be a regular file, found a {record.kind}")
        try:
            validate_service_name(name)
        except UpgradeError as exc:
            raise PlanRefused(f"{where}: {exc}") from None
        except Exception as exc:
            raise PlanRefused(f"{where}: {exc}") from None
        if record.size > _MAX_SERVICE_FILE:
            raise PlanRefused(
                f"{where}: {record.size} bytes; a service config may have at most {_MAX_SERVICE_FILE}"
            )
        text = (tree / rel).read_text(encoding="utf-8", errors="strict")
        try:
            parse_service_config(text, source=where)
        except Exception as exc:  # ConfigError: refuse the whole release, naming the file
            raise PlanRefused(f"invalid service config: {exc}") from None
        services[name] = text
    return services


class ManifestStore:
    """Reads and durably writes the manifests under ``<state>/manifests``."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "manifests"
        self.bins_dir = self.root / "bins"
        self.previous_dir = self.root / "previous"

    def path_for(self, key: str, *, previous: bool = False) -> Path:
        """``"boot"`` -> boot.json; a bins fqdn -> bins/<percent-quoted fqdn>.json (under previous/)."""
        base = self.previous_dir if previous else self.root
        if key == "boot":
            return base / "boot.json"
        return base / "bins" / (urllib.parse.quote(key, safe="") + ".json")

    def load(self, key: str) -> Manifest | None:
        path = self.path_for(key)
        return self._read(path)

    def load_previous(self, key: str) -> Manifest | None:
        """The manifest the last commit of ``key`` replaced (the rollback target), or None."""
        return self._read(self.path_for(key, previous=True))

    def keep_previous(self, key: str, new: bytes) -> None:
        """Before ``new`` replaces the manifest of ``key``: keep the current one as the previous.

        Idempotent for roll-forward: once the current bytes ARE ``new`` (the rename happened, so the
        previous was kept before it), nothing is done; with no current manifest there is nothing to keep.
        """
        current = self.encoded(key)
        if current is None or current == new:
            return
        path = self.path_for(key, previous=True)
        ensure_dir(path.parent)
        atomic_write_bytes(path, current, 0o600)

    def _read(self, path: Path) -> Manifest | None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(_MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(data) > _MAX_MANIFEST_BYTES:
            raise UpgradeError(f"manifest {path}: larger than {_MAX_MANIFEST_BYTES} bytes")
        try:
            return msgspec.json.decode(data, type=Manifest, strict=True)
        except msgspec.DecodeError as exc:
            raise UpgradeError(f"manifest {path}: not a valid install manifest: {exc}") from exc

    def bins(self) -> dict[str, Manifest]:
        out: dict[str, Manifest] = {}
        if not self.bins_dir.is_dir():
            return out
        for path in sorted(self.bins_dir.glob("*.json")):
            manifest = self._read(path)
            if manifest is not None:
                out[manifest.fqdn] = manifest
        return out

    def save(self, key: str, manifest: Manifest) -> None:
        """Durably install ``manifest`` under ``key`` (atomic rename: the commit point)."""
        self.save_text(key, msgspec.json.encode(manifest))

    def save_text(self, key: str, data: bytes) -> None:
        path = self.path_for(key)
        ensure_dir(path.parent)
        atomic_write_bytes(path, data, 0o600)

    def remove(self, key: str) -> None:
        path = self.path_for(key)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            fsync_dir(path.parent)

    def encoded(self, key: str) -> bytes | None:
        """The manifest's bytes as stored (the journal compares them to tell if commit happened)."""
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError:
            return None
