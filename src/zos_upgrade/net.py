"""The one place that turns an HTTP request into bytes: timeouts, retries with backoff, size limits.

Used by the publisher client, the hub client and the ``http(s)://`` block store, so they all retry
the same way: on connection errors, timeouts and 5xx answers, never on 4xx; and none of them ever
reads more than it was told to expect.

Time is bounded three ways (:class:`RetryPolicy`): per read (the client's timeout), per attempt
(``deadline``), and for the whole fetch with every retry and backoff (``total``); and an answer must
keep arriving at ``min_rate`` bytes/s on average once ``grace`` seconds have passed since its head, so
a server that trickles a byte now and then is cut off instead of holding a fetch for minutes.

Compressed bodies are decoded here, never handed on raw: a hub or release server behind a compressing
proxy answers ``Content-Encoding: gzip`` whatever the origin does, and asking for ``identity`` cannot
stop a proxy that ignores it, so the answer is decoded -- gzip and deflate, the codings we advertise --
with ``max_bytes`` counted on the decoded bytes and the decoder never asked for more than the bytes
still allowed, so a small gzip bomb is stopped after ``max_bytes``, not after inflating in memory.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.leanhttp import LeanClient, LeanHTTPError, LeanResponse

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_FLIST_BYTES",
    "SERVER_KEEP_ALIVE",
    "Backoff",
    "BadEncoding",
    "DeadlineExceeded",
    "FetchResult",
    "HTTPStatusError",
    "NetworkError",
    "NotFound",
    "ResponseTooLarge",
    "RetryPolicy",
    "SlowTransfer",
    "TooSlow",
    "TransportError",
    "fetch",
]

# the largest flist file a node downloads, whichever source it comes from (hub, release server, TUF)
MAX_FLIST_BYTES = 256 * 1024 * 1024

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Our servers keep an idle connection open longer than any client keeps it in its pool (httpx: 5 s),
# so it is always the client that closes: otherwise a request sent on a connection the server is
# closing at that instant fails with "Server disconnected" and costs a retry.
SERVER_KEEP_ALIVE = 75

# the codings _Decoder undoes within a size limit; httpx would also offer br and zstd when their
# packages are installed, which we could not decode within a limit
ACCEPT_ENCODING = "gzip, deflate"


class TransportError(ZosUpgradeError):
    """Something went wrong talking to a server."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class NetworkError(TransportError):
    """The server could not be reached, timed out, or kept failing (after every retry)."""


class ResponseTooLarge(TransportError):
    """The server sent more bytes than the caller allows for this resource (counted decoded)."""


class BadEncoding(TransportError):
    """The answer is in a content coding we did not ask for, or its compressed bytes are corrupt."""


class SlowTransfer(NetworkError):
    """An answer did not arrive in time; says how much of it did (``received`` bytes, ``elapsed`` s)."""

    def __init__(self, message: str, *, url: str, received: int, elapsed: float) -> None:
        super().__init__(message, url=url)
        self.received = received
        self.elapsed = elapsed


class TooSlow(SlowTransfer):
    """Every attempt's answer arrived slower than the policy's ``min_rate``."""


class DeadlineExceeded(SlowTransfer):
    """The whole fetch, retries included, took longer than the policy's ``total``."""


class HTTPStatusError(TransportError):
    """The server answered with a status the caller did not expect."""

    def __init__(self, message: str, *, url: str, status: int) -> None:
        super().__init__(message, url=url)
        self.status = status


class NotFound(HTTPStatusError):
    """The server answered 404."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter; ``rng`` is injectable so tests are deterministic."""

    base: float = 0.2
    cap: float = 10.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        return float(ceiling / 2 + self.rng.uniform(0, ceiling / 2))


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff: Backoff = field(default_factory=Backoff)
    # a server that trickles bytes can dodge per-read timeouts; this bounds one whole attempt
    deadline: float = 60.0
    # ... and this the whole fetch: without it four attempts of a trickling server cost 4 x deadline
    total: float = 180.0
    # bytes/s an answer's body must average once `grace` s have passed since its head (0: no minimum);
    # measured from the head, not the request, so a server that thinks long before answering is fine
    min_rate: float = 1024.0
    grace: float = 10.0


@dataclass(frozen=True)
class FetchResult:
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")


