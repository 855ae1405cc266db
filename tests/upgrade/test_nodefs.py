"""Confined file operations: never outside the root, idempotent backup/restore, atomic apply."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from zos_upgrade.upgrade import nodefs
from zos_upgrade.upgrade.errors import UnsafePath
from zos_upgrade.upgrade.manifest import FileRecord, record_of
from zos_upgrade.upgrade.nodefs import NEW_SUFFIX, NodeFS, StagedFileChanged


@pytest.fixture
def fs(tmp_path: Path) -> NodeFS:
    (tmp_path / "node").mkdir()
    return NodeFS(tmp_path / "node", tmp_path / "state" / "backup")


@pytest.mark.parametrize("rel", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/\0b"])
def test_paths_that_are_not_plain_relative_are_refused(fs: NodeFS, rel: str) -> None:
    with pytest.raises(UnsafePath, match="not a plain relative path"):
        fs.node_path(rel)


def test_a_symlinked_directory_cannot_redirect_a_write_outside_the_root(fs: NodeFS, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, fs.root / "etc")
    staged = tmp_path / "staged"
    staged.write_text("x")
    with pytest.raises(UnsafePath, match="outside the node root"):
        fs.apply("etc/passwd", staged)
    with pytest.raises(UnsafePath, match="outside the node root"):  # resolved once for a batch: still refused
        fs.node_paths(["ok", "etc/passwd"])
    assert list(outside.iterdir()) == []


def test_apply_backup_restore_round_trip_is_idempotent(fs: NodeFS, tmp_path: Path) -> None:
    target = fs.root / "etc" / "conf"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o600)
    staged = tmp_path / "new-conf"
    staged.write_text("new")
    staged.chmod(0o640)
    fs.backup("etc/conf")
    fs.backup("etc/conf")  # a repeated backup keeps the first (old) inode
    fs.apply("etc/conf", staged)
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640
    fs.backup("etc/conf")  # after apply: must not overwrite the backup with the new content
    assert fs.backup_path("etc/conf").read_text() == "old"
    fs.restore("etc/conf")
    fs.restore("etc/conf")  # the backup is gone: nothing to do
    assert target.read_text() == "old" and (target.stat().st_mode & 0o777) == 0o600
    assert not list(fs.root.rglob(f"*{NEW_SUFFIX}"))


def test_symlinks_are_applied_and_backed_up_as_links(fs: NodeFS, tmp_path: Path) -> None:
    staged = tmp_path / "link"
    os.symlink("/does/not/matter", staged)
    fs.apply("current", staged)
    assert os.readlink(fs.root / "current") == "/does/not/matter"
    fs.backup("current")
    assert os.readlink(fs.backup_path("current")) == "/does/not/matter"


def test_clear_temps_and_dirs(fs: NodeFS) -> None:
    fs.make_dir("opt", 0o750)
    assert (fs.root / "opt").stat().st_mode & 0o777 == 0o750
    (fs.root / "opt" / f"file{NEW_SUFFIX}").write_text("half")
    fs.clear_temps(["opt/file"])
    assert list((fs.root / "opt").iterdir()) == []
    (fs.root / "opt" / "keep").write_text("k")
    fs.remove_dir_if_empty("opt")  # not empty: kept
    assert (fs.root / "opt" / "keep").exists()
    fs.remove("opt/keep")
    fs.remove("opt/keep")
    fs.remove_dir_if_empty("opt")
    assert not (fs.root / "opt").exists()


def test_apply_refuses_a_staged_file_that_changed_since_the_plan(fs: NodeFS, tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    staged.write_text("planned")
    record = record_of(staged)
    assert record is not None
    staged.write_text("tampered")  # e.g. a torn mount after a power cut
    (fs.root / "conf").write_text("old")
    fs.backup("conf")
    with pytest.raises(StagedFileChanged, match="the plan recorded"):
        fs.apply("conf", staged, record)
    fs.restore("conf")  # what the rollback of the failed step does
    assert (fs.root / "conf").read_text() == "old"
    assert not (fs.root / f"conf{NEW_SUFFIX}").exists()


def test_apply_moves_the_staged_inode_and_fsyncs_each_directory_once(
        fs: NodeFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    (tree / "opt").mkdir(parents=True)
    (fs.root / "opt").mkdir()
    staged = {}
    for name in ("a", "b", "c"):
        (tree / "opt" / name).write_text(name)
        (tree / "opt" / name).chmod(0o751)
        staged[name] = os.lstat(tree / "opt" / name).st_ino
    synced: list[str] = []
    real = nodefs.fsync_dir
    monkeypatch.setattr(nodefs, "fsync_dir", lambda path: (synced.append(str(path)), real(path)))
    dirs = {fs.put(f"opt/{name}", tree / "opt" / name) for name in ("a", "b", "c")}
    dirs |= {fs.make_dir(f"opt/{name}", 0o755, sync=False) for name in ("d1", "d2")}  # type: ignore[arg-type]
    assert synced == []  # nothing synced per file or directory made
    fs.sync_dirs(dirs)
    assert synced == [str(fs.root / "opt")]
    for name, ino in staged.items():  # the same inode: no second copy of the content
        st = os.lstat(fs.root / "opt" / name)
        assert st.st_ino == ino and st.st_nlink == 1 and st.st_mode & 0o777 == 0o751
        assert not (tree / "opt" / name).exists()


@pytest.mark.parametrize("has_syncfs", [True, False])
def test_many_directories_are_synced_with_one_syncfs_per_file_system(
        fs: NodeFS, monkeypatch: pytest.MonkeyPatch, has_syncfs: bool) -> None:
    from zos_upgrade.flist import durability

    dirs = set()
    for i in range(nodefs._FSYNC_EACH_UP_TO + 1):
        (fs.root / f"d{i}").mkdir()
        dirs.add(fs.root / f"d{i}")
    synced: list[str] = []
    real = nodefs.fsync_dir
    monkeypatch.setattr(nodefs, "fsync_dir", lambda path: (synced.append(str(path)), real(path)))
    devices: list[int] = []
    real_syncfs = durability._SYNCFS
    assert real_syncfs is not None  # Linux
    monkeypatch.setattr(durability, "_SYNCFS", (lambda fd: (devices.append(os.fstat(fd).st_dev),
                                                            real_syncfs(fd))[1]) if has_syncfs else None)
    fs.sync_dirs(dirs)
    if has_syncfs:  # one file system here: one syncfs, no fsync
        assert devices == [os.stat(fs.root).st_dev] and synced == []
    else:  # no syncfs: every directory once
        assert sorted(synced) == sorted(str(d) for d in dirs)
    synced.clear()
    devices.clear()
    fs.sync_dirs({fs.root / "d0", fs.root / "d1"})  # a few: fsynced one by one
    assert sorted(synced) == [str(fs.root / "d0"), str(fs.root / "d1")] and devices == []


def test_apply_copies_when_the_tree_is_on_another_file_system(
        fs: NodeFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staged = tmp_path / "staged"
    staged.write_text("new")
    staged.chmod(0o640)
    (fs.root / "conf").write_text("old")
    real = os.rename

    def across(src: object, dest: object) -> None:
        if Path(str(src)) == staged:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(src, dest)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", across)
    fs.apply("conf", staged, record_of(staged))
    assert (fs.root / "conf").read_text() == "new" and (fs.root / "conf").stat().st_mode & 0o777 == 0o640
    assert not staged.exists() and not (fs.root / f"conf{NEW_SUFFIX}").exists()  # copied, then removed


def test_the_files_an_apply_adds_are_noted_until_the_backup_is_dropped(fs: NodeFS) -> None:
    assert fs.noted_added() == {}
    added = {"opt/new": FileRecord("file", 0o644, 3, "ab" * 32),
             "opt/link": FileRecord("link", 0o777, 0, "x")}
    fs.note_added(added)
    assert fs.noted_added() == added
    fs.added_path.write_text("{not json")  # damaged: nothing is trusted from it
    assert fs.noted_added() == {}
    fs.note_added(added)
    fs.drop_backup()
    assert not fs.added_path.exists() and fs.noted_added() == {}
