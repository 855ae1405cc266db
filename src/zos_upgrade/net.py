"""The one place that turns an HTTP request into bytes: timeouts, retries with backoff, size limits.

Used by the publisher client, the hub client and the ``http(s)://`` block store, so they all retry
the same way: on connection errors, timeouts and 5xx answers, never on 4xx; and none of them ever
reads more than it was told to expect.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx

from zos_upgrade.errors import ZosUpgradeError

__all__ = [
    "SERVER_KEEP_ALIVE",
    "Backoff",
    "FetchResult",
    "HTTPStatusError",
    "NetworkError",
    "NotFound",
    "ResponseTooLarge",
    "RetryPolicy",
    "TransportError",
    "fetch",
]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Our servers keep an idle connection open longer than any client keeps it in its pool (httpx: 5 s),
# so it is always the client that closes: otherwise a request sent on a connection the server is
# closing at that instant fails with "Server disconnected" and costs a retry.
SERVER_KEEP_ALIVE = 75


class TransportError(ZosUpgradeError):
    """Something went wrong talking to a server."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class NetworkError(TransportError):
    """The server could not be reached, timed out, or kept failing (after every retry)."""


class ResponseTooLarge(TransportError):
    """The server sent more bytes than the caller allows for this resource."""


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
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _attempt(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int,
    headers: Mapping[str, str] | None,
    content: bytes | None,
) -> FetchResult:
    try:
        async with client.stream(method, url, headers=headers, content=content) as response:
            if response.status_code >= 500:
                raise _Retryable(f"server error {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ResponseTooLarge(
                    f"{url}: response declares {declared} bytes, more than the {max_bytes} allowed", url=url
                )
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > max_bytes:
                    raise ResponseTooLarge(
                        f"{url}: response is larger than the {max_bytes} bytes allowed", url=url
                    )
                chunks.append(chunk)
            return FetchResult(url, response.status_code, dict(response.headers), b"".join(chunks))
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


async def fetch(
    client: httpx.AsyncClient,
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
    status (4xx are never retried), :class:`ResponseTooLarge` past ``max_bytes``, and
    :class:`NetworkError` once every attempt failed.
    """
    policy = retry or RetryPolicy()
    last_reason = "no attempt made"
    for attempt in range(1, policy.attempts + 1):
        try:
            async with asyncio.timeout(policy.deadline):
                result = await _attempt(
                    client, method, url, max_bytes=max_bytes, headers=headers, content=content
                )
        except _Retryable as exc:
            last_reason = exc.reason
        except TimeoutError:
            last_reason = f"no complete answer within {policy.deadline:g}s"
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
    raise NetworkError(f"{method} {url}: failed after {policy.attempts} attempts: {last_reason}", url=url)
