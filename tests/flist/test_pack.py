"""pack: the golden trees give exactly the real zflist's blocks; packing is deterministic and safe."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from tests.support.stores import AsyncOnlyDirStore
from tests.support.upstream import ZdbServer
from zos_upgrade.flist.blocks import BLOCK_SIZE
from zos_upgrade.flist.formats import open_flist
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.model import EntryKind, HostileFlist
from zos_upgrade.flist.pack import PackError, pack
from zos_upgrade.flist.stores import DirStore, Route, Router, ZdbFull
from zos_upgrade.flist.verify import verify

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "flist-v1"


def golden_stat(version: str) -> dict[str, dict[str, object]]:
    """``zflist stat`` of every path of a golden flist, keyed by path."""
    out = {}
    for line in (GOLDEN / f"stat-{version}.json").read_text().splitlines():
        if line.startswith("{"):
            response = json.loads(line)["response"]
            out[response["file"]] = response
    return out


def extract(version: str, where: Path) -> Path:
    src = where / f"src-{version}"
    src.mkdir()
    with tarfile.open(GOLDEN / f"src-{version}.tar.gz") as archive:
        archive.extractall(src, filter="tar")
        # tarfile leaves symlinks with the time of extraction; zflist recorded theirs
        for member in archive.getmembers():
            if member.issym():
                os.utime(src / member.name, (member.mtime, member.mtime), follow_symlinks=False)
    return src


def stored_blocks(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_packing_the_golden_tree_gives_zflists_exact_blocks(tmp_path: Path, version: str) -> None:
    src = extract(version, tmp_path)
    store = DirStore(tmp_path / "blocks")
    report = asyncio.run(pack(src, tmp_path / "out.flist", store))
    expected = golden_stat(version)

    with open_flist(tmp_path / "out.flist") as reader:
        entries = {e.path: e for e in reader.entries() if e.path != "/"}
    assert set(entries) == set(expected)
    for path, entry in entries.items():
        golden = expected[path]
        chunks = [(c["key"], c["decipher"]) for c in golden["chunks"]]  # type: ignore[union-attr]
        assert [(b.id.hex(), b.key.hex()) for b in entry.blocks] == chunks, path
        assert entry.size == golden["size"], path
        assert entry.mtime == golden["modified"], path
        assert (entry.uid, entry.gid) == (golden["uid"], golden["gid"]), path
        if entry.kind is EntryKind.LINK:
            assert entry.target == golden["linkto"], path
        else:
            assert entry.permissions == golden["mode"], path

    # the stored bytes are byte for byte what zflist put in its 0-db
    ours = stored_blocks(tmp_path / "blocks")
    assert ours == {name: (GOLDEN / "blocks" / name[:2] / name).read_bytes() for name in ours}
    chunk_list = json.loads((GOLDEN / f"chunks-{version}.json").read_text())["response"]["content"]
    assert set(ours) == set(chunk_list)
    assert report.blocks_uploaded == len(ours) == report.blocks_unique


@pytest.mark.parametrize("suffix", [".fl", ".flist"])
def test_packing_is_deterministic(tmp_path: Path, suffix: str) -> None:
    src = extract("v2", tmp_path)
    (src / "usr" / "lib" / "x" / "twice.bin").write_bytes(os.urandom(BLOCK_SIZE) * 2)
    copy = tmp_path / "copy"
    shutil.copytree(src, copy, symlinks=True)  # copystat keeps modes and mtimes; ctimes differ
    for here, _dirs, _files in os.walk(src):
        shutil.copystat(here, copy / os.path.relpath(here, src))

    asyncio.run(pack(src, tmp_path / f"one{suffix}", DirStore(tmp_path / "b1")))
    asyncio.run(pack(copy, tmp_path / f"two{suffix}", DirStore(tmp_path / "b2")))
    assert stored_blocks(tmp_path / "b1") == stored_blocks(tmp_path / "b2")
    with open_flist(tmp_path / f"one{suffix}") as one, open_flist(tmp_path / f"two{suffix}") as two:
        assert list(one.entries()) == list(two.entries())


def test_blocks_the_store_has_are_not_uploaded_again(tmp_path: Path) -> None:
    src = extract("v1", tmp_path)
    store = DirStore(tmp_path / "blocks")
    first = asyncio.run(pack(src, tmp_path / "a.fl", store))
    (src / "etc" / "motd").write_bytes(b"changed\n")
    second = asyncio.run(pack(src, tmp_path / "b.fl", store))
    assert first.blocks_uploaded == first.blocks_unique
    assert (second.blocks_uploaded, second.blocks_present) == (1, second.blocks_unique - 1)


def test_identical_chunks_are_one_block(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    chunk = os.urandom(BLOCK_SIZE)
    (src / "a").write_bytes(chunk * 3)
    (src / "b").write_bytes(chunk)
    report = asyncio.run(pack(src, tmp_path / "out.fl", DirStore(tmp_path / "blocks")))
    assert (report.blocks, report.blocks_unique, report.blocks_uploaded) == (4, 1, 1)
    assert report.bytes_read == 4 * BLOCK_SIZE


def test_symlinks_are_recorded_never_followed(tmp_path: Path) -> None:
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "key").write_bytes(b"do not pack me")
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(secret_dir, src / "dir-link")
    os.symlink(secret_dir / "key", src / "file-link")
    report = asyncio.run(pack(src, tmp_path / "out.fl", DirStore(tmp_path / "blocks")))
    assert (report.links, report.files, report.blocks) == (2, 0, 0)
    assert not (tmp_path / "blocks").exists()
    with open_flist(tmp_path / "out.fl") as reader:
        links = {e.path: e.target for e in reader.entries() if e.kind is EntryKind.LINK}
    assert links == {"/dir-link": str(secret_dir), "/file-link": str(secret_dir / "key")}


def test_tags_and_routes_are_written(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    routes = [Route(0, 0x7F, "dir:///srv/low"), Route(0x80, 0xFF, "dir:///srv/high")]
    asyncio.run(pack(src, tmp_path / "out.fl", DirStore(tmp_path / "blocks"),
                     tags={"version": "1.2.3", "author": "ops"}, routes=routes))
    with open_flist(tmp_path / "out.fl") as reader:
        assert reader.tags()["version"] == "1.2.3"
        assert reader.tags()["author"] == "ops"
        assert [(r.start, r.end, r.url) for r in reader.routes()] == [(0, 0x7F, "dir:///srv/low"),
                                                                         (0x80, 0xFF, "dir:///srv/high")]


def test_an_output_inside_the_source_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for out in [src / "x.fl", src / "sub" / "x.flist"]:
        with pytest.raises(PackError, match="inside the source tree"):
            asyncio.run(pack(src, out, DirStore(tmp_path / "blocks")))
        assert not out.exists()


@pytest.mark.parametrize("name", ["x.tar", "x", "x.fl.bak"])
def test_an_output_name_without_a_format_suffix_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(PackError, match=r"expected a \.fl \(v2\) or \.flist \(v1\) suffix"):
        asyncio.run(pack(tmp_path / "src", tmp_path / name, DirStore(tmp_path / "blocks")))


def test_a_source_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(PackError, match="not a directory"):
        asyncio.run(pack(tmp_path / "file", tmp_path / "o.fl", DirStore(tmp_path / "b")))
    with pytest.raises(PackError, match="expected a readable directory"):
        asyncio.run(pack(tmp_path / "absent", tmp_path / "o.fl", DirStore(tmp_path / "b")))


def test_special_files_are_recorded_without_content(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe", 0o600)
    report = asyncio.run(pack(src, tmp_path / "o.fl", DirStore(tmp_path / "b")))
    assert report.specials == 1
    with open_flist(tmp_path / "o.fl") as reader:
        pipe = next(e for e in reader.entries() if e.path == "/pipe")
    assert stat.S_ISFIFO(pipe.mode) and pipe.blocks == ()


def test_packing_never_yields_a_hostile_flist_for_odd_but_legal_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ["...", " space", "tab\there", "new\nline", "ünï€ode", "-dash"]:
        (src / name).write_text(name)
    asyncio.run(pack(src, tmp_path / "o.flist", DirStore(tmp_path / "b")))
    try:
        with open_flist(tmp_path / "o.flist") as reader:
            names = sorted(e.name for e in reader.entries() if e.path != "/")
    except HostileFlist as exc:  # pragma: no cover - the assertion below explains
        pytest.fail(f"reader refused what pack wrote: {exc}")
    assert names == sorted(["...", " space", "tab\there", "new\nline", "ünï€ode", "-dash"])


# --- parallel packing (issue 19): jobs in worker threads, batched uploads -------------------------


def _busy_tree(root: Path) -> Path:
    """Files that span several jobs, blocks repeated across jobs and files, many small files."""
    root.mkdir()
    chunk, other = os.urandom(BLOCK_SIZE), os.urandom(BLOCK_SIZE)
    (root / "big").write_bytes(chunk * 12 + other * 8 + b"tail")  # 21 blocks: more than one job
    (root / "same").write_bytes(other + chunk)  # its blocks already came in another job
    (root / "d").mkdir()
    for i in range(150):  # small files: many to a job
        (root / "d" / f"f{i:03}").write_bytes(f"file {i} ".encode() * (i * 37 % 2000 + 1))
    (root / "d" / "empty").write_bytes(b"")
    return root


@pytest.mark.parametrize("suffix", [".fl", ".flist"])
def test_the_flist_is_the_same_whatever_the_parallelism(tmp_path: Path, suffix: str) -> None:
    src = _busy_tree(tmp_path / "src")
    reports = []
    for workers in (1, 2, 8):
        store = DirStore(tmp_path / f"b{workers}")
        reports.append(asyncio.run(pack(src, tmp_path / f"w{workers}{suffix}", store, workers=workers)))
    assert (tmp_path / f"w1{suffix}").read_bytes() == (tmp_path / f"w2{suffix}").read_bytes() \
        == (tmp_path / f"w8{suffix}").read_bytes()
    assert stored_blocks(tmp_path / "b1") == stored_blocks(tmp_path / "b2") == stored_blocks(tmp_path / "b8")
    assert reports[0] == reports[1] == reports[2]
    # 2 distinct blocks in big/same (+ the tail), each small file one block
    assert reports[0].blocks == 21 + 2 + 150
    assert reports[0].blocks_unique == reports[0].blocks_uploaded == 3 + 150
    with open_flist(tmp_path / f"w8{suffix}") as flist:
        big = next(e for e in flist.entries() if e.path == "/big")
        same = next(e for e in flist.entries() if e.path == "/same")
    assert [b.key for b in big.blocks[:5]] == [big.blocks[0].key] * 5
    assert [same.blocks[0].key, same.blocks[1].key] == [big.blocks[12].key, big.blocks[0].key]


def test_a_store_without_thread_uploads_gets_the_same_blocks(tmp_path: Path) -> None:
    src = _busy_tree(tmp_path / "src")
    threads = asyncio.run(pack(src, tmp_path / "a.fl", DirStore(tmp_path / "a")))
    loop = asyncio.run(pack(src, tmp_path / "b.fl", AsyncOnlyDirStore(tmp_path / "b")))
    assert threads == loop
    assert stored_blocks(tmp_path / "a") == stored_blocks(tmp_path / "b")
    assert (tmp_path / "a.fl").read_bytes() == (tmp_path / "b.fl").read_bytes()


def test_packed_into_real_zdb_every_block_reads_back(tmp_path: Path, real_zdb: ZdbServer) -> None:
    src = _busy_tree(tmp_path / "src")
    url = real_zdb.namespace("packed")

    async def scenario() -> None:
        store = Router.single(url)
        try:
            report = await pack(src, tmp_path / "out.flist", store)
            assert report.blocks_uploaded == report.blocks_unique == 153
            again = await pack(src, tmp_path / "again.flist", store)
            assert (again.blocks_uploaded, again.blocks_present) == (0, 153)
            checked = await verify(tmp_path / "out.flist", store)
            assert (checked.blocks, checked.missing, checked.corrupt) == (153, [], [])
            await materialize(tmp_path / "out.flist", tmp_path / "dest", store=store)
        finally:
            await store.aclose()

    asyncio.run(scenario())
    for path in src.rglob("*"):
        if path.is_file():
            assert (tmp_path / "dest" / path.relative_to(src)).read_bytes() == path.read_bytes()


def test_a_store_failure_mid_pack_leaves_no_flist(tmp_path: Path, real_zdb: ZdbServer) -> None:
    src = _busy_tree(tmp_path / "src")
    # room for a few blocks, not for the tree
    url = real_zdb.namespace("tiny", maxsize=BLOCK_SIZE + BLOCK_SIZE // 2)
    out = tmp_path / "out" / "rel.flist"
    out.parent.mkdir()

    async def scenario() -> None:
        store = Router.single(url)
        try:
            with pytest.raises(ZdbFull, match="No space left"):
                await pack(src, out, store)
        finally:
            await store.aclose()

    asyncio.run(scenario())
    assert list(out.parent.iterdir()) == []


def test_a_file_that_shrank_before_its_read_is_refused(tmp_path: Path) -> None:
    from zos_upgrade.flist.blocks import encrypt_block
    from zos_upgrade.flist.pack import _Claims, _Piece, _seal_job

    small = tmp_path / "small"
    small.write_bytes(b"0123456789")
    # the walk saw 100 bytes; the worker finds 10: the read into the kept buffer must notice
    piece = _Piece(entry=0, block=0, disk=small, offset=0, length=100)
    with pytest.raises(PackError, match="changed while packing: expected 100 bytes at offset 0, read 10"):
        _seal_job([piece], "v1", _Claims(), None)
    whole = _Piece(entry=0, block=0, disk=small, offset=0, length=10)
    sealed = _seal_job([whole], "v1", _Claims(), None)
    assert sealed.refs == [encrypt_block(b"0123456789", "v1")[0]]
