"""TrustedRepo against a real TUF repository served on loopback through the forging proxy.

Every attack of issue 15 item 4 at the client level: each raises the typed error named after it,
and nothing lands in the downloads folder. Expiry is driven by the injected clock, never by sleeping.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner

from tests.support.tuf_repo import TufTestRepo
from tests.trust.conftest import Clock, Proxy
from zos_upgrade.trust.client import MetadataUnavailable, TrustedRepo, load_pinned_root
from zos_upgrade.trust.errors import (
    EndlessData,
    ForgedMetadata,
    FreezeAttack,
    MixAndMatch,
    RollbackAttack,
    SlowRetrieval,
    TargetMismatch,
    TrustConfigError,
    UnknownTarget,
)

MakeClient = Callable[..., TrustedRepo]
V1, V2 = b"flist one " * 100, b"flist two " * 120


def released(repo: TufTestRepo, *versions: tuple[str, bytes], link: str = "zos:production.flist") -> None:
    for name, data in versions:
        repo.add_flist(name, data)
    repo.link(link, versions[-1][0])
    repo.publish()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_refresh_resolve_download(tuf_repo: TufTestRepo, make_client: MakeClient, tmp_path: Path) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    release = client.resolve_link("zos:production.flist")
    assert release.path == "zos:1.0.0.flist" and release.length == len(V1)
    path, md5 = client.download(release, tmp_path / "downloads")
    assert md5 == hashlib.md5(V1).hexdigest() and path.read_bytes() == V1
    assert [t.path for t in client.releases()] == ["zos:1.0.0.flist"]
    assert client.versions() == {"root": 1, "targets": 2, "snapshot": 2, "timestamp": 2}
    status = client.status()
    assert status is not None and status.error is None and status.roles["timestamp"]["version"] == 2


def test_unchanged_poll_is_one_conditional_request(tuf_repo: TufTestRepo, make_client: MakeClient,
                                                   proxy: Proxy) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    before = client.fetcher.stats.bytes  # type: ignore[attr-defined]
    client.refresh()
    stats = client.fetcher.stats  # type: ignore[attr-defined]
    assert stats.not_modified == 1
    assert stats.bytes == before  # a 304 and a 404 (no next root): no body
    tail = proxy.seen()[-2:]
    assert tail == [f"{proxy.prefix}/metadata/2.root.json", f"{proxy.prefix}/metadata/timestamp.json"]


def test_made_up_version_is_an_unknown_target(tuf_repo: TufTestRepo, make_client: MakeClient) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    with pytest.raises(UnknownTarget, match=r"zos:9\.9\.9\.flist.*nobody signed it"):
        client.resolve_link("zos:9.9.9.flist")


def test_forged_flist_bytes_are_a_target_mismatch(tuf_repo: TufTestRepo, make_client: MakeClient,
                                                  proxy: Proxy, tmp_path: Path) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    release = client.resolve_link("zos:production.flist")
    forged = tmp_path / "forged"
    forged.write_bytes(V1[:-4] + b"EVIL")  # same length, other bytes
    proxy.forge(f"{proxy.prefix}/targets/{release.sha256}.zos:1.0.0.flist", {"file": str(forged)})
    with pytest.raises(TargetMismatch, match="target mismatch"):
        client.download(release, tmp_path / "downloads")
    assert listing(tmp_path / "downloads") == []


def test_forged_targets_signature(tuf_repo: TufTestRepo, make_client: MakeClient) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    tuf_repo.add_flist("zos:9.9.9.flist", V2)
    tuf_repo.link("zos:production.flist", "zos:9.9.9.flist")
    tuf_repo.publish(targets_signers=[CryptoSigner.generate_ed25519()])
    with pytest.raises(ForgedMetadata, match=r"targets.*forged metadata"):
        make_client().refresh()


# a hand edit of every field a reader checks, without re-signing: the signature no longer covers it
EDITS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("timestamp.json", lambda d: d["signed"].update(version=d["signed"]["version"] + 5)),
    ("timestamp.json", lambda d: d["signed"].update(expires="2099-01-01T00:00:00Z")),
    ("timestamp.json", lambda d: d["signed"]["meta"]["snapshot.json"].update(version=1)),
    ("timestamp.json", lambda d: d["signatures"][0].update(sig="00" * 64)),
    ("timestamp.json", lambda d: d["signatures"][0].update(keyid="ab" * 32)),
    ("2.snapshot.json", lambda d: d["signed"]["meta"]["targets.json"].update(version=1)),
    ("2.snapshot.json", lambda d: d["signed"].update(expires="2099-01-01T00:00:00Z")),
    ("2.targets.json", lambda d: d["signed"]["targets"]["zos:1.0.0.flist"].update(length=7)),
    ("2.targets.json", lambda d: d["signed"]["targets"]["zos:1.0.0.flist"]["hashes"].update(sha256="0" * 64)),
    ("2.targets.json", lambda d: d["signed"]["targets"]["zos:production.flist"]["custom"]["zos"].update(
        link="zos:9.9.9.flist")),
    ("2.targets.json", lambda d: d["signed"].update(expires="2099-01-01T00:00:00Z")),
]


@pytest.mark.parametrize(("name", "edit"), EDITS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EDITS)])
def test_hand_edited_metadata_is_refused(tuf_repo: TufTestRepo, make_client: MakeClient, proxy: Proxy,
                                         tmp_path: Path, name: str,
                                         edit: Callable[[dict[str, Any]], None]) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    doc = json.loads(tuf_repo.file(name))
    edit(doc)
    forged = tmp_path / "edited.json"
    forged.write_text(json.dumps(doc))
    proxy.forge(f"{proxy.prefix}/metadata/{name}", {"file": str(forged)})
    client = make_client()
    # a snapshot/targets edit changes bytes the signed meta does not hash here: their signature fails
    with pytest.raises((ForgedMetadata, MixAndMatch)) as caught:
        client.refresh()
    assert "[" in str(caught.value) and client.versions() == {}


def test_replayed_old_timestamp_is_a_rollback(tuf_repo: TufTestRepo, make_client: MakeClient, proxy: Proxy,
                                              tmp_path: Path) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    old = tmp_path / "old-timestamp.json"
    old.write_bytes(tuf_repo.file("timestamp.json"))
    tuf_repo.add_flist("zos:1.1.0.flist", V2)
    tuf_repo.link("zos:production.flist", "zos:1.1.0.flist")
    tuf_repo.publish()
    client = make_client()
    client.refresh()
    proxy.forge(f"{proxy.prefix}/metadata/timestamp.json", {"file": str(old)})
    with pytest.raises(RollbackAttack, match="rollback"):
        make_client().refresh()


def test_expired_timestamp_is_a_freeze(tuf_repo: TufTestRepo, make_client: MakeClient, clock: Clock) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    clock.at += timedelta(days=2)  # the server keeps answering the same (now stale) timestamp
    with pytest.raises(FreezeAttack, match="timestamp metadata expired since") as caught:
        client.refresh()
    assert caught.value.role == "timestamp"
    assert caught.value.expires == tuf_repo.md["timestamp"].signed.expires
    status = client.status()
    assert status is not None and status.error is not None
    assert status.error["type"] == "FreezeAttack"
    assert status.error["expires"] == caught.value.expires.isoformat()


def test_targets_of_another_snapshot_are_mix_and_match(tuf_repo: TufTestRepo, make_client: MakeClient,
                                                       proxy: Proxy) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    tuf_repo.add_flist("zos:1.1.0.flist", V2)
    tuf_repo.publish()
    # the snapshot names targets v3; serve the (validly signed) v2 under that name
    older = tuf_repo.metadata / "2.targets.json"
    proxy.forge(f"{proxy.prefix}/metadata/3.targets.json", {"file": str(older)})
    with pytest.raises(MixAndMatch, match="mix-and-match"):
        make_client().refresh()


def test_endless_metadata_is_cut(tuf_repo: TufTestRepo, make_client: MakeClient, proxy: Proxy) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    proxy.forge(f"{proxy.prefix}/metadata/timestamp.json", {"endless": True})
    with pytest.raises(EndlessData, match="endless data"):
        make_client().refresh()


def test_endless_target_is_cut_at_its_signed_length(tuf_repo: TufTestRepo, make_client: MakeClient,
                                                    proxy: Proxy, tmp_path: Path) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    release = client.resolve_link("zos:production.flist")
    proxy.forge(f"{proxy.prefix}/targets/{release.sha256}.zos:1.0.0.flist", {"endless": True})
    with pytest.raises(EndlessData, match=f"maximum allowed length of {len(V1)}"):
        client.download(release, tmp_path / "downloads")
    assert listing(tmp_path / "downloads") == []


def test_trickled_metadata_is_slow_retrieval(tuf_repo: TufTestRepo, make_client: MakeClient,
                                             proxy: Proxy) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    proxy.forge(f"{proxy.prefix}/metadata/timestamp.json", {"trickle": 0.05})
    with pytest.raises(SlowRetrieval, match="slow retrieval"):
        make_client(grace=0.3, min_rate=1000.0).refresh()


def test_compromised_online_keys_cannot_install(tuf_repo: TufTestRepo, make_client: MakeClient) -> None:
    """The attacker holds the timestamp and snapshot keys, not the (offline) targets key."""
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    tuf_repo.add_flist("zos:9.9.9.flist", V2)
    tuf_repo.link("zos:production.flist", "zos:9.9.9.flist")
    tuf_repo.publish(targets_signers=[CryptoSigner.generate_ed25519()])  # snapshot+timestamp: real keys
    with pytest.raises(ForgedMetadata):
        client.refresh()
    # with the online keys, a snapshot naming older targets: a rollback, refused too
    tuf_repo.publish(bump_targets=False, targets_version=1)
    with pytest.raises(RollbackAttack):
        client.refresh()
    assert client.versions() == {} and client.status().roles["targets"]["version"] == 2  # type: ignore[union-attr]


def test_two_root_rotations_while_offline(tuf_repo: TufTestRepo, make_client: MakeClient) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    tuf_repo.rotate_root()
    tuf_repo.rotate_root()
    tuf_repo.add_flist("zos:1.1.0.flist", V2)
    tuf_repo.link("zos:production.flist", "zos:1.1.0.flist")
    tuf_repo.publish()
    client.refresh()
    assert client.versions()["root"] == 3
    assert client.resolve_link("zos:production.flist").path == "zos:1.1.0.flist"


def test_revoked_targets_key_is_refused(tuf_repo: TufTestRepo, make_client: MakeClient) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    client = make_client()
    client.refresh()
    old_targets_key = tuf_repo.signers["targets"][0]
    tuf_repo.rotate_root("targets")
    tuf_repo.publish()
    client.refresh()  # the new targets key works
    tuf_repo.add_flist("zos:9.9.9.flist", V2)
    tuf_repo.publish(targets_signers=[old_targets_key])  # a leaked, revoked key
    with pytest.raises(ForgedMetadata):
        client.refresh()


def test_pinned_root_must_be_a_root(tuf_repo: TufTestRepo, tmp_path: Path) -> None:
    with pytest.raises(TrustConfigError, match="does not exist"):
        load_pinned_root(tmp_path / "missing.json")
    (tmp_path / "ts.json").write_bytes(tuf_repo.file("timestamp.json"))
    with pytest.raises(TrustConfigError, match="timestamp metadata, not a root"):
        load_pinned_root(tmp_path / "ts.json")
    doc = json.loads(tuf_repo.file("1.root.json"))
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z"
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    with pytest.raises(TrustConfigError, match="signed by its own keys"):
        load_pinned_root(tmp_path / "edited.json")


def test_unreachable_metadata_is_not_an_attack(tuf_repo: TufTestRepo, make_client: MakeClient,
                                               proxy: Proxy) -> None:
    proxy.forge(f"{proxy.prefix}/metadata/timestamp.json", {"status": 404})
    with pytest.raises(MetadataUnavailable, match="404"):
        make_client().refresh()


ROOT_EDITS: list[Callable[[dict[str, Any]], None]] = [
    lambda d: d["signed"]["roles"]["targets"].update(threshold=0),
    lambda d: d["signed"]["roles"]["targets"]["keyids"].append("cd" * 32),
    lambda d: d["signed"].update(expires="2099-01-01T00:00:00Z"),
    lambda d: d["signed"].update(consistent_snapshot=False),
]


@pytest.mark.parametrize("edit", ROOT_EDITS, ids=["threshold", "keyids", "expires", "consistent_snapshot"])
def test_hand_edited_rotated_root_is_refused(tuf_repo: TufTestRepo, make_client: MakeClient, proxy: Proxy,
                                             tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    released(tuf_repo, ("zos:1.0.0.flist", V1))
    tuf_repo.rotate_root()
    doc = json.loads(tuf_repo.file("2.root.json"))
    edit(doc)
    forged = tmp_path / "2.root.json"
    forged.write_text(json.dumps(doc))
    proxy.forge(f"{proxy.prefix}/metadata/2.root.json", {"file": str(forged)})
    with pytest.raises(ForgedMetadata):
        make_client().refresh()
