"""An upgrade costs what changed: the plan is made from the flist's entries, only added and changed
files are staged, and blocks the node already holds are read from its installed files (verified),
never requested from the store.

The store is a real http:// server (a child process on a loopback port) that writes down every
block id it was asked for (``tests/support/counting_store.py``); the flists record a ``dir://``
store that no longer exists (its folder was moved to where the server serves it), so every block
not on the node or in the cache is a request the test sees.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import zos_upgrade.upgrade.steps as steps
from tests.fault.memory_supervisor import MemorySupervisor
from tests.support.counting_store import requested
from tests.support.local_releases import packed, verified_release
from tests.support.node import Exe, Link, TreeSpec, tree_digest
from tests.support.procs import free_port, serving
from zos_upgrade.flist import BLOCK_SIZE, BlockRef, EntryKind, open_flist
from zos_upgrade.flist.node_blocks import NodeBlocks
from zos_upgrade.sources import VerifiedRelease
from zos_upgrade.upgrade import Flister, RestartNeeded, RolledBack, Upgrader
from zos_upgrade.upgrade.manifest import RELEASE_CONTROL_FILES, FileRecord, record_of
from zos_upgrade.upgrade.nodefs import NodeFS
from zos_upgrade.upgrade.staging import installed_blocks

OLD, NEW = "1.0.0", "1.1.0"
PROGRAM = "bin/zos-upgrade"
REPO = Path(__file__).resolve().parents[2]

_RANDOM = {name: os.urandom(size) for name, size in {
    "small": 100_000, "big": 2 * BLOCK_SIZE + 100_000, "kept": 2 * BLOCK_SIZE, "tail": 100_000,
}.items()}


def release_tree(version: str) -> TreeSpec:
    """A service, small files of which NEW changes two, adds one and removes one, a 3-block file of
    which NEW changes only the last block, a 2-block file both keep, a link, the upgrader itself."""
    tree: dict[str, str | bytes | Exe | Link] = {
        "etc/zinit/alpha.yaml": "exec: /usr/bin/alpha\n",
        "data/big.bin":
            _RANDOM["big"] if version == OLD else _RANDOM["big"][:2 * BLOCK_SIZE] + _RANDOM["tail"],
        "data/kept.bin": _RANDOM["kept"],
        "lib/current": Link("../data"),
        PROGRAM: Exe(f"#!/bin/sh\necho {version}\n"),
    }
    for i in range(8):
        tree[f"data/f{i}.bin"] = _RANDOM["small"][i:] + (version.encode() if i < 2 else b"")
    if version == OLD:
        tree["data/gone.bin"] = b"only in the old release\n"
    else:
        tree["data/new.bin"] = b"only in the new release\n"
        tree["pre-copy"] = Exe("#!/bin/sh\ntrue\n")
    return tree


CHANGED = {"data/big.bin", "data/f0.bin", "data/f1.bin", "data/new.bin", PROGRAM}
CONTROL = {"pre-copy", "etc/zinit/alpha.yaml"}  # NEW's hook, and the service config the plan reads


@dataclasses.dataclass
class Node:
    base: Path
    releases: dict[str, VerifiedRelease]
    log: Path
    sup: MemorySupervisor = dataclasses.field(default_factory=MemorySupervisor)

    def __post_init__(self) -> None:
        self.root.mkdir(exist_ok=True)

    @property
    def root(self) -> Path:
        return self.base / "node"

    @property
    def state(self) -> Path:
        return self.base / "state"

    def upgrader(self, **options: object) -> Upgrader:
        settings: dict[str, object] = {"self_update": False, "program": PROGRAM, "probation": 0.0,
                                       "start_timeout": 5.0, "stop_timeout": 1.0, "sleep": self.sup.sleep,
                                       "clock": self.sup.clock}
        settings.update(options)
        return Upgrader(self.root, self.state, Flister(self.state), self.sup, **settings)  # type: ignore[arg-type]

    def install(self, version: str, **options: object) -> object:
        return asyncio.run(self.upgrader(**options).install(self.releases[version]))

    def forget_cache(self) -> None:
        """No block in the cache and none requested yet: what is not requested came from the node."""
        shutil.rmtree(self.state / "cache", ignore_errors=True)
        self.log.write_text("")

    def assert_files_of(self, version: str) -> None:
        for rel, spec in release_tree(version).items():
            if rel in RELEASE_CONTROL_FILES:
                assert not (self.root / rel).exists(), rel  # a hook runs from the tree, never copied
                continue
            path = self.root / rel
            if isinstance(spec, Link):
                assert os.readlink(path) == spec.target, rel
            else:
                want = spec.text if isinstance(spec, Exe) else spec
                assert path.read_bytes() == (want.encode() if isinstance(want, str) else want), rel


def block_ids(release: VerifiedRelease, *, control: bool = True) -> dict[str, list[str]]:
    """path -> the hex ids of its blocks, per regular file of the release's flist."""
    with open_flist(release.flist) as reader:
        return {e.path.lstrip("/"): [ref.id.hex() for ref in e.blocks] for e in reader.entries()
                if e.kind is EntryKind.FILE and (control or e.path.lstrip("/") not in RELEASE_CONTROL_FILES)}


