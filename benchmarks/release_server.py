"""Requests per second of `zos-upgrade release serve` vs Python's `http.server` on the same tree.

Scenarios: ``GET /latest`` and ``GET /<version>``, each plain (200) and conditional (304: our
server revalidates by ``If-None-Match``, http.server by ``If-Modified-Since``, since it sends no
ETag). The load generator is a separate process (this file with ``--load``): keep-alive HTTP/1.1
connections from asyncio, reconnecting when the server closes (http.server speaks HTTP/1.0).
The "new conn." rows make our server close after each answer too, so the ratio compares request
handling alone, without keep-alive. Every run is bounded in time; runs of the two servers alternate;
each figure is the median of 3 runs, with the ratio ours/baseline of the medians.

    .venv/bin/python benchmarks/release_server.py [--seconds 2] [--concurrency 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.support.procs import free_port, stop_process, wait_for_port, zos_upgrade_cmd  # noqa: E402
from zos_upgrade.publisher.signing import generate_key  # noqa: E402
from zos_upgrade.publisher.tree import ReleaseTree  # noqa: E402

RELEASES = 30


# --- load generator (runs in its own process) ------------------------------------------------------


async def _worker(port: int, request: bytes, stop_at: float, counts: dict[int, int]) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < stop_at:
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert reader is not None
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        fields = (line.partition(":") for line in lines[1:] if line)
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif status != "304" and not keep:
            await reader.read()
        counts[int(status)] = counts.get(int(status), 0) + 1
        if not keep:
            writer.close()
            await writer.wait_closed()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _load(port: int, path: str, header: str, seconds: float, concurrency: int) -> dict[str, object]:
    extra = "".join(f"{line}\r\n" for line in header.split("\n") if line)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()
    counts: dict[int, int] = {}
    start = time.monotonic()
    await asyncio.gather(*(_worker(port, request, start + seconds, counts) for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    return {"rps": sum(counts.values()) / elapsed, "statuses": counts}


# --- the benchmark ----------------------------------------------------------------------------------


@contextmanager
def _server(cmd: Sequence[str], port: int) -> Iterator[None]:
    # output to /dev/null: http.server logs every request, and an unread pipe would stall it
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for_port(port, proc)
        yield
    finally:
        stop_process(proc)


def _measure(port: int, path: str, header: str, args: argparse.Namespace) -> tuple[float, dict[str, int]]:
    load = ["--load", str(port), path, header, str(args.seconds), str(args.concurrency)]
    out = subprocess.run(
        [sys.executable, __file__, *load],
        capture_output=True, text=True, check=True, timeout=args.seconds + 30,
    ).stdout
    result = json.loads(out)
    return float(result["rps"]), result["statuses"]


def _validator(port: int, path: str, name: str) -> str:
    """The conditional header a client would send after a first GET of ``path``."""
    import httpx

    response = httpx.get(f"http://127.0.0.1:{port}{path}")
    if name == "etag":
        return f"If-None-Match: {response.headers['etag']}"
    return f"If-Modified-Since: {response.headers['last-modified']}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one run")
    parser.add_argument("--concurrency", type=int, default=8, help="connections of the load generator")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tree"
        flist = Path(tmp) / "app.fl"
        flist.write_bytes(b"flist" * 1000)
        key = generate_key()
        tree = ReleaseTree(root)
        for minor in range(RELEASES):
            tree.add(f"1.{minor}.0", flist_url=f"https://hub.example/zos/zos-1.{minor}.0.fl",
                     flist_file=flist, key=key)
        version_path = f"/1.{RELEASES // 2}.0"
        ours, base = free_port(), free_port()
        ours_cmd = zos_upgrade_cmd("release", "serve", "--root", str(root), "--port", str(ours))
        base_cmd = [sys.executable, "-m", "http.server", str(base), "--bind", "127.0.0.1",
                    "--directory", str(root)]
        print(f"machine: {platform.machine()}, python {platform.python_version()}, "
              f"{args.runs} runs x {args.seconds:g}s, {args.concurrency} connections, loopback")
        print(f"{'scenario':<36}{'ours req/s (min-max)':>28}{'http.server req/s (min-max)':>32}{'ratio':>8}")
        with _server(ours_cmd, ours), _server(base_cmd, base):
            for label, path, conditional, fresh in [
                ("GET /latest", "/latest", False, False),
                ("GET /latest (304)", "/latest", True, False),
                (f"GET {version_path}", version_path, False, False),
                (f"GET {version_path} (304)", version_path, True, False),
                ("GET /latest, new conn.", "/latest", False, True),
                (f"GET {version_path} (304), new conn.", version_path, True, True),
            ]:
                expected = 304 if conditional else 200
                headers = {}
                for port, kind in ((ours, "etag"), (base, "last-modified")):
                    headers[port] = _validator(port, path, kind) if conditional else ""
                    if fresh:  # one connection per request, as http.server (HTTP/1.0) always does
                        headers[port] += "\nConnection: close"
                rates: dict[int, list[float]] = {ours: [], base: []}
                for _ in range(args.runs):  # alternate the servers, so background load hits both alike
                    for port in (ours, base):
                        rps, statuses = _measure(port, path, headers[port], args)
                        if set(statuses) != {str(expected)}:
                            raise SystemExit(f"{label} on {port}: expected only {expected}, got {statuses}")
                        rates[port].append(rps)
                (om, olo, ohi), (bm, blo, bhi) = (
                    (statistics.median(r), min(r), max(r)) for r in (rates[ours], rates[base])
                )
                print(f"{label:<36}{f'{om:,.0f} ({olo:,.0f}-{ohi:,.0f})':>28}"
                      f"{f'{bm:,.0f} ({blo:,.0f}-{bhi:,.0f})':>32}{om / bm:>7.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        _, _, port_arg, path_arg, header_arg, seconds_arg, conc_arg = sys.argv
        load = _load(int(port_arg), path_arg, header_arg, float(seconds_arg), int(conc_arg))
        print(json.dumps(asyncio.run(load)))
    else:
        main()