class _Retryable(Exception):
    def __init__(self, reason: str, *, too_slow: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_slow = too_slow


@dataclass
class _Progress:
    """What the current attempt has received so far: what a deadline's error reports."""

    received: int = 0


class _Decoder:
    """Undo one content coding (identity, gzip, deflate) without ever producing more than ``limit``
    bytes in all: the decompressor is told how much it may still return."""

    def __init__(self, coding: str | None, url: str, limit: int) -> None:
        self._coding = (coding or "identity").strip().lower()
        if self._coding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise BadEncoding(
                f"{url}: answer has Content-Encoding {coding!r}; expected one of {ACCEPT_ENCODING} "
                f"or none", url=url,
            )
        self._url, self._limit, self._produced = url, limit, 0
        self._fed = False
        self._zlib: zlib._Decompress | None = None
        if self._coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        if self._coding == "identity":
            return self._count(data)
        if self._zlib is None:  # deflate: zlib-wrapped per RFC 9110, raw from some servers
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if data[:1] and (data[0] & 0x0F) == 8 else -15)
        self._fed = self._fed or bool(data)
        try:
            # one byte over the room is enough to know the limit is passed
            return self._count(self._zlib.decompress(data, self._limit - self._produced + 1))
        except zlib.error as exc:
            raise BadEncoding(f"{self._url}: corrupt {self._coding} body: {exc}", url=self._url) from exc

    def finish(self) -> None:
        if self._zlib is not None and self._fed and not self._zlib.eof:
            raise _Retryable(f"{self._coding} body ends before its compressed stream does")

    def _count(self, data: bytes) -> bytes:
        self._produced += len(data)
        if self._produced > self._limit:
            decoded = " decoded" if self._coding != "identity" else ""
            message = f"{self._url}: response is larger than the {self._limit} bytes allowed{decoded}"
            raise ResponseTooLarge(message, url=self._url)
        return data


_EXCERPT_BYTES = 200

