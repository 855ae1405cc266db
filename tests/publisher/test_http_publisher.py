"""``HTTPPublisher`` over loopback: against the release server, Python's http.server, and hostile servers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import msgspec
import pytest

from tests.publisher.conftest import VERSIONS, Answer, ScriptedServer, Site
from zos_upgrade.net import NetworkError, NotFound, ResponseTooLarge, RetryPolicy
from zos_upgrade.publisher import (
    BadSignature,
    DuplicateVersions,
    HashMismatch,
    HTTPPublisher,
    InvalidAnswer,
    LatestNotListed,
    PublisherError,
    ReplayedRelease,
    UnknownKey,
    UnsignedRelease,
    Upgrade,
)
from zos_upgrade.publisher.signing import flist_hash, generate_key, sign_upgrade
from zos_upgrade.versions import parse_version

T = TypeVar("T")

FAST = RetryPolicy(attempts=3, deadline=2.0)


async def _no_sleep(_: float) -> None:
    return None


def run(publisher: HTTPPublisher, call: Callable[[HTTPPublisher], Awaitable[T]]) -> T:
    """Run one call on ``publisher`` in a fresh event loop, closing its client afterwards."""

    async def body() -> T:
        async with publisher:
            return await call(publisher)

    return asyncio.run(body())


def statuses_seen() -> tuple[list[int], httpx.AsyncClient]:
    """A client that records the status of every answer it gets."""
    seen: list[int] = []

    async def record(response: httpx.Response) -> None:
        seen.append(response.status_code)

    return seen, httpx.AsyncClient(timeout=5, event_hooks={"response": [record]})


@pytest.mark.parametrize("server", ["release_url", "static_url"])
def test_list_latest_get_and_download_verified(
    site: Site, server: str, request: pytest.FixtureRequest
) -> None:
    """The same client works against `release serve` and against a plain web server on the same tree."""
    base = request.getfixturevalue(server) + ("/releases" if server == "static_url" else "")
    request.getfixturevalue("static_url")  # the flists are always downloaded from the plain server

    async def everything(publisher: HTTPPublisher) -> None:
        assert [str(v) for v in await publisher.list()] == list(VERSIONS)
        assert await publisher.latest() == parse_version("1.0.0")
        upgrade = await publisher.get(parse_version("0.2.0"))
        assert upgrade.version == "0.2.0" and upgrade.flist == site.flist_url("0.2.0")
        assert await publisher.download(upgrade) == site.flist("0.2.0").read_bytes()

    run(HTTPPublisher(base, [site.key.public_key()], retry=FAST), everything)


@pytest.mark.parametrize(("server", "validator"), [("release_url", "if-none-match"),
                                                   ("static_url", "if-modified-since")])
def test_polling_an_unchanged_server_gets_304_and_reuses_the_answer(
    site: Site, server: str, validator: str, request: pytest.FixtureRequest
) -> None:
    base = request.getfixturevalue(server) + ("/releases" if server == "static_url" else "")
    seen, client = statuses_seen()

    async def poll_twice(publisher: HTTPPublisher) -> None:
        first = (await publisher.list(), await publisher.get(parse_version("1.0.0")))
        second = (await publisher.list(), await publisher.get(parse_version("1.0.0")))
        assert first == second
        await client.aclose()

    run(HTTPPublisher(base, [site.key.public_key()], client=client, retry=FAST), poll_twice)
    assert seen == [200, 200, 304, 304]


def test_trusted_keys_must_be_an_explicit_choice(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(PublisherError, match="no trusted keys"):
        HTTPPublisher("http://127.0.0.1:1", [])
    with pytest.raises(PublisherError, match="http:// or https://"):
        HTTPPublisher("ftp://releases", None)
    with caplog.at_level(logging.WARNING):
        run(HTTPPublisher("http://127.0.0.1:1", None), lambda p: asyncio.sleep(0))
    assert "verification is OFF" in caplog.text


def test_verification_off_returns_unverified_objects(site: Site, release_url: str) -> None:
    upgrade = run(HTTPPublisher(release_url, None), lambda p: p.get(parse_version("0.1.0")))
    assert upgrade.flist == site.flist_url("0.1.0")


# --- hostile and broken servers -------------------------------------------------------------------


def publisher_for(server: ScriptedServer, *keys: object, **kwargs: object) -> HTTPPublisher:
    trusted = list(keys) if keys else [generate_key().public_key()]
    return HTTPPublisher(server.url, trusted, retry=FAST, sleep=_no_sleep, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b'["0.1.0", "0.2', InvalidAnswer, "not valid JSON"),
        (b"42", InvalidAnswer, "wrong shape"),
        (b'{"0.1.0": {}}', InvalidAnswer, "wrong shape"),
        (b'["0.1.0", "zero.two"]', InvalidAnswer, "'zero.two' is not a semver"),
        (b'["0.1.0", "0.2.0", "0.1.0"]', DuplicateVersions, "0.1.0 more than once"),
    ],
)
def test_bad_versions_answers_are_typed_errors(
    scripted: ScriptedServer, body: bytes, error: type[Exception], message: str
) -> None:
    scripted.script["/versions"] = [Answer(200, body)]
    with pytest.raises(error, match=message) as caught:
        run(publisher_for(scripted), lambda p: p.list())
    assert f"{scripted.url}/versions" in str(caught.value)


@pytest.mark.parametrize(("declare_length", "message"), [(True, "declares 10485764 bytes"),
                                                        (False, "larger than the 1048576 bytes allowed")])
def test_a_10_mb_answer_is_refused(scripted: ScriptedServer, declare_length: bool, message: str) -> None:
    huge = b'["' + b"1" * (10 << 20) + b'"]'
    scripted.script["/versions"] = [Answer(200, huge, declare_length=declare_length)]
    with pytest.raises(ResponseTooLarge, match=message):
        run(publisher_for(scripted), lambda p: p.list())
    assert scripted.hits["/versions"] == 1  # too large is not transient: no retry


def test_latest_must_be_listed_and_semver(scripted: ScriptedServer) -> None:
    scripted.script["/versions"] = [Answer(200, b'["0.1.0", "0.2.0"]')]
    scripted.script["/latest"] = [Answer(200, b'"0.3.0"')]
    with pytest.raises(LatestNotListed, match=r"latest is 0\.3\.0"):
        run(publisher_for(scripted), lambda p: p.latest())
    scripted.script["/latest"] = [Answer(200, b"3")]
    with pytest.raises(InvalidAnswer, match="wrong shape"):
        run(publisher_for(scripted), lambda p: p.latest())
    scripted.script["/latest"] = [Answer(200, b'"latest"')]
    with pytest.raises(InvalidAnswer, match="not a semver"):
        run(publisher_for(scripted), lambda p: p.latest())


def test_a_server_that_hangs_times_out(hanging_url: str) -> None:
    publisher = HTTPPublisher(
        hanging_url, None, timeout=0.2, retry=RetryPolicy(attempts=2, deadline=1.0), sleep=_no_sleep
    )
    with pytest.raises(NetworkError, match="failed after 2 attempts"):
        run(publisher, lambda p: p.list())


def test_500_then_200_is_retried(scripted: ScriptedServer) -> None:
    scripted.script["/versions"] = [Answer(500, b"oops"), Answer(503), Answer(200, b'["1.0.0"]')]
    assert run(publisher_for(scripted), lambda p: p.list()) == [parse_version("1.0.0")]
    assert scripted.hits["/versions"] == 3


def test_404_is_not_retried(scripted: ScriptedServer) -> None:
    with pytest.raises(NotFound, match="404"):
        run(publisher_for(scripted), lambda p: p.get(parse_version("7.0.0")))
    assert scripted.hits["/7.0.0"] == 1


def test_a_bad_answer_changes_nothing_the_client_holds(scripted: ScriptedServer) -> None:
    """After a refused answer, the last good one is still what a 304 revalidates."""
    scripted.script["/versions"] = [
        Answer(200, b'["1.0.0"]', {"ETag": '"good"'}),
        Answer(200, b"[garbage", {"ETag": '"bad"'}),
        Answer(304, b"", {"ETag": '"good"'}),
    ]

    async def poll(publisher: HTTPPublisher) -> None:
        assert await publisher.list() == [parse_version("1.0.0")]
        with pytest.raises(InvalidAnswer):
            await publisher.list()
        assert await publisher.list() == [parse_version("1.0.0")]

    run(publisher_for(scripted), poll)
    assert [h.get("if-none-match") for h in scripted.request_headers] == [None, '"good"', '"good"']


def test_an_unprompted_304_is_an_invalid_answer(scripted: ScriptedServer) -> None:
    scripted.script["/latest"] = [Answer(304)]
    with pytest.raises(InvalidAnswer, match="not conditional"):
        run(publisher_for(scripted), lambda p: p.latest())


def _serve_release(scripted: ScriptedServer, version: str, obj: dict[str, str]) -> None:
    scripted.script[f"/{version}"] = [Answer(200, json.dumps(obj).encode())]


def test_release_objects_are_verified(scripted: ScriptedServer) -> None:
    key, stranger = generate_key(), generate_key()
    flist = f"{scripted.url}/app.fl"
    good = sign_upgrade(parse_version("1.0.0"), flist, flist_hash(b"flist"), key)
    cases: list[tuple[str, dict[str, str], type[Exception], str]] = [
        ("1.0.0", {"flist": flist, "transaction_id": "", "signature": ""}, UnsignedRelease, "no signature"),
        ("1.0.0", msgspec.to_builtins(sign_upgrade(parse_version("1.0.0"), flist, good.hash, stranger)),
         UnknownKey, "not among the 1 trusted"),
        ("1.0.0", {**msgspec.to_builtins(good), "flist": f"{scripted.url}/evil.fl"}, BadSignature,
         "does not verify"),
        ("2.0.0", msgspec.to_builtins(good), ReplayedRelease, "release of 1.0.0"),
        ("2.0.0", {**msgspec.to_builtins(good), "version": ""}, BadSignature, "does not verify"),
    ]
    for version, obj, error, message in cases:
        _serve_release(scripted, version, obj)
        with pytest.raises(error, match=message) as caught:
            run(publisher_for(scripted, key.public_key()), lambda p: p.get(parse_version(version)))  # noqa: B023
        assert f"{scripted.url}/{version}" in str(caught.value)


def test_a_downloaded_flist_must_match_the_hash(scripted: ScriptedServer) -> None:
    key = generate_key()
    pinned = flist_hash(b"the real flist")
    upgrade = sign_upgrade(parse_version("1.0.0"), f"{scripted.url}/app.fl", pinned, key)
    _serve_release(scripted, "1.0.0", msgspec.to_builtins(upgrade))
    scripted.script["/app.fl"] = [Answer(200, b"a tampered flist")]

    async def fetch_and_download(publisher: HTTPPublisher) -> bytes:
        return await publisher.download(await publisher.get(parse_version("1.0.0")))

    with pytest.raises(HashMismatch, match=upgrade.hash):
        run(publisher_for(scripted, key.public_key()), fetch_and_download)
    scripted.script["/app.fl"] = [Answer(200, b"the real flist")]
    assert run(publisher_for(scripted, key.public_key()), fetch_and_download) == b"the real flist"


def test_a_last_modified_too_close_to_the_answer_is_not_used_to_revalidate(scripted: ScriptedServer) -> None:
    """Within the same second a file can change unseen: only an older Last-Modified may validate."""
    fresh = {"Date": "Wed, 25 Nov 2026 10:00:00 GMT", "Last-Modified": "Wed, 25 Nov 2026 10:00:00 GMT"}
    old = {"Date": "Wed, 25 Nov 2026 10:00:05 GMT", "Last-Modified": "Wed, 25 Nov 2026 10:00:00 GMT"}
    scripted.script["/versions"] = [Answer(200, b'["1.0.0"]', fresh), Answer(200, b'["1.0.0"]', old),
                                    Answer(304, b"", old)]

    async def poll(publisher: HTTPPublisher) -> None:
        for _ in range(3):
            assert await publisher.list() == [parse_version("1.0.0")]

    run(publisher_for(scripted), poll)
    assert [h.get("if-modified-since") for h in scripted.request_headers] == [
        None, None, "Wed, 25 Nov 2026 10:00:00 GMT"
    ]


def test_an_unhashed_release_is_downloaded_only_with_verification_off(scripted: ScriptedServer) -> None:
    scripted.script["/app.fl"] = [Answer(200, b"old-style flist")]
    unhashed = Upgrade(flist=f"{scripted.url}/app.fl", version="0.1.0")
    with pytest.raises(UnsignedRelease, match="carries no hash"):
        run(publisher_for(scripted), lambda p: p.download(unhashed))
    assert scripted.hits["/app.fl"] == 0
    off = HTTPPublisher(scripted.url, None, retry=FAST, sleep=_no_sleep)
    assert run(off, lambda p: p.download(unhashed)) == b"old-style flist"
