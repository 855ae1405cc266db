"""supervisord client: XML-RPC over its unix socket, mapped onto the ``Supervisor`` protocol.

supervisord has no "target" and no monitor/forget verbs; the mapping (SPEC 10):
``monitor`` = ``reloadConfig`` + ``addProcessGroup`` (the program file sets autostart, so it starts
like zinit's monitor), ``forget`` = ``removeProcessGroup``, ``kill`` = ``signalProcess``,
``start``/``stop`` = ``startProcess``/``stopProcess`` without waiting (like zinit: stop_many polls).
Service configs become ``[program:<name>]`` files in the include directory.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from zos_upgrade.fsutil import sweep_temps
from zos_upgrade.supervisor._socket import check_socket
from zos_upgrade.supervisor.base import OUTPUT_TAIL_BYTES, ServiceStatus, StateFamily, Supervisor, last_lines
from zos_upgrade.supervisor.config import (
    ServiceConfig,
    normalize_signal,
    remove_config_file,
    validate_service_name,
    write_config_file,
)
from zos_upgrade.supervisor.errors import (
    AlreadyMonitored,
    ProtocolError,
    ServiceIsDown,
    ServiceIsUp,
    SupervisorError,
    UnknownService,
)

if TYPE_CHECKING:
    import xmlrpc.client

__all__ = ["DEFAULT_MAX_REPLY", "SupervisordClient", "render_program"]

DEFAULT_MAX_REPLY = 4 * 1024 * 1024
_WHAT = "supervisord"

# supervisor.xmlrpc.Faults (kept here so this layer does not import supervisord's server code)
BAD_NAME = 10
BAD_SIGNAL = 11
SPAWN_ERROR = 50
ALREADY_STARTED = 60
NOT_RUNNING = 70
ALREADY_ADDED = 90
STILL_RUNNING = 91
CANT_REREAD = 92

_FAMILIES = {
    "STOPPED": StateFamily.EXITED,
    "EXITED": StateFamily.EXITED,
    "FATAL": StateFamily.EXITED,
    "STARTING": StateFamily.STARTING,
    "BACKOFF": StateFamily.STARTING,
    "RUNNING": StateFamily.RUNNING,
    "STOPPING": StateFamily.RUNNING,  # the process is still alive until supervisord reaps it
    "UNKNOWN": StateFamily.UNKNOWN,
}
_UP_STATES = ("STARTING", "BACKOFF", "RUNNING")
_EXITED_TOO_QUICKLY = "Exited too quickly"  # supervisord's spawnerr for an exit before startsecs
_LOG_TAIL = 64 * 1024  # bytes of supervisord's main log searched for a program's last exit
_LOG_FILES = {"stdout": "/dev/stdout", "null": "NONE"}  # "ring": a file of its own, see render_program
_LOG_MAXBYTES = "1MB"  # per program log file, one rotated backup: bounded, and enough for a tail


class _AlreadyStarted(SupervisorError):
    """startProcess of a running program (``start`` treats it as success, as zinit does)."""


class _SpawnFailed(SupervisorError):
    """startProcess found the program already in BACKOFF: it was started and exited at once (or could
    not exec). Like zinit, ``start`` only asks for the start; status and probation report the failure
    with the program's output (a slow machine decides whether the RPC or the exit comes first)."""


class _ProcessInfo(msgspec.Struct):
    name: str
    statename: str
    pid: int
    description: str = ""
    exitstatus: int = 0
    spawnerr: str = ""


def _quote(value: str, *, where: str) -> str:
    """A value for supervisord's INI: no newlines, and '%' doubled (it expands %(x)s)."""
    if any(ord(c) < 32 for c in value):
        raise SupervisorError(f"{where}: control characters cannot go into a supervisord program file")
    return value.replace("%", "%%")


def render_program(name: str, cfg: ServiceConfig, *, start_seconds: int = 1,
                   log_dir: Path | str = "/var/log/supervisor") -> str:
    """The ``[program:<name>]`` section that runs ``cfg`` under supervisord.

    ``test`` and ``after`` have no supervisord equivalent and are not translated. A ``ring`` log
    (zinit's default) becomes ``<log_dir>/<name>.log``: one stable file per service, where
    supervisord's ``AUTO`` would pick a new random name at every reload (one file per transaction,
    never cleaned up while supervisord runs) — and where the upgrader reads a failed service's tail.
    """
    validate_service_name(name)
    where = f"program {name}"
    lines = [
        f"[program:{name}]",
        f"command={_quote(cfg.exec, where=where)}",
        "autostart=true",
        f"autorestart={'false' if cfg.oneshot else 'true'}",
        f"startsecs={0 if cfg.oneshot else start_seconds}",
        "exitcodes=0",
        f"stopsignal={normalize_signal(cfg.signal_stop)[3:]}",
        "stopasgroup=true",
        "killasgroup=true",
        f"stdout_logfile={_log_file(name, cfg, log_dir, where)}",
        "redirect_stderr=true",
    ]
    if cfg.log == "stdout":
        lines.append("stdout_logfile_maxbytes=0")
    elif cfg.log == "ring":
        lines += [f"stdout_logfile_maxbytes={_LOG_MAXBYTES}", "stdout_logfile_backups=1"]
    if cfg.dir:
        lines.append(f"directory={_quote(cfg.dir, where=where)}")
    if cfg.env:
        pairs = []
        for key, value in cfg.env.items():
            escaped = _quote(value, where=where).replace("\\", "\\\\").replace('"', '\\"')
            pairs.append(f'{key}="{escaped}"')
        lines.append("environment=" + ",".join(pairs))
    return "\n".join(lines) + "\n"


