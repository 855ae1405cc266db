"""zinit clients: the line protocol (zinit v0.2.0–v0.2.14) and JSON-RPC 2.0 (v0.2.15+).

Protocol facts (checked against upstream threefoldtech/zinit):
- line: one command per connection, ``CMD [args]\\n``; the reply is one JSON object read to EOF,
  ``{"state": "ok"|"error", "body": ...}``; errors are prose (``service name "x" unknown``).
- JSON-RPC: a persistent connection, newline-framed requests/responses, positional params; the
  server's own error codes are -32000 service not found, -32001 already monitored, -32002 is up,
  -32003 is down, -32004 invalid signal, -32005 config error.
- status object: ``{"name", "pid", "state", "target", "after": {dep: state}}``; states are Rust
  debug strings: ``Running``, ``Success``, ``Error(Exited(Pid(123), 1))``...

At ~430 lines this module is kept whole on purpose: the two protocols share one client, one reply
decoder and one error mapping, and splitting them would put the same server facts in two places.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from zos_upgrade.fsutil import sweep_temps
from zos_upgrade.supervisor._socket import check_socket, connect_error
from zos_upgrade.supervisor.base import ServiceStatus, StateFamily, Supervisor, last_lines
from zos_upgrade.supervisor.config import (
    ServiceConfig,
    normalize_signal,
    parse_service_config,
    remove_config_file,
    render_service_config,
    validate_service_name,
    write_config_file,
)
from zos_upgrade.supervisor.errors import (
    AlreadyMonitored,
    ProtocolError,
    ServiceIsDown,
    ServiceIsUp,
    SupervisorError,
    SupervisorUnavailable,
    UnknownService,
)

__all__ = ["DEFAULT_MAX_REPLY", "ZinitClient", "ZinitProtocol", "parse_zinit_state"]

log = logging.getLogger(__name__)

ZinitProtocol = Literal["line", "jsonrpc", "auto"]
DEFAULT_MAX_REPLY = 4 * 1024 * 1024  # a `list` of thousands of services is a few hundred KiB
_WHAT = "zinit"

_SIMPLE_STATES = {
    "Running": StateFamily.RUNNING,
    "Spawned": StateFamily.STARTING,
    "Unknown": StateFamily.UNKNOWN,
    "Blocked": StateFamily.EXITED,
    "Success": StateFamily.EXITED,
    "Failure": StateFamily.EXITED,
    # The test command failed; the process may still live, so "down" is decided by its pid.
    "TestFailure": StateFamily.UNKNOWN,
}
_EXITED_RE = re.compile(r"^Exited\(Pid\((\d+)\), (-?\d+)\)$")
_SIGNALED_RE = re.compile(r"^Signaled\(Pid\((\d+)\), (\w+)(?:, (?:true|false))?\)$")


def parse_zinit_state(raw: str) -> tuple[StateFamily, str]:
    """``"Error(Exited(Pid(123), 1))"`` -> ``(EXITED, "exited with status 1 (pid 123)")``."""
    if raw in _SIMPLE_STATES:
        detail = "test command failed" if raw == "TestFailure" else ""
        return _SIMPLE_STATES[raw], detail
    if raw.startswith("Error(") and raw.endswith(")"):
        inner = raw[len("Error("):-1]
        if m := _EXITED_RE.match(inner):
            return StateFamily.EXITED, f"exited with status {m.group(2)} (pid {m.group(1)})"
        if m := _SIGNALED_RE.match(inner):
            return StateFamily.EXITED, f"killed by {m.group(2)} (pid {m.group(1)})"
        return StateFamily.EXITED, inner
    return StateFamily.UNKNOWN, f"unrecognised zinit state {raw!r}"


# --- wire objects -------------------------------------------------------------------------------

class _LineReply(msgspec.Struct, forbid_unknown_fields=True):
    state: Literal["ok", "error"]
    body: Any = None


class _RpcError(msgspec.Struct):
    code: int
    message: str
    data: Any = None


class _RpcResponse(msgspec.Struct, forbid_unknown_fields=True):
    jsonrpc: Literal["2.0"]
    id: int | str | None
    result: Any = None
    error: _RpcError | None = None


class _StatusBody(msgspec.Struct):
    name: str
    pid: int
    state: str
    target: str
    after: dict[str, str] = {}


# Upstream's JSON-RPC error codes (zinit src/app/rpc.rs).
_RPC_ERRORS: dict[int, type[SupervisorError]] = {
    -32000: UnknownService,
    -32001: AlreadyMonitored,
    -32002: ServiceIsUp,
    -32003: ServiceIsDown,
}


def _error_from_text(message: str, where: str) -> SupervisorError:
    """Map zinit's error prose (line protocol, and JSON-RPC fallback) onto the typed errors."""
    text = f"{where}: {message}"
    if "unknown" in message and "service" in message:
        return UnknownService(text)
    if "already monitored" in message:
        return AlreadyMonitored(text)
    if "is up" in message:
        return ServiceIsUp(text)
    if "is down" in message:
        return ServiceIsDown(text)
    if "No such file" in message or "os error 2" in message:
        return UnknownService(f"{text} (no config file for the service)")
    return SupervisorError(text)