def staged(tree: Path) -> set[str]:
    return {p.relative_to(tree).as_posix() for p in tree.rglob("*") if not p.is_dir() or p.is_symlink()}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """OLD installed from a counting http:// store; NEW ready. The staged trees are kept for the test
    to look at (a commit prunes them)."""
    packing = tmp_path / "packing-blocks"
    downloads = tmp_path / "state" / "flists"
    flists = {v: packed(tmp_path / "packing", f"zos:{v}.fl", release_tree(v), packing)[0] for v in (OLD, NEW)}
    served = tmp_path / "served-blocks"
    packing.rename(served)  # the dir:// route the flists record is gone: blocks come over HTTP
    port, log = free_port(), tmp_path / "requests.log"
    cmd = [sys.executable, "-m", "tests.support.counting_store", "--dir", str(served), "--port", str(port),
           "--log", str(log)]
    with serving(cmd, port, cwd=REPO):
        releases = {v: verified_release(f, downloads, version=v, fqdn=f"tf-zos/zos:{v}.fl",
                                        block_store=f"http://127.0.0.1:{port}") for v, f in flists.items()}
        box = Node(tmp_path, releases, log)
        box.install(OLD)
        assert requested(log) == {i for ids in block_ids(releases[OLD]).values() for i in ids}
        yield box


