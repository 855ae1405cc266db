"""A man in the middle: a real server behind, and scripted lies for the paths a test chooses.

``python -m tests.hostile.liar SCRIPTS UPSTREAM PORT`` proxies every GET to ``UPSTREAM`` (a real hub
or release server) unless ``SCRIPTS/<quoted path>.json`` exists; that file, read on every request so
a test can change it while the server runs, holds one lie::

    {"status": 200, "body": "text", "content_type": "application/json",
     "delay": seconds before answering, "truncate": bytes the Content-Length claims beyond the body,
     "huge": bytes of filler streamed after the body without a Content-Length,
     "from": "/other/path" (answer with the upstream's body for that path)}

The other suites' lying servers fit their layer (``tests/node/hostile_hub.py`` answers only canned
listings; ``tests/publisher``'s scripted server runs in the test's own process); this one sits in front
of the real servers so a whole node can be lied to on one path while everything else is genuine.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

FILLER = b" " * 65536


def script_file(scripts: Path, path: str) -> Path:
    return scripts / (quote(path, safe="") + ".json")


def app_for(scripts: Path, upstream: str) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=30.0)

    async def answer(request: Request) -> Response:
        path = request.url.path
        script = script_file(scripts, path)
        if not script.is_file():
            real = await client.get(path, headers={k: v for k, v in request.headers.items()
                                                   if k.lower() in ("if-none-match", "range")})
            keep = {k: v for k, v in real.headers.items() if k.lower() in ("content-type", "etag")}
            return Response(real.content, real.status_code, headers=keep)
        lie = json.loads(script.read_text())
        await asyncio.sleep(float(lie.get("delay", 0)))
        body = lie.get("body", "").encode()
        if "from" in lie:
            body = (await client.get(lie["from"])).content
        status = int(lie.get("status", 200))
        content_type = str(lie.get("content_type", "application/json"))
        huge = int(lie.get("huge", 0))
        if huge:
            async def stream() -> AsyncIterator[bytes]:
                yield body
                sent = 0
                while sent < huge:
                    yield FILLER
                    sent += len(FILLER)
            return StreamingResponse(stream(), status, media_type=content_type)
        truncate = int(lie.get("truncate", 0))
        if truncate:
            # announce more than we send, then close: the client sees a short body
            headers = {"content-length": str(len(body) + truncate)}

            async def short() -> AsyncIterator[bytes]:
                yield body
            return StreamingResponse(short(), status, headers=headers, media_type=content_type)
        return Response(body, status, media_type=content_type)

    return Starlette(routes=[Route("/{path:path}", answer)])


if __name__ == "__main__":
    # quiet: the lies make uvicorn log tracebacks, and nobody reads this process's output pipe
    uvicorn.run(app_for(Path(sys.argv[1]), sys.argv[2]), host="127.0.0.1", port=int(sys.argv[3]),
                log_level="critical", access_log=False)
