"""A TUF repository for tests, built with ``tuf.api.metadata`` (no hand-written TUF checks).

It writes what a static server serves (``DIR/metadata/N.root.json``, ``root.json``,
``N.targets.json``, ``N.snapshot.json``, ``timestamp.json``) and, for hub-style targets, the files
at their consistent-snapshot names (``DIR/targets/<sha256>.<name>``). Tests forge, replay and expire
through it: keep an old file, sign with a key the root does not name, set an expiry in the past.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ROLES = ("root", "targets", "snapshot", "timestamp")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).replace(microsecond=0)
LIFETIME = {"root": timedelta(days=365), "targets": timedelta(days=90),
            "snapshot": timedelta(days=7), "timestamp": timedelta(days=1)}


@dataclass
class TufTestRepo:
    """One TUF repository folder; ``now`` is the signer's clock (expiries count from it)."""

    base: Path
    now: datetime = NOW
    signers: dict[str, list[CryptoSigner]] = field(default_factory=dict)
    md: dict[str, Metadata[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metadata = self.base / "metadata"
        self.targets_dir = self.base / "targets"
        self.metadata.mkdir(parents=True, exist_ok=True)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        root = Root(expires=self.now + LIFETIME["root"], consistent_snapshot=True)
        for role in ROLES:
            signer = CryptoSigner.generate_ed25519()
            self.signers[role] = [signer]
            root.add_key(signer.public_key, role)
        self.md = {
            "root": Metadata(root),
            "targets": Metadata(Targets(expires=self.now + LIFETIME["targets"])),
            "snapshot": Metadata(Snapshot(expires=self.now + LIFETIME["snapshot"])),
            "timestamp": Metadata(Timestamp(expires=self.now + LIFETIME["timestamp"])),
        }
        self.write_root()
        self.publish()

    # -- content --------------------------------------------------------------------------------
    def add_flist(self, name: str, data: bytes, *, store: bool = True) -> TargetFile:
        """A hub release flist: signed length + sha256, custom zos kind flist with its md5."""
        info = TargetFile.from_data(name, data, ["sha256"])
        info.unrecognized_fields["custom"] = {"zos": {"kind": "flist", "md5": hashlib.md5(data).hexdigest()}}
        self.targets.targets[name] = info
        if store:
            (self.targets_dir / f"{info.hashes['sha256']}.{name}").write_bytes(data)
        return info

    def add_release(self, version: str, data: bytes, url: str) -> TargetFile:
        """A publisher-mode release: path = version, the flist's hashes, its signed URL."""
        info = TargetFile.from_data(version, data, ["sha256"])
        info.unrecognized_fields["custom"] = {
            "zos": {"kind": "release", "flist": url, "md5": hashlib.md5(data).hexdigest()}}
        self.targets.targets[version] = info
        return info

    def link(self, name: str, to: str) -> TargetFile:
        """A link / channel: the linked target's length and hashes, custom kind link."""
        linked = self.targets.targets[to]
        info = TargetFile(linked.length, dict(linked.hashes), name,
                          unrecognized_fields={"custom": {"zos": {"kind": "link", "link": to}}})
        self.targets.targets[name] = info
        return info

    @property
    def targets(self) -> Targets:
        return self.md["targets"].signed  # type: ignore[no-any-return]

    # -- signing --------------------------------------------------------------------------------
    def _sign(self, role: str, signers: list[CryptoSigner] | None = None) -> None:
        md = self.md[role]
        md.signatures.clear()
        for signer in signers if signers is not None else self.signers[role]:
            md.sign(signer, append=True)

    def _write(self, name: str, md: Metadata[Any]) -> bytes:
        data = md.to_bytes(JSONSerializer(compact=False))
        (self.metadata / name).write_bytes(data)
        return data

    def write_root(self, extra_signers: list[CryptoSigner] | None = None) -> None:
        self._sign("root")
        for signer in extra_signers or []:
            self.md["root"].sign(signer, append=True)
        version = self.md["root"].signed.version
        self._write(f"{version}.root.json", self.md["root"])
        shutil.copyfile(self.metadata / f"{version}.root.json", self.metadata / "root.json")

    def publish(self, *, targets_signers: list[CryptoSigner] | None = None,
                snapshot_signers: list[CryptoSigner] | None = None,
                bump_targets: bool = True, timestamp_expires: datetime | None = None,
                targets_version: int | None = None) -> None:
        """New targets (unless ``bump_targets`` is false), snapshot and timestamp versions, signed."""
        if bump_targets:
            t = self.md["targets"].signed
            if self.metadata.joinpath(f"{t.version}.targets.json").exists():
                t.version += 1
            t.expires = self.now + LIFETIME["targets"]
            self._sign("targets", targets_signers)
            self._write(f"{t.version}.targets.json", self.md["targets"])
        snap = self.md["snapshot"].signed
        if self.metadata.joinpath(f"{snap.version}.snapshot.json").exists():
            snap.version += 1
        targets = targets_version or self.md["targets"].signed.version
        snap.meta["targets.json"] = MetaFile(version=targets)
        snap.expires = self.now + LIFETIME["snapshot"]
        self._sign("snapshot", snapshot_signers)
        self._write(f"{snap.version}.snapshot.json", self.md["snapshot"])
        self.timestamp(expires=timestamp_expires)

    def timestamp(self, *, expires: datetime | None = None,
                  signers: list[CryptoSigner] | None = None) -> None:
        ts = self.md["timestamp"].signed
        if self.metadata.joinpath("timestamp.json").exists():
            ts.version += 1
        ts.snapshot_meta = MetaFile(version=self.md["snapshot"].signed.version)
        ts.expires = expires or self.now + LIFETIME["timestamp"]
        self._sign("timestamp", signers)
        self._write("timestamp.json", self.md["timestamp"])

    def rotate_root(self, role: str = "root") -> CryptoSigner:
        """Replace ``role``'s key with a new one: a new root version signed by old and new root keys."""
        root: Root = self.md["root"].signed
        old = self.signers[role][0]
        new = CryptoSigner.generate_ed25519()
        root.revoke_key(old.public_key.keyid, role)
        root.add_key(new.public_key, role)
        root.version += 1
        self.signers[role] = [new]
        self.write_root(extra_signers=[old] if role == "root" else None)
        return new

    def file(self, name: str) -> bytes:
        return (self.metadata / name).read_bytes()

    @property
    def root_file(self) -> Path:
        return self.metadata / "1.root.json"
