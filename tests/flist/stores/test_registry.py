"""Opening a store by its URL: the registry of schemes, bad URLs, what opening one imports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from urllib.parse import SplitResult

import pytest

from zos_upgrade.flist.stores import BlockStore, Router, StoreError, open_store, registry


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("dir://relative/path", "dir:///absolute"),
        ("ftp://host/blocks", "unsupported"),
        ("zdb:///ns", "zdb://"),
        ("http:///nohost", "no host"),
        ("zdb://host:notaport/x", "invalid store URL"),
        ("zdb://host/a/b", "not one name"),
        ("blocks", "unsupported"),
    ],
)
def test_bad_store_urls(url: str, why: str) -> None:
    with pytest.raises(StoreError, match=why):
        open_store(url)


def test_redis_is_imported_only_when_a_zdb_store_is_first_asked_on_the_event_loop() -> None:
    """redis-py costs every CLI start a noticeable fraction of a second; only zdb:// reads need it
    (a pack's uploads go through upload_missing, our own RESP2 client)."""
    code = textwrap.dedent("""
        import asyncio, sys
        import zos_upgrade.cli, zos_upgrade.flist.stores as stores
        before = "redis" in sys.modules
        stores.open_store("dir:///tmp")
        after_dir = "redis" in sys.modules
        stores.open_store("zdb://127.0.0.1:1/default")
        after_open = "redis" in sys.modules
        try:
            asyncio.run(stores.ZdbStore("127.0.0.1", 1, attempts=1, timeout=1).has(bytes(16)))
        except stores.StoreError:
            pass
        print(before, after_dir, after_open, "redis" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60)
    assert out.stdout.split() == ["False", "False", "False", "True"]


# --- the registry: a scheme is one opener ------------------------------------------------------------


class _MemoryStore:
    """A store a test registers under its own scheme."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.blocks: dict[bytes, bytes] = {}

    async def get(self, block_id: bytes) -> bytes:
        return self.blocks[block_id]

    async def put(self, block_id: bytes, data: bytes) -> None:
        self.blocks[block_id] = data

    async def has(self, block_id: bytes) -> bool:
        return block_id in self.blocks

    async def aclose(self) -> None:
        return None


def test_an_unknown_scheme_names_every_registered_one() -> None:
    with pytest.raises(StoreError) as info:
        open_store("gs://bucket/blocks")
    assert str(info.value) == (
        "unsupported store URL 'gs://bucket/blocks': expected dir://, http://, https://, zdb:// or s3://"
    )


def test_a_registered_scheme_is_opened_by_url_and_through_a_router(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, str]] = []

    def open_memory(url: str, parts: SplitResult) -> BlockStore:
        opened.append((url, parts.netloc))
        return _MemoryStore(url)

    monkeypatch.setitem(registry.OPENERS, "mem", open_memory)
    store = open_store("mem://pool-a")
    assert isinstance(store, _MemoryStore) and opened == [("mem://pool-a", "pool-a")]

    router = Router.single("mem://pool-b")
    asyncio.run(router.put(b"\x01" * 32, b"stored"))
    assert asyncio.run(router.get(b"\x01" * 32)) == b"stored"
    assert opened[-1] == ("mem://pool-b", "pool-b")
    with pytest.raises(StoreError, match=r"expected dir://, http://, https://, zdb://, s3:// or mem://"):
        open_store("nope://x")


def test_every_registered_scheme_refuses_a_url_without_its_parts() -> None:
    for scheme in registry.OPENERS:
        with pytest.raises(StoreError, match="invalid store URL"):
            open_store(f"{scheme}://")
