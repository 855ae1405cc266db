"""``s3://bucket[/prefix][?endpoint=URL&region=R&anonymous=true]``: blocks as objects in S3-compatible
object storage (AWS S3, MinIO, Ceph RGW, Cloudflare R2, ...), key ``<prefix>/<hex[0:2]>/<hex>``.

The key layout is the one ``dir://`` writes on disk, so a ``dir://`` store copied into a bucket (``aws s3
sync``) is a valid ``s3://`` store, and a public bucket is also a valid ``http(s)://`` store.

Where each setting comes from, first found wins: the endpoint from ``?endpoint=``,
``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL`` (none: AWS itself); the region from ``?region=``,
``AWS_REGION``, ``AWS_DEFAULT_REGION`` (none: ``us-east-1``); credentials from ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN`` only. Credentials never go in the URL: ``flist
pack`` records its store URLs inside the flist it writes, and a secret there would ship to every
node. Without credentials (or with ``?anonymous=true``) requests are unsigned: a public bucket
answers them, so a node needs no secret to read the store its flist names.

The client is obstore (Rust ``object_store``): chosen by measured throughput and client CPU per block
against boto3 and minio-py on the same loopback server (BENCHMARKS.md, "S3 client libraries"), and it
is natively async. It is an optional extra (``pip install 'zos-upgrade[s3]'``), imported when a store
is made.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, unquote

from zos_upgrade.flist.stores.base import MAX_STORED_BYTES, BlockMissing, StoreError, block_hex

if TYPE_CHECKING:
    from obstore.store import S3Store as ObS3Store

__all__ = ["S3Settings", "S3Store", "open_s3_url"]

# S3's own bucket naming rules (the strictest of the compatible servers): 3-63 characters of lower-case
# letters, digits, dots and hyphens, starting and ending with a letter or digit
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._=+@,-]+")
_QUERY_KEYS = ("endpoint", "region", "anonymous")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class S3Settings:
    """Everything a store needs to reach its bucket, validated; ``secret`` is never shown."""

    def __init__(
        self, bucket: str, prefix: str = "", *, endpoint: str | None = None, region: str = "us-east-1",
        access_key: str | None = None, secret: str | None = None, token: str | None = None,
        anonymous: bool = False,
    ) -> None:
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise StoreError(f"S3 bucket name {bucket!r} is invalid (expected 3-63 of a-z 0-9 . -)")
        parts = [part for part in prefix.split("/") if part]
        for part in parts:
            if part in (".", "..") or not _PREFIX_PART.fullmatch(part):
                raise StoreError(f"S3 key prefix {prefix!r}: part {part!r} is not a plain name")
        if endpoint is not None:
            _check_endpoint(endpoint)
        if bool(access_key) != bool(secret):
            raise StoreError(
                f"s3://{bucket}: half the credentials: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        # no credentials at all: unsigned requests, which a public bucket answers (a node reading the
        # store its flist names needs none); a refusal then says which variables to set
        self.unsigned_by_default = not anonymous and not access_key
        anonymous = anonymous or not access_key
        self.bucket = bucket
        self.prefix = "/".join(parts)
        self.endpoint = endpoint
        self.region = region
        self.access_key = access_key
        self.secret = secret
        self.token = token
        self.anonymous = anonymous

    @classmethod
    def from_url(cls, url: str, parts: SplitResult, env: Mapping[str, str]) -> S3Settings:
        """The settings an ``s3://`` URL names, completed from ``env`` (the usual AWS variables)."""
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise StoreError(
                f"invalid store URL {_without_userinfo(url)!r}: credentials do not go in an s3:// URL "
                "(flists record their store URLs); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if parts.port is not None or not parts.hostname:
            raise StoreError(f"invalid store URL {url!r}: expected s3://bucket[/prefix][?endpoint=URL]")
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)):
            if key not in _QUERY_KEYS or key in query:
                raise StoreError(
                    f"invalid store URL {url!r}: query {key!r} is unknown or repeated "
                    f"(expected any of {', '.join(_QUERY_KEYS)}, once each)"
                )
            query[key] = value
        anonymous = query.get("anonymous", "false").lower()
        if anonymous not in _TRUE + _FALSE:
            raise StoreError(f"invalid store URL {url!r}: anonymous={anonymous!r} (expected true or false)")
        endpoint = query.get("endpoint") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        region = query.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        # netloc, not hostname: hostname is lower-cased, and an upper-case bucket must be refused
        return cls(
            parts.netloc, unquote(parts.path), endpoint=endpoint or None, region=region,
            access_key=env.get("AWS_ACCESS_KEY_ID"), secret=env.get("AWS_SECRET_ACCESS_KEY"),
            token=env.get("AWS_SESSION_TOKEN"), anonymous=anonymous in _TRUE,
        )

    def key(self, block_id: bytes) -> str:
        name = block_hex(block_id)
        return f"{self.prefix}/{name[:2]}/{name}" if self.prefix else f"{name[:2]}/{name}"


