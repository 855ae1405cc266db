"""The demo's release engineer and its attacker (issue 15): releases signed with TUF, one forged.

The engineer keeps a TUF repository (``trust/repository.py``) beside the sandbox's hub and puts its
metadata where our hub serves them (``<hub root>/.tuf/<repo>/metadata/``, what ``trust push``
uploads). The attacker is a compromised hub: it moves the link to a release of its own and
publishes metadata signed with a key it made, which no node's pinned root names.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, MetaFile, TargetFile, Timestamp
from tuf.api.serialization.json import JSONSerializer

from zos_upgrade.trust.keys import KeyStore
from zos_upgrade.trust.layout import HUB_STORE_DIR, METADATA_DIR
from zos_upgrade.trust.repository import TrustRepository

__all__ = ["DemoSigner", "forge_release"]


class DemoSigner:
    """A TUF repository for one hub repository of the demo, its keys next to it."""

    def __init__(self, folder: Path, hub_root: Path, repo: str) -> None:
        self.metadata = folder / METADATA_DIR
        self.keys = KeyStore(folder / "keys")
        self.served = hub_root / HUB_STORE_DIR / repo / METADATA_DIR
        self.repo = TrustRepository.init(self.metadata, self.keys)
        self.publish()

    @property
    def root_file(self) -> Path:
        return self.metadata / "1.root.json"

    def sign(self, name: str, file: Path, link: str) -> None:
        """Sign release ``name`` (the flist file at ``file``) and move ``link`` to it."""
        self.repo.sign_flists([(name, file)])
        self.repo.link(link, name)
        self.publish()

    def publish(self) -> None:
        self.served.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.metadata.iterdir(), key=lambda p: p.name == "timestamp.json"):
            shutil.copyfile(path, self.served / path.name)  # timestamp last, as `trust push` does


def forge_release(metadata: Path, out: Path, name: str, file: Path, link: str, *,
                  targets_key: Signer | None = None, snapshot_key: Signer | None = None,
                  timestamp_key: Signer | None = None) -> dict[str, Path]:
    """What a compromised hub (or anyone on the path) can do: new targets naming ``name`` (``link``
    moved to it), a snapshot and a timestamp over them, built from the latest files of ``metadata``
    and written into ``out`` (the served folder itself, for the demo). Each role is signed with the
    key given (stolen online keys, in the tests) or else with a key the attacker made, which no
    node's root names. Returns metadata file name -> written file."""
    own = CryptoSigner.generate_ed25519()
    data = file.read_bytes()

    def latest(role: str) -> Metadata[Any]:
        versions = sorted(int(p.name.split(".")[0]) for p in metadata.glob(f"*.{role}.json"))
        return Metadata.from_file(str(metadata / f"{versions[-1]}.{role}.json"))

    def write(md: Metadata[Any], filename: str, signer: Signer | None) -> Path:
        md.signatures.clear()
        md.sign(signer or own)
        path = out / filename
        path.write_bytes(md.to_bytes(JSONSerializer()))
        return path

    targets = latest("targets")
    info = TargetFile.from_data(name, data, ["sha256"])
    info.unrecognized_fields["custom"] = {"zos": {"kind": "flist", "md5": hashlib.md5(data).hexdigest()}}
    targets.signed.targets[name] = info
    targets.signed.targets[link] = TargetFile(info.length, dict(info.hashes), link, unrecognized_fields={
        "custom": {"zos": {"kind": "link", "link": name}}})
    targets.signed.version += 1
    snapshot = latest("snapshot")
    snapshot.signed.version += 1
    snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
    timestamp = Metadata[Timestamp].from_file(str(metadata / "timestamp.json"))
    timestamp.signed.version += 1
    timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
    timestamp.signed.expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    out.mkdir(parents=True, exist_ok=True)
    names = (f"{targets.signed.version}.targets.json", f"{snapshot.signed.version}.snapshot.json",
             "timestamp.json")
    return {names[0]: write(targets, names[0], targets_key),
            names[1]: write(snapshot, names[1], snapshot_key),
            names[2]: write(timestamp, names[2], timestamp_key)}
