"""DirectWriter: a file's bytes written with O_DIRECT in aligned runs, the tail through the page cache,
and back to plain writes wherever the kernel refuses direct I/O."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zos_upgrade.flist import directio
from zos_upgrade.flist.directio import DirectWriter
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import DirStore

RUN = 1024 * 1024


def enforces_direct_io(directory: Path) -> bool:
    """True when direct writes in ``directory`` really go around the page cache: its file system
    refuses an unaligned one (a tmpfs takes any: it has nothing but the page cache)."""
    probe = directory / ".direct-io-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    except OSError:
        return False
    buffer = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        os.write(fd, memoryview(buffer)[:1])
        return False
    except OSError as exc:
        return exc.errno == errno.EINVAL
    finally:
        os.close(fd)
        probe.unlink()
        buffer.close()


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a file system with real direct I/O: the test's tmp_path when it is one, else a
    fresh one under /var/tmp (disk-backed by convention, also where /tmp is a tmpfs)."""
    if enforces_direct_io(tmp_path):
        yield tmp_path
        return
    var_tmp = Path(tempfile.mkdtemp(prefix="zu-direct-io-", dir="/var/tmp"))
    try:
        if not enforces_direct_io(var_tmp):
            pytest.skip("no file system with real direct I/O on this machine (tmp dir and /var/tmp)")
        yield var_tmp
    finally:
        shutil.rmtree(var_tmp)


def is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


def write_through(writer: DirectWriter, path: Path, pieces: list[bytes]) -> bool:
    """Write ``pieces`` into a new file at ``path`` through ``writer``; True when it went direct."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        went_direct = writer.start(fd)
        assert is_direct(fd) == went_direct
        if not went_direct:  # the caller's own plain writes, as write_blocks does
            os.write(fd, b"".join(pieces))
            return False
        for piece in pieces:
            writer.write(piece)
        writer.finish()
        assert not is_direct(fd)  # whoever writes to the descriptor next writes plainly
    finally:
        os.close(fd)
    return went_direct


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, RUN - 1, RUN, RUN + 1, 3 * RUN + 123])
def test_every_size_is_written_exactly(disk_dir: Path, size: int) -> None:
    data = os.urandom(size)
    writer = DirectWriter()
    assert write_through(writer, disk_dir / "f", [data])
    assert (disk_dir / "f").read_bytes() == data
    writer.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 700_000), max_size=8))
def test_any_split_into_pieces_gives_the_same_file(disk_dir: Path, sizes: list[int]) -> None:
    pieces = [os.urandom(size) for size in sizes]
    writer = DirectWriter()  # one writer, file after file, as a worker uses it
    for index in range(2):
        path = disk_dir / f"f{len(os.listdir(disk_dir))}-{index}"
        write_through(writer, path, pieces)
        assert path.read_bytes() == b"".join(pieces)
    writer.close()


def test_a_file_abandoned_half_way_does_not_leak_into_the_next(disk_dir: Path) -> None:
    writer = DirectWriter()
    fd = os.open(disk_dir / "abandoned", os.O_WRONLY | os.O_CREAT, 0o600)
    writer.start(fd)
    writer.write(b"x" * (RUN + 5000))  # one run written, 5000 bytes still buffered; then an error
    os.close(fd)
    assert write_through(writer, disk_dir / "next", [b"next file"])
    assert (disk_dir / "next").read_bytes() == b"next file"


def test_a_write_the_kernel_refuses_goes_through_the_page_cache(disk_dir: Path) -> None:
    # a direct write at an unaligned offset is refused (EINVAL): a real refusal, as from a disk whose
    # logical blocks are bigger than a page; the file still gets every byte, later files go plainly
    writer = DirectWriter()
    fd = os.open(disk_dir / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"!")  # the next write starts at offset 1
    assert writer.start(fd)
    data = os.urandom(RUN + 777)
    writer.write(data)
    writer.finish()
    os.close(fd)
    assert (disk_dir / "f").read_bytes() == b"!" + data
    assert not writer.supported
    assert not write_through(writer, disk_dir / "g", [data])
    assert (disk_dir / "g").read_bytes() == data


def test_a_file_system_without_direct_io_gets_plain_writes(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for a file system that refuses O_DIRECT when it is set (ramfs, some FUSE mounts): none
    # can be mounted here without privileges, so F_SETFL with O_DIRECT fails the way they fail.
    real_fcntl = fcntl.fcntl

    def refusing(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(directio.fcntl, "fcntl", refusing)
    writer = DirectWriter()
    data = os.urandom(2 * RUN + 3)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    assert not writer.start(fd) and not writer.supported
    os.write(fd, data)  # the caller writes plainly
    os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


def resident_pages(path: Path) -> tuple[int, int]:
    """(pages of ``path`` in the page cache, pages in all), from mincore(2) on a mapping of it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(b & 1 for b in vec.raw), pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


@pytest.mark.parametrize("workers", [0, 1], ids=["threads", "processes"])
def test_materialize_writes_big_files_around_the_page_cache(disk_dir: Path, workers: int) -> None:
    # a big file goes to disk directly: none of its full pages are cached afterwards (written through
    # the page cache, all of them would be); a small one is written plainly
    big, small = os.urandom(3 * RUN + 1000), os.urandom(10_000)
    (disk_dir / "src").mkdir()
    (disk_dir / "src" / "big").write_bytes(big)
    (disk_dir / "src" / "small").write_bytes(small)
    store = DirStore(disk_dir / "blocks")
    asyncio.run(pack(disk_dir / "src", disk_dir / "rel.fl", store))
    asyncio.run(materialize(disk_dir / "rel.fl", disk_dir / "dest", store=store, workers=workers))
    cached, pages = resident_pages(disk_dir / "dest" / "big")
    assert pages == 769 and cached <= 1  # at most the page of the tail
    assert resident_pages(disk_dir / "dest" / "small") == (3, 3)
    assert (disk_dir / "dest" / "big").read_bytes() == big
    assert (disk_dir / "dest" / "small").read_bytes() == small
