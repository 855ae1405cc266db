"""A 0-hub compatible server (SPEC 6): the route table over the read API, the block store and the
write API, the mapping of typed errors to the real hub's answers, and the uvicorn entry point.

Starlette on uvicorn. Handlers are thin: names are validated and the work is done by
:class:`~zos_upgrade.hubserver.storage.HubStorage`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from zos_upgrade.hub.models import InvalidName
from zos_upgrade.hub.rollout import InvalidReport
from zos_upgrade.hubserver.auth import NodeGuard, TokenGuard, Unauthorized
from zos_upgrade.hubserver.block_fast import BlockFastPath
from zos_upgrade.hubserver.blocks_api import BlockAPI
from zos_upgrade.hubserver.config import HubConfig
from zos_upgrade.hubserver.delta_api import DeltaAPI
from zos_upgrade.hubserver.deltas import DeltaCache
from zos_upgrade.hubserver.fleetlock import FleetLockAPI
from zos_upgrade.hubserver.http import BodyTooLarge, api_error, text_response
from zos_upgrade.hubserver.page import HubPage
from zos_upgrade.hubserver.protocol import ConnectionLimits, guarded_protocol
from zos_upgrade.hubserver.read_api import ReadAPI
from zos_upgrade.hubserver.rollout import RolloutAPI, RolloutLimits, RolloutStore
from zos_upgrade.hubserver.storage import BlockFolder, Conflict, FileChanged, HubStorage, NotInStorage
from zos_upgrade.hubserver.tuf_api import TufAPI
from zos_upgrade.hubserver.tuf_online import OnlineSigner
from zos_upgrade.hubserver.tuf_store import TufStore
from zos_upgrade.hubserver.write_api import WriteAPI
from zos_upgrade.net import MAX_FLIST_BYTES, SERVER_KEEP_ALIVE

__all__ = ["HubApp", "create_app", "serve"]

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


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
        except Unauthorized as exc:
            return api_error(request, str(exc), exc.status)
        except InvalidReport as exc:
            return api_error(request, str(exc), 400)
        except BodyTooLarge as exc:
            return api_error(request, str(exc), 413)

    return wrapper


class HubApp:
    """The routes of one hub over one storage root."""

    def __init__(self, config: HubConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.storage = HubStorage(config.root, official=config.official)
        block_store = BlockFolder(config.blocks) if config.blocks is not None else None
        guard = TokenGuard(config.tokens)
        self.reads = ReadAPI(self.storage)
        self.block_store = block_store
        self.blocks = BlockAPI(block_store, guard, config.max_block_bytes)
        self.writes = WriteAPI(self.storage, block_store, guard, config)
        self.rollout_store = RolloutStore(config.root, config.halt,
                                          RolloutLimits(max_nodes=config.max_report_nodes), clock=clock)
        self.rollout = RolloutAPI(self.storage, self.rollout_store, guard, NodeGuard(config.node_secret))
        self.page = HubPage(self.storage, self.reads, self.rollout_store)
        self.fleet_lock = FleetLockAPI(config.root, slots=config.fleet_lock_slots,
                                       groups=config.fleet_lock_groups)
        self.tuf_store = TufStore(self.storage.root)
        self.deltas = DeltaAPI(self.storage, DeltaCache(self.storage, MAX_FLIST_BYTES))
        self.tuf = TufAPI(self.storage, self.tuf_store, guard, self.deltas)

    def routes(self) -> list[Route]:
        g, r, w, b, t, ro = guarded, self.reads, self.writes, self.blocks, self.tuf, self.rollout
        me = "/api/flist/{owner}"
        rel = "/api/rollout/{repo}/{name}"
        return [
            # the web page (issue 20): `/` answered nothing before (404), so no API client relied on it
            Route("/", g(self.page.page)),
            # fleet feedback (issue 20): before the catch-all download route below
            Route(rel, g(ro.status)),
            Route(rel + "/report", g(ro.report), methods=["POST"]),
            Route(rel + "/halt", g(ro.halt_flag)),
            Route(rel + "/halt", g(ro.halt), methods=["POST"]),
            Route(rel + "/resume", g(ro.resume), methods=["POST"]),
            Route(rel + "/plan", g(ro.plan), methods=["PUT"]),
            Route("/api/repositories", g(r.repositories)),
            Route("/api/flist", g(r.flists)),
            Route("/api/fileslist", g(r.fileslist)),
            # flist deltas (issue 19): /api/delta answered 404 before, no client relied on it
            Route("/api/delta/{repo}/{name}", g(self.deltas.flist_delta), methods=["GET", "HEAD"]),
            # write API first: "me" (or the token's own repository) in place of a repository name
            Route("/api/flist/me", g(w.whoami)),
            Route(me + "/upload", g(w.upload_archive), methods=["POST"]),
            Route(me + "/upload-flist", g(w.upload_flist), methods=["POST"]),
            Route(me + "/{src}/link/{link}", g(w.link)),
            Route(me + "/{link}/crosslink/{repo}/{src}", g(w.crosslink)),
            Route(me + "/{link}/crosstag/{repo}/{tag}", g(w.crosstag)),
            Route(me + "/{tag}/{link}/tag/{repo}/{src}", g(w.tag), methods=["GET", "DELETE"]),
            Route(me + "/{src}/rename/{dst}", g(w.rename)),
            Route(me + "/{name}", g(w.delete), methods=["DELETE"]),
            # read API
            Route("/api/flist/{repo}", g(r.repo_listing)),
            Route("/api/flist/{repo}/tags/{tag}", g(r.tag_listing)),
            Route("/api/flist/{repo}/{name}", g(r.inspect), methods=["GET", "INFO"]),
            Route("/api/flist/{repo}/{name}/light", g(r.light)),
            Route("/api/flist/{repo}/{name}/taglink", g(r.taglink)),
            Route("/api/flist/{repo}/{name}/metadata", g(r.metadata)),
            # blocks: the layout of the http:// block store
            Route("/blocks/{xx}/{hex}", g(b.get_block)),
            Route("/blocks/{hex}", g(b.get_block)),
            Route("/blocks/{hex}", g(b.put_block), methods=["PUT"]),
            # FleetLock (rollout strategy fleet_lock): the hub's URL is the base URL; before the
            # catch-all downloads, whose /{repo}/{name} would match /v1/pre-reboot
            Route("/v1/pre-reboot", self.fleet_lock.pre_reboot, methods=["POST"]),
            Route("/v1/steady-state", self.fleet_lock.steady_state, methods=["POST"]),
            # TUF metadata and consistent-snapshot targets (issue 15), before the download catch-all
            Route("/tuf/{repo}/metadata/{file}", g(t.metadata), methods=["GET", "HEAD"]),
            Route("/tuf/{repo}/metadata/{file}", g(t.upload), methods=["PUT"]),
            Route("/tuf/{repo}/targets/{hashname}", g(t.target), methods=["GET", "HEAD"]),
            # downloads
            Route("/{repo}/tags/{tag}/{name}", g(r.tag_download)),
            Route("/{repo}/{name}", g(r.download)),
        ]


async def _http_error(request: Request, exc: Exception) -> Response:
    # unknown routes and methods get an ETag too, like every other answer
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return text_response(request, detail, status)


def _online_signing(hub: HubApp) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The lifespan task re-signing due timestamps with the online keys (hubserver/tuf_online.py)."""
    assert hub.config.online_keys is not None
    signer = OnlineSigner(hub.tuf_store, hub.config.online_keys)
    interval = hub.config.online_resign_seconds

    async def loop() -> None:
        while True:
            await run_in_threadpool(signer.resign_due)
            await anyio.sleep(interval)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(loop)
            yield
            group.cancel_scope.cancel()

    return lifespan


