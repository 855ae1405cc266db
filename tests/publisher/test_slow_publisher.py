"""Issue 16 items 4 and 5 for the release server: its answers trickled get the whole fetch's deadline,
and answers compressed by a proxy in front of `release serve` are decoded and still verify."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.publisher.conftest import VERSIONS, Site
from tests.support.shaping_proxy import shaping_proxy
from zos_upgrade.net import Backoff, DeadlineExceeded, RetryPolicy
from zos_upgrade.publisher import HTTPPublisher
from zos_upgrade.versions import parse_version

# only the overall deadline can stop a trickle: no minimum rate, a generous per-attempt deadline
TOTAL_ONLY = RetryPolicy(attempts=4, backoff=Backoff(base=0.01, cap=0.01), deadline=30.0, total=1.0,
                         min_rate=0)


def test_trickled_release_answers_fail_within_the_whole_fetch_deadline(release_url: str, site: Site) -> None:
    async def listing(base: str) -> None:
        async with HTTPPublisher(base, [site.key.public_key()], retry=TOTAL_ONLY) as publisher:
            await publisher.list()

    with shaping_proxy(release_url, "trickle", 0.1) as slow:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"/versions: no complete answer within the 1s allowed"):
            asyncio.run(listing(slow))
        assert time.monotonic() - started < 3.0
    asyncio.run(listing(release_url))  # the server itself still answers


def test_compressed_release_answers_are_decoded_and_verify(release_url: str, static_url: str,
                                                           site: Site) -> None:
    async def everything(base: str) -> None:
        async with HTTPPublisher(base, [site.key.public_key()], retry=TOTAL_ONLY) as publisher:
            assert [str(v) for v in await publisher.list()] == list(VERSIONS)
            upgrade = await publisher.get(parse_version("0.2.0"))  # signature checked on decoded bytes
            assert await publisher.download(upgrade) == site.flist("0.2.0").read_bytes()

    with shaping_proxy(release_url, "gzip") as proxy:
        asyncio.run(everything(proxy))
