"""A zinit emulator for tests: a unix-socket server speaking zinit's line protocol and JSON-RPC 2.0.

Written from SPEC 10 and the upstream sources (threefoldtech/zinit): it spawns REAL child processes
from ``<root>/etc/zinit/<name>.yaml`` and keeps zinit's state machine — a target (Up/Down), respawn
after exit while the target is Up (after ``--respawn-delay``, zinit waits 2 s), oneshot services run
once, ``forget`` only when down, ``after`` dependencies waited for best-effort. Where it follows
upstream: error texts (``service name "x" unknown``, ``service "x" already monitored``,
``service "x" is up``/``is down``), JSON-RPC error codes -32000..-32005, the status object shape,
Rust-debug state strings (``Error(Exited(Pid(12), 1))``), signals sent to the process group.

Run it as a peer: ``python -m tests.support.zinit_emulator --socket S --root R [--protocol P]``;
``--protocol auto`` (default) picks per connection: a first line starting with ``{`` is JSON-RPC.
Logs: a ``log: ring`` service's stdout and stderr lines go to one ring buffer as upstream writes them
(``[+] name: text`` for stdout, ``[-] name: text`` for stderr); the line protocol's ``log snapshot``
writes the buffer as raw lines and closes (``log`` without ``snapshot`` follows in upstream; here it
sends the snapshot too), JSON-RPC's ``stream_currentLogs [name]`` returns the lines of one service.
``running_zinit(root)`` does that for a test and stops it (and every child) afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zos_upgrade.errors import ConfigError
from zos_upgrade.supervisor.config import ServiceConfig, normalize_signal, parse_service_config

MAX_REQUEST = 64 * 1024
RING_LINES = 2000  # the ring buffer's size in lines (upstream keeps a bounded buffer too)


class ZinitFault(Exception):
    """An error zinit reports to its client (text as upstream words it, plus the JSON-RPC code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _unknown(name: str) -> ZinitFault:
    return ZinitFault(-32000, f'service name "{name}" unknown')


@dataclass
class Service:
    name: str
    config: ServiceConfig
    target: str = "Up"
    state: str = "Unknown"
    pid: int = 0
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None


class Zinit:
    """The state machine; one instance per emulator process."""

    def __init__(self, root: Path, *, respawn_delay: float = 0.2, dep_wait: float = 5.0) -> None:
        self.root = root
        self.respawn_delay = respawn_delay
        self.dep_wait = dep_wait
        self.services: dict[str, Service] = {}
        self.logs: collections.deque[str] = collections.deque(maxlen=RING_LINES)

    def current_logs(self, name: str | None = None) -> list[str]:
        """The ring buffer's lines, of one service when ``name`` is given (upstream's filter)."""
        return [line for line in self.logs if name is None or line[4:].startswith(f"{name}:")]

    async def _collect(self, name: str, stream: asyncio.StreamReader | None, mark: str) -> None:
        if stream is None:
            return
        while line := await stream.readline():
            self.logs.append(f"[{mark}] {name}: {line.decode(errors='replace').rstrip()}")

    def _get(self, name: str) -> Service:
        svc = self.services.get(name)
        if svc is None:
            raise _unknown(name)
        return svc

    def _load(self, name: str) -> ServiceConfig:
        path = self.root / "etc" / "zinit" / f"{name}.yaml"
        try:
            return parse_service_config(path.read_bytes(), source=str(path))
        except FileNotFoundError:
            raise ZinitFault(-32005, f"failed to load service configuration {path}: "
                                     "No such file or directory (os error 2)") from None
        except ConfigError as exc:
            raise ZinitFault(-32005, f"failed to load service configuration: {exc}") from None

    # --- commands -------------------------------------------------------------------------------

    def list(self) -> dict[str, str]:
        return {name: svc.state for name, svc in self.services.items()}

    def status(self, name: str) -> dict[str, Any]:
        svc = self._get(name)
        after = {dep: (self.services[dep].state if dep in self.services else "Unknown")
                 for dep in svc.config.after}
        return {"name": name, "pid": svc.pid, "state": svc.state, "target": svc.target, "after": after}

    def monitor(self, name: str) -> None:
        if name in self.services:
            raise ZinitFault(-32001, f'service "{name}" already monitored')
        svc = Service(name, self._load(name))
        self.services[name] = svc
        self._ensure_running(svc)

    def start(self, name: str) -> None:
        svc = self._get(name)
        svc.target = "Up"
        self._ensure_running(svc)

    def stop(self, name: str) -> None:
        svc = self._get(name)
        svc.target = "Down"
        if svc.proc is not None and svc.proc.returncode is None:
            self._signal(svc, normalize_signal(svc.config.signal_stop))

    def forget(self, name: str) -> None:
        svc = self._get(name)
        if svc.target == "Up" or svc.pid != 0:
            raise ZinitFault(-32002, f'service "{name}" is up')
        if svc.task is not None:
            svc.task.cancel()
        del self.services[name]

    def kill(self, name: str, sig: str) -> None:
        svc = self._get(name)
        try:
            signame = normalize_signal(sig)
        except ValueError:
            raise ZinitFault(-32004, f"invalid signal {sig!r}") from None
        if svc.proc is None or svc.proc.returncode is not None:
            raise ZinitFault(-32003, f'service "{name}" is down')
        self._signal(svc, signame)

    # --- process supervision --------------------------------------------------------------------

    def _signal(self, svc: Service, signame: str) -> None:
        sig = signal.Signals[signame]
        try:
            os.killpg(svc.pid, sig)
        except ProcessLookupError:
            # spawned but not yet its own group leader (setsid runs in the child before exec)
            with contextlib.suppress(ProcessLookupError):
                os.kill(svc.pid, sig)

    def _ensure_running(self, svc: Service) -> None:
        if svc.task is None or svc.task.done():
            svc.task = asyncio.get_running_loop().create_task(self._supervise(svc))

    async def _wait_dependencies(self, svc: Service) -> None:
        deadline = time.monotonic() + self.dep_wait
        while time.monotonic() < deadline:
            pending = [d for d in svc.config.after
                       if d in self.services and self.services[d].state not in ("Running", "Success")]
            if not pending:
                return
            svc.state = "Blocked"
            await asyncio.sleep(0.05)

    async def _supervise(self, svc: Service) -> None:
        cfg = svc.config
        while svc.target == "Up":
            await self._wait_dependencies(svc)
            if svc.target != "Up":
                break
            out: int | None = {"stdout": None, "ring": subprocess.PIPE}.get(cfg.log, subprocess.DEVNULL)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *shlex.split(cfg.exec), cwd=cfg.dir or None, env={**os.environ, **cfg.env},
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                )
            except (OSError, ValueError):
                svc.state = "Failure"
                return
            svc.proc, svc.pid, svc.state = proc, proc.pid, "Spawned"
            collectors = [asyncio.get_running_loop().create_task(self._collect(svc.name, pipe, mark))
                          for pipe, mark in ((proc.stdout, "+"), (proc.stderr, "-"))]
            tester = asyncio.get_running_loop().create_task(self._run_test(svc, proc)) if cfg.test else None
            if tester is None:
                svc.state = "Running"
            code = await proc.wait()
            with contextlib.suppress(asyncio.TimeoutError):  # a child of the service may hold the pipe
                await asyncio.wait_for(asyncio.gather(*collectors), 1.0)
            if tester is not None:
                tester.cancel()
            pid, svc.pid, svc.proc = proc.pid, 0, None
            if code == 0:
                svc.state = "Success"
            elif code < 0:
                svc.state = f"Error(Signaled(Pid({pid}), {signal.Signals(-code).name}, false))"
            else:
                svc.state = f"Error(Exited(Pid({pid}), {code}))"
            if cfg.oneshot:
                return
            if svc.target == "Up":
                await asyncio.sleep(self.respawn_delay)

    async def _run_test(self, svc: Service, proc: asyncio.subprocess.Process) -> None:
        for _ in range(100):
            test = await asyncio.create_subprocess_exec(
                *shlex.split(svc.config.test), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if await test.wait() == 0:
                if proc.returncode is None:
                    svc.state = "Running"
                return
            await asyncio.sleep(0.05)
        svc.state = "TestFailure"

    async def shutdown(self) -> None:
        for svc in self.services.values():
            svc.target = "Down"
            if svc.task is not None:
                svc.task.cancel()
            if svc.proc is not None and svc.proc.returncode is None:
                self._signal(svc, "SIGKILL")


# --- the two wire protocols ---------------------------------------------------------------------

def dispatch(zinit: Zinit, command: str, args: list[Any]) -> Any:
    """Run one command; both protocols end up here. Raises ZinitFault."""
    names = {"list": 0, "status": 1, "start": 1, "stop": 1, "monitor": 1, "forget": 1, "kill": 2}
    if command == "current_logs" and len(args) <= 1 and all(isinstance(a, str) for a in args):
        return zinit.current_logs(*args)
    if command not in names or len(args) != names[command] or not all(isinstance(a, str) for a in args):
        raise ZinitFault(-32602, f"unknown command '{command}' or wrong arguments")
    result: Any = getattr(zinit, command)(*args)
    return result


async def serve_line(zinit: Zinit, first: bytes, writer: asyncio.StreamWriter) -> None:
    parts = first.decode(errors="replace").strip().split(" ")
    if parts[0] == "log" and len(parts) <= 2 and parts[1:] in ([], ["snapshot"]):
        for line in zinit.current_logs():  # raw lines, not a JSON reply, as upstream sends them
            writer.write(line.encode() + b"\n")
        await writer.drain()
        return
    try:
        reply = {"state": "ok", "body": dispatch(zinit, parts[0], parts[1:])}
    except ZinitFault as exc:
        reply = {"state": "error", "body": str(exc)}
    writer.write(json.dumps(reply).encode())
    await writer.drain()


_RPC_METHODS = {
    "service_list": "list", "service_status": "status", "service_start": "start",
    "service_stop": "stop", "service_monitor": "monitor", "service_forget": "forget",
    "service_kill": "kill", "stream_currentLogs": "current_logs",
}


def rpc_reply(zinit: Zinit, line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except ValueError:
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid request"}}
    req_id = req.get("id")
    method = _RPC_METHODS.get(req["method"])
    if method is None:
        return {"jsonrpc": "2.0", "id": req_id, "error": {"code": -32601, "message": "Method not found"}}
    params = req.get("params", [])
    if isinstance(params, dict):  # upstream also accepts named params
        params = [params[k] for k in ("name", "signal") if k in params]
    try:
        return {"jsonrpc": "2.0", "id": req_id, "result": dispatch(zinit, method, list(params))}
    except ZinitFault as exc:
        return {"jsonrpc": "2.0", "id": req_id, "error": {"code": exc.code, "message": str(exc)}}


async def serve_jsonrpc(zinit: Zinit, first: bytes, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    line = first
    while line:
        if line.strip():
            writer.write(json.dumps(rpc_reply(zinit, line)).encode() + b"\n")
            await writer.drain()
        line = await reader.readline()


def make_handler(zinit: Zinit, protocol: str) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readline()
            mode = protocol
            if mode == "auto":
                mode = "jsonrpc" if first.lstrip().startswith(b"{") else "line"
            if mode == "line":
                await serve_line(zinit, first, writer)
            else:
                await serve_jsonrpc(zinit, first, reader, writer)
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return handle


async def run(socket_path: Path, root: Path, protocol: str, respawn_delay: float) -> None:
    zinit = Zinit(root, respawn_delay=respawn_delay)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    server = await asyncio.start_unix_server(make_handler(zinit, protocol), socket_path, limit=MAX_REQUEST)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    await zinit.shutdown()
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--protocol", choices=("line", "jsonrpc", "auto"), default="auto")
    parser.add_argument("--respawn-delay", type=float, default=0.2)
    args = parser.parse_args(argv)
    asyncio.run(run(args.socket, args.root, args.protocol, args.respawn_delay))


# --- for tests: run it as a real peer -----------------------------------------------------------

def wait_for_unix_socket(path: Path, proc: subprocess.Popen[bytes] | None = None,
                         timeout: float = 10.0) -> None:
    """Block until something accepts connections on the unix socket ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {path}:\n{out}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {path} after {timeout}s")


def short_socket_dir() -> Path:
    """A fresh directory with a short path: unix socket paths are limited to ~107 bytes."""
    return Path(tempfile.mkdtemp(prefix="zu-sock-", dir="/tmp"))


@contextlib.contextmanager
def running_zinit(root: Path, protocol: str = "auto", *, socket_path: Path | None = None,
                  respawn_delay: float = 0.2) -> Iterator[Path]:
    """Run the emulator for the duration of the block; yields its socket path."""
    from tests.support.procs import REPO, stop_process

    sock_dir = None
    if socket_path is None:
        sock_dir = short_socket_dir()
        socket_path = sock_dir / "zinit.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.zinit_emulator", "--socket", str(socket_path),
         "--root", str(root), "--protocol", protocol, "--respawn-delay", str(respawn_delay)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_unix_socket(socket_path, proc)
        yield socket_path
    finally:
        stop_process(proc)
        if proc.stdout:
            proc.stdout.close()
        if sock_dir is not None:
            with contextlib.suppress(OSError):
                socket_path.unlink()
            with contextlib.suppress(OSError):
                sock_dir.rmdir()


if __name__ == "__main__":
    main()
