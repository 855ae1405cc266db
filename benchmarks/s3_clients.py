"""S3 client libraries compared: put then get of N blocks of 512 KiB and of 4 KiB, one loopback server.

Which library the ``s3://`` block store uses is decided by these figures (issue 17, item 5a). Every
client talks to the same S3-compatible server (moto's server mode, a child process on a free
loopback port), in the same run, with 8 requests in flight, each into its own key prefix. boto3 (the
reference AWS SDK) is the baseline; ratio = client MB/s / boto3 MB/s of the same size and direction.
The synchronous clients (boto3, minio) run in a pool of 8 threads, as an asyncio store would run
them; obstore is awaited natively. Each figure is the median of ``--runs`` runs, with min-max.
The server (a Python process on the same 2 cores) bounds the MB/s of every client, so the client's own
CPU time per request (``time.process_time`` of the benchmark process, the server excluded) is
reported too: it is what a node or a packer pays per block.

Run: .venv/bin/python benchmarks/s3_clients.py [--big 48] [--small 400] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BUCKET = "bench"
KEY, SECRET, REGION = "bench-key", "bench-secret", "us-east-1"
IN_FLIGHT = 8

Put = Callable[[str, bytes], Awaitable[None]]
Get = Callable[[str], Awaitable[bytes]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(os.sys.executable), "moto_server")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def boto3_client(endpoint: str) -> tuple[Put, Get, Callable[[], None]]:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name=REGION, config=Config(max_pool_connections=IN_FLIGHT))
    pool = ThreadPoolExecutor(IN_FLIGHT)
    loop = asyncio.get_running_loop()

    async def put(key: str, data: bytes) -> None:
        await loop.run_in_executor(pool, lambda: client.put_object(Bucket=BUCKET, Key=key, Body=data))

    async def get(key: str) -> bytes:
        def one() -> bytes:
            body: bytes = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            return body
        return await loop.run_in_executor(pool, one)

    return put, get, pool.shutdown


def minio_client(endpoint: str) -> tuple[Put, Get, Callable[[], None]]:
    import io

    import minio

    client = minio.Minio(endpoint.removeprefix("http://"), access_key=KEY, secret_key=SECRET,
                         region=REGION, secure=False)
    pool = ThreadPoolExecutor(IN_FLIGHT)
    loop = asyncio.get_running_loop()

    async def put(key: str, data: bytes) -> None:
        await loop.run_in_executor(pool, lambda: client.put_object(BUCKET, key, io.BytesIO(data), len(data)))

    async def get(key: str) -> bytes:
        def one() -> bytes:
            response = client.get_object(BUCKET, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()
        return await loop.run_in_executor(pool, one)

    return put, get, pool.shutdown


def obstore_client(endpoint: str) -> tuple[Put, Get, Callable[[], None]]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, endpoint=endpoint, access_key_id=KEY, secret_access_key=SECRET, region=REGION,
                    client_options={"allow_http": True})

    async def put(key: str, data: bytes) -> None:
        await obstore.put_async(store, key, data)

    async def get(key: str) -> bytes:
        result = await obstore.get_async(store, key)
        return bytes(await result.bytes_async())

    return put, get, lambda: None


CLIENTS: dict[str, Callable[[str], tuple[Put, Get, Callable[[], None]]]] = {
    "boto3 (baseline)": boto3_client,
    "obstore": obstore_client,
    "minio": minio_client,
}


async def bounded(jobs: list[Callable[[], Awaitable[Any]]]) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


async def one_run(endpoint: str, name: str, run: int, blocks: dict[str, list[bytes]]) -> dict[str, float]:
    put, get, close = CLIENTS[name](endpoint)
    out: dict[str, float] = {}
    try:
        for size, datas in blocks.items():
            prefix = f"{name.split()[0]}/{run}/{size}"
            keys = [f"{prefix}/{i:06d}" for i in range(len(datas))]
            total = sum(map(len, datas)) / 1e6
            started, cpu = time.perf_counter(), time.process_time()
            await bounded([lambda k=k, d=d: put(k, d) for k, d in zip(keys, datas, strict=True)])
            out[f"put {size}"] = total / (time.perf_counter() - started)
            out[f"client CPU ms per put {size}"] = (time.process_time() - cpu) * 1e3 / len(keys)
            got: list[bytes] = []
            started, cpu = time.perf_counter(), time.process_time()
            await bounded([lambda k=k, into=got: _append(into, get(k)) for k in keys])
            out[f"get {size}"] = total / (time.perf_counter() - started)
            out[f"client CPU ms per get {size}"] = (time.process_time() - cpu) * 1e3 / len(keys)
            if sorted(got) != sorted(datas):
                raise RuntimeError(f"{name}: blocks read back differ from those written")
    finally:
        close()
    return out


async def _append(into: list[bytes], pending: Awaitable[bytes]) -> None:
    into.append(await pending)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=48, help="blocks of 512 KiB per run")
    parser.add_argument("--small", type=int, default=400, help="blocks of 4 KiB per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    blocks = {"512KiB": [os.urandom(512 * 1024) for _ in range(args.big)],
              "4KiB": [os.urandom(4096) for _ in range(args.small)]}
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory():
        proc = start_moto(port)
        try:
            import boto3

            boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                         region_name=REGION).create_bucket(Bucket=BUCKET)
            results: dict[str, dict[str, list[float]]] = {name: {} for name in CLIENTS}
            for run in range(args.runs):
                for name in CLIENTS:  # interleaved, so a change of machine load hits every client
                    for what, mbs in asyncio.run(one_run(endpoint, name, run, blocks)).items():
                        results[name].setdefault(what, []).append(mbs)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.runs} runs, {IN_FLIGHT} in flight, "
          f"{args.big} x 512 KiB and {args.small} x 4 KiB per run, server: moto_server on loopback")
    base = results["boto3 (baseline)"]
    for what in base:
        unit = "lower is better" if what.startswith("client") else "MB/s, higher is better"
        print(f"\n{what} ({unit}; median (min-max), ratio to boto3)")
        for name, figures in results.items():
            values = figures[what]
            med = statistics.median(values)
            print(f"  {name:18} {med:8.2f} ({min(values):.2f}-{max(values):.2f})  "
                  f"{med / statistics.median(base[what]):.2f}")


if __name__ == "__main__":
    main()
