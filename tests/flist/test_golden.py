"""Compatibility with the real zflist: the golden flists, blocks and source trees in tests/data/flist-v1."""

from __future__ import annotations

import asyncio
import json
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from zos_upgrade.flist import BLOCK_SIZE, Entry, EntryKind, Route, Router, open_flist, write_flist
from zos_upgrade.flist.blocks import decrypt_block, encrypt_block_v1
from zos_upgrade.flist.v1 import acl_key, dir_key

VERSIONS = ["v1", "v2"]


def _outputs(path: Path) -> list[Any]:
    """The JSON outputs of a recorded file (each one line, after a `$ command` line or alone)."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("$")]
    return [json.loads(line)["response"] for line in lines]


def _entries(golden: Path, version: str) -> list[Entry]:
    with open_flist(golden / f"{version}.flist") as reader:
        assert reader.format == "v1"
        return list(reader.entries())


def _source(golden: Path, version: str) -> dict[str, bytes]:
    files = {}
    with tarfile.open(golden / f"src-{version}.tar.gz") as archive:
        for member in archive:
            if member.isreg():
                handle = archive.extractfile(member)
                assert handle is not None
                files["/" + member.name.removeprefix("./")] = handle.read()
    return files


@pytest.mark.parametrize("version", VERSIONS)
def test_listing_matches_zflist_find(golden: Path, version: str) -> None:
    (listing,) = _outputs(golden / f"listing-{version}.json")
    entries = _entries(golden, version)
    assert entries[0].path == "/"
    # same paths, same sizes, in the same (pre-order) order as zflist prints them
    assert [{"size": e.size, "path": e.path} for e in entries[1:]] == listing["content"]
    kinds = [e.kind for e in entries[1:]]
    assert kinds.count(EntryKind.FILE) == listing["regular"]
    assert kinds.count(EntryKind.LINK) == listing["symlink"]
    assert kinds.count(EntryKind.DIR) == listing["directory"]
    assert sum(e.size for e in entries if e.kind is EntryKind.FILE) == listing["fullsize"]


@pytest.mark.parametrize("version", VERSIONS)
def test_stat_facts_match_zflist_stat(golden: Path, version: str) -> None:
    by_path = {e.path: e for e in _entries(golden, version)}
    stats = _outputs(golden / f"stat-{version}.json")
    assert {s["file"] for s in stats} == set(by_path) - {"/"}
    for info in stats:
        entry = by_path[info["file"]]
        assert entry.permissions == info["mode"], entry.path
        assert (entry.user, entry.uid, entry.group, entry.gid) == (
            info["user"], info["uid"], info["group"], info["gid"]
        )
        assert (entry.mtime, entry.ctime, entry.size) == (info["modified"], info["created"], info["size"])
        assert entry.target == info.get("linkto", "")
        assert [(b.id.hex(), b.key.hex()) for b in entry.blocks] == [
            (c["key"], c["decipher"]) for c in info["chunks"]
        ]
        expected_kind = EntryKind.LINK if "linkto" in info else (
            EntryKind.DIR if stat.S_ISDIR(entry.mode) else EntryKind.FILE
        )
        assert entry.kind == expected_kind


@pytest.mark.parametrize("version", VERSIONS)
def test_chunks_match_zflist_chunks(golden: Path, version: str) -> None:
    (chunks,) = _outputs(golden / f"chunks-{version}.json")
    ours = [ref.id.hex() for e in _entries(golden, version) for ref in e.blocks]
    assert ours == chunks["content"]


@pytest.mark.parametrize("version", VERSIONS)
def test_metadata_and_routes(golden: Path, version: str) -> None:
    outputs = _outputs(golden / f"metadata-{version}.json")
    keys, values = outputs[0], outputs[1:]
    with open_flist(golden / f"{version}.flist") as reader:
        tags = reader.tags()
        assert sorted(tags) == keys
        for value in values:
            stored = tags[value["metadata"]]
            # zflist prints JSON values decoded and plain text as is
            decoded = json.loads(stored) if stored[:1] in "[{" else stored
            assert decoded == value["value"]
        assert reader.routes() == [Route(0, 255, "zdb://127.0.0.1:19900")]


@pytest.mark.parametrize("version", VERSIONS)
def test_files_rebuild_byte_for_byte_from_the_golden_blocks(golden: Path, version: str) -> None:
    source = _source(golden, version)
    files = [e for e in _entries(golden, version) if e.kind is EntryKind.FILE]
    assert {e.path for e in files} == set(source)

    async def rebuild() -> dict[str, bytes]:
        store = Router.single(f"dir://{golden / 'blocks'}")
        try:
            out = {}
            for entry in files:
                chunks = [decrypt_block(ref, await store.get(ref.id)) for ref in entry.blocks]
                out[entry.path] = b"".join(chunks)
            return out
        finally:
            await store.aclose()

    assert asyncio.run(rebuild()) == source


@pytest.mark.parametrize("version", VERSIONS)
def test_packing_the_source_gives_zflists_blocks_exactly(golden: Path, version: str) -> None:
    by_path = {e.path: e for e in _entries(golden, version)}
    for path, content in _source(golden, version).items():
        refs = []
        for offset in range(0, len(content), BLOCK_SIZE):
            ref, stored = encrypt_block_v1(content[offset: offset + BLOCK_SIZE])
            name = ref.id.hex()
            assert (golden / "blocks" / name[:2] / name).read_bytes() == stored, path
            refs.append(ref)
        assert tuple(refs) == by_path[path].blocks, path


def test_block_index_lists_every_golden_block(golden: Path) -> None:
    index = dict(line.split() for line in (golden / "blocks-index.txt").read_text().splitlines())
    on_disk = {p.name: p.stat().st_size for p in (golden / "blocks").glob("*/*")}
    assert {k: int(v) for k, v in index.items()} == on_disk
    assert len(on_disk) == 14


def test_keys_of_directories_and_acls(golden: Path) -> None:
    assert dir_key("/") == "cae66941d9efbd404e4d88758ea67670"
    assert dir_key("/etc") == "9308da158ed557db704826796bca9f68"
    assert acl_key("root", "root", 0o40755, 0, 0) == "d7683de000c13689"
    assert acl_key("root", "root", 0o100644, 0, 0) == "5f64cf1389d15471"
    assert acl_key("root", "root", 0o120777, 0, 0) == "73e6e9d75d19d7da"


@pytest.mark.parametrize("version", VERSIONS)
def test_rewriting_a_golden_flist_keeps_its_listing(golden: Path, version: str, tmp_path: Path) -> None:
    with open_flist(golden / f"{version}.flist") as reader:
        entries, tags, routes = list(reader.entries()), reader.tags(), reader.routes()
    out = tmp_path / f"again-{version}.flist"
    write_flist(out, entries, tags=tags, routes=routes)
    with open_flist(out) as again:
        assert list(again.entries()) == entries
        assert again.tags() == tags
        assert again.routes() == routes
    (listing,) = _outputs(golden / f"listing-{version}.json")
    assert [{"size": e.size, "path": e.path} for e in entries[1:]] == listing["content"]
    # deterministic: the same input gives the same bytes
    twice = tmp_path / f"twice-{version}.flist"
    write_flist(twice, entries, tags=tags, routes=routes)
    assert twice.read_bytes() == out.read_bytes()
