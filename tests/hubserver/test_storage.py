"""HubStorage in-process: the listing cache, the racy-folder rule, symlink containment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.hub import make_golden_layout
from zos_upgrade.hub.models import InvalidName
from zos_upgrade.hubserver.storage import Conflict, HubStorage, NotInStorage, clean_symlink

OLD = 1_600_000_000


def big_repo(root: Path, count: int) -> Path:
    repo = root / "big"
    repo.mkdir(parents=True)
    for i in range(count):
        fd = os.open(repo / f"app:{i}.0.0.flist", os.O_CREAT | os.O_WRONLY, 0o644)
        os.ftruncate(fd, i % 7)
        os.close(fd)
    os.symlink("app:1.0.0.flist", repo / "latest.flist")
    os.utime(repo, (OLD, OLD))  # settled long ago: not "racy"
    return root


def test_a_10000_flist_listing_stats_each_file_once(tmp_path: Path) -> None:
    storage = HubStorage(big_repo(tmp_path, 10_000))
    first = storage.listing("big")
    assert len(first) == 10_001
    assert 10_001 <= storage.stat_calls <= 10_010  # one lstat per entry, plus the folder and the link
    for _ in range(5):
        before = storage.stat_calls
        assert storage.listing("big") == first
        # per request now: the folder, and the one symlink (links are re-read: their target may move)
        assert storage.stat_calls - before <= 3


def test_the_cache_follows_the_folder(tmp_path: Path) -> None:
    storage = HubStorage(big_repo(tmp_path, 10))
    repo = tmp_path / "big"
    assert len(storage.listing("big")) == 11
    (repo / "new.flist").write_bytes(b"new")  # an operator drops a file in by hand
    os.utime(repo, (OLD + 10, OLD + 10))
    names = [item["name"] for item in storage.listing("big")]
    assert "new.flist" in names and len(names) == 12


def test_a_recently_changed_folder_is_not_cached(tmp_path: Path) -> None:
    now = [float(OLD + 1)]
    storage = HubStorage(big_repo(tmp_path, 10), clock=lambda: now[0])
    storage.listing("big")
    before = storage.stat_calls
    storage.listing("big")
    assert storage.stat_calls - before >= 10  # mtime within the racy window: scanned again
    now[0] = OLD + 60
    storage.listing("big")
    before = storage.stat_calls
    storage.listing("big")
    assert storage.stat_calls - before <= 3


def test_our_own_writes_invalidate_the_cache(tmp_path: Path) -> None:
    storage = HubStorage(big_repo(tmp_path, 3))
    storage.listing("big")
    storage.link("big", "app:2.0.0.flist", "stable.flist")
    os.utime(tmp_path / "big", (OLD, OLD))  # even if the folder's mtime did not move
    assert "stable.flist" in [item["name"] for item in storage.listing("big")]
    storage.delete("big", "app:0.0.0.flist")
    os.utime(tmp_path / "big", (OLD, OLD))
    assert "app:0.0.0.flist" not in [item["name"] for item in storage.listing("big")]


def test_link_replacement_is_atomic_and_never_replaces_a_file(tmp_path: Path) -> None:
    storage = HubStorage(make_golden_layout(tmp_path / "h"))
    storage.link("golden", "v1.flist", "app:latest.flist")
    assert os.readlink(tmp_path / "h" / "golden" / "app:latest.flist") == "v1.flist"
    with pytest.raises(Conflict, match="already a regular file"):
        storage.link("golden", "v2.flist", "v1.flist")
    assert (tmp_path / "h" / "golden" / "v1.flist").is_file()
    with pytest.raises(Conflict, match="exists already"):
        storage.rename("golden", "v1.flist", "v2.flist")
    with pytest.raises(NotInStorage):
        storage.delete("golden", "nope.flist")
    assert sorted(os.listdir(tmp_path / "h" / "golden")) == ["app:latest.flist", "v1.flist", "v2.flist"]


def test_symlinks_out_of_the_root_are_not_followed(tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "h")
    outside = tmp_path / "outside.flist"
    outside.write_bytes(b"secret")
    os.symlink(str(outside), root / "golden" / "abs.flist")
    os.symlink("../../outside.flist", root / "golden" / "rel.flist")
    (root / "golden" / "inner").mkdir()
    storage = HubStorage(root)
    for name in ("abs.flist", "rel.flist"):
        with pytest.raises(NotInStorage):
            storage.resolve("golden", name)
    assert {item["name"] for item in storage.listing("golden")} == {
        "app:latest.flist",
        "v1.flist",
        "v2.flist",
    }
    with pytest.raises(NotInStorage):
        storage.repo_dir("nope")


@pytest.mark.parametrize("bad", ["..", "a/b", "a\x00b", "%2e%2e", "x" * 300, ".tag-x", ""])
def test_names_are_checked_before_the_disk(tmp_path: Path, bad: str) -> None:
    storage = HubStorage(make_golden_layout(tmp_path / "h"))
    with pytest.raises(InvalidName):
        storage.resolve("golden", bad)
    with pytest.raises(InvalidName):
        storage.listing(bad)
    with pytest.raises(InvalidName):
        storage.link("golden", "v1.flist", bad)


def test_clean_symlink_matches_the_real_hub() -> None:
    assert clean_symlink("../other/x.flist") == "other/x.flist"
    assert clean_symlink("../../golden/v1.flist") == "golden/v1.flist"
    assert clean_symlink("../repo/.tag-release") == "repo/tags/release"
    assert clean_symlink("v2.flist") == "v2.flist"


def test_temp_files_of_a_crashed_upload_are_swept(tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "h")
    stale = root / "golden" / ".v3.flist.zu-tmp-123-abcd"
    fresh = root / "golden" / ".v4.flist.zu-tmp-124-abcd"
    stale.write_bytes(b"half an upload")
    fresh.write_bytes(b"an upload in progress")
    os.utime(stale, (OLD, OLD))
    storage = HubStorage(root)
    assert storage.sweep_temp_files() == 1
    assert not stale.exists() and fresh.exists()
    assert ".v4.flist.zu-tmp-124-abcd" not in {item["name"] for item in storage.listing("golden")}


def test_the_work_folder_of_a_crashed_archive_upload_is_swept(tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "h")
    stale, fresh = root / ".upload.zu-tmp-old", root / ".upload.zu-tmp-new"
    for work in (stale, fresh):
        (work / "tree" / "etc").mkdir(parents=True)
        (work / "tree" / "etc" / "motd").write_text("unpacked")
    os.utime(stale, (OLD, OLD))
    assert HubStorage(root).sweep_temp_files() == 1
    assert not stale.exists() and (fresh / "tree" / "etc" / "motd").exists()


def test_a_planted_tag_symlink_is_not_written_through(tmp_path: Path) -> None:
    root = make_golden_layout(tmp_path / "h")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), root / "golden" / ".tag-evil")
    storage = HubStorage(root)
    with pytest.raises(Conflict, match="not a plain folder"):
        storage.tag("golden", "evil", "x.flist", "golden", "v1.flist")
    with pytest.raises(NotInStorage):
        storage.tag_listing("golden", "evil")
    assert list(outside.iterdir()) == []


def test_info_never_mixes_two_versions_of_a_moving_link(tmp_path: Path) -> None:
    import hashlib
    import threading

    root = make_golden_layout(tmp_path / "h")
    golden = root / "golden"
    expected = {
        name: ((golden / name).stat().st_size, hashlib.md5((golden / name).read_bytes()).hexdigest())
        for name in ("v1.flist", "v2.flist")
    }
    storage = HubStorage(root)
    stop = threading.Event()

    def flip() -> None:
        i = 0
        while not stop.is_set():
            storage.link("golden", "v1.flist" if i % 2 else "v2.flist", "app:latest.flist")
            i += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    answers = []
    try:
        for _ in range(400):
            answers.append(storage.info("golden", "app:latest.flist"))
    finally:
        stop.set()
        flipper.join()
    for info in answers:
        assert (info["size"], info["md5"]) == expected[info["target"]]
    assert {info["target"] for info in answers} == {"v1.flist", "v2.flist"}
