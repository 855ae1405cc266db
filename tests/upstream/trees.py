"""Source trees for the real-tool tests and how to compare two trees on disk, field by field."""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path

__all__ = ["describe_tree", "make_mixed_tree", "make_wide_tree"]

MTIME = 1_700_000_000


def _file(path: Path, data: bytes, mode: int = 0o644, owner: tuple[int, int] | None = None,
          mtime: int = MTIME) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)
    if owner and os.geteuid() == 0:
        os.chown(path, *owner)
    os.utime(path, (mtime, mtime))


def make_mixed_tree(root: Path) -> Path:
    """Every kind of entry both tools handle: empty, small, block-sized and multi-block files, odd
    modes and owners (as root), relative, absolute and dangling links, nested directories."""
    rng = random.Random(17)
    (root / "etc" / "conf.d").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "var" / "lib" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    _file(root / "etc" / "motd", b"hello from zos-upgrade\n")
    _file(root / "etc" / "empty", b"")
    _file(root / "etc" / "conf.d" / "secret", b"token=abc\n", 0o600, (1234, 5678))
    _file(root / "bin" / "tool", rng.randbytes(3 * 512 * 1024 + 12345), 0o755)
    _file(root / "bin" / "exact-block", rng.randbytes(512 * 1024), 0o750, (0, 5678))
    log = b"".join(b"line %d of a compressible log\n" % i for i in range(60_000))
    _file(root / "var" / "lib" / "text.log", log, 0o640, (1234, 1234), MTIME + 86400)
    _file(root / "var" / "lib" / "deep" / "deeper" / "leaf", b"leaf\n", 0o444)
    os.symlink("tool", root / "bin" / "alias")
    os.symlink("/etc/motd", root / "bin" / "absolute")
    os.symlink("../nowhere/at/all", root / "var" / "dangling")
    os.chmod(root / "var" / "lib" / "deep", 0o700)
    if os.geteuid() == 0:
        os.chown(root / "var" / "lib", 1234, 5678)
    return root


def make_wide_tree(root: Path, files: int = 2000) -> Path:
    """``files`` small files (plus a few links) in 40 directories, like a real root file system."""
    rng = random.Random(2000)
    for i in range(files):
        folder = root / f"d{i % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.choice([0, 17, 300, 4096, 20_000, 70_000])
        _file(folder / f"f{i:04d}", rng.randbytes(size), rng.choice([0o644, 0o755, 0o600]))
        if i % 100 == 0:
            os.symlink(f"f{i:04d}", folder / f"l{i:04d}")
    return root


def describe_tree(root: Path, *, dir_times: bool = True) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``: kind, permission bits, owner, size and sha256 or link target,
    mtime (directories' mtimes only when ``dir_times``)."""
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted([root, *root.rglob("*")]):
        st = os.lstat(path)
        rel = "/" + path.relative_to(root).as_posix() if path != root else "/"
        if stat.S_ISLNK(st.st_mode):
            what: object = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            what = ("dir",)
        else:
            what = ("file", st.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        mtime = int(st.st_mtime) if dir_times or not stat.S_ISDIR(st.st_mode) else None
        perms = None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)
        out[rel] = (what, perms, st.st_uid, st.st_gid, mtime)
    return out