def _transport_errors(*, every: bool = False) -> tuple[type[Exception], ...]:
    """The exceptions that mean the transport failed. httpx's only when httpx is loaded: a fetch
    through an httpx client has loaded it, and a process polling with the lean client never has to
    (``every``: all of httpx's errors, not only the transient ones)."""
    httpx = sys.modules.get("httpx")
    if httpx is None:
        return (LeanHTTPError,)
    if every:
        return (LeanHTTPError, httpx.HTTPError)
    return (LeanHTTPError, httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


async def _excerpt(response: httpx.Response | LeanResponse) -> str:
    """``": <the first bytes of the body>"`` of an error answer (its reason), or ``""``; never more."""
    data = b""
    try:
        async for chunk in response.aiter_raw():
            data += chunk
            if len(data) >= _EXCERPT_BYTES:
                break
    except _transport_errors(every=True):
        pass  # the reason is a courtesy: the status alone is still reported
    text = data[:_EXCERPT_BYTES].decode("utf-8", "replace").strip()
    return f": {text}" if text else ""


async def _attempt(
    client: httpx.AsyncClient | LeanClient,
    method: str,
    url: str,
    *,
    max_bytes: int,
    headers: Mapping[str, str] | None,
    content: bytes | None,
    policy: RetryPolicy,
    progress: _Progress,
    expect: tuple[int, ...] = (),
) -> FetchResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with client.stream(method, url, headers=headers, content=content) as response:
            # a 5xx the caller expects is an answer (the real 0-hub sends its upload refusals as 500
            # with the reason in JSON): returned, not retried; any other 5xx may pass and is retried,
            # its reason kept for the message should every attempt fail
            if response.status_code >= 500 and response.status_code not in expect:
                raise _Retryable(f"server error {response.status_code}{await _excerpt(response)}")
            coding = response.headers.get("content-encoding")
            declared = response.headers.get("content-length")
            if coding is None and declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ResponseTooLarge(
                    f"{url}: response declares {declared} bytes, more than the {max_bytes} allowed", url=url
                )
            decoder = _Decoder(coding, url, max_bytes)
            head_at = loop.time()

            def cutoff() -> float | None:
                # the moment the average since the head falls below min_rate unless more arrives
                if policy.min_rate <= 0:
                    return None
                return head_at + max(policy.grace, progress.received / policy.min_rate)

            chunks: list[bytes] = []
            try:
                async with asyncio.timeout(cutoff()) as watchdog:
                    async for chunk in response.aiter_raw():
                        progress.received += len(chunk)
                        watchdog.reschedule(cutoff())
                        chunks.append(decoder.feed(chunk))
            except TimeoutError:  # only the watchdog's own: an outer deadline arrives as a cancellation
                elapsed = loop.time() - started
                raise _Retryable(
                    f"{progress.received} bytes in {elapsed:.1f}s, slower than the {policy.min_rate:g} "
                    f"bytes/s required after {policy.grace:g}s", too_slow=True,
                ) from None
            decoder.finish()
            return FetchResult(url, response.status_code, dict(response.headers), b"".join(chunks))
    except _transport_errors() as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


async def fetch(
    client: httpx.AsyncClient | LeanClient,
    url: str,
    *,
    method: str = "GET",
    max_bytes: int,
    expect: tuple[int, ...] = (200,),
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    retry: RetryPolicy | None = None,
    sleep: Sleep = asyncio.sleep,
) -> FetchResult:
    """Request ``url``; retry transient failures; return the answer if its status is in ``expect``.

    Raises :class:`NotFound` on an unexpected 404, :class:`HTTPStatusError` on any other unexpected
    status (4xx are never retried), :class:`ResponseTooLarge` past ``max_bytes`` (decoded),
    :class:`BadEncoding` for a coding we did not offer, :class:`DeadlineExceeded` past the policy's
    ``total``, :class:`TooSlow` when the last attempt was under ``min_rate``, and :class:`NetworkError`
    once every attempt failed otherwise.
    """
    policy = retry or RetryPolicy()
    loop = asyncio.get_running_loop()
    started = loop.time()
    progress = _Progress()
    try:
        async with asyncio.timeout(policy.total):
            return await _attempts(
                client, method, url, max_bytes=max_bytes, expect=expect, content=content, policy=policy,
                sleep=sleep, progress=progress, started=started,
                headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})},
            )
    except TimeoutError:
        elapsed = loop.time() - started
        raise DeadlineExceeded(
            f"{method} {url}: no complete answer within the {policy.total:g}s allowed for the whole fetch "
            f"({progress.received} bytes of the last attempt received, {elapsed:.1f}s elapsed)",
            url=url, received=progress.received, elapsed=elapsed,
        ) from None


async def _attempts(
    client: httpx.AsyncClient | LeanClient,
    method: str,
    url: str,
    *,
    max_bytes: int,
    expect: tuple[int, ...],
    headers: Mapping[str, str],
    content: bytes | None,
    policy: RetryPolicy,
    sleep: Sleep,
    progress: _Progress,
    started: float,
) -> FetchResult:
    last_reason = "no attempt made"
    too_slow = False
    for attempt in range(1, policy.attempts + 1):
        progress.received = 0
        try:
            async with asyncio.timeout(policy.deadline):
                result = await _attempt(
                    client, method, url, max_bytes=max_bytes, headers=headers, content=content,
                    policy=policy, progress=progress, expect=expect,
                )
        except _Retryable as exc:
            last_reason, too_slow = exc.reason, exc.too_slow
        except TimeoutError:
            last_reason, too_slow = f"no complete answer within {policy.deadline:g}s", False
        else:
            if result.status in expect:
                return result
            excerpt = result.body[:200].decode("utf-8", "replace")
            message = f"{method} {url}: unexpected status {result.status} (expected {expect}): {excerpt}"
            if result.status == 404:
                raise NotFound(message, url=url, status=404)
            raise HTTPStatusError(message, url=url, status=result.status)
        if attempt < policy.attempts:
            delay = policy.backoff.delay(attempt)
            log.warning(
                "request failed, retrying",
                extra={"url": url, "attempt": attempt, "reason": last_reason, "delay": round(delay, 3)},
            )
            await sleep(delay)
    message = f"{method} {url}: failed after {policy.attempts} attempts: {last_reason}"
    if too_slow:
        elapsed = asyncio.get_running_loop().time() - started
        raise TooSlow(message, url=url, received=progress.received, elapsed=elapsed)
    raise NetworkError(message, url=url)
