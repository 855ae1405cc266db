"""TrustRepository against python-tuf's own checks: what it signs verifies, what it refuses writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, Root

from zos_upgrade.trust.errors import InvalidTargetPath, TrustRepositoryError
from zos_upgrade.trust.keys import KeyStore
from zos_upgrade.trust.repository import TrustRepository

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def snapshot_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def flist(tmp_path: Path) -> Path:
    path = tmp_path / "a.flist"
    path.write_bytes(b"flist bytes " * 100)
    return path


@pytest.fixture
def repo(tmp_path: Path, clock: Clock) -> TrustRepository:
    return TrustRepository.init(tmp_path / "r" / "metadata", KeyStore(tmp_path / "r" / "keys"), now=clock)


def reopen(repo: TrustRepository, clock: Callable[[], datetime] | None = None) -> TrustRepository:
    return TrustRepository(repo.metadata_dir, repo.keys, now=clock or (lambda: T0))


def test_init_k_of_n_root_and_expiry_from_the_clock(tmp_path: Path, clock: Clock) -> None:
    repo = TrustRepository.init(
        tmp_path / "metadata", KeyStore(tmp_path / "keys"), root_keys=3, root_threshold=2, now=clock
    )
    root = Metadata[Root].from_file(str(tmp_path / "metadata" / "1.root.json"))
    assert root.signed.roles["root"].threshold == 2
    assert len(root.signed.roles["root"].keyids) == 3
    assert len(root.signatures) == 3
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    assert root.signed.consistent_snapshot
    assert root.signed.expires == T0 + timedelta(days=365)
    status = {s.role: s for s in repo.status()}
    assert status["timestamp"].expires == T0 + timedelta(days=1)
    assert status["snapshot"].expires == T0 + timedelta(days=7)
    assert status["targets"].expires == T0 + timedelta(days=90)
    assert sorted(p.name for p in (tmp_path / "metadata").iterdir()) == [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "root.json",
        "timestamp.json",
    ]
    assert len(list((tmp_path / "keys").glob("root.*.pem"))) == 3
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (tmp_path / "keys").iterdir())


@pytest.mark.parametrize(("keys", "threshold"), [(0, 1), (2, 3), (2, 0), (17, 1)])
def test_init_refuses_bad_k_of_n(tmp_path: Path, keys: int, threshold: int) -> None:
    with pytest.raises(TrustRepositoryError):
        TrustRepository.init(
            tmp_path / "m", KeyStore(tmp_path / "k"), root_keys=keys, root_threshold=threshold
        )
    assert not (tmp_path / "m").exists() and not (tmp_path / "k").exists()


def test_init_refuses_an_existing_repository(repo: TrustRepository) -> None:
    before = snapshot_of(repo.metadata_dir)
    with pytest.raises(TrustRepositoryError, match="already holds"):
        TrustRepository.init(repo.metadata_dir, repo.keys)
    assert snapshot_of(repo.metadata_dir) == before


def test_sign_link_and_version_bumps(repo: TrustRepository, flist: Path, clock: Clock) -> None:
    clock.now = T0 + timedelta(hours=5)
    change = repo.sign_flists([("zos:1.2.0.flist", flist)])
    assert dict(change.versions) == {"targets": 2, "snapshot": 2, "timestamp": 2}
    change = repo.link("zos:production.flist", "zos:1.2.0.flist")
    assert dict(change.versions) == {"targets": 3, "snapshot": 3, "timestamp": 3}
    again = reopen(repo)
    targets = again.target_files()
    assert targets["zos:production.flist"].hashes == targets["zos:1.2.0.flist"].hashes
    assert targets["zos:1.2.0.flist"].length == flist.stat().st_size
    assert targets["zos:1.2.0.flist"].custom["zos"]["kind"] == "flist"
    assert len(targets["zos:1.2.0.flist"].custom["zos"]["md5"]) == 32
    assert targets["zos:production.flist"].custom == {"zos": {"kind": "link", "link": "zos:1.2.0.flist"}}
    assert again.targets.signed.expires == clock.now.replace(microsecond=0) + timedelta(days=90)
    snap = Metadata.from_file(str(repo.metadata_dir / "3.snapshot.json"))
    assert snap.signed.meta["targets.json"].version == 3
    ts = Metadata.from_file(str(repo.metadata_dir / "timestamp.json"))
    assert ts.signed.snapshot_meta.version == 3
    # a new build of the linked file: the link follows its hashes
    flist.write_bytes(b"other bytes")
    repo.sign_flists([("zos:1.2.0.flist", flist)])
    targets = reopen(repo).target_files()
    assert targets["zos:production.flist"].hashes == targets["zos:1.2.0.flist"].hashes
    assert targets["zos:production.flist"].length == len(b"other bytes")


def test_link_to_unknown_target_refused(repo: TrustRepository, flist: Path) -> None:
    repo.sign_flists([("zos:1.2.0.flist", flist)])
    before = snapshot_of(repo.metadata_dir)
    with pytest.raises(TrustRepositoryError, match="not a signed target"):
        repo.link("zos:production.flist", "zos:9.9.9.flist")
    assert snapshot_of(repo.metadata_dir) == before
    repo.link("zos:production.flist", "zos:1.2.0.flist")
    with pytest.raises(TrustRepositoryError, match="itself a link"):
        repo.link("zos:testing.flist", "zos:production.flist")
    with pytest.raises(TrustRepositoryError, match="linked by"):
        repo.remove("zos:1.2.0.flist")
    assert reopen(repo).targets.signed.version == 3


@pytest.mark.parametrize(
    "name", ["../x.flist", "a/b.flist", "", "zos:1.2.0.tar", ".hidden.flist", "a\x00.flist", "%2e.flist"]
)
def test_bad_target_paths_refused(repo: TrustRepository, flist: Path, name: str) -> None:
    before = snapshot_of(repo.metadata_dir)
    with pytest.raises(InvalidTargetPath):
        repo.sign_flists([(name, flist)])
    assert snapshot_of(repo.metadata_dir) == before


def test_too_few_root_keys_refused(tmp_path: Path, clock: Clock) -> None:
    keys = KeyStore(tmp_path / "keys")
    repo = TrustRepository.init(tmp_path / "metadata", keys, root_keys=3, root_threshold=2, now=clock)
    root_files = sorted((tmp_path / "keys").glob("root.*.pem"))
    for path in root_files[:2]:  # 1 of the 3 root keys left: below the threshold of 2
        path.unlink()
    before = snapshot_of(repo.metadata_dir)
    with pytest.raises(TrustRepositoryError, match="threshold"):
        repo.rotate("timestamp", add=1)
    assert snapshot_of(repo.metadata_dir) == before
    assert len(list((tmp_path / "keys").glob("timestamp.*.pem"))) == 1  # the new key was not kept


def test_root_rotation_signed_by_old_threshold_and_revocation(tmp_path: Path, clock: Clock) -> None:
    repo = TrustRepository.init(
        tmp_path / "metadata", KeyStore(tmp_path / "keys"), root_keys=2, root_threshold=2, now=clock
    )
    old_ids = list(repo.root.signed.roles["root"].keyids)
    change, new_ids = repo.rotate("root", add=1, revoke=[old_ids[0]], threshold=2)
    assert change.versions["root"] == 2
    v1 = Metadata[Root].from_file(str(tmp_path / "metadata" / "1.root.json"))
    v2 = Metadata[Root].from_file(str(tmp_path / "metadata" / "2.root.json"))
    v1.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # old threshold signed it
    v2.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # and its own
    assert old_ids[0] not in v2.signed.roles["root"].keyids
    assert set(v2.signed.roles["root"].keyids) == {old_ids[1], *new_ids}
    # the revoked key alone (plus a foreign one) cannot sign the next root
    (tmp_path / "keys" / f"root.{old_ids[1]}.pem").unlink()
    with pytest.raises(TrustRepositoryError):
        repo.rotate("root", add=1)
    assert not (tmp_path / "metadata" / "3.root.json").exists()


def test_targets_key_rotation_resigns_targets(repo: TrustRepository, flist: Path) -> None:
    repo.sign_flists([("zos:1.2.0.flist", flist)])
    old = repo.root.signed.roles["targets"].keyids[0]
    change, new = repo.rotate("targets", add=1, revoke=[old])
    assert change.versions == {"root": 2, "targets": 3, "snapshot": 3, "timestamp": 3}
    targets = Metadata.from_file(str(repo.metadata_dir / "3.targets.json"))
    assert list(targets.signatures) == new
    assert "zos:1.2.0.flist" in reopen(repo).target_files()


def test_revoking_an_unknown_key_refused(repo: TrustRepository) -> None:
    with pytest.raises(TrustRepositoryError, match="is not a timestamp key"):
        repo.rotate("timestamp", revoke=["ab" * 32])


def test_status_shows_due_and_expired(repo: TrustRepository, clock: Clock) -> None:
    clock.now = T0 + timedelta(hours=20)
    status = {s.role: s.state for s in repo.status()}
    assert status == {"root": "ok", "targets": "ok", "snapshot": "ok", "timestamp": "due"}
    clock.now = T0 + timedelta(days=6)
    status = {s.role: s.state for s in repo.status()}
    assert status == {"root": "ok", "targets": "ok", "snapshot": "due", "timestamp": "expired"}
    repo.timestamp_only()
    assert {s.role: s.state for s in repo.status()}["timestamp"] == "ok"
    assert reopen(repo).timestamp.signed.expires == clock.now + timedelta(days=1)


def test_publisher_mode_releases_and_latest(tmp_path: Path, clock: Clock, flist: Path) -> None:
    repo = TrustRepository.init(tmp_path / "m", KeyStore(tmp_path / "k"), now=clock)
    repo.sign_releases([("1.2.0", flist, "https://cdn.example/zos-1.2.0.flist")])
    repo.sign_releases([("1.10.0", flist, "https://cdn.example/zos-1.10.0.flist")])
    zos = reopen(repo).zos_targets()
    assert zos["latest"].link == "1.10.0"
    assert zos["1.2.0"].flist == "https://cdn.example/zos-1.2.0.flist"
    with pytest.raises(InvalidTargetPath):
        repo.sign_releases([("v1.3", flist, "https://cdn.example/x")])
    repo.withdraw_release("1.10.0")
    zos = reopen(repo).zos_targets()
    assert "1.10.0" not in zos and zos["latest"].link == "1.2.0"
    with pytest.raises(TrustRepositoryError, match="not signed"):
        repo.withdraw_release("latest")
    repo.withdraw_release("1.2.0")
    assert reopen(repo).zos_targets() == {}


# -- hand-edited files: every field a reader checks --------------------------------------------
def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


EDITS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "version": ("timestamp.json", lambda d: d["signed"].__setitem__("version", 7)),
    "version-zero": ("timestamp.json", lambda d: d["signed"].__setitem__("version", 0)),
    "expires": ("2.targets.json", lambda d: d["signed"].__setitem__("expires", "2099-01-01T00:00:00Z")),
    "expires-garbage": ("2.targets.json", lambda d: d["signed"].__setitem__("expires", "tomorrow")),
    "signatures": ("2.snapshot.json", lambda d: d.__setitem__("signatures", [])),
    "signature-bytes": ("2.targets.json", lambda d: d["signatures"][0].__setitem__("sig", "00" * 64)),
    "keys": (
        "1.root.json",
        lambda d: next(iter(d["signed"]["keys"].values()))["keyval"].__setitem__("public", "00" * 32),
    ),
    "threshold": ("1.root.json", lambda d: d["signed"]["roles"]["timestamp"].__setitem__("threshold", 0)),
    "hashes": (
        "2.targets.json",
        lambda d: d["signed"]["targets"]["zos:1.2.0.flist"].__setitem__("hashes", {"sha256": "00" * 32}),
    ),
    "length": (
        "2.targets.json",
        lambda d: d["signed"]["targets"]["zos:1.2.0.flist"].__setitem__("length", 1),
    ),
    "spec_version": ("2.snapshot.json", lambda d: d["signed"].__setitem__("spec_version", "2.0.0")),
    "spec_version-minor": ("2.snapshot.json", lambda d: d["signed"].__setitem__("spec_version", "1.0.99")),
    "_type": ("timestamp.json", lambda d: d["signed"].__setitem__("_type", "snapshot")),
    "meta-version": (
        "2.snapshot.json",
        lambda d: d["signed"]["meta"]["targets.json"].__setitem__("version", 1),
    ),
}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_hand_edited_metadata_refused(repo: TrustRepository, flist: Path, field: str) -> None:
    repo.sign_flists([("zos:1.2.0.flist", flist)])
    name, change = EDITS[field]
    _edit(repo.metadata_dir / name, change)
    if name == "1.root.json":
        (repo.metadata_dir / "root.json").write_bytes((repo.metadata_dir / name).read_bytes())
    before = snapshot_of(repo.metadata_dir)
    with pytest.raises(TrustRepositoryError) as info:
        reopen(repo)
    assert str(repo.metadata_dir) in str(info.value)
    assert snapshot_of(repo.metadata_dir) == before


def test_missing_file_is_a_clear_error(repo: TrustRepository) -> None:
    (repo.metadata_dir / "1.snapshot.json").unlink()
    with pytest.raises(TrustRepositoryError, match=r"1\.snapshot\.json: missing"):
        reopen(repo)


def test_encrypted_keys_need_the_passphrase(tmp_path: Path) -> None:
    repo = TrustRepository.init(tmp_path / "m", KeyStore(tmp_path / "k", b"correct horse"))
    assert b"ENCRYPTED" in next((tmp_path / "k").glob("timestamp.*.pem")).read_bytes()
    with pytest.raises(TrustRepositoryError, match="encrypted"):
        TrustRepository(repo.metadata_dir, KeyStore(tmp_path / "k")).timestamp_only()
    with pytest.raises(TrustRepositoryError, match="wrong passphrase"):
        TrustRepository(repo.metadata_dir, KeyStore(tmp_path / "k", b"wrong")).timestamp_only()
    TrustRepository(repo.metadata_dir, KeyStore(tmp_path / "k", b"correct horse")).timestamp_only()