def _log_file(name: str, cfg: ServiceConfig, log_dir: Path | str, where: str) -> str:
    if cfg.log != "ring":
        return _LOG_FILES[cfg.log]
    return _quote(str(Path(log_dir) / f"{name}.log"), where=where)


class SupervisordClient:
    """Talks to supervisord over its unix socket; implements ``Supervisor``.

    ``include_dir`` is where ``[program:x]`` files go (supervisord's ``[include]`` must cover
    ``<include_dir>/*.conf``). ``start_seconds`` is supervisord's ``startsecs`` for long-running
    programs (oneshot programs use 0). ``log_dir`` holds one output file per service
    (``<name>.log``; default ``<include_dir>/log``, beside the programs it belongs to).
    """

    def __init__(self, socket_path: Path | str, *, include_dir: Path | str, timeout: float = 10.0,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY, start_seconds: int = 1,
                 log_dir: Path | str | None = None) -> None:
        self.socket_path = Path(socket_path)
        self.include_dir = Path(include_dir)
        self.log_dir = Path(log_dir) if log_dir is not None else self.include_dir / "log"
        self._timeout = timeout
        self._max = max_reply_bytes
        self._start_seconds = start_seconds
        # where each service's log file stood when this client last started it: its output begins there
        self._log_marks: dict[str, int] = {}

    # --- transport ------------------------------------------------------------------------------

    async def _call(self, method: str, *args: Any, name: str = "") -> Any:
        where = f"supervisord at {self.socket_path}: {method}({name})"
        # here: xmlrpc.client imports http.client, which loads OpenSSL; an idle daemon calls nothing
        import xmlrpc.client

        from zos_upgrade.supervisor._xmlrpc import call

        check_socket(self.socket_path, _WHAT)
        try:
            return await call(self.socket_path, f"supervisor.{method}", args, where, timeout=self._timeout,
                              max_reply=self._max)
        except xmlrpc.client.Fault as fault:
            raise self._fault(fault, where, name) from None

    @staticmethod
    def _fault(fault: xmlrpc.client.Fault, where: str, name: str) -> SupervisorError:
        text = f"{where}: {fault.faultString}"
        if fault.faultCode == BAD_NAME:
            return UnknownService(f"{text} (no program {name!r} managed or configured)")
        if fault.faultCode == ALREADY_ADDED:
            return AlreadyMonitored(text)
        if fault.faultCode == STILL_RUNNING:
            return ServiceIsUp(text)
        if fault.faultCode == NOT_RUNNING:
            return ServiceIsDown(text)
        if fault.faultCode == ALREADY_STARTED:
            return _AlreadyStarted(text)
        if fault.faultCode == SPAWN_ERROR:
            return _SpawnFailed(text)
        return SupervisorError(f"{text} (fault {fault.faultCode})")

    # --- Supervisor -----------------------------------------------------------------------------

    async def list(self) -> dict[str, str]:
        infos = await self._call("getAllProcessInfo")
        where = f"supervisord at {self.socket_path}: getAllProcessInfo"
        try:
            parsed = msgspec.convert(infos, builtins.list[_ProcessInfo], strict=True)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"{where}: reply of the wrong shape: {exc}") from None
        return {info.name: info.statename for info in parsed}

    async def status(self, name: str) -> ServiceStatus:
        validate_service_name(name)
        raw = await self._call("getProcessInfo", name, name=name)
        try:
            info = msgspec.convert(raw, _ProcessInfo, strict=True)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"supervisord at {self.socket_path}: getProcessInfo({name}): "
                                f"reply of the wrong shape: {exc}") from None
        family = _FAMILIES.get(info.statename, StateFamily.UNKNOWN)
        detail = info.description
        if info.statename == "EXITED":
            # supervisord's description of EXITED is a date; the exit status is what tells them apart
            detail = f"exited with status {info.exitstatus}"
            if info.spawnerr:
                detail += f" ({info.spawnerr})"
        elif info.statename in ("BACKOFF", "FATAL"):
            # A program that exits before ``startsecs`` goes STARTING -> BACKOFF (FATAL once retries
            # run out) and supervisord CLEARS its exit status: getProcessInfo says 0 whatever the
            # program returned. What it keeps is the reason (``spawnerr``, also the description);
            # the real status only reaches supervisord's own log ("exited: NAME (exit status 1; ...)").
            detail = info.spawnerr or info.description or "failed to start"
            if detail.startswith(_EXITED_TOO_QUICKLY):
                last = await self._last_exit_from_log(name)
                if last:
                    detail += f"; last exit: {last}"
        return ServiceStatus(
            name=name, pid=info.pid, state=info.statename, family=family, detail=detail,
            target="up" if info.statename in _UP_STATES else "down",
        )

    async def _last_exit_from_log(self, name: str) -> str:
        """``exit status N`` / ``terminated by SIGX`` of ``name``'s last exit, from the tail of
        supervisord's main log; "" when the log is not readable (no logfile, syslog, ...)."""
        try:
            tail = await self._call("readLog", -_LOG_TAIL, 0, name=name)
        except SupervisorError:
            return ""
        if not isinstance(tail, str):
            return ""
        found = re.findall(rf"exited: {re.escape(name)} \(([^;)\n]{{1,100}})", tail)
        return str(found[-1]) if found else ""

    async def start(self, name: str) -> None:
        validate_service_name(name)
        self._mark_log(name)
        with contextlib.suppress(_AlreadyStarted, _SpawnFailed):
            await self._call("startProcess", name, False, name=name)

    async def stop(self, name: str) -> None:
        validate_service_name(name)
        with contextlib.suppress(ServiceIsDown):  # already stopped: stop is idempotent, as in zinit
            await self._call("stopProcess", name, False, name=name)

    async def monitor(self, name: str) -> None:
        validate_service_name(name)
        self._mark_log(name)  # the program file sets autostart: this starts it
        await self._call("reloadConfig")
        await self._call("addProcessGroup", name, name=name)

    async def forget(self, name: str) -> None:
        validate_service_name(name)
        await self._call("removeProcessGroup", name, name=name)

    async def kill(self, name: str, signal: str) -> None:
        validate_service_name(name)
        try:
            sig = normalize_signal(signal)
        except ValueError as exc:
            raise SupervisorError(f"kill {name}: {exc}") from None
        await self._call("signalProcess", name, sig[3:], name=name)

    def _program_path(self, name: str) -> Path:
        return self.include_dir / f"{name}.conf"

    def sweep_config_temps(self) -> Sequence[Path]:
        return sweep_temps(self.include_dir)

    def reads_configs_from(self, directory: Path) -> bool:
        # its configs are [program:x] files rendered from the release's yaml: never the yaml itself
        return False

    async def install_config(self, name: str, config: ServiceConfig) -> None:
        data = render_program(name, config, start_seconds=self._start_seconds, log_dir=self.log_dir).encode()
        if config.log == "ring":  # supervisord refuses a program whose log directory is missing
            await asyncio.to_thread(self.log_dir.mkdir, parents=True, exist_ok=True)
        await write_config_file(self._program_path(name), data)

    def _log_size(self, name: str) -> int:
        try:
            return os.stat(self.log_dir / f"{name}.log").st_size
        except OSError:
            return 0  # no log file yet, or the service logs elsewhere (stdout, null)

    def _mark_log(self, name: str) -> None:
        self._log_marks[name] = self._log_size(name)

    async def output_tail(self, name: str) -> str:
        """The last lines of the service's output since this client started it: a log file of a stable
        name holds earlier runs too, and their lines must not pass for the cause of this failure."""
        validate_service_name(name)
        mark = self._log_marks.get(name)
        if mark is None:
            # a negative offset with length 0 reads the last bytes of the program's log file
            offset = -2 * OUTPUT_TAIL_BYTES
        else:
            size = self._log_size(name)
            if size < mark:
                mark = 0  # rotated since the start: the current file is all of this run's output
            offset = max(mark, size - 2 * OUTPUT_TAIL_BYTES)
        try:
            text = await self._call("readProcessStdoutLog", name, offset, 0, name=name)
        except SupervisorError:
            return ""  # no log file (log: stdout/null), or the program is unknown by now
        return last_lines(text) if isinstance(text, str) else ""

    async def remove_config(self, name: str) -> None:
        validate_service_name(name)
        await remove_config_file(self._program_path(name))

    async def aclose(self) -> None:
        """Nothing to release: every call uses its own connection."""


if TYPE_CHECKING:  # mypy proves the client implements the whole protocol
    _conforms: Supervisor = SupervisordClient("/", include_dir="/")
