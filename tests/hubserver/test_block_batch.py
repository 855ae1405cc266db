"""``GET /blocks/batch?ids=...`` (hubserver/block_batch.py) on a real hub: every block asked for, in
order, framed with its id and size; a block not held (or too big to batch) is an absent frame; a
query off the wire is a 400 that says why; the single-block answers are unchanged."""

from __future__ import annotations

import hashlib
import os

import httpx

from tests.support.hub import TOKEN_A, HubFactory
from zos_upgrade.flist.stores.batch_wire import CONTENT_TYPE, MAX_BATCH_IDS, frame_head
from zos_upgrade.hubserver.block_fast import FAST_MAX_BYTES


def test_a_batch_frames_each_block_in_the_order_asked(start_hub: HubFactory) -> None:
    datas = [os.urandom(n) for n in (1, 3000, 200_000)] + [os.urandom(FAST_MAX_BYTES + 1)]
    ids = [hashlib.blake2b(d, digest_size=32).digest() for d in datas]
    short_id = hashlib.blake2b(b"v1", digest_size=16).digest()  # a v1 id, never stored
    config = f'max_block_bytes = {2 * FAST_MAX_BYTES}\n[tokens]\n"{TOKEN_A}" = "alpha"\n'
    with start_hub(blocks=True, config=config) as hub:
        auth = {"Authorization": f"bearer {TOKEN_A}"}
        for block_id, data in zip(ids, datas, strict=True):
            put = httpx.put(f"{hub.url}/blocks/{block_id.hex()}", content=data, headers=auth)
            assert put.status_code == 201
        with httpx.Client(base_url=hub.url) as client:
            asked = [ids[2], bytes(32), ids[0], short_id, ids[3], ids[1], ids[0]]
            got = client.get("/blocks/batch", params={"ids": ",".join(i.hex() for i in asked)})
            assert got.status_code == 200 and got.headers["content-type"] == CONTENT_TYPE
            # the biggest block is more than the fast path reads: absent here, the route serves it
            want = {ids[0]: datas[0], ids[1]: datas[1], ids[2]: datas[2]}
            expected = b"".join(frame_head(i, len(want[i]) if i in want else None) + want.get(i, b"")
                                for i in asked)
            assert got.content == expected and int(got.headers["content-length"]) == len(expected)
            assert got.headers["access-control-allow-origin"] == "*"
            assert client.get(f"/blocks/{ids[3].hex()}").content == datas[3]
            head = client.head("/blocks/batch", params={"ids": ids[1].hex()})
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) == len(frame_head(ids[1], 0)) + len(datas[1])
            for query, reason in (
                ({"ids": "nothex"}, "not 32 or 64 lower-case hex digits"),
                ({"ids": ids[0].hex().upper()}, "not 32 or 64 lower-case hex digits"),
                ({"ids": ",".join([ids[0].hex()] * (MAX_BATCH_IDS + 1))}, f"at most {MAX_BATCH_IDS}"),
                ({"id": ids[0].hex()}, "expected the query ids="),
                ({}, "expected the query ids="),
            ):
                refused = client.get("/blocks/batch", params=query)
                assert refused.status_code == 400 and reason in refused.text, (query, refused.text)
            # only GET and HEAD are batches: anything else is the app's answer, never a block
            assert client.post("/blocks/batch", content=b"x").status_code in (404, 405)
