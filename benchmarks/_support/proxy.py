"""A TCP proxy on loopback that counts the bytes each way: what every side of a benchmark sends.

One proxy process serves several routes (a name -> the loopback port of a real server); each route
listens on a port of its own and forwards every connection to its server, counting client->server
(``up``) and server->client (``down``) bytes. The counts are cumulative; a caller reads them before
and after a step and takes the difference, so no reset is needed and nothing races.

Run as a child process (``python -m _support.proxy --route hub=PORT ...`` in ``benchmarks/``) so its work
never shares an interpreter with the side being timed; it prints one JSON line with its ports, and
each connection to its control port receives the counts as one JSON document.
:class:`ProxyProcess` starts one and reads it; :class:`CountingProxy` is the same proxy in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

READ_SIZE = 256 * 1024


@dataclass
class Counts:
    """Bytes through one route so far: ``up`` client -> server, ``down`` server -> client."""

    up: int = 0
    down: int = 0
    connections: int = 0

    def minus(self, before: Counts) -> Counts:
        return Counts(self.up - before.up, self.down - before.down, self.connections - before.connections)

    @property
    def total(self) -> int:
        return self.up + self.down


@dataclass
class _Route:
    name: str
    target: int
    counts: Counts = field(default_factory=Counts)
    port: int = 0


class CountingProxy:
    """Routes ``name -> target port`` on 127.0.0.1; :meth:`start` binds them (free ports)."""

    def __init__(self, targets: Mapping[str, int]) -> None:
        self._routes = {name: _Route(name, port) for name, port in targets.items()}
        self._servers: list[asyncio.Server] = []
        # the loop keeps only weak references to the tasks of connections: these are the strong ones
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> dict[str, int]:
        """Listen on one free loopback port per route; returns name -> listening port."""
        for route in self._routes.values():
            server = await asyncio.start_server(self._handler(route), "127.0.0.1", 0)
            route.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        return self.ports()

    def ports(self) -> dict[str, int]:
        return {name: route.port for name, route in self._routes.items()}

    def counts(self) -> dict[str, Counts]:
        return {name: Counts(r.counts.up, r.counts.down, r.counts.connections)
                for name, r in self._routes.items()}

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    def _handler(self, route: _Route) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                  Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._relay(route, reader, writer)
            finally:
                self._tasks.discard(task)
        return handle

    async def _relay(self, route: _Route, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        route.counts.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", route.target)
        except OSError:
            client_w.close()
            return
        try:
            # both directions until each has ended: an HTTP/1.0 client half-closes, a server answers after
            await asyncio.gather(self._pipe(client_r, server_w, route.counts, "up"),
                                 self._pipe(server_r, client_w, route.counts, "down"))
        finally:
            for writer in (server_w, client_w):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: Counts,
                    direction: str) -> None:
        try:
            while data := await reader.read(READ_SIZE):
                # counted when received, before it is forwarded: a peer that vanished still sent it
                setattr(counts, direction, getattr(counts, direction) + len(data))
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # pass the half-close on: the other direction may still be running
        except OSError:
            # a reset on one side ends this direction; the other ends on its own EOF or reset
            writer.close()


async def _serve(targets: Mapping[str, int]) -> None:
    proxy = CountingProxy(targets)
    ports = await proxy.start()

    async def control(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(json.dumps({name: [c.up, c.down, c.connections]
                            for name, c in proxy.counts().items()}).encode())
        await w.drain()
        w.close()

    server = await asyncio.start_server(control, "127.0.0.1", 0)
    print(json.dumps({"control": server.sockets[0].getsockname()[1], "routes": ports}), flush=True)
    await asyncio.Event().wait()  # until the parent stops this process


class ProxyProcess:
    """The proxy as a child process (stopped by its PID on exit); :meth:`counts` asks its control port."""

    def __init__(self, targets: Mapping[str, int]) -> None:
        self.targets = dict(targets)
        self.ports: dict[str, int] = {}
        self._control = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProxyProcess:
        args = [f"--route={name}={port}" for name, port in self.targets.items()]
        # run from benchmarks/, where _support is a top-level package (as for the benchmark scripts)
        here = Path(__file__).resolve().parents[1]
        self._proc = subprocess.Popen([sys.executable, "-m", "_support.proxy", *args],
                                      stdout=subprocess.PIPE, cwd=here, start_new_session=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self.__exit__(None, None, None)
            raise RuntimeError("the counting proxy exited before it listened")
        started = json.loads(line)
        self._control, self.ports = started["control"], started["routes"]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def counts(self) -> dict[str, Counts]:
        with socket.create_connection(("127.0.0.1", self._control), timeout=10) as sock:
            data = b"".join(iter(lambda: sock.recv(65536), b""))
        return {name: Counts(*values) for name, values in json.loads(data).items()}

    @contextlib.contextmanager
    def measure(self, route: str) -> Iterator[Counts]:
        """The bytes through ``route`` during the block, filled in when it ends."""
        result = Counts()
        before = self.counts()[route]
        yield result
        after = self.counts()[route].minus(before)
        result.up, result.down, result.connections = after.up, after.down, after.connections


def main() -> None:
    parser = argparse.ArgumentParser(description="a counting TCP proxy on loopback")
    parser.add_argument("--route", action="append", default=[], metavar="NAME=PORT")
    args = parser.parse_args()
    targets = {}
    for spec in args.route:
        name, _, port = spec.partition("=")
        if not name or not port.isdigit():
            parser.error(f"--route wants NAME=PORT, got {spec!r}")
        targets[name] = int(port)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(targets))


if __name__ == "__main__":
    main()
