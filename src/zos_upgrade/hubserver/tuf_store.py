"""The TUF metadata the hub keeps for each repository: ``<root>/.tuf/<repo>/metadata/``.

An upload is accepted only if python-tuf says it is the next valid state of that repository's
TUF repository: it parses as metadata of the role its file name says, its version follows the
stored one, a root is signed by the previous root's threshold and its own, every other role by the
keys the current root names, a snapshot names stored targets and a timestamp a stored snapshot
(so clients upload ``timestamp.json`` last and a node never sees a timestamp naming a missing
file). The hub trusts nothing it is sent, but it is not a trust anchor either: nodes verify
everything again with their pinned root. ``.tuf`` starts with a dot, so it is never a repository
(names starting with ``.`` are refused and never listed).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from zos_upgrade import fsutil
from zos_upgrade.hub.models import HubError
from zos_upgrade.hub.names import validate_name
from zos_upgrade.trust.checks import (
    check_follows,
    check_root_successor,
    check_signed_by_root,
    check_targets_fields,
    parse_metadata,
    signed_of,
)
from zos_upgrade.trust.errors import TrustError
from zos_upgrade.trust.layout import HUB_STORE_DIR, METADATA_DIR, metadata_filename, parse_metadata_filename

__all__ = ["MetadataRefused", "TufStore"]

_VERSIONED = re.compile(r"([1-9][0-9]{0,18})\.(root|targets|snapshot)\.json")
MAX_METADATA_BYTES = 8 * 1024 * 1024


class MetadataRefused(HubError):
    """An uploaded metadata file the hub will not store (HTTP ``status``); nothing was stored."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TufStore:
    """The stored TUF metadata of every repository under one hub storage root."""

    def __init__(self, root: Path) -> None:
        self.base = root / HUB_STORE_DIR
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def metadata_dir(self, repo: str) -> Path:
        return self.base / validate_name(repo, "repository") / METADATA_DIR

    def repos(self) -> Iterator[str]:
        """The repositories that have a TUF repository here."""
        if self.base.is_dir():
            for path in sorted(self.base.iterdir()):
                if (path / METADATA_DIR / "root.json").is_file():
                    yield path.name

    def lock(self, repo: str) -> threading.Lock:
        """The lock every write of ``repo``'s metadata holds (uploads and the online-key task)."""
        with self._guard:
            return self._locks.setdefault(repo, threading.Lock())

    def _latest(self, folder: Path, role: str) -> tuple[int, Path] | None:
        best: tuple[int, Path] | None = None
        if folder.is_dir():
            for path in folder.iterdir():
                match = _VERSIONED.fullmatch(path.name)
                if match and match.group(2) == role and (best is None or int(match.group(1)) > best[0]):
                    best = (int(match.group(1)), path)
        return best

    def _stored(self, folder: Path, name: str, role: str) -> Metadata[Any] | None:
        data = fsutil.read_at_most(folder / name, MAX_METADATA_BYTES)
        if data is None:
            return None
        return parse_metadata(data, role, name)

    def accept(self, repo: str, filename: str, data: bytes) -> int:
        """Check ``data`` as the next ``filename`` of ``repo``'s TUF repository and store it durably.

        Returns the stored version; raises :class:`MetadataRefused` and stores nothing otherwise.
        """
        try:
            name = parse_metadata_filename(filename)
        except TrustError as exc:
            raise MetadataRefused(str(exc), 404) from exc
        if name.role == "root" and name.version is None:
            raise MetadataRefused("upload root metadata as N.root.json; the hub keeps root.json itself")
        folder = self.metadata_dir(repo)
        with self.lock(repo):
            try:
                md = parse_metadata(data, name.role, filename)
                if name.version is not None and md.signed.version != name.version:
                    raise MetadataRefused(
                        f"{filename}: holds version {md.signed.version}, not the {name.version} its name says"
                    )
                self._check(folder, filename, md)
            except TrustError as exc:
                raise MetadataRefused(str(exc), 409 if "does not follow" in str(exc) else 400) from exc
            folder.mkdir(parents=True, exist_ok=True)
            fsutil.atomic_write_bytes(folder / filename, data)
            if name.role == "root":
                fsutil.atomic_write_bytes(folder / "root.json", data)
        version: int = md.signed.version
        return version

    def _check(self, folder: Path, filename: str, md: Metadata[Any]) -> None:
        role = md.signed.type
        latest_root = self._latest(folder, "root")
        previous_root = None
        if latest_root is not None:
            stored = self._stored(folder, latest_root[1].name, "root")
            previous_root = signed_of(stored, Root) if stored is not None else None
        if role == "root":
            check_root_successor(previous_root, md, filename)
            return
        if previous_root is None:
            raise MetadataRefused(f"{filename}: this repository has no root yet (upload 1.root.json first)")
        check_signed_by_root(previous_root, md, filename)
        if role == "timestamp":
            stored_ts = self._stored(folder, "timestamp.json", "timestamp")
            check_follows(stored_ts.signed if stored_ts else None, md.signed, filename)
            wanted = metadata_filename("snapshot", signed_of(md, Timestamp).snapshot_meta.version)
            if not (folder / wanted).is_file():
                raise MetadataRefused(f"{filename}: names {wanted}, which is not stored (upload it first)")
            return
        latest = self._latest(folder, role)
        stored = self._stored(folder, latest[1].name, role) if latest else None
        check_follows(stored.signed if stored else None, md.signed, filename)
        if role == "snapshot":
            targets = signed_of(md, Snapshot).meta.get("targets.json")
            wanted = metadata_filename("targets", targets.version) if targets else "targets.json"
            if not (folder / wanted).is_file():
                raise MetadataRefused(f"{filename}: names {wanted}, which is not stored (upload it first)")
        else:
            check_targets_fields(signed_of(md, Targets), filename)
