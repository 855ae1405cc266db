"""A proxy that changes how answers travel, not what they say: a real server behind, each answer
compressed (as a compressing reverse proxy does) or trickled out a byte at a time (a sick link).

``python -m tests.support.shaping_proxy UPSTREAM PORT MODE [INTERVAL [PREFIX]]`` shapes the answers to
paths under PREFIX (default ``/``) and passes the others on as they are; MODE is

- ``gzip`` / ``deflate``: the upstream's body compressed with that coding when the request accepts it
  (``Content-Encoding`` set, ``Content-Length`` of the compressed bytes);
- ``trickle``: the upstream's head at once, then its body one byte every INTERVAL seconds.

Two paths are the proxy's own: ``/__bomb__/<bytes>`` answers that many zero bytes gzip-compressed
(a few KiB on the wire per MiB), ``/__coding__/<name>`` a body labelled with that content coding.
"""

from __future__ import annotations

import asyncio
import gzip
import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

_KEEP = ("content-type", "etag", "last-modified")


def _gzip_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    parts.append(packer.compress(bytes(size & ((1 << 20) - 1))))
    return b"".join(parts) + packer.flush()


def app_for(upstream: str, mode: str, interval: float, prefix: str = "/") -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=30.0)

    async def bomb(request: Request) -> Response:
        body = _gzip_zeros(int(request.path_params["size"]))
        return Response(body, headers={"content-encoding": "gzip"}, media_type="application/json")

    async def coding(request: Request) -> Response:
        return Response(b"\x00" * 64, headers={"content-encoding": request.path_params["name"]})

    async def forward(request: Request) -> Response:
        real = await client.request(
            request.method, request.url.path,
            headers={k: v for k, v in request.headers.items() if k.lower() in ("if-none-match", "range")},
        )
        headers = {k: v for k, v in real.headers.items() if k.lower() in _KEEP}
        body = real.content
        if not request.url.path.startswith(prefix):
            return Response(body, real.status_code, headers=headers)
        accepted = request.headers.get("accept-encoding", "")
        if mode in ("gzip", "deflate") and mode in accepted and body:
            body = gzip.compress(body) if mode == "gzip" else zlib.compress(body)
            headers["content-encoding"] = mode
        if mode != "trickle" or not body:
            return Response(body, real.status_code, headers=headers)

        async def drip() -> AsyncIterator[bytes]:
            for offset in range(len(body)):
                yield body[offset:offset + 1]
                await asyncio.sleep(interval)

        headers["content-length"] = str(len(body))
        return StreamingResponse(drip(), real.status_code, headers=headers)

    return Starlette(routes=[
        Route("/__bomb__/{size:int}", bomb),
        Route("/__coding__/{name}", coding),
        Route("/{path:path}", forward, methods=["GET", "HEAD"]),
    ])


if __name__ == "__main__":
    upstream, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    prefix = sys.argv[5] if len(sys.argv) > 5 else "/"
    uvicorn.run(app_for(upstream, mode, interval, prefix), host="127.0.0.1", port=port, log_level="warning",
                http="h11")


@contextmanager
def shaping_proxy(upstream: str, mode: str, interval: float = 1.0, prefix: str = "/") -> Iterator[str]:
    """Run the proxy in front of ``upstream`` as a child process; yields its base URL."""
    from tests.support.procs import REPO, free_port, serving

    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.shaping_proxy", upstream, str(port), mode, str(interval),
           prefix]
    with serving(cmd, port, cwd=REPO):
        yield f"http://127.0.0.1:{port}"
