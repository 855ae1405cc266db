"""Cost of one poll per node with TUF (issue 15) vs today's unauthenticated poll, for 1,000 nodes.

One ``zos-upgrade hub serve`` on loopback holds repository ``tf-zos`` (a packed release flist, the
link ``zos:latest.fl``) and its TUF repository (made with ``TrustRepository``, stored where the
hub serves it, ``<root>/.tuf/tf-zos/metadata/``). N simulated nodes, each with its own state:

- **baseline**: today's poll, ``HubClient.info`` of the link (``/light``; the client remembers the
  ETag, so an unchanged link is a 304), one long-lived client per node as the daemon keeps;
- **TUF**: the node's ``TrustedRepo.refresh()`` (python-tuf ngclient: the next root version, then
  ``timestamp.json`` conditional on its ETag; snapshot and targets only when they changed), with
  the node's own cache folder and fetcher (its ETag memory kept).

Both close their connections after each poll (a node polls every few minutes; the hub's keep-alive
is 75 s), so every poll pays one TCP connection, as on a real fleet.

Each run measures an *unchanged* poll of every node, then publishes a new release (hub link moved;
TUF: signed, linked, timestamp last) and measures the *changed* poll of every node. Per poll:
bytes on the wire (request and response: start line, headers, body, as counted by an httpx
transport), the client's CPU (``time.process_time`` of this process) and the hub's CPU
(``utime + stime`` of the hub process, ``/proc/<pid>/stat``). The client's CPU counts the poll
call only (the client objects are made once, before). Medians of ``--runs`` runs; ratio =
TUF / baseline, same run, same machine.

    .venv/bin/python benchmarks/bench_trust_poll.py [--nodes 1000] [--runs 3]
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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.node import Sandbox, service_release  # noqa: E402
from zos_upgrade.hub.client import HubClient  # noqa: E402
from zos_upgrade.trust.client import TrustedRepo  # noqa: E402
from zos_upgrade.trust.fetcher import HttpxFetcher  # noqa: E402
from zos_upgrade.trust.keys import KeyStore  # noqa: E402
from zos_upgrade.trust.layout import hub_metadata_url, hub_targets_url  # noqa: E402
from zos_upgrade.trust.repository import TrustRepository  # noqa: E402

REPO_NAME, LINK = "tf-zos", "zos:latest.fl"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Wire:
    """Bytes both ways, counted at the transport: start lines, headers, bodies."""

    sent: int = 0
    received: int = 0
    requests: int = 0

    def request(self, request: httpx.Request) -> None:
        self.requests += 1
        self.sent += len(f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n")
        self.sent += sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2 + len(request.content)

    def response(self, response: httpx.Response) -> None:
        self.received += len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
        self.received += sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 2


class _Counted(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, wire: Wire) -> None:
        self._stream, self._wire = stream, wire

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._stream, httpx.SyncByteStream)
        for chunk in self._stream:
            self._wire.received += len(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._stream, httpx.AsyncByteStream)
        async for chunk in self._stream:
            self._wire.received += len(chunk)
            yield chunk

    def close(self) -> None:
        assert isinstance(self._stream, httpx.SyncByteStream)
        self._stream.close()

    async def aclose(self) -> None:
        assert isinstance(self._stream, httpx.AsyncByteStream)
        await self._stream.aclose()


class CountingTransport(httpx.HTTPTransport):
    def __init__(self, wire: Wire) -> None:
        super().__init__()
        self.wire = wire

    def hang_up(self) -> None:
        self._pool.close()  # the pool stays usable: the next poll opens a new connection

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.wire.request(request)
        response = super().handle_request(request)
        self.wire.response(response)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Counted(response.stream, self.wire)
        return response


class AsyncCountingTransport(httpx.AsyncHTTPTransport):
    def __init__(self, wire: Wire) -> None:
        super().__init__()
        self.wire = wire

    async def hang_up(self) -> None:
        await self._pool.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.wire.request(request)
        response = await super().handle_async_request(request)
        self.wire.response(response)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Counted(response.stream, self.wire)
        return response


def hub_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Figure:
    bytes: float
    client_ms: float
    hub_ms: float
    requests: float


@dataclass
class World:
    box: Sandbox
    hub_pid: int
    signer: TrustRepository
    served: Path
    nodes: int
    version: int = 0
    wire_tuf: Wire = field(default_factory=Wire)
    wire_hub: Wire = field(default_factory=Wire)
    repos: list[tuple[TrustedRepo, CountingTransport]] = field(default_factory=list)
    hubs: list[tuple[HubClient, AsyncCountingTransport]] = field(default_factory=list)
    client_cpu: float = 0.0  # seconds spent in poll calls, summed

    def release(self) -> None:
        """A new release on the hub: packed, linked; signed and linked in TUF, metadata served."""
        self.version += 1
        name = f"zos:1.{self.version}.0.fl"
        file = self.box.pack(name, service_release(self.box.root, f"1.{self.version}.0"))
        self.box.link(LINK, name)
        self.signer.sign_flists([(name, file)])
        self.signer.link(LINK, name)
        self.served.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.signer.metadata_dir.iterdir(), key=lambda p: p.name == "timestamp.json"):
            shutil.copyfile(path, self.served / path.name)

    def make_nodes(self) -> None:
        hub = self.box.hub_url
        for index in range(self.nodes):
            transport = CountingTransport(self.wire_tuf)
            repo = TrustedRepo(self.box.base / "nodes" / str(index) / "trust" / REPO_NAME,
                               hub_metadata_url(hub, REPO_NAME), hub_targets_url(hub, REPO_NAME),
                               self.signer.metadata_dir / "1.root.json", HttpxFetcher(transport=transport),
                               name=REPO_NAME)
            self.repos.append((repo, transport))
            hub_transport = AsyncCountingTransport(self.wire_hub)
            self.hubs.append((HubClient(hub, transport=hub_transport), hub_transport))


def measure(world: World, wire: Wire, poll_all: Callable[[], None]) -> Figure:
    before = (wire.sent + wire.received, wire.requests, world.client_cpu, hub_cpu(world.hub_pid))
    poll_all()
    after = (wire.sent + wire.received, wire.requests, world.client_cpu, hub_cpu(world.hub_pid))
    n = world.nodes
    return Figure(bytes=(after[0] - before[0]) / n, requests=(after[1] - before[1]) / n,
                  client_ms=(after[2] - before[2]) * 1000 / n, hub_ms=(after[3] - before[3]) * 1000 / n)


def poll_tuf(world: World) -> None:
    for repo, transport in world.repos:
        started = time.process_time()
        repo.refresh()
        world.client_cpu += time.process_time() - started
        transport.hang_up()


def poll_hub(world: World, loop: asyncio.AbstractEventLoop) -> None:
    async def run() -> None:
        for client, transport in world.hubs:
            started = time.process_time()
            await client.info(f"{REPO_NAME}/{LINK}")
            world.client_cpu += time.process_time() - started
            await transport.hang_up()

    loop.run_until_complete(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="zu-bench-trust-"))
    try:
        box = Sandbox(base)
        with box.serving_hub():
            pid = _hub_pid(box)
            signer = TrustRepository.init(base / "tuf" / "metadata", KeyStore(base / "tuf" / "keys"))
            world = World(box, pid, signer, box.hub_root / ".tuf" / REPO_NAME / "metadata", args.nodes)
            world.release()
            loop = asyncio.new_event_loop()
            world.make_nodes()
            poll_tuf(world)  # first contact: every node downloads the whole metadata once (not measured)
            poll_hub(world, loop)
            results: dict[str, list[Figure]] = {k: [] for k in ("hub same", "tuf same", "hub new", "tuf new")}
            for run in range(args.runs):
                results["hub same"].append(measure(world, world.wire_hub, lambda: poll_hub(world, loop)))
                results["tuf same"].append(measure(world, world.wire_tuf, lambda: poll_tuf(world)))
                world.release()
                results["hub new"].append(measure(world, world.wire_hub, lambda: poll_hub(world, loop)))
                results["tuf new"].append(measure(world, world.wire_tuf, lambda: poll_tuf(world)))
                print(f"run {run + 1}: " + "; ".join(
                    f"{k} {v[-1].bytes:.0f} B {v[-1].client_ms:.2f}/{v[-1].hub_ms:.2f} ms"
                    for k, v in results.items()), flush=True)
        _report(results, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def _hub_pid(box: Sandbox) -> int:
    """The pid of the process listening on the hub's port (``serving`` keeps the Popen to itself)."""
    port = int(box.hub_url.rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":
                inodes.add(cols[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").rstrip("]") in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def _report(results: dict[str, list[Figure]], args: argparse.Namespace) -> None:
    def med(key: str, attr: str) -> float:
        return statistics.median(getattr(f, attr) for f in results[key])

    def span(key: str, attr: str) -> str:
        values = [getattr(f, attr) for f in results[key]]
        return f"{min(values):.2f}-{max(values):.2f}"

    print(f"\n{args.nodes} nodes, median of {args.runs} runs; machine: {platform.machine()}, "
          f"nproc {os.cpu_count()}, Python {platform.python_version()}, load {os.getloadavg()}")
    print("| poll | scenario | requests | bytes | client CPU ms (min-max) | hub CPU ms (min-max) |")
    print("|---|---|---:|---:|---:|---:|")
    for key, label in (("hub same", "today (`/light`)"), ("tuf same", "TUF refresh"),
                       ("hub new", "today (`/light`)"), ("tuf new", "TUF refresh")):
        scenario = "unchanged" if key.endswith("same") else "new release"
        print(f"| {label} | {scenario} | {med(key, 'requests'):.1f} | {med(key, 'bytes'):.0f} | "
              f"{med(key, 'client_ms'):.2f} ({span(key, 'client_ms')}) | "
              f"{med(key, 'hub_ms'):.2f} ({span(key, 'hub_ms')}) |")
    for scenario in ("same", "new"):
        ratios = {attr: med(f"tuf {scenario}", attr) / max(med(f"hub {scenario}", attr), 1e-9)
                  for attr in ("bytes", "client_ms", "hub_ms")}
        print(f"ratio TUF/today, {'unchanged' if scenario == 'same' else 'new release'}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    sys.exit(main())
