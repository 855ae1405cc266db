"""A 0-hub compatible server (SPEC 6): the read API as the real hub answers it, downloads with
ETag and Range, the block store over HTTP, and a write API guarded by bearer tokens.

Starlette on uvicorn; file reads, hashing, parsing and writes run in worker threads (only the few
metadata syscalls that resolve a ``/light`` name stay on the event loop). Handlers are thin: names
are validated and the work is done by :class:`~zos_upgrade.hub.storage.HubStorage`.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import stat
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zos_upgrade.flist import FlistError
from zos_upgrade.flist.blocks import block_id_matches
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.hub.config import HubConfig
from zos_upgrade.hub.contents import ContentsCache, flist_contents, flist_metadata
from zos_upgrade.hub.http import (
    FLASK_404_HTML,
    api_error,
    api_success,
    file_etag,
    file_response,
    json_response,
    text_response,
)
from zos_upgrade.hub.models import InvalidName
from zos_upgrade.hub.names import FLIST_SUFFIXES, validate_name
from zos_upgrade.hub.storage import Conflict, FileChanged, HubStorage, NotInStorage, StoredFlist
from zos_upgrade.hub.upload import UploadTooLarge, check_upload
from zos_upgrade.net import SERVER_KEEP_ALIVE

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
_BLOCK_HEX = re.compile(r"(?:[0-9a-f]{32}|[0-9a-f]{64})")


class _Unauthorized(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HubApp:
    """The routes of one hub over one storage root."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.storage = HubStorage(config.root, official=config.official)
        self.blocks = DirStore(config.blocks) if config.blocks is not None else None
        self.contents = ContentsCache()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def guarded(handler: Handler) -> Handler:
        """Map the storage's typed errors to the real hub's JSON error answers."""

        async def wrapper(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidName as exc:
                return api_error(request, str(exc), 400)
            except NotInStorage as exc:
                return api_error(request, str(exc), 404)
            except Conflict as exc:
                return api_error(request, str(exc), 409)
            except FileChanged as exc:
                return api_error(request, str(exc), 503)  # clients retry 5xx
            except _Unauthorized as exc:
                return api_error(request, str(exc), exc.status)

        return wrapper

    def _authorize(self, request: Request) -> str:
        """The repository the bearer token owns; ``{owner}`` must be ``me`` or that repository."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise _Unauthorized("no authorization provided", 401)
        if scheme.lower() != "bearer" or not token.strip():
            raise _Unauthorized("authorization must be 'bearer <token>'", 401)
        given = token.strip().encode()
        owner: str | None = None
        for known, repo in self.config.tokens.items():
            # every token is compared, in constant time, so timing tells nothing about any of them
            if hmac.compare_digest(known.encode(), given):
                owner = repo
        if owner is None:
            raise _Unauthorized("invalid token", 401)
        asked = request.path_params.get("owner", "me")
        if asked not in ("me", owner):
            raise _Unauthorized(f"this token writes repository {owner!r}, not {asked!r}", 403)
        return owner

    async def _stored_file(self, request: Request, flist: StoredFlist) -> Response:
        fd = await run_in_threadpool(_open_regular, flist.real)
        if fd is None:
            return api_error(request, "source not found", 404)
        st = os.fstat(fd)
        return await file_response(request, fd, st, "application/octet-stream", file_etag(st))

    # ------------------------------------------------------------------ read API

    async def repositories(self, request: Request) -> Response:
        return json_response(request, await run_in_threadpool(self.storage.repositories))

    async def flists(self, request: Request) -> Response:
        return json_response(request, await run_in_threadpool(self.storage.all_flists))

    async def fileslist(self, request: Request) -> Response:
        return json_response(request, await run_in_threadpool(self.storage.fileslist))

    async def repo_listing(self, request: Request) -> Response:
        repo = request.path_params["repo"]
        try:
            listing = await run_in_threadpool(self.storage.listing, repo)
        except NotInStorage:
            return text_response(request, FLASK_404_HTML, 404, "text/html; charset=utf-8")
        return json_response(request, listing)

    async def tag_listing(self, request: Request) -> Response:
        repo, tag = request.path_params["repo"], request.path_params["tag"]
        return json_response(request, await run_in_threadpool(self.storage.tag_listing, repo, tag))

    async def inspect(self, request: Request) -> Response:
        """``GET``: the tree inside the flist; ``INFO``: the ``/light`` object."""
        if request.method == "INFO":
            return await self.light(request)
        flist = await run_in_threadpool(self._resolve, request)
        return json_response(request, await self._parsed(flist, "contents"))

    async def light(self, request: Request) -> Response:
        # /light is what every node polls: resolving a name is a few metadata syscalls, cheaper on
        # the event loop than a trip to a worker thread; only hashing a new file goes to a thread
        for _ in range(3):
            flist = self._resolve(request)
            md5 = self.storage.known_md5(flist)
            if md5 is None:
                try:
                    md5 = await run_in_threadpool(self.storage.md5, flist)
                except FileChanged:
                    continue  # replaced while hashed: resolve again
            return json_response(request, flist.info(md5))
        return api_error(request, "flist keeps changing, try again", 503)

    async def metadata(self, request: Request) -> Response:
        flist = await run_in_threadpool(self._resolve, request)
        return json_response(request, await self._parsed(flist, "metadata"))

    async def taglink(self, request: Request) -> Response:
        repo, name = request.path_params["repo"], request.path_params["name"]
        return json_response(request, await run_in_threadpool(self.storage.taglink, repo, name))

    def _resolve(self, request: Request) -> StoredFlist:
        return self.storage.resolve(request.path_params["repo"], request.path_params["name"])

    async def _parsed(self, flist: StoredFlist, what: str) -> Any:
        st = flist.stat
        key = (what, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self.contents.get(key)
        if cached is not None:
            return cached
        parse = flist_contents if what == "contents" else flist_metadata
        try:
            value = await run_in_threadpool(parse, flist.real)
        except FlistError as exc:
            log.warning("stored flist cannot be read", extra={"path": str(flist.real), "error": str(exc)})
            raise NotInStorage(f"flist {flist.repo}/{flist.filename} cannot be read: {exc}") from exc
        self.contents.put(key, value)
        return value

    # ------------------------------------------------------------------ downloads

    async def download(self, request: Request) -> Response:
        repo, name = request.path_params["repo"], request.path_params["name"]
        if name.endswith(".md5") and not name.endswith(FLIST_SUFFIXES):
            flist = await run_in_threadpool(self.storage.resolve, repo, name[: -len(".md5")])
            md5 = await run_in_threadpool(self.storage.md5, flist)
            return text_response(request, md5 + "\n")
        flist = await run_in_threadpool(self.storage.resolve, repo, name)
        return await self._stored_file(request, flist)

    async def tag_download(self, request: Request) -> Response:
        params = request.path_params
        flist = await run_in_threadpool(
            self.storage.resolve, params["repo"], params["name"], tag=params["tag"]
        )
        return await self._stored_file(request, flist)

    # ------------------------------------------------------------------ blocks

    def _block_path(self, hexid: str) -> Path | None:
        if self.config.blocks is None or not _BLOCK_HEX.fullmatch(hexid):
            return None
        for path in (self.config.blocks / hexid[:2] / hexid, self.config.blocks / hexid):
            if path.is_file() and not path.is_symlink():
                return path
        return None

    def _open_block(self, hexid: str) -> int | None:
        path = self._block_path(hexid)
        return None if path is None else _open_regular(path)

    async def get_block(self, request: Request) -> Response:
        params = request.path_params
        hexid = params["hex"]
        if "xx" in params and params["xx"] != hexid[:2]:
            return api_error(request, f"block {hexid} is not in folder {params['xx']!r}", 404)
        fd = await run_in_threadpool(self._open_block, hexid)  # one hop: a node asks for thousands
        if fd is None:
            return api_error(request, "block not found", 404)
        st = os.fstat(fd)
        return await file_response(request, fd, st, "application/octet-stream", f'"{hexid}"')

    async def put_block(self, request: Request) -> Response:
        self._authorize(request)
        hexid = request.path_params["hex"]
        if self.blocks is None:
            return api_error(request, "this hub holds no block store", 404)
        if not _BLOCK_HEX.fullmatch(hexid):
            return api_error(request, f"block id {hexid[:80]!r} is not 32 or 64 lower-case hex digits", 400)
        limit = self.config.max_block_bytes
        try:
            body = await _read_limited(request, limit)
        except UploadTooLarge as exc:
            return api_error(request, str(exc), 413)
        if not block_id_matches(bytes.fromhex(hexid), body):
            return api_error(
                request, f"body of {len(body)} bytes does not hash (blake2b) to block {hexid}", 400
            )
        existed = await run_in_threadpool(self._block_path, hexid) is not None
        if not existed:
            await self.blocks.put(bytes.fromhex(hexid), body)
        return api_success(request, {"id": hexid, "stored": not existed}, 200 if existed else 201)

    # ------------------------------------------------------------------ write API

    async def whoami(self, request: Request) -> Response:
        return api_success(request, {"username": self._authorize(request)})

    async def upload(self, request: Request) -> Response:
        repo = self._authorize(request)
        limit = self.config.max_upload_bytes
        try:
            parser = MultiPartParser(
                request.headers,
                _limited_stream(request, limit),
                max_files=1,
                max_fields=16,
                max_part_size=4096,
            )
            form = await parser.parse()
        except UploadTooLarge as exc:
            return api_error(request, str(exc), 413)
        except MultiPartException as exc:
            return api_error(request, f"not a multipart/form-data upload: {exc.message}", 400)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                return api_error(request, "no file found (expected a multipart field 'file')", 400)
            filename = os.path.basename(upload.filename or "")
            if not filename:
                return api_error(request, "no file selected", 400)
            validate_name(filename, "uploaded file name")
            if not filename.endswith(FLIST_SUFFIXES):
                return api_error(
                    request, f"{filename!r}: this file is not allowed (expected .flist or .fl)", 400
                )
            stats = await run_in_threadpool(
                check_upload, self.storage, self.blocks, repo, filename, upload.file
            )
        except FlistError as exc:
            return api_error(request, f"invalid flist: {exc}", 400)
        finally:
            await form.close()
        return api_success(request, {"name": filename, "files": stats})

    async def link(self, request: Request) -> Response:
        repo, p = self._authorize(request), request.path_params
        await run_in_threadpool(self.storage.link, repo, p["src"], p["link"])
        return api_success(request)

    async def crosslink(self, request: Request) -> Response:
        repo, p = self._authorize(request), request.path_params
        await run_in_threadpool(self.storage.crosslink, repo, p["link"], p["repo"], p["src"])
        return api_success(request)

    async def crosstag(self, request: Request) -> Response:
        repo, p = self._authorize(request), request.path_params
        await run_in_threadpool(self.storage.crosstag, repo, p["link"], p["repo"], p["tag"])
        return api_success(request)

    async def tag(self, request: Request) -> Response:
        repo, p = self._authorize(request), request.path_params
        if request.method == "DELETE":
            await run_in_threadpool(self.storage.resolve, p["repo"], p["src"])
            await run_in_threadpool(self.storage.untag, repo, p["tag"], p["link"])
        else:
            await run_in_threadpool(self.storage.tag, repo, p["tag"], p["link"], p["repo"], p["src"])
        return api_success(request)

    async def rename(self, request: Request) -> Response:
        repo, p = self._authorize(request), request.path_params
        await run_in_threadpool(self.storage.rename, repo, p["src"], p["dst"])
        return api_success(request)

    async def delete(self, request: Request) -> Response:
        repo = self._authorize(request)
        await run_in_threadpool(self.storage.delete, repo, request.path_params["name"])
        return api_success(request)

    # ------------------------------------------------------------------ routing

    def routes(self) -> list[Route]:
        g = self.guarded
        me = "/api/flist/{owner}"
        return [
            Route("/api/repositories", g(self.repositories)),
            Route("/api/flist", g(self.flists)),
            Route("/api/fileslist", g(self.fileslist)),
            # write API first: "me" (or the token's own repository) in place of a repository name
            Route("/api/flist/me", g(self.whoami)),
            Route(me + "/upload", g(self.upload), methods=["POST"]),
            Route(me + "/upload-flist", g(self.upload), methods=["POST"]),
            Route(me + "/{src}/link/{link}", g(self.link)),
            Route(me + "/{link}/crosslink/{repo}/{src}", g(self.crosslink)),
            Route(me + "/{link}/crosstag/{repo}/{tag}", g(self.crosstag)),
            Route(me + "/{tag}/{link}/tag/{repo}/{src}", g(self.tag), methods=["GET", "DELETE"]),
            Route(me + "/{src}/rename/{dst}", g(self.rename)),
            Route(me + "/{name}", g(self.delete), methods=["DELETE"]),
            # read API
            Route("/api/flist/{repo}", g(self.repo_listing)),
            Route("/api/flist/{repo}/tags/{tag}", g(self.tag_listing)),
            Route("/api/flist/{repo}/{name}", g(self.inspect), methods=["GET", "INFO"]),
            Route("/api/flist/{repo}/{name}/light", g(self.light)),
            Route("/api/flist/{repo}/{name}/taglink", g(self.taglink)),
            Route("/api/flist/{repo}/{name}/metadata", g(self.metadata)),
            # blocks: the layout of the http:// block store
            Route("/blocks/{xx}/{hex}", g(self.get_block)),
            Route("/blocks/{hex}", g(self.get_block)),
            Route("/blocks/{hex}", g(self.put_block), methods=["PUT"]),
            # downloads
            Route("/{repo}/tags/{tag}/{name}", g(self.tag_download)),
            Route("/{repo}/{name}", g(self.download)),
        ]


def _open_regular(path: Path) -> int | None:
    """Open a regular file for reading without following a final symlink; ``None`` if it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


async def _limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(f"request body of {declared} bytes is over the {limit} bytes allowed")
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise UploadTooLarge(f"request body is over the {limit} bytes allowed")
        yield chunk


async def _read_limited(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _limited_stream(request, limit)])


async def _http_error(request: Request, exc: Exception) -> Response:
    # unknown routes and methods get an ETag too, like every other answer
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return text_response(request, detail, status)


def create_app(config: HubConfig) -> Starlette:
    """The ASGI application of a hub over ``config.root``."""
    hub = HubApp(config)
    swept = hub.storage.sweep_temp_files()
    if swept:
        log.info("removed temp files left by an interrupted upload", extra={"count": swept})
    app = Starlette(routes=hub.routes(), exception_handlers={404: _http_error, 405: _http_error})
    app.state.hub = hub
    return app


def serve(config: HubConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the hub with uvicorn until interrupted (h11: it accepts the real hub's INFO method)."""
    import uvicorn

    log.info("hub serving", extra={"root": str(config.root), "host": host, "port": port})
    uvicorn.run(create_app(config), host=host, port=port, http="h11", log_level="warning", access_log=False,
                timeout_keep_alive=SERVER_KEEP_ALIVE)
