"""A server that gives every request the same answer and counts them, for the client's retry tests.

``python -m tests.support.fixed_answer PORT STATUS BODY`` answers every request but ``GET /__count__``
with STATUS and BODY (``application/json``); ``GET /__count__`` answers how many it answered so far.
It stands in for the real 0-hub's upload refusals (``500`` with ``{"status": "error", ...}``), which
our hub never sends.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def app_for(status: int, body: str) -> Starlette:
    answered = [0]

    async def count(request: Request) -> Response:
        return PlainTextResponse(str(answered[0]))

    async def answer(request: Request) -> Response:
        await request.body()
        answered[0] += 1
        return Response(body, status_code=status, media_type="application/json")

    methods = ["GET", "POST", "PUT", "DELETE", "HEAD"]
    return Starlette(routes=[Route("/__count__", count), Route("/{path:path}", answer, methods=methods)])


if __name__ == "__main__":
    port, status, body = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    uvicorn.run(app_for(status, body), host="127.0.0.1", port=port, log_level="warning")
