"""pack -> ls -> unpack over generated trees, for both formats: every byte, mode, link and mtime survives."""

from __future__ import annotations

import asyncio
import json
import os
import random
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from zos_upgrade.cli import cli
from zos_upgrade.flist.blocks import BLOCK_SIZE
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore, Route


@dataclass(frozen=True)
class FileSpec:
    size: int
    seed: int
    mode: int
    mtime: int


@dataclass(frozen=True)
class LinkSpec:
    target: str
    mtime: int


@dataclass(frozen=True)
class DirSpec:
    children: dict[str, Any]
    mode: int
    mtime: int


MTIMES = st.integers(min_value=0, max_value=2**31 - 1)
NAMES = st.text(alphabet="abcXYZ019-_. äé€", min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))
SIZES = st.one_of(
    st.integers(min_value=0, max_value=3000),
    st.sampled_from([BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE + 7]),
)
FILE_MODES = st.sampled_from([0o644, 0o755, 0o600, 0o400, 0o750])
FILES = st.builds(FileSpec, SIZES, st.integers(0, 2**32), FILE_MODES, MTIMES)
LINKS = st.builds(LinkSpec, st.text(alphabet="ab./-_", min_size=1, max_size=30), MTIMES)
TREES = st.recursive(
    st.one_of(FILES, LINKS),
    lambda children: st.builds(
        DirSpec, st.dictionaries(NAMES, children, max_size=4), st.sampled_from([0o755, 0o700, 0o555]), MTIMES
    ),
    max_leaves=12,
)
ROOTS = st.builds(DirSpec, st.dictionaries(NAMES, TREES, max_size=5), st.just(0o755), MTIMES)


def build(path: Path, spec: DirSpec) -> None:
    """Create ``spec`` at ``path`` (which must not exist); modes and mtimes are set deepest first."""
    path.mkdir()
    for name, child in spec.children.items():
        where = path / name
        if isinstance(child, DirSpec):
            build(where, child)
        elif isinstance(child, FileSpec):
            where.write_bytes(random.Random(child.seed).randbytes(child.size))
            os.chmod(where, child.mode)
            os.utime(where, (child.mtime, child.mtime))
        else:
            os.symlink(child.target, where)
            os.utime(where, (child.mtime, child.mtime), follow_symlinks=False)
    os.chmod(path, spec.mode)
    os.utime(path, (spec.mtime, spec.mtime))


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything a round trip must keep, keyed by path relative to ``root`` (root itself is '.')."""
    seen: dict[str, tuple[Any, ...]] = {}
    for here, dirs, files in os.walk(root):
        for name in [".", *dirs, *files] if here == str(root) else [*dirs, *files]:
            full = Path(here) / name if name != "." else Path(here)
            st_ = full.lstat()
            rel = os.path.relpath(full, root)
            if stat.S_ISLNK(st_.st_mode):
                content: Any = os.readlink(full)
            elif stat.S_ISREG(st_.st_mode):
                content = full.read_bytes()
            else:
                content = None
            seen[rel] = (stat.S_IFMT(st_.st_mode), stat.S_IMODE(st_.st_mode) if not stat.S_ISLNK(st_.st_mode)
                         else None, int(st_.st_mtime), st_.st_uid, st_.st_gid, content)
    return seen


def make_removable(root: Path) -> None:
    # read-only directories are part of the trees; without root they would block the clean-up
    for here, _dirs, _files in os.walk(root):
        os.chmod(here, 0o755)


def roundtrip(spec: DirSpec, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        try:
            _roundtrip(base, spec, suffix)
        finally:
            make_removable(base)


def _roundtrip(base: Path, spec: DirSpec, suffix: str) -> None:
    src, blocks, out, dest = base / "src", base / "blocks", base / f"tree{suffix}", base / "dest"
    build(src, spec)
    before = snapshot(src)
    store = DirStore(blocks)
    report = asyncio.run(pack(src, out, store, routes=[Route(0, 255, f"dir://{blocks}")]))
    assert report.files == sum(1 for v in before.values() if stat.S_ISREG(v[0]))

    listed = CliRunner().invoke(cli, ["flist", "ls", "--json", str(out)])
    assert listed.exit_code == 0, listed.output
    lines = [json.loads(line) for line in listed.output.splitlines() if line.startswith("{")]
    by_path = {d["path"]: d for d in lines}
    expected_paths = {"/" if rel == "." else "/" + rel for rel in before}
    assert set(by_path) == expected_paths
    for rel, (fmt, perm, _mtime, _uid, _gid, content) in before.items():
        item = by_path["/" if rel == "." else "/" + rel]
        if stat.S_ISREG(fmt):
            assert (item["type"], item["size"], int(item["mode"], 8)) == ("file", len(content), perm)
        elif stat.S_ISLNK(fmt):
            assert (item["type"], item["target"]) == ("link", content)
        else:
            assert (item["type"], int(item["mode"], 8)) == ("dir", perm)

    # the default store is the route recorded in the flist
    asyncio.run(materialize(out, dest))
    assert snapshot(dest) == before


@settings(max_examples=25)
@given(ROOTS)
def test_roundtrip_v2(spec: DirSpec) -> None:
    roundtrip(spec, ".fl")


@settings(max_examples=25)
@given(ROOTS)
def test_roundtrip_v1(spec: DirSpec) -> None:
    roundtrip(spec, ".flist")


def test_a_fixed_tree_with_every_kind_round_trips_in_both_formats() -> None:
    # the examples hypothesis draws are random: this one always has nesting, a read-only directory,
    # a multi-block file, an empty file and relative, absolute and dangling links
    spec = DirSpec({
        "etc": DirSpec({"motd": FileSpec(49, 1, 0o644, 1_700_000_000),
                        "zinit": DirSpec({"foo.yaml": FileSpec(15, 2, 0o600, 5)}, 0o700, 6)}, 0o755, 7),
        "bin": DirSpec({"big": FileSpec(2 * BLOCK_SIZE + 3, 3, 0o755, 8), "empty": FileSpec(0, 0, 0o644, 9),
                        "rel": LinkSpec("../etc/motd", 10), "abs": LinkSpec("/etc/passwd", 11),
                        "dangling": LinkSpec("nowhere/x", 12)}, 0o555, 13),
    }, 0o755, 14)
    roundtrip(spec, ".fl")
    roundtrip(spec, ".flist")
