"""The block GET's fast path (hubserver/block_fast.py) answers like the block route it stands in
front of: same status, headers and body for a held block, its HEAD and its 304; anything else is
the route's answer (JSON 404s, Range, a block larger than the fast path reads)."""

from __future__ import annotations

import hashlib
import os

import httpx

from tests.support.hub import TOKEN_A, HubFactory
from zos_upgrade.hubserver.block_fast import FAST_MAX_BYTES

_VARYING = {"date", "server"}


def answer(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in _VARYING}
    return response.status_code, headers, response.content


def test_fast_answers_match_the_routes(start_hub: HubFactory) -> None:
    small, large = os.urandom(3000), os.urandom(FAST_MAX_BYTES + 10)  # large: the route answers it
    ids = {name: hashlib.blake2b(data, digest_size=32).hexdigest() for name, data in
           (("small", small), ("large", large))}
    config = f'max_block_bytes = {2 * FAST_MAX_BYTES}\n[tokens]\n"{TOKEN_A}" = "alpha"\n'
    with start_hub(blocks=True, config=config) as hub:
        auth = {"Authorization": f"bearer {TOKEN_A}"}
        for name, data in (("small", small), ("large", large)):
            assert httpx.put(f"{hub.url}/blocks/{ids[name]}", content=data, headers=auth).status_code == 201
        with httpx.Client(base_url=hub.url) as client:
            def url(name: str) -> str:
                return f"/blocks/{ids[name][:2]}/{ids[name]}"

            fast, routed = answer(client.get(url("small"))), answer(client.get(url("large")))
            assert fast[0] == routed[0] == 200 and fast[2] == small and routed[2] == large
            assert fast[1].keys() == routed[1].keys()
            assert fast[1]["etag"] == f'"{ids["small"]}"'
            assert fast[1]["content-type"] == routed[1]["content-type"] == "application/octet-stream"
            assert fast[1]["access-control-allow-origin"] == "*" and fast[1]["accept-ranges"] == "bytes"
            head = answer(client.head(url("small")))
            assert head[0] == 200 and head[1] == fast[1] and head[2] == b""
            for inm in (f'"{ids["small"]}"', f'W/"{ids["small"]}"', "*", f'"x", "{ids["small"]}"'):
                cached = client.get(url("small"), headers={"If-None-Match": inm})
                assert cached.status_code == 304 and cached.content == b""
            assert client.get(url("small"), headers={"If-None-Match": '"other"'}).content == small
            # the flat layout, Range, a wrong shard, a block not held: as the route answers them
            assert client.get(f"/blocks/{ids['small']}").content == small
            part = client.get(url("small"), headers={"Range": "bytes=10-19"})
            assert part.status_code == 206 and part.content == small[10:20]
            assert client.get(f"/blocks/ff/{ids['small']}").json()["status"] == "error"
            missing = client.get(f"/blocks/00/{'00' * 32}")
            assert missing.status_code == 404 and missing.json() == {"status": "error",
                                                                    "message": "block not found"}
            assert client.get("/blocks/zz/nothex").status_code == 404
            # a PUT on the same path is never taken by the fast path
            assert client.put(url("small"), content=small).status_code in (401, 404, 405)
