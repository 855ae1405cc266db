"""``get_many`` of the event loop's ``http://`` store and of a router (what a partial materialize's
prefetch asks): blocks travel in one batch GET where the server answers them (``batch_wire``), one
GET each where it does not; a batch answer off the wire is a StoreError for its blocks, and nothing
it carried is handed out. The scripted server of ``test_http_batch`` plays the store; the batch of
our real hub is in ``tests/flist/test_prefetch.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.flist.stores.test_http_batch import (
    BLOCKS,
    IDS,
    Answer,
    Scripted,
    bad_id_length,
    head,
    overlong,
    server,
    swapped,
    too_long_for_its_blocks,
    trailing,
)
from zos_upgrade import net
from zos_upgrade.flist.stores import BlockMissing, DirStore, HttpStore, Route, Router, StoreError
from zos_upgrade.flist.stores.base import Fetched, get_many
from zos_upgrade.flist.stores.batch_wire import frame_head

__all__ = ["server"]  # the fixture, used by name

QUICK = net.RetryPolicy(attempts=1, deadline=2.0, total=2.0)


def fetch(store: object, ids: list[bytes]) -> Fetched:
    async def body() -> Fetched:
        try:
            return await get_many(store, ids)  # type: ignore[arg-type]
        finally:
            await store.aclose()  # type: ignore[attr-defined]

    return asyncio.run(body())


def http(server: Scripted) -> HttpStore:
    return HttpStore(server.url, retry=QUICK)


def batch_answer(ids: list[bytes]) -> bytes:
    """Every block asked for that the server holds, and an absent frame for any other."""
    body = b"".join(frame_head(i, len(BLOCKS[i])) + BLOCKS[i] if i in BLOCKS else frame_head(i, None)
                    for i in ids)
    return head("200 OK", len(body)) + body


def test_blocks_travel_in_one_batch_get(server: Scripted) -> None:
    server.answer = [batch_answer]
    assert fetch(http(server), IDS) == BLOCKS
    assert server.paths == ["/blocks/batch?ids=" + ",".join(i.hex() for i in IDS)]


def test_a_server_without_batches_is_asked_block_by_block_and_not_asked_for_batches_again(
        server: Scripted) -> None:
    store = http(server)

    async def twice() -> tuple[Fetched, Fetched]:
        try:
            return await store.get_many(IDS[:2]), await store.get_many(IDS[2:])
        finally:
            await store.aclose()

    first, second = asyncio.run(twice())
    assert {**first, **second} == BLOCKS
    assert sum("/batch?" in p for p in server.paths) == 1  # learnt from the first answer
    assert len(server.paths) == 1 + len(IDS)


def test_a_page_answering_every_path_is_not_taken_for_a_batch(server: Scripted) -> None:
    page = b"<html>welcome</html>"
    server.answer = [lambda ids: head("200 OK", len(page), "text/html") + page]
    assert fetch(http(server), IDS) == BLOCKS


def test_a_block_the_batch_says_it_lacks_is_block_missing(server: Scripted) -> None:
    absent = bytes(32)
    server.answer = [batch_answer]
    got = fetch(http(server), [IDS[0], absent, IDS[1]])
    assert got[IDS[0]] == BLOCKS[IDS[0]] and got[IDS[1]] == BLOCKS[IDS[1]]
    assert isinstance(got[absent], BlockMissing)


@pytest.mark.parametrize(("answer", "reason"), [
    (overlong, "bytes short"),
    (swapped, "was due"),
    (bad_id_length, "was due"),
    (trailing, "after the last frame"),
    (too_long_for_its_blocks, "more than the"),
])
def test_a_batch_answer_off_the_wire_is_a_store_error_and_hands_nothing_out(
        server: Scripted, answer: Answer, reason: str) -> None:
    server.answer = [answer]
    with pytest.raises(StoreError, match=reason):
        fetch(http(server), IDS)


def test_a_router_asks_each_store_once_for_what_the_stores_before_it_lacked(
        server: Scripted, tmp_path: Path) -> None:
    """A packer's ``dir://`` route the node lacks, then the hub: the dir store holds one block, the
    others come in one batch; a block no store holds is BlockMissing naming both."""
    server.answer = [batch_answer]
    local = DirStore(tmp_path / "local", "dir://local")
    asyncio.run(local.put(IDS[0], BLOCKS[IDS[0]]))
    stores = {"dir://local": local, "http://hub": http(server)}
    router = Router([Route(0, 255, "dir://local"), Route(0, 255, "http://hub")], opener=stores.__getitem__)
    absent = bytes(32)
    got = fetch(router, [*IDS, absent])
    assert {i: got[i] for i in IDS} == BLOCKS
    assert isinstance(got[absent], BlockMissing) and list(got[absent].stores) == ["dir://local", server.url]
    assert server.paths == ["/blocks/batch?ids=" + ",".join(i.hex() for i in [*IDS[1:], absent])]


def test_a_router_passes_over_a_failing_store_and_names_its_failure(server: Scripted, tmp_path: Path) -> None:
    server.answer = [swapped]
    good = DirStore(tmp_path / "good", "dir://good")
    for block_id in IDS[:2]:
        asyncio.run(good.put(block_id, BLOCKS[block_id]))
    stores = {"http://hub": http(server), "dir://good": good}
    router = Router([Route(0, 255, "http://hub"), Route(0, 255, "dir://good")], opener=stores.__getitem__)
    got = fetch(router, IDS)
    assert {i: got[i] for i in IDS[:2]} == {i: BLOCKS[i] for i in IDS[:2]}
    for block_id in IDS[2:]:
        failure = got[block_id]
        assert isinstance(failure, StoreError) and not isinstance(failure, BlockMissing)
        assert "was due" in str(failure)
