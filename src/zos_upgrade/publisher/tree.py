"""The release tree on disk: ``versions``, ``latest`` and one ``<version>`` file per release (SPEC 7).

It is plain static files so that any web server, object store or CDN can serve it. ``add`` checks
everything before it writes anything, then writes the new release object, ``versions`` and
``latest`` each atomically (in that order, so a reader never sees a listed version without its
object); ``withdraw`` takes a version off ``versions`` (moving ``latest`` first when it was the one,
so ``latest`` is always listed) and keeps its signed object. Writers on one tree are serialised by a
lock on the tree's directory.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zos_upgrade import fsutil
from zos_upgrade.publisher.base import (
    INDEX_MAX_BYTES,
    PublisherError,
    ReleaseExists,
    Upgrade,
    check_upgrade_fields,
    check_versions,
    decode_latest,
    decode_upgrade,
    decode_versions,
)
from zos_upgrade.publisher.signing import file_hash, sign_upgrade
from zos_upgrade.versions import Version, parse_version

__all__ = ["LATEST", "VERSIONS", "ReleaseTree"]

VERSIONS = "versions"
LATEST = "latest"


class ReleaseTree:
    """Read and extend the release tree rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _read(self, name: str) -> bytes | None:
        path = self.root / name
        try:
            with open(path, "rb") as handle:
                data = handle.read(INDEX_MAX_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PublisherError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        if len(data) > INDEX_MAX_BYTES:
            raise PublisherError(f"{path}: larger than {INDEX_MAX_BYTES} bytes; not a release document")
        return data

    def versions(self) -> list[Version]:
        """The listed versions in semver order ([] for a tree with no release yet)."""
        data = self._read(VERSIONS)
        return [] if data is None else decode_versions(data, str(self.root / VERSIONS))

    def latest(self) -> Version | None:
        data = self._read(LATEST)
        return None if data is None else decode_latest(data, str(self.root / LATEST))

    def get(self, version: Version) -> Upgrade:
        """The release object of ``version`` as stored (not verified)."""
        data = self._read(str(version))
        if data is None:
            raise PublisherError(f"{self.root / str(version)}: no release object for version {version}")
        return decode_upgrade(data, str(self.root / str(version)))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add(
        self,
        version_text: str,
        *,
        flist_url: str,
        flist_file: Path,
        key: Ed25519PrivateKey,
        transaction_id: str = "",
    ) -> Upgrade:
        """Sign and publish a new release; refuse (changing nothing) an existing or non-semver version."""
        version = parse_version(version_text)
        if not flist_file.is_file():
            raise PublisherError(f"{flist_file}: flist file does not exist or is not a regular file")
        if self.root.exists() and not self.root.is_dir():
            raise PublisherError(f"{self.root}: release root is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / str(version)
        with self._locked():
            listed = self.versions()
            if any(version.compare(v) == 0 for v in listed):
                raise ReleaseExists(f"{self.root}: version {version} is already published")
            if os.path.lexists(target):
                raise ReleaseExists(f"{target}: exists though {VERSIONS} does not list it; remove it first")
            self.latest()  # a garbled latest is an error to fix by hand, not to overwrite silently
            try:
                digest = file_hash(flist_file)
            except OSError as exc:
                raise PublisherError(f"{flist_file}: cannot read flist file: {exc.strerror or exc}") from exc
            upgrade = sign_upgrade(version, flist_url, digest, key, transaction_id)
            check_upgrade_fields(upgrade, f"release {version}")
            updated = check_versions([*listed, version], str(self.root / VERSIONS))
            fsutil.atomic_write_json(target, msgspec.to_builtins(upgrade))
            fsutil.atomic_write_json(self.root / VERSIONS, [str(v) for v in updated])
            fsutil.atomic_write_json(self.root / LATEST, str(updated[-1]))
        return upgrade

    def withdraw(self, version_text: str) -> Version:
        """Stop offering ``version``: take it off ``versions``; return the new ``latest``.

        Its signed object stays, so the version can never be re-published with another flist (``add``
        refuses a version whose object exists). Refuses, changing nothing, a version that is not
        listed and the last listed one (a tree must offer something: remove the tree instead).
        """
        version = parse_version(version_text)
        if not self.root.is_dir():
            raise PublisherError(f"{self.root}: release root is not a directory")
        with self._locked():
            listed = self.versions()
            current = self.latest()
            remaining = [v for v in listed if version.compare(v) != 0]
            if len(remaining) == len(listed):
                raise PublisherError(f"{self.root}: version {version} is not listed in {VERSIONS}; "
                                     f"listed: {', '.join(map(str, listed)) or 'none'}")
            if not remaining:
                raise PublisherError(f"{self.root}: {version} is the only listed version; a tree must "
                                     "offer at least one release")
            newest = remaining[-1]
            # latest first when it moves, so a reader between the two writes sees it still listed
            if current is None or current.compare(newest) != 0:
                fsutil.atomic_write_json(self.root / LATEST, str(newest))
            fsutil.atomic_write_json(self.root / VERSIONS, [str(v) for v in remaining])
        return newest