@pytest.fixture
def kept_mounts(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Commits keep the staged trees, and the set returned collects the paths the apply moved out of
    them onto the node (so the test can see what was staged)."""
    monkeypatch.setattr(Flister, "prune", lambda self, keep: None)
    moved: set[str] = set()
    put = NodeFS.put

    def recording(self: NodeFS, rel: str, staged: Path, *rest: Any) -> Path:
        moved.add(rel)
        return put(self, rel, staged, *rest)

    monkeypatch.setattr(NodeFS, "put", recording)
    return moved


def test_only_changed_files_are_staged_and_unchanged_blocks_are_never_requested(
        node: Node, kept_mounts: set[str]) -> None:
    node.forget_cache()
    report = node.install(NEW)
    node.assert_files_of(NEW)
    assert not (node.root / "data/gone.bin").exists()
    new = node.releases[NEW]
    # the staged tree held the changed files and what the transaction reads, nothing else; the
    # apply moved the changed files out of it onto the node: what the transaction reads is left
    assert staged(node.state / "mounts" / new.md5) == CONTROL and kept_mounts == CHANGED
    assert report.files_staged == len(CHANGED | CONTROL)  # type: ignore[attr-defined]
    # requested: only blocks no installed file holds (the changed last block of big.bin, the
    # changed small files, the new ones, the hook); big.bin's first two blocks came from the node
    old_ids = {i for ids in block_ids(node.releases[OLD], control=False).values() for i in ids}
    new_ids = {i for ids in block_ids(new).values() for i in ids}
    assert requested(node.log) == new_ids - old_ids
    big = block_ids(new)["data/big.bin"]
    assert big[0] not in requested(node.log) and big[2] in requested(node.log)
    assert report.blocks_from_node >= 3  # type: ignore[attr-defined]  # big.bin x2 + alpha.yaml
    # the cache is no second copy of the release: it keeps what the node lost (the old content of
    # the files replaced or removed) and the control files (never installed), for a rollback; a
    # fetched block of the new content went into its file only
    cached = cached_ids(node)
    lost, control_ids = kept_for_a_rollback(node)
    assert cached == lost | control_ids
    assert not cached & (requested(node.log) - control_ids)
    # the kept flist of the new release says where each block lies for the next upgrade
    manifest = node.upgrader().installed_boot()
    assert manifest is not None
    blocks = installed_blocks(node.state / "flists", manifest)
    assert blocks["data/big.bin"].sizes == (BLOCK_SIZE, BLOCK_SIZE, 100_000)
    assert set(blocks) == {r for r, rec in manifest.files.items() if rec.kind == "file"}


def cached_ids(node: Node) -> set[str]:
    return {p.name for p in (node.state / "cache" / "blocks").rglob("*") if p.is_file()}


def kept_for_a_rollback(node: Node) -> tuple[set[str], set[str]]:
    """The blocks an upgrade OLD -> NEW keeps in the cache: those of the old content of the files
    it replaces or removes, and those of NEW's control files."""
    old_blocks = block_ids(node.releases[OLD], control=False)
    lost = {i for rel in ("data/big.bin", "data/f0.bin", "data/f1.bin", PROGRAM, "data/gone.bin")
            for i in old_blocks[rel]}
    control = {i for rel, ids in block_ids(node.releases[NEW]).items() if rel in RELEASE_CONTROL_FILES
               for i in ids}
    return lost, control


def test_the_blocks_for_a_rollback_are_kept_from_the_backup_while_the_later_steps_run(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sealing the old content back into blocks is off the critical path: it reads the backup (the
    old inodes) in a thread, and the restart starts while it works; the commit waits for it."""
    node.forget_cache()
    restarted = threading.Event()
    roots: list[Path] = []
    keep = steps.keep_blocks_of

    def slow_keep(root: Path, cache: Any, files: dict[str, Any]) -> int:
        roots.append(root)
        if "data/f0.bin" in files:  # the old files (the other call keeps the control files)
            assert restarted.wait(5), "the restart waited for the blocks to be kept"
        return keep(root, cache, files)

    restart = next(s.run for s in steps.STEPS if s.name == "restart")

    async def marked(ctx: steps.Context, tx: steps.Transaction) -> None:
        restarted.set()
        await restart(ctx, tx)

    table = tuple(dataclasses.replace(s, run=marked) if s.name == "restart" else s for s in steps.STEPS)
    monkeypatch.setattr(steps, "STEPS", table)
    monkeypatch.setattr(steps, "keep_blocks_of", slow_keep)
    node.install(NEW)
    node.assert_files_of(NEW)
    assert roots[0] == node.state / "backup" / "current"
    lost, control = kept_for_a_rollback(node)
    assert cached_ids(node) == lost | control


def test_a_drifted_node_file_is_detected_and_its_block_fetched_again(node: Node,
                                                                     kept_mounts: set[str]) -> None:
    node.forget_cache()
    for rel in ("data/big.bin", "data/kept.bin"):  # same size, first block's bytes changed behind our back
        with open(node.root / rel, "r+b") as handle:
            handle.write(b"drifted!")
    report = node.install(NEW)
    node.assert_files_of(NEW)  # kept.bin is unchanged in the release but not on the node: replaced
    assert "data/kept.bin" in kept_mounts
    ids, got = block_ids(node.releases[NEW]), requested(node.log)
    assert ids["data/big.bin"][0] in got and ids["data/kept.bin"][0] in got  # the node's copies failed
    assert ids["data/big.bin"][1] not in got and ids["data/kept.bin"][1] not in got  # these were good
    assert report.files_replaced >= 2  # type: ignore[attr-defined]


def test_without_the_installed_release_kept_flist_every_regular_file_counts_as_changed(
        node: Node, kept_mounts: set[str]) -> None:
    installed = node.upgrader().installed_boot()
    assert installed is not None
    (node.state / "flists" / installed.md5).unlink()  # removed by hand: no block lists for the plan
    node.install(NEW)
    node.assert_files_of(NEW)
    files = {rel for rel, spec in release_tree(NEW).items() if not isinstance(spec, Link)}
    assert staged(node.state / "mounts" / node.releases[NEW].md5) | kept_mounts == files
    manifest = node.upgrader().installed_boot()
    assert manifest is not None
    kept = installed_blocks(node.state / "flists", manifest)["data/kept.bin"]
    assert kept.sizes == (BLOCK_SIZE, BLOCK_SIZE)


# The manifest format as every upgrader before issue 19 reads it (strict: an unknown field is refused)
class FileRecordBefore(msgspec.Struct, forbid_unknown_fields=True, array_like=True):
    kind: str
    mode: int
    size: int
    digest: str


class ManifestBefore(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: str
    fqdn: str
    source: str
    version: str
    md5: str
    info: dict[str, Any]
    files: dict[str, FileRecordBefore]
    services: dict[str, str]
    installed: float


def test_a_manifest_this_version_writes_is_read_by_the_manifest_format_before_it(node: Node) -> None:
    """A rollback can hand the node back to an older upgrader, which reads the manifests and the
    journal's new manifest with its own strict format: the format must not grow (block lists are
    read from the kept flist instead)."""

    node.install(NEW)
    data = (node.state / "manifests" / "boot.json").read_bytes()
    before = msgspec.json.decode(data, type=ManifestBefore, strict=True)
    assert before.version == NEW and "data/kept.bin" in before.files


def test_self_update_continues_from_a_partial_mount_without_the_store(tmp_path: Path) -> None:
    packing = tmp_path / "packing-blocks"
    flists = {v: packed(tmp_path / "packing", f"zos:{v}.fl", release_tree(v), packing)[0] for v in (OLD, NEW)}
    served = tmp_path / "served-blocks"
    packing.rename(served)
    port, log = free_port(), tmp_path / "requests.log"
    cmd = [sys.executable, "-m", "tests.support.counting_store", "--dir", str(served), "--port", str(port),
           "--log", str(log)]
    downloads = tmp_path / "state" / "flists"
    with serving(cmd, port, cwd=REPO):
        releases = {v: verified_release(f, downloads, version=v, fqdn=f"tf-zos/zos:{v}.fl",
                                        block_store=f"http://127.0.0.1:{port}") for v, f in flists.items()}
        box = Node(tmp_path, releases, log)
        box.install(OLD)
        box.forget_cache()
        with pytest.raises(RestartNeeded):
            box.install(NEW, self_update=True)
    # a transaction replacing the program keeps what it fetched, for its continuation
    cached = {p.name for p in (box.state / "cache" / "blocks").rglob("*") if p.is_file()}
    assert requested(log) and cached >= requested(log)
    # the store is gone: the continuation re-mounts from the node's files and the cache alone
    assert (box.root / PROGRAM).read_bytes() == b"#!/bin/sh\necho 1.1.0\n"
    shutil.rmtree(box.state / "mounts")
    result = asyncio.run(box.upgrader(self_update=True).recover())
    assert result == f"continued after self-update: committed {NEW}"
    box.assert_files_of(NEW)
    assert not (box.root / "data/gone.bin").exists()


def test_a_failed_partial_upgrade_rolls_back_byte_for_byte(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tree_digest(node.root, exclude=())
    node.forget_cache()

    async def broken(ctx: steps.Context, tx: steps.Transaction) -> None:
        await apply(ctx, tx)
        raise OSError("injected after apply")

    apply = next(s.run for s in steps.STEPS if s.name == "apply")
    table = tuple(dataclasses.replace(s, run=broken) if s.name == "post-copy" else s for s in steps.STEPS)
    monkeypatch.setattr(steps, "STEPS", table)
    with pytest.raises(RolledBack):
        node.install(NEW)
    assert tree_digest(node.root, exclude=()) == before
    node.assert_files_of(OLD)


def test_rollback_after_an_incremental_upgrade_restores_the_old_files(node: Node) -> None:
    before = tree_digest(node.root, exclude=())
    node.install(NEW)
    store = node.releases[OLD].block_store
    report = asyncio.run(node.upgrader().rollback(lambda manifest, _flist: manifest.version,
                                                  block_store=store))
    assert report.to_version == OLD
    node.assert_files_of(OLD)
    assert tree_digest(node.root, exclude=("tmp",)) == {
        k: v for k, v in before.items() if not k.startswith("tmp")}


# ------------------------------------------------------------------ NodeBlocks on its own


def _ref(data: bytes) -> BlockRef:
    import hashlib
    return BlockRef(b"\0" * 32, hashlib.blake2b(data, digest_size=32).digest())


def test_node_blocks_are_verified_and_never_read_through_a_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    data = os.urandom(4096)
    (root / "real/file").write_bytes(b"x" * 100 + data)
    (outside / "file").write_bytes(data)       # the same bytes, outside the root
    os.symlink(outside, root / "escape")       # a directory link leading out
    os.symlink(outside / "file", root / "real/link")  # a final link leading out
    os.mkfifo(root / "real/fifo")              # not a file: must not hang the reader
    good, drifted = _ref(data), _ref(os.urandom(4096))
    blocks = NodeBlocks.index(root, [
        ("real/file", [(b"pad" * 11, 100), (good.key, 4096)]),
        ("escape/file", [(_ref(data + b"1").key, 4096)]),
        ("real/link", [(_ref(data + b"2").key, 4096)]),
        ("real/fifo", [(_ref(data + b"3").key, 4096)]),
    ])
    try:
        assert blocks.plain(good) == data  # at offset 100, verified
        for key_data in (data + b"1", data + b"2", data + b"3"):
            # these keys name other bytes, but the reads must fail before any comparison
            ref = _ref(key_data)
            assert blocks.has(ref) and blocks.plain(ref) is None and not blocks.has(ref)
        assert blocks.refused == 3 and blocks.used == 1
        # the escape's target holds exactly the good block: still never read through the link
        escaping = NodeBlocks.index(root, [("escape/file", [(good.key, 4096)]),
                                           ("real/link", [(good.key, 4096)])])
        assert escaping.plain(good) is None and escaping.refused == 1
        escaping.close()
        # a drifted file: the bytes no longer match the key; the block is forgotten (from the store)
        (root / "real/file").write_bytes(b"x" * 100 + os.urandom(4096))
        again = NodeBlocks.index(root, [("real/file", [(b"pad", 100), (good.key, 4096)])])
        assert again.plain(good) is None and not again.has(good) and again.refused == 1
        assert blocks.plain(drifted) is None and blocks.refused == 3  # never known: not a refusal
        again.close()
    finally:
        blocks.close()


# ------------------------------------------------------------------ materialize's filter keeps its rules


@pytest.mark.parametrize("selected", ["/a/passwd", "/etc/motd"])
def test_a_partial_materialize_still_refuses_a_file_through_an_unwritten_link(tmp_path: Path,
                                                                             selected: str) -> None:
    """``/a`` is a link the filter does not write; ``/a/passwd`` goes through it: refused whichever
    path is selected (materialize's own check: the reader here checks nothing), nothing left behind."""
    import stat

    from tests.flist.test_hostile_materialize import ListReader
    from zos_upgrade.flist import Entry, HostileFlist
    from zos_upgrade.flist.materialize import materialize
    from zos_upgrade.flist.stores import DirStore

    entries = [Entry("/", EntryKind.DIR, stat.S_IFDIR | 0o755),
               Entry("/etc", EntryKind.DIR, stat.S_IFDIR | 0o755),
               Entry("/a", EntryKind.LINK, stat.S_IFLNK | 0o777, target="/etc"),
               Entry("/a/passwd", EntryKind.FILE, stat.S_IFREG | 0o644),
               Entry("/etc/motd", EntryKind.FILE, stat.S_IFREG | 0o644)]
    dest = tmp_path / "dest"
    with pytest.raises(HostileFlist, match="through symlink '/a'"):
        asyncio.run(materialize(ListReader(entries), dest, store=DirStore(tmp_path / "blocks"),
                                only=lambda path: path == selected))
    assert not dest.exists()


def test_a_partial_materialize_writes_only_the_selected_files_and_the_directories_they_lie_in(
        tmp_path: Path) -> None:
    from zos_upgrade.flist.materialize import materialize
    from zos_upgrade.flist.stores import DirStore

    tree = {**release_tree(NEW), "data/deep/er/f9.bin": b"nine", "data/deep/other/x.bin": b"x"}
    flist, blocks = packed(tmp_path, "rel.fl", tree)
    dest = tmp_path / "dest"
    chosen = {"/data/f0.bin", "/data/deep/er/f9.bin"}
    report = asyncio.run(materialize(flist, dest, store=DirStore(blocks), only=chosen.__contains__))
    assert staged(dest) == {"data/f0.bin", "data/deep/er/f9.bin"}
    dirs = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_dir()}
    assert dirs == {"data", "data/deep", "data/deep/er"}  # not etc, lib, bin, data/deep/other
    assert (dest / "data/deep/er/f9.bin").read_bytes() == b"nine"
    assert (dest / "data/f0.bin").read_bytes() == release_tree(NEW)["data/f0.bin"]
    with open_flist(flist) as reader:  # the directories made are sealed as the flist says
        modes = {e.path: e.permissions for e in reader.entries() if e.kind is EntryKind.DIR}
    assert all(stat.S_IMODE((dest / d).stat().st_mode) == modes["/" + d] for d in dirs)
    assert report.blocks_fetched == 2 and report.dirs == 3


# ------------------------------------------------------------------ stamps: files not hashed again


def test_a_stamp_spares_the_hash_until_the_file_changes_even_with_its_mtime_put_back(tmp_path: Path) -> None:
    import time

    from zos_upgrade.upgrade.manifest import digest_file
    from zos_upgrade.upgrade.stamps import SETTLED_NS, NodeStamps

    file, cache = tmp_path / "f.bin", tmp_path / "stamps.json"
    file.write_bytes(os.urandom(10_000))

    def later() -> int:
        return time.time_ns() + 10 * SETTLED_NS

    first = NodeStamps(cache, clock=later)
    record = first.record("f.bin", file)
    first.save()
    assert first.hashed == 1 and record is not None and record.digest == digest_file(file)
    again = NodeStamps(cache, clock=later)
    assert again.record("f.bin", file) == record and again.hashed == 0  # not read: its stamp holds
    again.save()
    st = os.stat(file)
    with open(file, "r+b") as handle:  # same size, new bytes, and the mtime put back: only ctime moved
        handle.write(b"changed!")
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = NodeStamps(cache, clock=later)
    changed = third.record("f.bin", file)
    assert third.hashed == 1 and changed is not None and changed.digest == digest_file(file) != record.digest
    # a file written just now (within the margin) is hashed, but not stamped: a write in the same
    # tick could hide
    fresh = NodeStamps(cache, clock=lambda: os.lstat(file).st_ctime_ns + 1)
    fresh.record("f.bin", file)
    fresh.save()
    assert NodeStamps(cache).record("f.bin", file) is not None
    assert json.loads(cache.read_text()) == {}
    cache.write_text("not json")  # a damaged cache is ignored: everything is hashed
    damaged = NodeStamps(cache, clock=later)
    assert damaged.record("f.bin", file) == changed and damaged.hashed == 1


def test_an_upgrade_with_stamps_still_finds_a_file_edited_behind_its_back(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    import zos_upgrade.upgrade.stamps as stamps

    monkeypatch.setattr(stamps, "SETTLED_NS", 0)  # every file counts as settled: all get stamped
    ctx = node.upgrader()._ctx
    old = ctx.installed_boot()
    first = steps._node_records(ctx, old)
    assert (node.state / "cache" / stamps.STAMPS_FILE).exists()
    target = node.root / "data/kept.bin"
    st = os.stat(target)
    with open(target, "r+b") as handle:
        handle.write(b"drifted!")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = steps._node_records(ctx, old)
    assert second["data/kept.bin"] != first["data/kept.bin"]
    assert {k: v for k, v in second.items() if k != "data/kept.bin"} == {
        k: v for k, v in first.items() if k != "data/kept.bin"}
    report = node.install(NEW)
    node.assert_files_of(NEW)  # the release's copy replaced the edited one
    assert report.files_replaced >= 1  # type: ignore[attr-defined]


def _opened_flists(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every flist file opened from here on (the readers' one entry point)."""
    import zos_upgrade.flist as flist

    opened: list[Path] = []
    real = flist.open_flist

    def counted(path: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(flist, "open_flist", counted)
    return opened


def test_the_installed_blocks_come_from_the_entries_this_process_read_when_it_read_that_release(
        node: Node, kept_mounts: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An Upgrader that read the installed release's flist (it installed it) plans the next upgrade
    from those entries: the kept flist is md5-checked but not read again, and the plan, the staged
    files and the blocks requested are those of a fresh process."""
    from zos_upgrade.upgrade.release_entries import read_entries

    old, new = node.releases[OLD], node.releases[NEW]
    upgrader = node.upgrader()
    with open_flist(old.flist) as reader:
        upgrader._ctx.read_entries.remember(old.md5, read_entries(reader))
    node.forget_cache()
    opened = _opened_flists(monkeypatch)
    asyncio.run(upgrader.install(new))
    node.assert_files_of(NEW)
    assert opened == [new.flist]  # the new release's file, once: plan and mount from one read
    assert staged(node.state / "mounts" / new.md5) == CONTROL and kept_mounts == CHANGED
    old_ids = {i for ids in block_ids(old, control=False).values() for i in ids}
    assert requested(node.log) == {i for ids in block_ids(new).values() for i in ids} - old_ids
    with open_flist(new.flist) as reader:  # and the next upgrade finds the new release's entries
        assert upgrader._ctx.read_entries.get(new.md5) == read_entries(reader)
    assert upgrader._ctx.read_entries.get(old.md5) is None


def test_entries_read_before_do_not_stand_for_a_kept_flist_that_is_gone_or_changed(node: Node) -> None:
    from zos_upgrade.upgrade.release_entries import ReadEntries, read_entries

    manifest = node.upgrader().installed_boot()
    assert manifest is not None
    kept = node.state / "flists" / manifest.md5
    known = ReadEntries()
    with open_flist(kept) as reader:
        known.remember(manifest.md5, read_entries(reader))
    assert installed_blocks(node.state / "flists", manifest, known) == installed_blocks(
        node.state / "flists", manifest)
    kept.write_bytes(kept.read_bytes() + b"\0")  # changed since its install: not trusted, memo or not
    assert installed_blocks(node.state / "flists", manifest, known) == {}
    kept.unlink()
    assert installed_blocks(node.state / "flists", manifest, known) == {}


def _drift_check(node: Node) -> tuple[dict[str, Any], int]:
    """The next upgrade's drift check of the installed release: each file's record, and how many
    files it had to read."""
    from zos_upgrade.upgrade.stamps import STAMPS_FILE, NodeStamps

    ctx = node.upgrader()._ctx
    installed = ctx.installed_boot()
    assert installed is not None
    stamps = NodeStamps(node.state / "cache" / STAMPS_FILE)
    found = {rel: stamps.record(rel, ctx.files.node_path(rel))
             for rel, rec in installed.files.items() if rec.kind == "file"}
    return found, stamps.hashed


def test_the_install_stamps_what_it_applied_so_the_next_drift_check_reads_nothing(node: Node) -> None:
    # the fixture's install of OLD was a first install: its apply hashed and stamped every file
    found, hashed = _drift_check(node)
    assert hashed == 0 and len(found) >= 5
    installed = node.upgrader().installed_boot()
    assert installed is not None
    assert found == {rel: rec for rel, rec in installed.files.items() if rec.kind == "file"}
    node.install(NEW)  # an upgrade stamps what it applied and keeps the other files' stamps
    found, hashed = _drift_check(node)
    assert hashed == 0 and "data/new.bin" in found and "data/gone.bin" not in found


def test_a_file_changed_right_after_its_install_stamp_is_still_found(node: Node) -> None:
    # same size, and the mtime put back by utime at once: only the ctime moved (a tick later at most)
    target = node.root / "data/kept.bin"
    st = os.lstat(target)
    with open(target, "r+b") as handle:
        handle.write(b"drifted!")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    found, hashed = _drift_check(node)
    installed = node.upgrader().installed_boot()
    assert installed is not None
    assert hashed == 1 and found["data/kept.bin"] != installed.files["data/kept.bin"]
    report = node.install(NEW)
    node.assert_files_of(NEW)  # the drifted copy was replaced by the release's
    assert report.files_replaced >= 1  # type: ignore[attr-defined]


def test_the_apply_refuses_an_applied_file_that_is_not_what_was_planned(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    from zos_upgrade.upgrade.nodefs import NodeFS

    put = NodeFS.put

    def damaging(self: NodeFS, rel: str, staged: Path, *rest: Any) -> Path:
        if rel == "data/new.bin":
            staged.write_bytes(b"not what the plan hashed")
        return put(self, rel, staged, *rest)

    monkeypatch.setattr(NodeFS, "put", damaging)
    before = tree_digest(node.root)
    with pytest.raises(RolledBack) as failed:
        node.install(NEW)
    assert failed.value.step == "apply" and "StagedFileChanged" in failed.value.reason
    assert tree_digest(node.root) == before


def test_an_upgrade_reads_no_file_its_writers_digested(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    # stamps spare the drift check, the writers' digests the plan and the apply's check
    from zos_upgrade.upgrade import manifest, staging, stamps

    hashed: list[Path] = []
    digest = manifest.digest_file
    def record_of(path: Path) -> FileRecord | None:
        found = manifest.record_of(path)
        if found is not None and found.kind == "file":  # a link's record reads no content
            hashed.append(path)
        return found

    monkeypatch.setattr(stamps, "record_of", record_of)
    monkeypatch.setattr(staging, "digest_file", lambda path: hashed.append(path) or digest(path))
    report = node.install(NEW)
    assert report.files_added + report.files_replaced >= 2 and hashed == []  # type: ignore[attr-defined]
    found, rehashed = _drift_check(node)  # and what the apply stamped is what the node holds
    assert rehashed == 0 and found["data/new.bin"] == manifest.record_of(node.root / "data/new.bin")


def _handed_over(tmp_path: Path, change: Callable[[Path], object]) -> tuple[FileRecord | None, int]:
    """A file written and sealed as a writer does, moved into place, ``change``d, then recorded by
    ``NodeStamps.handed`` with the writer's digest ("written"): the record and the files hashed."""
    from zos_upgrade.flist.filewrite import WrittenFile
    from zos_upgrade.upgrade.stamps import NodeStamps

    staged, placed = tmp_path / "staged", tmp_path / "placed"
    staged.write_bytes(b"the release's bytes")
    os.utime(staged, ns=(1_600_000_000_000_000_000,) * 2)  # sealed with the flist's mtime
    sealed = os.lstat(staged)
    os.rename(staged, placed)
    renamed = os.lstat(placed)
    change(placed)
    stamps = NodeStamps(tmp_path / "stamps.json")
    stamps.settle([placed])
    written = WrittenFile("written", sealed.st_ino, sealed.st_mtime_ns)
    record = stamps.handed("placed", placed, written, renamed)
    return record, stamps.hashed


def test_a_handed_over_file_takes_its_writers_digest_until_anything_touches_it(tmp_path: Path) -> None:
    (tmp_path / "same").mkdir()
    record, hashed = _handed_over(tmp_path / "same", lambda _path: None)
    assert record is not None and (record.digest, hashed) == ("written", 0)

    def rewrite(path: Path) -> None:  # same size; the mtime a write stamps is the present
        path.write_bytes(b"the release's bytez")

    def rewrite_and_put_mtime_back(path: Path) -> None:  # only the ctime tells
        st = os.lstat(path)
        rewrite(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    for name, change in [("write", rewrite), ("utime", rewrite_and_put_mtime_back),
                         ("chmod", lambda path: path.chmod(0o600))]:
        (tmp_path / name).mkdir(parents=True)
        record, hashed = _handed_over(tmp_path / name, change)
        assert record is not None and hashed == 1, name
        assert record == record_of(tmp_path / name / "placed"), name


def test_an_upgrade_waits_for_no_ctime_of_the_files_its_writers_digested(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    from zos_upgrade.upgrade.stamps import NodeStamps

    waited: list[str] = []  # what the apply waited for (the commit's confirm may wait, were it soon)
    confirming: list[bool] = []
    settle, confirm = NodeStamps.settle, NodeStamps.confirm

    def recorded(self: NodeStamps, paths: Any, *rest: Any) -> None:
        paths = list(paths)
        if not confirming:
            waited.extend(str(p) for p in paths)
        settle(self, paths, *rest)

    def confirmed(self: NodeStamps, *rest: Any) -> None:
        confirming.append(True)
        confirm(self, *rest)

    monkeypatch.setattr(NodeStamps, "settle", recorded)
    monkeypatch.setattr(NodeStamps, "confirm", confirmed)
    node.install(NEW)
    node.assert_files_of(NEW)
    assert waited == [] and confirming == [True]
    stamped = json.loads((node.state / "cache" / "node-stamps.json").read_text())
    assert {"data/f0.bin", "data/big.bin"} <= set(stamped)  # applied, stamped at the commit


def test_a_handed_over_file_is_checked_at_once_and_stamped_once_its_ctime_settled(tmp_path: Path) -> None:
    """The apply does not wait for the ctimes of the files it moved: the writer's digest is the
    record at once, and the stamp is taken later (the commit), once the ctime settled and only if
    the file is still what it was."""
    from zos_upgrade.flist.filewrite import WrittenFile
    from zos_upgrade.upgrade.stamps import Margin, NodeStamps

    cache = tmp_path / "stamps.json"
    placed: dict[str, tuple[Path, WrittenFile, os.stat_result]] = {}
    for name in ("kept", "touched"):
        staged = tmp_path / f"{name}.staged"
        staged.write_bytes(b"the release's bytes")
        os.utime(staged, ns=(1_600_000_000_000_000_000,) * 2)
        sealed = os.lstat(staged)
        os.rename(staged, tmp_path / name)
        placed[name] = (tmp_path / name, WrittenFile(f"digest-{name}", sealed.st_ino, sealed.st_mtime_ns),
                        os.lstat(tmp_path / name))
    now = [min(st.st_ctime_ns for _p, _w, st in placed.values())]  # the first move: none settled
    margin = Margin(4_000_000)
    stamps = NodeStamps(cache, clock=lambda: now[0], margin=margin)
    for name, (path, written, renamed) in placed.items():
        record = stamps.handed(name, path, written, renamed)
        assert record is not None and record.digest == f"digest-{name}"
    assert stamps.hashed == 0
    stamps.save()
    assert json.loads(cache.read_text()) == {}  # not settled: no stamp yet
    (tmp_path / "touched").chmod(0o600)  # between the check and the commit
    now[0] = time.time_ns() + margin.ns()  # settled, the chmod too: only its lstat tells
    stamps.confirm()
    stamps.save()
    assert {rel: digest for rel, (digest, _stamp) in json.loads(cache.read_text()).items()} == {
        "kept": "digest-kept"}


def test_the_margin_is_a_tick_and_a_granule_and_2_s_on_coarse_timestamps() -> None:
    from zos_upgrade.upgrade.stamps import SETTLED_NS, Margin

    tick = 4_000_000
    coarse = Margin(tick)
    assert coarse.ns() == tick + SETTLED_NS  # nothing seen yet: nothing shows the granularity is fine
    for second in (1_796_000_000, 1_796_000_001, 1_796_000_003):
        coarse.see(second * 1_000_000_000)  # whole seconds only (ext3, FAT, a coarse NFS server)
    assert coarse.ns() == tick + SETTLED_NS
    fine = Margin(tick)
    fine.see(1_796_000_000_791_402_868)  # a sub-second part with nanoseconds: the granule divides 4 ns
    assert fine.ns() == tick + 4
    hundredths = Margin(tick)
    for ctime in (1_796_000_000_120_000_000, 1_796_000_001_350_000_000):
        hundredths.see(ctime)  # 10 ms timestamps: a granule of 10 ms at most (here gcd 10 ms)
    assert hundredths.ns() == tick + 10_000_000
    assert Margin(None).ns() >= 1  # the machine's own tick


def test_a_stamp_is_not_taken_within_the_margin(tmp_path: Path) -> None:
    from zos_upgrade.upgrade.stamps import Margin, NodeStamps

    file, cache = tmp_path / "f.bin", tmp_path / "stamps.json"
    file.write_bytes(b"x" * 100)
    ctime = os.lstat(file).st_ctime_ns
    margin = Margin(4_000_000)
    early = NodeStamps(cache, clock=lambda: ctime + 4_000_000, margin=margin)  # a tick only: the granule left
    early.fresh("f.bin", file)
    early.save()
    assert json.loads(cache.read_text()) == {}
    settled = NodeStamps(cache, clock=lambda: ctime + margin.ns(), margin=margin)
    settled.fresh("f.bin", file)
    settled.save()
    assert list(json.loads(cache.read_text())) == ["f.bin"]
    slept: list[float] = []
    times = iter([ctime, ctime + margin.ns()])
    NodeStamps(cache, clock=lambda: next(times), margin=margin).settle([file], sleep=slept.append)
    assert slept == [margin.ns() / 1e9]  # one wait, as long as the margin still asks


def test_the_plan_takes_the_digests_the_writers_took_and_reads_no_staged_file(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    import zos_upgrade.upgrade.staging as staging

    def no_read(path: Path) -> str:
        raise AssertionError(f"{path} was read again to digest it")

    monkeypatch.setattr(staging, "digest_file", no_read)
    node.install(NEW)
    node.assert_files_of(NEW)
