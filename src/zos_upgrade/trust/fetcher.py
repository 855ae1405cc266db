"""HttpxFetcher: the only part of the node's TUF client that does network I/O (ngclient's FetcherInterface).

ngclient is synchronous, so this is a sync ``httpx.Client``; the node calls ``TrustedRepo`` in
``asyncio.to_thread``. What it adds to a plain GET, and why:

- connect/read timeouts, and a total deadline per download plus a minimum average rate after a
  grace period: a server that trickles bytes (slow retrieval) is cut, ``SlowRetrievalError``;
- its own byte cap on every download, whatever ``max_length`` ngclient passes (endless data);
- a few retries with backoff, for connection errors and 5xx answers only, and only before the
  first byte was handed to ngclient (a half-read body cannot be taken back);
- conditional requests for the unversioned files (``timestamp.json``): the server's ETag is kept
  with the body, and a 304 answers from that copy; a poll where nothing changed costs one small
  request for ``timestamp.json`` (plus the 404 for the next root), not the body.

Errors are ngclient's: ``DownloadHTTPError`` (status), ``SlowRetrievalError``,
``DownloadLengthMismatchError``, ``DownloadError`` (the rest).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

from zos_upgrade.net import MAX_FLIST_BYTES, Backoff

__all__ = ["FetchStats", "HttpxFetcher"]



@dataclass
class FetchStats:
    """What the fetcher moved: requests sent, 304s, body bytes received (the benchmark reads it)."""

    requests: int = 0
    not_modified: int = 0
    bytes: int = 0
    retries: int = 0


@dataclass
class HttpxFetcher(FetcherInterface):
    """ngclient's fetcher on httpx with timeouts, a deadline, a byte cap, retries and ETags."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    deadline: float = 120.0        # seconds for a whole download
    min_rate: float = 1024.0       # bytes/s on average, checked once ``grace`` seconds have passed
    grace: float = 5.0
    max_bytes: int = MAX_FLIST_BYTES
    retries: int = 2
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.2, cap=2.0))
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    user_agent: str = "zos-upgrade-tuf"
    transport: httpx.BaseTransport | None = None  # tests and the benchmark count or shape the wire
    stats: FetchStats = field(default_factory=FetchStats)
    _etags: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    _client: httpx.Client | None = field(default=None, repr=False)

    def _http(self) -> httpx.Client:
        if self._client is None:
            timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
            self._client = httpx.Client(timeout=timeout, follow_redirects=False, transport=self.transport,
                                        headers={"User-Agent": self.user_agent,
                                                 "Accept-Encoding": "identity"})
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        conditional = _unversioned(url)
        cached = self._etags.get(url) if conditional else None
        headers = {"If-None-Match": cached[0]} if cached else {}
        attempt = 0
        while True:
            try:
                response = self._open(url, headers)
            except (httpx.TransportError, _ServerError) as exc:
                attempt += 1
                if attempt > self.retries:
                    if isinstance(exc, _ServerError):
                        raise exceptions.DownloadHTTPError(str(exc), exc.status) from None
                    if isinstance(exc, httpx.TimeoutException):
                        raise exceptions.SlowRetrievalError(f"{url}: {type(exc).__name__}") from exc
                    raise exceptions.DownloadError(f"{url}: {type(exc).__name__}: {exc}") from exc
                self.stats.retries += 1
                self.sleep(self.backoff.delay(attempt))
                continue
            break
        return self._body(url, response, cached, conditional)

    def _open(self, url: str, headers: dict[str, str]) -> httpx.Response:
        self.stats.requests += 1
        request = self._http().build_request("GET", url, headers=headers)
        response = self._http().send(request, stream=True)
        if response.status_code >= 500:
            response.close()
            raise _ServerError(f"{url}: HTTP {response.status_code}", response.status_code)
        return response

    def _body(self, url: str, response: httpx.Response, cached: tuple[str, bytes] | None,
              conditional: bool) -> Iterator[bytes]:
        try:
            if response.status_code == 304 and cached is not None:
                self.stats.not_modified += 1
                yield cached[1]
                return
            if response.status_code != 200:
                raise exceptions.DownloadHTTPError(f"{url}: HTTP {response.status_code}",
                                                   response.status_code)
            started, received = self.clock(), 0
            kept: list[bytes] = []
            try:
                # no chunk_size: httpx would buffer up to it, and a trickle would go unseen until then
                for chunk in response.iter_raw():
                    received += len(chunk)
                    self.stats.bytes += len(chunk)
                    if received > self.max_bytes:
                        raise exceptions.DownloadLengthMismatchError(
                            f"{url}: more than {self.max_bytes} bytes (the fetcher's cap)")
                    self._check_pace(url, started, received)
                    if conditional:
                        kept.append(chunk)
                    yield chunk
            except httpx.TimeoutException as exc:
                raise exceptions.SlowRetrievalError(f"{url}: no byte for {self.read_timeout} s") from exc
            except httpx.HTTPError as exc:
                raise exceptions.DownloadError(f"{url}: {type(exc).__name__}: {exc}") from exc
            etag = response.headers.get("etag")
            if conditional and etag:
                self._etags[url] = (etag, b"".join(kept))
        finally:
            response.close()

    def _check_pace(self, url: str, started: float, received: int) -> None:
        elapsed = self.clock() - started
        if elapsed > self.deadline:
            raise exceptions.SlowRetrievalError(
                f"{url}: {received} bytes in {elapsed:.1f} s, over the {self.deadline} s deadline")
        if elapsed > self.grace and received / elapsed < self.min_rate:
            raise exceptions.SlowRetrievalError(
                f"{url}: {received / elapsed:.0f} bytes/s, below the minimum {self.min_rate:.0f} bytes/s")


class _ServerError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _unversioned(url: str) -> bool:
    """``.../timestamp.json`` (polled every time, worth a conditional request), not ``3.root.json``."""
    name = url.rsplit("/", 1)[-1]
    return name == "timestamp.json"

