"""Supervisor round trips per second: zinit line protocol vs zinit JSON-RPC vs supervisord XML-RPC.

The line protocol opens one connection per command (zinit v0.2.0-v0.2.14); JSON-RPC keeps one
connection (v0.2.15+); supervisord's XML-RPC runs each call over a fresh HTTP connection in a
thread. Peers: the zinit emulator from tests/ (a Python asyncio server, so absolute figures say
more about the emulator than about the real Rust zinit) and a real supervisord, each managing 20
``sleep`` services. Each run makes ``--calls`` sequential ``status()`` calls and ``--calls``
``list()`` calls; each figure is the median of ``--runs`` runs (interleaved across back-ends), with
min-max, and the ratio to the line-protocol baseline measured in the same run.

    .venv/bin/python benchmarks/supervisor_requests.py [--calls 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.supervisord import running_supervisord  # noqa: E402
from tests.support.zinit_emulator import running_zinit  # noqa: E402
from zos_upgrade.supervisor import ServiceConfig, Supervisor, stop_many  # noqa: E402
from zos_upgrade.supervisor.supervisord import SupervisordClient  # noqa: E402
from zos_upgrade.supervisor.zinit import ZinitClient  # noqa: E402

SERVICES = [f"bench{i}" for i in range(20)]


async def setup(sup: Supervisor) -> None:
    for name in SERVICES:
        await sup.install_config(name, ServiceConfig(exec="sleep 600"))
        await sup.monitor(name)


async def rate(call: Callable[[], Awaitable[object]], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return n / (time.perf_counter() - started)


def machine() -> str:
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"nproc={os.cpu_count()}, CPU: {model}, Python {platform.python_version()}"


async def bench(clients: dict[str, Supervisor], calls: int, runs: int) -> dict[str, dict[str, list[float]]]:
    for kind, sup in clients.items():
        if kind != "zinit JSON-RPC":  # the same emulator as the line client: set up once
            await setup(sup)
    results: dict[str, dict[str, list[float]]] = {k: {"status": [], "list": []} for k in clients}
    for _ in range(runs):
        for kind, sup in clients.items():
            results[kind]["status"].append(await rate(lambda s=sup: s.status(SERVICES[7]), calls))
            results[kind]["list"].append(await rate(lambda s=sup: s.list(), calls))
    for sup in clients.values():
        await stop_many(sup, SERVICES, 5, poll_interval=0.05)
        await sup.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zu-bench-"))
    try:
        with running_zinit(root, "auto") as zsock, running_supervisord() as sd:
            clients: dict[str, Supervisor] = {
                "zinit line (baseline)": ZinitClient(zsock, "line", root=root),
                "zinit JSON-RPC": ZinitClient(zsock, "jsonrpc", root=root),
                "supervisord XML-RPC": SupervisordClient(sd.socket_path, include_dir=sd.include_dir),
            }
            results = asyncio.run(bench(clients, args.calls, args.runs))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {machine()}")
    print("command: .venv/bin/python benchmarks/supervisor_requests.py"
          f" --calls {args.calls} --runs {args.runs}")
    base = {op: statistics.median(v) for op, v in results["zinit line (baseline)"].items()}
    print(f"{'back-end':24} {'op':7} {'median calls/s':>15} {'min-max':>17} {'ratio':>6}")
    for kind, ops in results.items():
        for op, values in ops.items():
            med = statistics.median(values)
            spread = f"{min(values):.0f}-{max(values):.0f}"
            print(f"{kind:24} {op:7} {med:15.0f} {spread:>17} {med / base[op]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
