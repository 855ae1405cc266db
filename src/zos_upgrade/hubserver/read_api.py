"""The hub's read API and downloads, answered as the real 0-hub answers them (SPEC 6).

File reads, hashing and parsing run in worker threads; only the few metadata syscalls that resolve
a ``/light`` name stay on the event loop, since that is what every node polls.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.flist import FlistError
from zos_upgrade.hub.names import FLIST_SUFFIXES
from zos_upgrade.hubserver.contents import ContentsCache, flist_contents, flist_metadata
from zos_upgrade.hubserver.http import (
    FLASK_404_HTML,
    api_error,
    download_headers,
    file_etag,
    file_response,
    json_response,
    open_regular,
    text_response,
)
from zos_upgrade.hubserver.storage import FileChanged, HubStorage, NotInStorage, StoredFlist

__all__ = ["ReadAPI"]

log = logging.getLogger(__name__)


class ReadAPI:
    """The read routes' handlers over one storage; parsed flists are cached by file version."""

    def __init__(self, storage: HubStorage) -> None:
        self.storage = storage
        self.contents = ContentsCache()

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
        return json_response(request, await self.parsed(flist, "contents"))

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
        return json_response(request, await self.parsed(flist, "metadata"))

    async def taglink(self, request: Request) -> Response:
        repo, name = request.path_params["repo"], request.path_params["name"]
        return json_response(request, await run_in_threadpool(self.storage.taglink, repo, name))

    def _resolve(self, request: Request) -> StoredFlist:
        return self.storage.resolve(request.path_params["repo"], request.path_params["name"])

    async def parsed(self, flist: StoredFlist, what: str) -> Any:
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

    async def download(self, request: Request) -> Response:
        repo, name = request.path_params["repo"], request.path_params["name"]
        try:
            if name.endswith(".md5") and not name.endswith(FLIST_SUFFIXES):
                flist = await run_in_threadpool(self.storage.resolve, repo, name[: -len(".md5")])
                md5 = await run_in_threadpool(self.storage.md5, flist)
                return text_response(request, md5 + "\n")
            flist = await run_in_threadpool(self.storage.resolve, repo, name)
        except NotInStorage:
            return _flask_404(request)
        return await self._stored_file(request, flist, name)

    async def tag_download(self, request: Request) -> Response:
        params = request.path_params
        try:
            flist = await run_in_threadpool(
                self.storage.resolve, params["repo"], params["name"], tag=params["tag"]
            )
        except NotInStorage:
            return _flask_404(request)
        return await self._stored_file(request, flist, params["name"])

    async def _stored_file(self, request: Request, flist: StoredFlist, asked: str) -> Response:
        fd = await run_in_threadpool(open_regular, flist.real)
        if fd is None:
            return _flask_404(request)
        st = os.fstat(fd)
        return await file_response(request, fd, st, "application/octet-stream", file_etag(st),
                                   download_headers(asked, st))


def _flask_404(request: Request) -> Response:
    """A download that is not there: the real hub's ``send_from_directory`` answers Flask's page."""
    return text_response(request, FLASK_404_HTML, 404, "text/html; charset=utf-8")
