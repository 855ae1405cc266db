"""The daemon's TUF repository between transactions (trust/isolated.py): ngclient refreshes in a
forked child, an unchanged repository costs one conditional GET, and every doubt (a new timestamp,
a new root, an expiry near, a failed poll) is a full refresh whose verdict is ngclient's own.

Against a real TUF repository behind the forging proxy on loopback (it serves ETags and 304s, as
the hub does); the child's TrustedRepo is the one the other trust tests use.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.tuf_repo import NOW, TufTestRepo
from tests.trust.conftest import REPO, Clock, Proxy
from zos_upgrade.trust.client import TrustedRepo
from zos_upgrade.trust.errors import FreezeAttack, MetadataUnavailable, TargetMismatch, UnknownTarget
from zos_upgrade.trust.isolated import IsolatedTrust

MakeClient = Callable[..., TrustedRepo]


@pytest.fixture
def isolated(make_client: MakeClient, proxy: Proxy, clock: Clock, tmp_path: Path) -> IsolatedTrust:
    folder = tmp_path / "state" / "trust" / REPO
    return IsolatedTrust(make_client, name=REPO, metadata_url=f"{proxy.url}{proxy.prefix}/metadata/",
                         metadata_dir=folder, status_file=folder.with_name(REPO + ".status.json"),
                         clock=clock)


def released(repo: TufTestRepo, version: str) -> None:
    repo.add_flist(f"zos:{version}.fl", f"release {version}".encode())
    repo.link("zos:production.flist", f"zos:{version}.fl")
    repo.publish()


def metadata_requests(proxy: Proxy) -> list[str]:
    return [p.rsplit("/", 1)[-1] for p in proxy.seen() if "/metadata/" in p]


def test_an_unchanged_repository_is_polled_without_a_child(isolated: IsolatedTrust, tuf_repo: TufTestRepo,
                                                           proxy: Proxy, make_client: MakeClient) -> None:
    released(tuf_repo, "1.0.0")
    isolated.refresh()
    assert isolated.children == 1
    # the view answers as ngclient's own TrustedRepo does
    reference = make_client()
    reference.refresh()
    assert isolated.resolve_link("zos:production.flist").path == "zos:1.0.0.fl"
    assert [t.path for t in isolated.releases()] == [t.path for t in reference.releases()]
    assert isolated.versions() == reference.versions()
    assert isolated.resolve_link("zos:production.flist").hashes == reference.resolve_link(
        "zos:production.flist").hashes
    with pytest.raises(UnknownTarget):
        isolated.target("zos:9.9.9.fl")
    before = isolated.status()
    proxy.rules({})
    proxy.rules_file.with_name(proxy.rules_file.name + ".log").write_text("")
    isolated.refresh()
    isolated.refresh()
    assert isolated.children == 1
    # the root probe and the timestamp (the second one answered 304 to the kept ETag), nothing else
    root = reference.versions()["root"]
    assert metadata_requests(proxy) == [f"{root + 1}.root.json", "timestamp.json"] * 2
    after = isolated.status()
    assert before is not None and after is not None and after.roles == before.roles and after.error is None


def test_a_new_timestamp_or_root_is_a_full_refresh(isolated: IsolatedTrust, tuf_repo: TufTestRepo) -> None:
    released(tuf_repo, "1.0.0")
    isolated.refresh()
    released(tuf_repo, "1.1.0")
    isolated.refresh()
    assert isolated.children == 2
    assert isolated.resolve_link("zos:production.flist").path == "zos:1.1.0.fl"
    tuf_repo.rotate_root()  # the timestamp is unchanged: only the root probe can tell
    isolated.refresh()
    assert isolated.children == 3
    assert isolated.versions()["root"] == 2


def test_a_near_expiry_refreshes_fully_and_an_expired_one_is_ngclients_freeze(
        isolated: IsolatedTrust, tuf_repo: TufTestRepo, clock: Clock) -> None:
    expires = NOW + timedelta(hours=3)
    tuf_repo.publish(timestamp_expires=expires)
    clock.at = expires - timedelta(minutes=70)
    isolated.refresh()
    clock.at = expires - timedelta(minutes=65)
    isolated.refresh()
    assert isolated.children == 1
    clock.at = expires - timedelta(minutes=50)  # within the margin (an hour): no poll decides alone
    isolated.refresh()
    assert isolated.children == 2
    clock.at = expires + timedelta(minutes=1)
    with pytest.raises(FreezeAttack) as frozen:
        isolated.refresh()
    assert frozen.value.role == "timestamp" and frozen.value.expires == expires
    assert "metadata expired since" in str(frozen.value)
    status = isolated.status()
    assert status is not None and status.error is not None and status.error["type"] == "FreezeAttack"
    with pytest.raises(FreezeAttack):  # no view survives a failed refresh: every round asks ngclient
        isolated.refresh()
    assert isolated.children == 4


def test_a_periodic_full_refresh_runs_whatever_the_polls_say(isolated: IsolatedTrust, clock: Clock) -> None:
    isolated.refresh()
    clock.at += isolated.full_every - timedelta(seconds=1)
    isolated.refresh()
    assert isolated.children == 1
    clock.at += timedelta(seconds=1)
    isolated.refresh()
    assert isolated.children == 2


def test_a_failing_poll_is_a_full_refresh_that_reports_typed(isolated: IsolatedTrust, tuf_repo: TufTestRepo,
                                                             proxy: Proxy) -> None:
    released(tuf_repo, "1.0.0")
    isolated.refresh()
    proxy.forge(f"{proxy.prefix}/metadata/timestamp.json", {"status": 404})
    with pytest.raises(MetadataUnavailable, match="404"):
        isolated.refresh()
    assert isolated.children == 2
    with pytest.raises(Exception, match="refresh"):
        isolated.target("zos:1.0.0.fl")  # nothing is trusted from a failed refresh
    proxy.rules({})
    isolated.refresh()
    assert isolated.target("zos:1.0.0.fl").length == len(b"release 1.0.0")


def test_a_forged_link_is_refused_by_the_view_as_by_trusted_repo(isolated: IsolatedTrust,
                                                                 tuf_repo: TufTestRepo) -> None:
    tuf_repo.add_flist("zos:1.0.0.fl", b"one")
    tuf_repo.add_flist("zos:2.0.0.fl", b"two, longer")
    link = tuf_repo.link("zos:production.flist", "zos:1.0.0.fl")
    link.unrecognized_fields["custom"]["zos"]["link"] = "zos:2.0.0.fl"  # signed, but inconsistent
    tuf_repo.publish()
    isolated.refresh()
    with pytest.raises(TargetMismatch, match=r"link 'zos:production\.flist' signs length 3"):
        isolated.resolve_link("zos:production.flist")


def test_the_full_stack_serves_once_a_transaction_loaded_it(isolated: IsolatedTrust,
                                                            tuf_repo: TufTestRepo, tmp_path: Path) -> None:
    released(tuf_repo, "1.0.0")
    isolated.refresh()
    full = isolated.full()
    full.refresh()
    path, _md5 = full.download(full.target("zos:1.0.0.fl"), tmp_path / "downloads")
    assert path.read_bytes() == b"release 1.0.0"
    released(tuf_repo, "1.1.0")
    isolated.refresh()  # in-process now: no child
    assert isolated.children == 1
    assert isolated.resolve_link("zos:production.flist").path == "zos:1.1.0.fl"
