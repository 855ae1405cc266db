"""Flist pairs for the delta tests: a small tree packed, 1 of its files replaced, packed again; and a
TCP proxy on loopback that counts the bytes a server sends through it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import lzma
import os
import random
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from zos_upgrade.flist.delta import MAGIC
from zos_upgrade.flist.pack import pack
from zos_upgrade.flist.stores import open_store


def forged_delta(base: bytes, ops: bytes, **fields: object) -> bytes:
    """A delta for ``base`` with the op stream ``ops`` as given and header ``fields`` overridden."""
    doc = {"base_md5": hashlib.md5(base).hexdigest(), "target_md5": "0" * 32, "target_size": 10,
           "payload_size": 10, "container": "raw", **fields}
    header = msgspec.json.encode(doc)
    return MAGIC + struct.pack(">I", len(header)) + header + lzma.compress(ops)


def store_release_pair(hub_root: Path, old: Path, new: Path) -> None:
    """``alpha/zos:1.0.0.fl`` (old) and ``alpha/zos:1.1.0.fl`` (new), ``zos:latest.fl`` linking the new."""
    repo = hub_root / "alpha"
    repo.mkdir()
    (repo / "zos:1.0.0.fl").write_bytes(old.read_bytes())
    (repo / "zos:1.1.0.fl").write_bytes(new.read_bytes())
    (repo / "zos:latest.fl").symlink_to("zos:1.1.0.fl")


async def pack_into_dir(src: Path, out: Path, blocks: Path) -> None:
    """Pack ``src`` into the flist ``out``, its blocks into the folder ``blocks`` (``dir://``)."""
    store = open_store(f"dir://{blocks}")
    try:
        await pack(src, out, store)
    finally:
        await store.aclose()


def flist_pair(work: Path, suffix: str, files: int = 60) -> tuple[Path, Path]:
    """``(old, new)`` flist files of ``suffix`` (.fl or .flist): new has one file's content replaced."""
    rng = random.Random(f"{work}{suffix}")
    tree = work / f"tree{suffix}"
    for i in range(files):
        path = tree / f"d{i % 5}" / f"f{i:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(3000 + i))
    old, new = work / f"old{suffix}", work / f"new{suffix}"
    asyncio.run(pack_into_dir(tree, old, work / "blocks"))
    changed = tree / "d1" / "f001"
    changed.write_bytes(rng.randbytes(4000))
    os.utime(changed, (1_800_000_000, 1_800_000_000))
    asyncio.run(pack_into_dir(tree, new, work / "blocks"))
    return old, new


@dataclass
class CountingProxy:
    url: str
    received: list[int] = field(default_factory=lambda: [0])  # bytes the server sent to clients

    @property
    def bytes_down(self) -> int:
        return self.received[0]


@contextmanager
def counting_proxy(upstream_port: int) -> Iterator[CountingProxy]:
    """A TCP proxy on a free loopback port in front of ``127.0.0.1:upstream_port``."""
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = CountingProxy(f"http://127.0.0.1:{listener.getsockname()[1]}")
    lock = threading.Lock()

    def pipe(src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count:
                    with lock:
                        proxy.received[0] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", upstream_port))
            threading.Thread(target=pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=pipe, args=(server, client, True), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        listener.close()
