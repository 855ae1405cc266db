"""The development release server: the static release tree over HTTP, as an ASGI (Starlette) app.

It serves exactly four kinds of names — ``versions``, ``latest``, canonical semver strings and the
TUF metadata file names under ``/tuf/metadata/`` (issue 15; never the keys) — and nothing else,
so no request path (``..``, ``%2e%2e``, NUL, a directory) can name a file outside the tree; a
symlink inside the tree that resolves outside it is refused too. Answers carry a strong
``ETag`` (blake2b of the bytes) and ``Cache-Control``: the index documents must be revalidated on
every use (``no-cache``, and a ``304`` is cheap), release objects never change once published.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from zos_upgrade.net import SERVER_KEEP_ALIVE
from zos_upgrade.publisher.base import INDEX_MAX_BYTES, PublisherError
from zos_upgrade.publisher.tree import LATEST, VERSIONS
from zos_upgrade.trust.errors import TrustError
from zos_upgrade.trust.layout import METADATA_DIR, PUBLISHER_TUF_DIR, parse_metadata_filename
from zos_upgrade.versions import InvalidVersion, parse_version

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

INDEX_CACHE_CONTROL = "no-cache"
RELEASE_CACHE_CONTROL = "public, max-age=3600"


@dataclass(frozen=True)
class _Document:
    identity: tuple[int, int, int, int]  # (dev, ino, size, mtime_ns): changes when the file does
    body: bytes
    etag: str


def _servable(name: str) -> bool:
    """Only the protocol's names: the two index documents and canonical semver strings."""
    if name in (VERSIONS, LATEST):
        return True
    try:
        return str(parse_version(name)) == name
    except InvalidVersion:
        return False


class _TreeReader:
    """Reads documents of one tree, keeping each in memory until its file changes."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise PublisherError(f"{root}: release root is not a directory")
        self._documents: dict[str, _Document] = {}

    def read(self, name: str) -> _Document | None:
        if not _servable(name):
            return None
        return self._load(name)

    def read_metadata(self, filename: str) -> _Document | None:
        """A TUF metadata file of the tree's repository (``tuf/metadata/``), by its served name only."""
        try:
            parse_metadata_filename(filename)
        except TrustError:
            return None
        return self._load(f"{PUBLISHER_TUF_DIR}/{METADATA_DIR}/{filename}")

    def _load(self, name: str) -> _Document | None:
        path = os.path.join(self.root, name)
        real = os.path.realpath(path)
        if os.path.commonpath([real, self.root]) != self.root:
            log.warning("refused a symlink that leaves the release root", extra={"release": name})
            return None
        try:
            info = os.stat(real)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size > INDEX_MAX_BYTES:
            return None
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        cached = self._documents.get(name)
        if cached is not None and cached.identity == identity:
            return cached
        try:
            with open(real, "rb") as handle:
                body = handle.read(INDEX_MAX_BYTES + 1)
        except OSError:
            return None
        document = _Document(identity, body, '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"')
        self._documents[name] = document
        return document


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2)
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in candidates or etag in candidates


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": "not found", "detail": what}, status_code=404)


def create_app(root: Path) -> Starlette:
    """The ASGI app serving the release tree at ``root``."""
    reader = _TreeReader(root)

    async def document(request: Request) -> Response:
        name = request.path_params["name"]
        found = reader.read(name)
        if found is None:
            if _servable(name):
                return _not_found(f"no {name} in this release tree")
            return _not_found("the release server serves /versions, /latest and /<version> only")
        headers = {
            "ETag": found.etag,
            "Cache-Control": INDEX_CACHE_CONTROL if name in (VERSIONS, LATEST) else RELEASE_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        }
        if _etag_matches(request.headers.get("if-none-match"), found.etag):
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type="application/json", headers=headers)

    async def metadata(request: Request) -> Response:
        # the tree's TUF metadata (issue 15): what nodes believe; always revalidated
        name = request.path_params["file"]
        found = reader.read_metadata(name)
        if found is None:
            return _not_found(f"no TUF metadata {name} in this release tree")
        headers = {
            "ETag": found.etag, "Cache-Control": INDEX_CACHE_CONTROL, "X-Content-Type-Options": "nosniff",
        }
        if _etag_matches(request.headers.get("if-none-match"), found.etag):
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type="application/json", headers=headers)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return Starlette(
        routes=[
            Route("/tuf/metadata/{file}", metadata, methods=["GET", "HEAD"]),
            Route("/{name:path}", document, methods=["GET", "HEAD"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


def serve(root: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve ``root`` until interrupted (blocking)."""
    import uvicorn

    app = create_app(root)
    log.info("release server listening", extra={"root": str(root), "url": f"http://{host}:{port}"})
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False,
                lifespan="off", timeout_keep_alive=SERVER_KEEP_ALIVE)
