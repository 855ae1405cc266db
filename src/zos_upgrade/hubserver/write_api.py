"""The hub's write API (SPEC 6): uploads and link, tag, rename and delete requests, each guarded by
a bearer token that names the one repository it may change.
"""

from __future__ import annotations

import functools
import os

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.flist import FlistError
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.hub.names import FLIST_SUFFIXES, validate_name
from zos_upgrade.hubserver.auth import TokenGuard
from zos_upgrade.hubserver.config import HubConfig
from zos_upgrade.hubserver.http import BodyTooLarge, api_error, api_success, limited_stream
from zos_upgrade.hubserver.storage import HubStorage
from zos_upgrade.hubserver.upload import check_upload, upload_limits
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

    async def upload(self, request: Request) -> Response:
        repo = self.guard.authorize(request)
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
            check = functools.partial(
                check_upload, self.storage, self.blocks, repo, filename, upload.file, self.limits
            )
            stats = await self.gate.run(repo, check)
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