class S3Store:
    """Blocks as objects in one bucket under one prefix, through obstore."""

    def __init__(
        self, settings: S3Settings, *, url: str | None = None, timeout: float = 30.0,
        connect_timeout: float = 10.0, retries: int = 3,
    ) -> None:
        try:
            from obstore.store import S3Store as ObS3Store
        except ImportError as exc:
            raise StoreError(
                "s3:// stores need the obstore package: pip install 'zos-upgrade[s3]'"
            ) from exc

        self.settings = settings
        self.url = url or f"s3://{settings.bucket}/{settings.prefix}"
        self._bucket_seen = False
        config: dict[str, Any] = {"region": settings.region}
        if settings.endpoint:
            config["endpoint"] = settings.endpoint
        if settings.anonymous:
            config["skip_signature"] = True
        else:
            config["access_key_id"] = settings.access_key
            config["secret_access_key"] = settings.secret
            if settings.token:
                config["session_token"] = settings.token
        self._store: ObS3Store = ObS3Store(
            settings.bucket,
            config=config,  # type: ignore[arg-type]  # built key by key from a validated S3Settings
            client_options={
                "allow_http": True,  # an endpoint given as http:// is the operator's choice (a LAN MinIO)
                "timeout": timedelta(seconds=timeout),
                "connect_timeout": timedelta(seconds=connect_timeout),
            },
            # obstore's own retries (backoff with jitter) on 5xx, timeouts and dropped connections;
            # 4xx answers are final and are not retried
            retry_config={
                "max_retries": retries,
                "retry_timeout": timedelta(seconds=timeout * (retries + 1)),
                "backoff": {"init_backoff": timedelta(milliseconds=100),
                            "max_backoff": timedelta(seconds=5), "base": 2},
            },
        )

    def _failed(self, what: str, block_id: bytes, exc: Exception) -> StoreError:
        import obstore.exceptions as obx

        hint = (" (no credentials were set, so the request was unsigned: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY)" if self.settings.unsigned_by_default else "")
        if isinstance(exc, obx.PermissionDeniedError | obx.UnauthenticatedError):
            # the server's code (SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied) says which
            return StoreError(
                f"{self.url}: {what} {block_id.hex()} refused: the credentials were not accepted "
                f"({_s3_code(exc) or 'HTTP 403, an answer without a body'}){hint}"
            )
        return StoreError(f"{self.url}: {what} {block_id.hex()} failed: {_first_line(exc)}{hint}")

    async def _missing(self, block_id: bytes, exc: Exception) -> Exception:
        """A 404: the block is missing, unless the bucket itself is (then every block would be)."""
        if _s3_code(exc) == "NoSuchBucket" or not await self._bucket_exists():
            return StoreError(f"{self.url}: bucket {self.settings.bucket!r} does not exist")
        return BlockMissing(block_id, [self.url])

    async def _bucket_exists(self) -> bool:
        import obstore
        import obstore.exceptions as obx

        if self._bucket_seen:
            return True
        try:
            # one ListObjectsV2 request: a missing bucket answers 404, an empty one an empty list
            async for _ in obstore.list(self._store, self.settings.prefix or None, chunk_size=1):
                break
        except (obx.BaseError, OSError) as exc:
            # obstore reports a listing's 404 as a generic error: the answer's code tells; any other
            # failure cannot tell, and then the block is reported, the listing is not the question
            return _s3_code(exc) != "NoSuchBucket"
        self._bucket_seen = True
        return True

    async def get(self, block_id: bytes) -> bytes:
        import obstore
        import obstore.exceptions as obx

        key = self.settings.key(block_id)
        try:
            result = await obstore.get_async(self._store, key)
            size = result.meta["size"]
            if size > MAX_STORED_BYTES:
                # checked before the body is read: an oversize object is never downloaded
                raise StoreError(
                    f"{self.url}: object {key} is {size} bytes, larger than any block "
                    f"({MAX_STORED_BYTES} bytes at most)"
                )
            data = bytes(await result.bytes_async())
        except (obx.NotFoundError, FileNotFoundError) as exc:
            raise await self._missing(block_id, exc) from exc
        except (obx.BaseError, OSError) as exc:
            raise self._failed("GET", block_id, exc) from exc
        if len(data) > MAX_STORED_BYTES:
            raise StoreError(f"{self.url}: object {key} sent more than {MAX_STORED_BYTES} bytes")
        self._bucket_seen = True
        return data

    async def put(self, block_id: bytes, data: bytes) -> None:
        import obstore
        import obstore.exceptions as obx

        if len(data) > MAX_STORED_BYTES:
            raise StoreError(f"{self.url}: block {block_id.hex()} is {len(data)} bytes, not a block")
        try:
            await obstore.put_async(self._store, self.settings.key(block_id), data)
        except (obx.NotFoundError, FileNotFoundError) as exc:
            # a PUT only 404s when the bucket is missing
            raise StoreError(f"{self.url}: bucket {self.settings.bucket!r} does not exist") from exc
        except (obx.BaseError, OSError) as exc:
            raise self._failed("PUT", block_id, exc) from exc
        self._bucket_seen = True

    async def has(self, block_id: bytes) -> bool:
        import obstore
        import obstore.exceptions as obx

        try:
            await obstore.head_async(self._store, self.settings.key(block_id))
        except (obx.NotFoundError, FileNotFoundError) as exc:
            missing = await self._missing(block_id, exc)
            if isinstance(missing, BlockMissing):
                return False
            raise missing from exc
        except (obx.BaseError, OSError) as exc:
            raise self._failed("HEAD", block_id, exc) from exc
        self._bucket_seen = True
        return True

    async def aclose(self) -> None:
        return None  # obstore's connection pool closes with the store object


def open_s3_url(url: str, parts: SplitResult) -> S3Store:
    """The store ``s3://bucket[/prefix][?endpoint=URL&region=R&anonymous=true]`` names."""
    return S3Store(S3Settings.from_url(url, parts, os.environ), url=url)


def _check_endpoint(endpoint: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        raise StoreError(f"S3 endpoint {endpoint!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
        raise StoreError(f"S3 endpoint {endpoint!r}: expected http(s)://host[:port]")


def _without_userinfo(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _s3_code(exc: Exception) -> str | None:
    """The ``<Code>`` of the S3 error answer obstore quotes in its message, when there is one."""
    found = re.search(r"<Code>([A-Za-z]+)</Code>", str(exc))
    return found.group(1) if found else None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
