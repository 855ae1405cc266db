"""Requests per second of `zos-upgrade hub serve` vs Python's `http.server` serving the same files.

Scenarios (SPEC 14, issue #4):
- ``/light`` of a symlink flist, plain (200) and conditional (304; our hub revalidates by
  ``If-None-Match``, http.server by ``If-Modified-Since`` since it sends no ETag). For http.server
  the answer is a static file holding the same JSON bytes at the same path: it does none of the
  hub's work (resolving the link, md5, JSON), so the ratio is the price of that work.
- a 1 MiB block download (``/blocks/<xx>/<hex>``), the same file for both.

The load generator runs in a second process (this file with ``--load``): asyncio, N keep-alive
HTTP/1.1 connections, reconnecting whenever the server closes (http.server speaks HTTP/1.0). Every
run lasts ``--seconds`` (at most 10); each figure is the median of ``--runs`` runs (min-max shown),
the runs of both servers interleaved; ratio = our median / http.server's median.

    .venv/bin/python benchmarks/hub.py [--seconds 2] [--concurrency 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.support.procs import free_port, stop_process, wait_for_port, zos_upgrade_cmd  # noqa: E402

FLISTS = REPO / "tests" / "data" / "hub-responses" / "flists"
LIGHT = "/api/flist/golden/app:latest.flist/light"
MAX_SECONDS = 10.0


# --- load generator (its own process) ---------------------------------------------------------------


async def _connection(port: int, request: bytes, until: float, statuses: dict[int, int]) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while time.monotonic() < until:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            version, status = head[0].split(" ", 2)[:2]
            fields = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
            }
            length = fields.get("content-length")
            keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
            if length is not None:
                await reader.readexactly(int(length))
            elif status != "304":
                await reader.read()
                keep_alive = False
            statuses[int(status)] = statuses.get(int(status), 0) + 1
            if not keep_alive:
                writer.close()
                await writer.wait_closed()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


def load(port: int, path: str, header: str, seconds: float, concurrency: int) -> dict[str, object]:
    extra = f"{header}\r\n" if header else ""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()
    statuses: dict[int, int] = {}
    started = time.monotonic()

    async def run() -> None:
        until = started + seconds
        await asyncio.gather(*(_connection(port, request, until, statuses) for _ in range(concurrency)))

    asyncio.run(run())
    return {"rps": sum(statuses.values()) / (time.monotonic() - started), "statuses": statuses}


# --- fixtures: the same files behind both servers ---------------------------------------------------


def build_trees(work: Path) -> tuple[Path, Path, Path, str, str]:
    """(hub root, hub block folder, static root, block path, /light JSON text)."""
    hub_root, blocks, static = work / "hub", work / "blocks", work / "static"
    golden = hub_root / "golden"
    golden.mkdir(parents=True)
    for name in ("v1.flist", "v2.flist"):
        shutil.copyfile(FLISTS / name, golden / name)
    os.symlink("v2.flist", golden / "app:latest.flist")
    block = os.urandom(1024 * 1024)
    hexid = hashlib.blake2b(block, digest_size=32).hexdigest()
    block_path = f"/blocks/{hexid[:2]}/{hexid}"
    (blocks / hexid[:2]).mkdir(parents=True)
    (blocks / hexid[:2] / hexid).write_bytes(block)
    v2 = (FLISTS / "v2.flist").read_bytes()
    st = (golden / "v2.flist").stat()
    light = (
        json.dumps(
            {
                "name": "app:latest.flist",
                "size": len(v2),
                "updated": int(st.st_mtime),
                "type": "symlink",
                "md5": hashlib.md5(v2).hexdigest(),
                "linktime": int((golden / "app:latest.flist").lstat().st_mtime),
                "target": "v2.flist",
            }
        )
        + "\n"
    )
    static_light = static / LIGHT.lstrip("/")
    static_light.parent.mkdir(parents=True)
    static_light.write_text(light)
    (static / block_path.lstrip("/")).parent.mkdir(parents=True)
    (static / block_path.lstrip("/")).write_bytes(block)
    return hub_root, blocks, static, block_path, light


@contextmanager
def server(cmd: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc)
        yield
    finally:
        stop_process(proc)


def measure(port: int, path: str, header: str, seconds: float, concurrency: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), path, header, str(seconds), str(concurrency)],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    seconds = min(args.seconds, MAX_SECONDS)
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        hub_root, blocks, static, block_path, light = build_trees(Path(tmp))
        ours, theirs = free_port(), free_port()
        # the hub's ETag of /light is a hash of the exact body: take it from a first request
        ours_cmd = zos_upgrade_cmd(
            "hub", "serve", "--root", str(hub_root), "--port", str(ours), "--blocks", str(blocks)
        )
        theirs_cmd = [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(static),
            str(theirs),
        ]
        with server(ours_cmd, ours), server(theirs_cmd, theirs):
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{ours}{LIGHT}") as answer:
                assert answer.read().decode() == light, "the static copy must be what the hub answers"
                etag = answer.headers["ETag"]
            with urllib.request.urlopen(f"http://127.0.0.1:{theirs}{LIGHT}") as answer:
                last_modified = answer.headers["Last-Modified"]
            scenarios = [
                ("/light", LIGHT, "", ""),
                (
                    "/light, conditional (304)",
                    LIGHT,
                    f"If-None-Match: {etag}",
                    f"If-Modified-Since: {last_modified}",
                ),
                ("1 MiB block", block_path, "", ""),
            ]
            rows = []
            for label, path, our_header, their_header in scenarios:
                runs: dict[str, list[float]] = {"ours": [], "theirs": []}
                statuses: dict[str, object] = {}
                for _ in range(args.runs):
                    for who, port, header in (("ours", ours, our_header), ("theirs", theirs, their_header)):
                        result = measure(port, path, header, seconds, args.concurrency)
                        runs[who].append(float(result["rps"]))  # type: ignore[arg-type]
                        statuses[who] = result["statuses"]
                rows.append((label, runs, statuses))
    print(f"machine: nproc={os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}")
    print(f"{seconds:g} s per run, {args.concurrency} connections, median of {args.runs} runs\n")
    print("| scenario | hub req/s (min-max) | http.server req/s (min-max) | ratio |")
    print("|---|---:|---:|---:|")
    for label, runs, statuses in rows:
        ours_med, theirs_med = statistics.median(runs["ours"]), statistics.median(runs["theirs"])
        print(
            f"| {label} | {ours_med:.0f} ({min(runs['ours']):.0f}-{max(runs['ours']):.0f}) "
            f"| {theirs_med:.0f} ({min(runs['theirs']):.0f}-{max(runs['theirs']):.0f}) "
            f"| {ours_med / theirs_med:.2f} |"
        )
        print(f"<!-- statuses of the last runs: {statuses} -->")
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        port, path, header, seconds, concurrency = sys.argv[2:7]
        print(json.dumps(load(int(port), path, header, min(float(seconds), MAX_SECONDS), int(concurrency))))
        sys.exit(0)
    sys.exit(main())
