"""``GET /``: the page a browser sees at the hub's root, chosen by query (``?repo=R``,
``?repo=R&flist=N``) so no page path can shadow a repository's download URL ``/<repo>/<name>``.

Each answer carries a fresh CSP nonce: only the page's own inline style and script run.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from zos_upgrade.hub.names import validate_name
from zos_upgrade.hubserver.page.views import flist_page, index_page, layout, repo_page
from zos_upgrade.hubserver.read_api import ReadAPI
from zos_upgrade.hubserver.rollout import RolloutStore
from zos_upgrade.hubserver.storage import HubStorage, NotInStorage

__all__ = ["HubPage"]


class HubPage:
    def __init__(self, storage: HubStorage, reads: ReadAPI, rollouts: RolloutStore) -> None:
        self.storage = storage
        self.reads = reads
        self.rollouts = rollouts

    async def page(self, request: Request) -> Response:
        params = request.query_params
        unknown = set(params) - {"repo", "flist"}
        if unknown or ("flist" in params and "repo" not in params):
            return _html("bad request",
                         "<h1>Unknown page</h1><p>Expected ?repo=R or ?repo=R&amp;flist=N.</p>", status=400)
        try:
            if "repo" not in params:
                title, body = index_page(await run_in_threadpool(self.storage.repositories))
            elif "flist" not in params:
                title, body = await self._repo(validate_name(params["repo"], "repository"))
            else:
                title, body = await self._flist(validate_name(params["repo"], "repository"),
                                                validate_name(params["flist"], "flist name"))
        except NotInStorage as exc:
            return _html("not found", f"<h1>Not found</h1><p>{_text(str(exc))}</p>", status=404)
        return _html(title, body)

    async def _repo(self, repo: str) -> tuple[str, str]:
        listing = await run_in_threadpool(self.storage.listing, repo)
        records = [self.rollouts.get(repo, n) for n in await run_in_threadpool(self.rollouts.releases, repo)]
        return repo_page(repo, listing, records)

    async def _flist(self, repo: str, name: str) -> tuple[str, str]:
        flist = await run_in_threadpool(self.storage.resolve, repo, name)
        info: dict[str, Any] = await run_in_threadpool(self.storage.info, repo, name)
        contents: dict[str, Any] | None
        try:
            contents = await self.reads.parsed(flist, "contents")
        except NotInStorage:
            contents = None
        record = self.rollouts.get(repo, name) if info.get("type") == "regular" else None
        return flist_page(repo, name, info, contents, record)


def _text(value: str) -> str:
    from html import escape

    return escape(value, quote=True)


def _html(title: str, body: str, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
           "img-src data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
    return Response(layout(title, body, nonce), status_code=status, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                             "Cache-Control": "no-store"})