def _decode_body(body: Any, kind: type[Any], where: str) -> Any:
    try:
        return msgspec.convert(body, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"{where}: reply of the wrong shape: {exc}") from None


class ZinitClient:
    """Talks to zinit over its unix socket; implements ``Supervisor``.

    ``root`` is the node root whose ``etc/zinit/`` holds the service files. ``protocol="auto"``
    probes with a JSON-RPC request once (a line-protocol zinit answers it with a line-protocol
    error) and remembers the answer.
    """

    def __init__(
        self,
        socket_path: Path | str,
        protocol: ZinitProtocol = "auto",
        *,
        root: Path | str = "/",
        timeout: float = 10.0,
        max_reply_bytes: int = DEFAULT_MAX_REPLY,
    ) -> None:
        if protocol not in ("line", "jsonrpc", "auto"):
            raise ValueError(f"protocol must be line, jsonrpc or auto, got {protocol!r}")
        self.socket_path = Path(socket_path)
        self.root = Path(root)
        self._protocol: ZinitProtocol = protocol
        self._timeout = timeout
        self._max = max_reply_bytes
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0

    @property
    def protocol(self) -> ZinitProtocol:
        """``line`` or ``jsonrpc`` once known; ``auto`` until the first call probed."""
        return self._protocol

    @property
    def config_dir(self) -> Path:
        return self.root / "etc" / "zinit"

    # --- Supervisor -----------------------------------------------------------------------------

    async def list(self) -> dict[str, str]:
        body = await self._call("list", "service_list", [])
        result: dict[str, str] = _decode_body(body, dict[str, str], self._where("list"))
        return result

    async def status(self, name: str) -> ServiceStatus:
        validate_service_name(name)
        body = await self._call("status", "service_status", [name])
        st: _StatusBody = _decode_body(body, _StatusBody, self._where("status", name))
        family, detail = parse_zinit_state(st.state)
        return ServiceStatus(name=st.name, pid=st.pid, state=st.state, family=family, detail=detail,
                             target=st.target.lower(), after=st.after)

    async def start(self, name: str) -> None:
        validate_service_name(name)
        await self._call("start", "service_start", [name])

    async def stop(self, name: str) -> None:
        validate_service_name(name)
        await self._call("stop", "service_stop", [name])

    async def monitor(self, name: str) -> None:
        validate_service_name(name)
        await self._call("monitor", "service_monitor", [name])

    async def forget(self, name: str) -> None:
        validate_service_name(name)
        await self._call("forget", "service_forget", [name])

    async def kill(self, name: str, signal: str) -> None:
        validate_service_name(name)
        try:
            sig = normalize_signal(signal)
        except ValueError as exc:
            raise SupervisorError(f"kill {name}: {exc}") from None
        await self._call("kill", "service_kill", [name, sig])

    def sweep_config_temps(self) -> Sequence[Path]:
        return sweep_temps(self.config_dir)

    def reads_configs_from(self, directory: Path) -> bool:
        # zinit reads the yaml files of its config dir itself; the same directory by another path
        # (a symlinked root) still is
        return os.path.realpath(self.config_dir) == os.path.realpath(directory)

    async def install_config(self, name: str, config: ServiceConfig) -> None:
        validate_service_name(name)
        await write_config_file(self.config_dir / f"{name}.yaml", render_service_config(config).encode())

    async def remove_config(self, name: str) -> None:
        validate_service_name(name)
        await remove_config_file(self.config_dir / f"{name}.yaml")

    async def output_tail(self, name: str) -> str:
        """From zinit's ring buffer: ``log snapshot`` (line protocol: raw ``[+] name: text`` lines to
        EOF) or ``stream_currentLogs [name]`` (JSON-RPC: a list of those lines)."""
        validate_service_name(name)
        where = self._where("log snapshot", name)
        try:
            async with asyncio.timeout(self._timeout):
                if self._protocol == "auto":
                    await self._probe()
                if self._protocol == "line":
                    raw = (await self._line_raw("log snapshot", where)).decode("utf-8", "replace")
                    lines: builtins.list[str] = raw.splitlines()
                else:
                    body = await self._rpc_call("stream_currentLogs", [name], where)
                    lines = _decode_body(body, builtins.list[str], where)
        except (SupervisorError, TimeoutError):
            return ""
        # "[+] name: text" is stdout, "[-] name: text" stderr (upstream filters on line[4:] too)
        prefix = f"{name}: "
        mine = [line[4 + len(prefix):] for line in lines if line[4:].startswith(prefix)]
        return last_lines("\n".join(mine))

    async def load_config(self, name: str) -> ServiceConfig:
        """Read and validate the installed config of ``name`` (UnknownService if absent)."""
        validate_service_name(name)
        path = self.config_dir / f"{name}.yaml"
        try:
            text = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise UnknownService(f"no zinit config for service {name!r}: {path} does not exist") from None
        return parse_service_config(text, source=str(path))

    async def aclose(self) -> None:
        await self._drop()

    # --- transport ------------------------------------------------------------------------------

    def _where(self, cmd: str, *args: str) -> str:
        return f"zinit at {self.socket_path}: {' '.join((cmd, *args))}"

    async def _call(self, line_cmd: str, method: str, params: builtins.list[str]) -> Any:
        where = self._where(line_cmd, *params)
        try:
            async with asyncio.timeout(self._timeout):
                if self._protocol == "auto":
                    await self._probe()
                if self._protocol == "line":
                    return await self._line_call(" ".join((line_cmd, *params)), where)
                return await self._rpc_call(method, params, where)
        except TimeoutError:
            await self._drop()
            raise SupervisorUnavailable(f"{where}: no reply within {self._timeout}s") from None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        check_socket(self.socket_path, _WHAT)
        try:
            return await asyncio.open_unix_connection(self.socket_path, limit=self._max)
        except OSError as exc:
            raise connect_error(exc, self.socket_path, _WHAT) from None

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn[1].close()
            with contextlib.suppress(OSError):
                await conn[1].wait_closed()

    async def _read_to_eof(self, reader: asyncio.StreamReader, where: str) -> bytes:
        chunks: builtins.list[bytes] = []
        total = 0
        while chunk := await reader.read(65536):
            total += len(chunk)
            if total > self._max:
                raise ProtocolError(f"{where}: reply larger than {self._max} bytes; refused")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _line_call(self, command: str, where: str) -> Any:
        return self._line_result(await self._line_raw(command, where), where)

    async def _line_raw(self, command: str, where: str) -> bytes:
        """Send one line-protocol command; its whole reply, to EOF (size-limited)."""
        reader, writer = await self._open()
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            raw = await self._read_to_eof(reader, where)
        except (ConnectionError, BrokenPipeError) as exc:
            raise SupervisorUnavailable(f"{where}: connection lost: {exc}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return raw

    def _line_result(self, raw: bytes, where: str) -> Any:
        if not raw:
            raise ProtocolError(f"{where}: zinit closed the connection without a reply")
        try:
            reply = msgspec.json.decode(raw, type=_LineReply)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"{where}: reply of the wrong shape ({exc}); expected "
                                '{"state": "ok"|"error", "body": ...}') from None
        except msgspec.DecodeError:
            raise ProtocolError(f"{where}: reply is not one complete JSON object: {raw[:80]!r}") from None
        if reply.state == "error":
            raise _error_from_text(str(reply.body), where)
        return reply.body

    async def _rpc_exchange(self, method: str, params: builtins.list[str], where: str) -> _RpcResponse:
        if self._conn is None:
            self._conn = await self._open()
        reader, writer = self._conn
        self._next_id += 1
        req_id = self._next_id
        request = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
        try:
            writer.write(msgspec.json.encode(request) + b"\n")
            await writer.drain()
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            await self._drop()
            if not exc.partial:
                raise SupervisorUnavailable(f"{where}: zinit closed the connection") from None
            raise ProtocolError(f"{where}: zinit closed the connection mid-reply") from None
        except asyncio.LimitOverrunError:
            await self._drop()
            raise ProtocolError(f"{where}: reply larger than {self._max} bytes; refused") from None
        except (ConnectionError, BrokenPipeError) as exc:
            await self._drop()
            raise SupervisorUnavailable(f"{where}: connection lost: {exc}") from None
        try:
            response = msgspec.json.decode(line, type=_RpcResponse)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            await self._drop()
            raise ProtocolError(f"{where}: not a JSON-RPC 2.0 response ({exc}): {line[:80]!r}") from None
        if response.id != req_id:
            await self._drop()  # out of step: nothing later on this connection can be trusted
            raise ProtocolError(f"{where}: response id {response.id!r} does not match request id {req_id}")
        return response

    async def _rpc_call(self, method: str, params: builtins.list[str], where: str) -> Any:
        async with self._lock:
            response = await self._rpc_exchange(method, params, where)
        if response.error is not None:
            kind = _RPC_ERRORS.get(response.error.code)
            if kind is not None:
                raise kind(f"{where}: {response.error.message}")
            raise _error_from_text(response.error.message, where)
        return response.result

    async def _probe(self) -> None:
        """Find out which protocol the peer speaks, once (a JSON-RPC request both can answer)."""
        where = self._where("probe")
        async with self._lock:
            if self._protocol != "auto":
                return
            reader, writer = await self._open()
            keep = False
            try:
                line = await self._probe_exchange(reader, writer, where)
                try:
                    doc = msgspec.json.decode(line)
                except msgspec.DecodeError:
                    doc = None
                if isinstance(doc, dict) and doc.get("jsonrpc") == "2.0":
                    self._protocol, self._conn, keep = "jsonrpc", (reader, writer), True
                elif isinstance(doc, dict) and "state" in doc:
                    self._protocol = "line"
                else:
                    raise ProtocolError(
                        f"{where}: neither a JSON-RPC nor a line-protocol reply: {line[:80]!r}"
                    )
            finally:
                if not keep:  # also on timeout or cancellation: never leak the probe connection
                    writer.close()
            log.info("zinit protocol detected", extra={"socket": os.fspath(self.socket_path),
                                                       "protocol": self._protocol})

    async def _probe_exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                              where: str) -> bytes:
        request = {"jsonrpc": "2.0", "id": 0, "method": "service_list", "params": []}
        try:
            writer.write(msgspec.json.encode(request) + b"\n")
            await writer.drain()
            return await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial  # a line-protocol peer replies without a newline and closes
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"{where}: reply larger than {self._max} bytes; refused") from None
        except (ConnectionError, BrokenPipeError) as exc:
            raise SupervisorUnavailable(f"{where}: connection lost: {exc}") from None


if TYPE_CHECKING:  # mypy proves the client implements the whole protocol
    _conforms: Supervisor = ZinitClient("/")
