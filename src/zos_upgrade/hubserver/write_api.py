"""The hub's write API (SPEC 6): uploads and link, tag, rename and delete requests, each guarded by
a bearer token that names the one repository it may change.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.flist import FlistError
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.hub.names import ARCHIVE_SUFFIX, FLIST_SUFFIXES, flist_filename, validate_name
from zos_upgrade.hubserver.archive import ArchiveRefused
from zos_upgrade.hubserver.auth import TokenGuard
from zos_upgrade.hubserver.config import HubConfig
from zos_upgrade.hubserver.http import BodyTooLarge, api_error, api_success, limited_stream
from zos_upgrade.hubserver.storage import HubStorage
from zos_upgrade.hubserver.upload import check_upload, pack_upload, upload_limits
from zos_upgrade.hubserver.upload_gate import UploadBusy, UploadGate

__all__ = ["WriteAPI"]


class WriteAPI:
    """The write routes' handlers; an upload must have every block in ``blocks`` when it is given."""

    def __init__(
        self, storage: HubStorage, blocks: DirStore | None, guard: TokenGuard, config: HubConfig
    ) -> None:
        self.storage = storage
        self.blocks = blocks
        self.guard = guard
        self.max_upload_bytes = config.max_upload_bytes
        self.limits = upload_limits(config)
        self.gate = UploadGate(
            config.upload_checks, config.upload_checks_per_repo, config.upload_check_seconds
        )

    async def whoami(self, request: Request) -> Response:
        return api_success(request, {"username": self.guard.authorize(request)})

    async def upload_flist(self, request: Request) -> Response:
        """``POST /api/flist/me/upload-flist``: an ``.flist``/``.fl`` whose blocks the hub must hold."""
        return await self._upload(request, archive=False)

    async def upload_archive(self, request: Request) -> Response:
        """``POST /api/flist/me/upload``: a ``.tar.gz`` the hub packs into an flist and its blocks."""
        return await self._upload(request, archive=True)

    async def _upload(self, request: Request, *, archive: bool) -> Response:
        repo = self.guard.authorize(request)
        blocks = self.blocks
        if archive and blocks is None:
            return api_error(
                request, "this hub holds no block store to pack an archive into: upload an .flist "
                "to /api/flist/me/upload-flist", 400,
            )
        try:
            parser = MultiPartParser(
                request.headers,
                limited_stream(request, self.max_upload_bytes),
                max_files=1,
                max_fields=16,
                max_part_size=4096,
            )
            form = await parser.parse()
        except BodyTooLarge as exc:
            return api_error(request, str(exc), 413)
        except MultiPartException as exc:
            return api_error(request, f"not a multipart/form-data upload: {exc.message}", 400)
        try:
            upload = form.get("file")
            # the real hub's messages, word for word, where it has one
            if not isinstance(upload, UploadFile):
                return api_error(request, "no file found", 400)
            filename = os.path.basename(upload.filename or "")
            if not filename:
                return api_error(request, "no file selected", 400)
            validate_name(filename, "uploaded file name")
            check: Callable[[], dict[str, Any]]
            if blocks is not None and archive:
                if not filename.endswith(ARCHIVE_SUFFIX):
                    return api_error(
                        request, f"{filename!r}: this file is not allowed (expected .tar.gz)", 400
                    )
                filename = flist_filename(filename[: -len(ARCHIVE_SUFFIX)] + ".flist")
                size = upload.size if upload.size is not None else self.max_upload_bytes
                check = functools.partial(
                    pack_upload, self.storage, blocks, repo, filename, upload.file, size, self.limits
                )
            else:
                if not filename.endswith(FLIST_SUFFIXES):
                    return api_error(
                        request, f"{filename!r}: this file is not allowed (expected .flist or .fl)", 400
                    )
                check = functools.partial(
                    check_upload, self.storage, self.blocks, repo, filename, upload.file, self.limits
                )
            stats = await self.gate.run(repo, check)
        except ArchiveRefused as exc:
            return api_error(request, f"archive refused: {exc}", 400)
        except FlistError as exc:
            return api_error(request, f"invalid flist: {exc}", 400)
        except UploadBusy as exc:
            return api_error(request, str(exc), 503)
        finally:
            await form.close()
        return api_success(request, {"name": filename, "files": stats})

    async def link(self, request: Request) -> Response:
        repo, p = self.guard.authorize(request), request.path_params
        await run_in_threadpool(self.storage.link, repo, p["src"], p["link"])
        return api_success(request)

    async def crosslink(self, request: Request) -> Response:
        repo, p = self.guard.authorize(request), request.path_params
        await run_in_threadpool(self.storage.crosslink, repo, p["link"], p["repo"], p["src"])
        return api_success(request)

    async def crosstag(self, request: Request) -> Response:
        repo, p = self.guard.authorize(request), request.path_params
        await run_in_threadpool(self.storage.crosstag, repo, p["link"], p["repo"], p["tag"])
        return api_success(request)

    async def tag(self, request: Request) -> Response:
        repo, p = self.guard.authorize(request), request.path_params
        if request.method == "DELETE":
            await run_in_threadpool(self.storage.resolve, p["repo"], p["src"])
            await run_in_threadpool(self.storage.untag, repo, p["tag"], p["link"])
        else:
            await run_in_threadpool(self.storage.tag, repo, p["tag"], p["link"], p["repo"], p["src"])
        return api_success(request)

    async def rename(self, request: Request) -> Response:
        repo, p = self.guard.authorize(request), request.path_params
        await run_in_threadpool(self.storage.rename, repo, p["src"], p["dst"])
        return api_success(request)

    async def delete(self, request: Request) -> Response:
        repo = self.guard.authorize(request)
        await run_in_threadpool(self.storage.delete, repo, request.path_params["name"])
        return api_success(request)
