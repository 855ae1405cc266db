"""v1 flists between the real ``zflist`` (0-flist 2.3.0) and zos-upgrade, both directions, blocks in
a real 0-db: what one tool writes, the other lists, checks and extracts identically."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import zos_upgrade_cmd
from tests.support.upstream import ZdbServer
from tests.support.zflist import Zflist
from tests.upstream.trees import describe_tree, make_mixed_tree, make_wide_tree
from zos_upgrade.flist import EntryKind, open_flist


def cli(*args: str | Path) -> str:
    done = subprocess.run(zos_upgrade_cmd("flist", *map(str, args)), capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ours_to_zflist(tmp_path: Path, zdb: ZdbServer, zflist_bin: Path, src: Path, *, get_all: bool) -> None:
    """Pack ``src`` with us into 0-db; zflist opens, lists, checks it and extracts every file."""
    out = tmp_path / "ours.flist"
    cli("pack", src, "-o", out, "--store", zdb.url())
    zf = Zflist(zflist_bin, tmp_path / "zf-mnt", zdb.port)
    with open_flist(out) as reader:
        ours = {e.path: e for e in reader.entries()}
    with zf.opened(out) as flist:
        found = flist.find()
        assert {c["path"] for c in found["content"]} == set(ours) - {"/"}
        files = [e for e in ours.values() if e.kind is EntryKind.FILE]
        assert found["regular"] == len(files)
        assert found["symlink"] == sum(e.kind is EntryKind.LINK for e in ours.values())
        assert found["fullsize"] == sum(e.size for e in files)
        checked = flist.check()  # every chunk of every file present in the backend
        assert checked["failure"] == 0, checked
        top = {item["name"]: item for item in flist.ls("/")}
        assert set(top) == {p.strip("/") for p in ours if p.count("/") == 1 and p != "/"}
        for entry in files if get_all else files[:25]:
            st = flist.stat(entry.path)
            assert (st["size"], st["mode"] & 0o7777, st["uid"], st["gid"], st["modified"]) == (
                entry.size, entry.permissions, entry.uid, entry.gid, entry.mtime), entry.path
            got = tmp_path / "got"
            flist.get(entry.path, got)
            assert got.read_bytes() == (src / entry.path.lstrip("/")).read_bytes(), entry.path
            got.unlink()


def zflist_to_ours(tmp_path: Path, zdb: ZdbServer, zflist_bin: Path, src: Path) -> None:
    """Pack ``src`` with zflist into 0-db; we list, verify and unpack it: the same tree."""
    out = tmp_path / "theirs.flist"
    Zflist(zflist_bin, tmp_path / "zf-mnt", zdb.port).pack(src, out)
    listing = cli("ls", out)
    assert len([line for line in listing.splitlines() if line.strip()]) == len(describe_tree(src))
    assert "all" in cli("verify", out, "--store", zdb.url())
    dest = tmp_path / "unpacked"
    cli("unpack", out, dest, "--store", zdb.url())
    want, got = describe_tree(src), describe_tree(dest)
    want.pop("/"), got.pop("/")
    assert got == want


def test_our_flist_in_real_zflist(tmp_path: Path, real_zdb: ZdbServer, zflist_bin: Path) -> None:
    ours_to_zflist(tmp_path, real_zdb, zflist_bin, make_mixed_tree(tmp_path / "src"), get_all=True)


def test_zflist_flist_unpacked_by_us(tmp_path: Path, real_zdb: ZdbServer, zflist_bin: Path) -> None:
    zflist_to_ours(tmp_path, real_zdb, zflist_bin, make_mixed_tree(tmp_path / "src"))


def test_2000_file_tree_zflist_to_ours(tmp_path: Path, real_zdb: ZdbServer, zflist_bin: Path) -> None:
    zflist_to_ours(tmp_path, real_zdb, zflist_bin, make_wide_tree(tmp_path / "src"))


def test_2000_file_tree_ours_checked_by_zflist(tmp_path: Path, real_zdb: ZdbServer, zflist_bin: Path) -> None:
    # listed and checked whole; 25 files extracted (every one: the fault variant below)
    ours_to_zflist(tmp_path, real_zdb, zflist_bin, make_wide_tree(tmp_path / "src"), get_all=False)


@pytest.mark.fault
@pytest.mark.timeout(1800)  # one zflist process per file: about 2,000 x 0.1 s
def test_2000_file_tree_ours_every_file_by_zflist_get(
    tmp_path: Path, real_zdb: ZdbServer, zflist_bin: Path
) -> None:
    ours_to_zflist(tmp_path, real_zdb, zflist_bin, make_wide_tree(tmp_path / "src"), get_all=True)


def test_a_missing_block_is_seen_by_zflist_check(
    tmp_path: Path, real_zdb: ZdbServer, zflist_bin: Path
) -> None:
    # the check is not vacuous: a block deleted from 0-db is a failure zflist reports
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_bytes(os.urandom(100_000))
    out = tmp_path / "ours.flist"
    cli("pack", src, "-o", out, "--store", real_zdb.url())
    with open_flist(out) as reader:
        (entry,) = [e for e in reader.entries() if e.kind is EntryKind.FILE]
    real_zdb.command("DEL", entry.blocks[0].id)
    with Zflist(zflist_bin, tmp_path / "zf-mnt", real_zdb.port).opened(out) as flist:
        assert flist.check()["failure"] == 1
