"""A hub that lies, for the bad-input tests: it serves whatever JSON files the test writes.

``python hostile_hub.py DIR PORT``. ``GET /api/flist/<repo>`` answers ``DIR/<repo>.json`` and
``GET /api/flist/<repo>/<name>/light`` answers ``DIR/<repo>--<name>.json`` (404 when missing);
the repository ``huge`` streams a 50 MB listing without announcing its length. A real hub never
sends these; the watchers must survive them.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

HUGE_BYTES = 50 * 1024 * 1024


def app_for(folder: Path) -> Starlette:
    def canned(name: str) -> Response:
        path = folder / name
        if not path.is_file():
            return Response(b'{"status":"error","message":"not found"}', 404, media_type="application/json")
        return Response(path.read_bytes(), media_type="application/json")

    async def listing(request: Request) -> Response:
        repo = request.path_params["repo"]
        if repo == "huge":
            async def body() -> AsyncIterator[bytes]:
                item = b'{"name": "x.flist", "size": "1 KB", "updated": 1, "type": "regular"},'
                yield b"["
                sent = 1
                while sent < HUGE_BYTES:
                    chunk = item * 1024
                    sent += len(chunk)
                    yield chunk
                yield b'{"name": "last.flist", "size": "1 KB", "updated": 1, "type": "regular"}]'
            return StreamingResponse(body(), media_type="application/json")
        return canned(f"{repo}.json")

    async def light(request: Request) -> Response:
        return canned(f"{request.path_params['repo']}--{request.path_params['name']}.json")

    return Starlette(routes=[
        Route("/api/flist/{repo}", listing),
        Route("/api/flist/{repo}/{name}/light", light),
    ])


if __name__ == "__main__":
    uvicorn.run(app_for(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
