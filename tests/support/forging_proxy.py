"""A forging proxy: a loopback server between a node and its hub that rewrites answers (issue 15).

``python -m tests.support.forging_proxy UPSTREAM PORT RULES`` forwards every GET to UPSTREAM (a
hub URL, or ``dir:PATH[:PREFIX]``: serve the files of PATH for URL paths under PREFIX, with ETags,
as a static web server or CDN would). Before each request it reads RULES (a JSON file the test
rewrites at will, so one proxy process serves a whole attack scenario): ``{url path: rule}`` where a
rule is one of

- ``{"file": PATH}``: answer the bytes of that file instead (a forged flist, a replayed metadata file);
- ``{"json": OBJ}``: answer that JSON document (a forged hub answer, e.g. a ``/light`` link);
- ``{"status": N}``: answer that status with an empty body;
- ``{"endless": true}``: stream zero bytes forever (endless data);
- ``{"trickle": SECONDS}``: the upstream's bytes, one every SECONDS (slow retrieval).

Requests it saw are appended to RULES + ``.log`` (one path a line), so a test can tell what the
node asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_KEEP = ("content-type", "etag", "last-modified", "cache-control")


def _rules(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def app_for(upstream: str, rules_file: Path) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=30.0) if not upstream.startswith("dir:") else None
    static: tuple[Path, str] | None = None
    if upstream.startswith("dir:"):
        folder, _, prefix = upstream[4:].partition("::")
        static = (Path(folder), prefix)
    log = rules_file.with_name(rules_file.name + ".log")

    async def real(request: Request) -> tuple[int, bytes, dict[str, str]]:
        path = request.url.path
        if static is not None:
            folder, prefix = static
            if not path.startswith(prefix):
                return 404, b"", {}
            file = (folder / path[len(prefix):].lstrip("/")).resolve()
            if folder.resolve() not in file.parents or not file.is_file():
                return 404, b"", {}
            body = file.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            if request.headers.get("if-none-match") == etag:
                return 304, b"", {"etag": etag}
            return 200, body, {"etag": etag, "content-type": "application/octet-stream"}
        assert client is not None
        answer = await client.request(
            request.method, path + (f"?{request.url.query}" if request.url.query else ""),
            headers={k: v for k, v in request.headers.items()
                     if k.lower() in ("if-none-match", "authorization", "range")})
        kept = {k: v for k, v in answer.headers.items() if k.lower() in _KEEP}
        return answer.status_code, answer.content, kept

    async def forward(request: Request) -> Response:
        path = request.url.path
        with open(log, "a") as out:
            out.write(path + "\n")
        rule = _rules(rules_file).get(path)
        if isinstance(rule, dict):
            if "file" in rule:
                return Response(Path(rule["file"]).read_bytes(), 200, media_type="application/octet-stream")
            if "json" in rule:
                return JSONResponse(rule["json"])
            if "status" in rule:
                return Response(b"", int(rule["status"]))
            if rule.get("endless"):
                async def forever() -> AsyncIterator[bytes]:
                    block = bytes(64 * 1024)
                    while True:
                        yield block
                        await asyncio.sleep(0)
                return StreamingResponse(forever(), 200, media_type="application/octet-stream")
            if "trickle" in rule:
                status, body, headers = await real(request)
                interval = float(rule["trickle"])

                async def drip() -> AsyncIterator[bytes]:
                    for offset in range(len(body)):
                        yield body[offset:offset + 1]
                        await asyncio.sleep(interval)
                headers.pop("etag", None)
                headers["content-length"] = str(len(body))
                return StreamingResponse(drip(), status, headers=headers)
        status, body, headers = await real(request)
        return Response(body, status, headers=headers)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "HEAD"])])


def main() -> None:
    upstream, port, rules = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    uvicorn.run(app_for(upstream, rules), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