def create_app(config: HubConfig, clock: Callable[[], float] = time.time) -> Starlette:
    """The ASGI application of a hub over ``config.root``."""
    hub = HubApp(config, clock)
    swept = hub.storage.sweep_temp_files()
    if swept:
        log.info("removed temp files left by an interrupted upload", extra={"count": swept})
    app = Starlette(
        routes=hub.routes(),
        exception_handlers={404: _http_error, 405: _http_error},
        # ahead of the routing: the one request a node repeats thousands of times (block_fast.py)
        middleware=[Middleware(BlockFastPath, store=hub.block_store)],
        lifespan=_online_signing(hub) if config.online_keys is not None else None,
    )
    app.state.hub = hub
    return app


def serve(config: HubConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the hub with uvicorn until interrupted: h11 (it accepts the real hub's INFO method) behind
    the connection limits of :mod:`~zos_upgrade.hubserver.protocol`."""
    import uvicorn

    limits = ConnectionLimits(
        header_timeout=config.header_timeout,
        max_headers=config.max_headers,
        max_header_bytes=config.max_header_bytes,
        max_connections=config.max_connections,
    )
    log.info("hub serving", extra={"root": str(config.root), "host": host, "port": port,
                                   "max_connections": limits.max_connections})
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        http=guarded_protocol(limits),
        # asyncio's loop, not uvloop even where it is installed: measured with
        # benchmarks/hub_blocks.py (issue 19), uvloop spent as much CPU per 4 KiB block and more per
        # 512 KiB block (670 vs 570 us, medians of 3, same run); httptools is not an option (h11
        # takes the real hub's INFO method, and protocol.py's limits are built on h11)
        loop="asyncio",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=SERVER_KEEP_ALIVE,
    )
