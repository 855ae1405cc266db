"""Migration hooks: executables at the release root, run from the staged tree, never copied to the node.

``pre-copy`` runs before services stop, ``post-copy`` right after the files are in place, ``migrate``
after that (convert data), ``post-start`` once the restarted services passed probation. Each runs
with a timeout, with the node root and both versions in its environment. A hook that exists but is
not a regular executable file fails the transaction: silently skipping a migration would be worse.

**What a hook leaves behind is killed when its step ends.** The hook runs in its own session (so
its process group is its pid), and its environment carries a marker unique to this run
(``ZOS_HOOK_RUN``). We wait for the hook process itself, never for its output pipe to close: a child
it backgrounds may hold the pipe for as long as it lives. When the hook has exited (or timed out),
every process still in its group or carrying its marker — also one that called ``setsid`` or
double-forked, which leaves the group but keeps the environment — is SIGKILLed, and only then is
the rest of the output read, with a deadline. A process that both detaches and wipes its
environment escapes this; a cgroup would catch it, but needs privileges the upgrader may not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zos_upgrade.upgrade.errors import HookFailed

__all__ = ["HOOK_MARKER", "Ran", "leftover_processes", "run_bounded", "run_hook"]

log = logging.getLogger(__name__)

HOOK_MARKER = "ZOS_HOOK_RUN"  # the environment variable that names one hook run
_OUTPUT_TAIL = 4096           # bytes of the hook's output kept (stdout and stderr together)
_DRAIN_SECONDS = 1.0          # reading what is left in the pipe once the hook and its leftovers are gone
_KILL_ROUNDS = 50             # scans of /proc, a leftover may fork while we kill
_KILL_PAUSE = 0.02


async def run_hook(
    tree: Path,
    name: str,
    *,
    env: Mapping[str, str],
    timeout: float,
) -> bool:
    """Run ``<tree>/<name>`` if the release has it; True if it ran (and succeeded), False if absent.

    Raises HookFailed when the hook is not a regular executable file, exits non-zero, or runs
    longer than ``timeout`` seconds. Either way, every process it left behind is killed first.
    """
    path = tree / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise HookFailed(f"hook {name}: /{name} in the release is not a regular file (symlinks are refused)")
    if not st.st_mode & stat.S_IXUSR:
        raise HookFailed(
            f"hook {name}: /{name} in the release is not executable (mode {stat.S_IMODE(st.st_mode):o}); "
            "expected an executable file"
        )
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, "ZOS_HOOK": name}
    log.info("running hook", extra={"hook": name})
    try:
        ran = await run_bounded([str(path)], cwd=tree, env=full_env, timeout=timeout)
    except OSError as exc:
        raise HookFailed(f"hook {name}: cannot execute /{name} of the release: {exc}") from exc
    tail, timed_out = ran.output, ran.timed_out
    if ran.killed:
        log.warning("hook left processes behind; killed",
                    extra={"hook": name, "pids": sorted(ran.killed), "timed_out": timed_out})
    if timed_out:
        said = f"; its output: {tail[-500:]}" if tail else ""
        raise HookFailed(f"hook {name}: still running after {timeout:g}s; killed{said}")
    if ran.returncode != 0:
        raise HookFailed(f"hook {name}: exited with status {ran.returncode}: {tail[-500:]}")
    log.info("hook done", extra={"hook": name, "output": tail[-500:]})
    return True


@dataclass(frozen=True)
class Ran:
    """How a bounded child ended: its status (None: killed at the deadline), output tail, leftovers."""

    returncode: int | None
    timed_out: bool
    output: str
    killed: frozenset[int]


async def run_bounded(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float) -> Ran:
    """Run ``argv`` in its own session for at most ``timeout`` seconds; then every process it left
    behind (its group, or its run's HOOK_MARKER) is killed and the rest of its output read.
    OSError when it cannot be started."""
    marker = uuid.uuid4().hex
    read_fd, write_fd = os.pipe()
    try:
        # the pipe is ours, not asyncio's: its transport would tie wait() to the pipe's EOF
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=str(cwd), env={**env, HOOK_MARKER: marker}, stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd, stderr=write_fd, start_new_session=True,
        )
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    output = _Tail(_OUTPUT_TAIL)
    reader = asyncio.create_task(output.read(read_fd))
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await proc.wait()
    except TimeoutError:
        timed_out = True
    finally:
        # also on cancellation: nothing the child started may outlive its step
        killed = await _kill_leftovers(proc.pid, marker)
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())
        await output.finish(reader, _DRAIN_SECONDS)
    return Ran(None if timed_out else proc.returncode, timed_out, output.text(), frozenset(killed))


class _Tail:
    """The last ``limit`` bytes read from a pipe (what a hook printed), read without blocking the loop."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()

    async def read(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            while chunk := await reader.read(65536):
                self._data += chunk
                del self._data[:-self._limit]
        finally:
            transport.close()

    async def finish(self, task: asyncio.Task[None], seconds: float) -> None:
        """Let the reader reach EOF for at most ``seconds`` (a process we could not find may still
        hold the pipe), then stop it."""
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(asyncio.shield(task), seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task

    def text(self) -> str:
        return bytes(self._data).decode("utf-8", "replace").strip()


async def _kill_leftovers(pgid: int, marker: str) -> set[int]:
    """SIGKILL the hook's process group and every process carrying ``marker`` until none is left."""
    killed: set[int] = set()
    for _ in range(_KILL_ROUNDS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        found = await asyncio.to_thread(leftover_processes, pgid, marker)
        found.discard(pgid)  # the hook itself: our child, reaped by proc.wait()
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed |= found
        await asyncio.sleep(_KILL_PAUSE)
    return killed


def leftover_processes(pgid: int, marker: str) -> set[int]:
    """Live processes in process group ``pgid`` or whose environment holds ``HOOK_MARKER=marker``."""
    needle = f"{HOOK_MARKER}={marker}".encode()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
            state, _ppid, pgrp = stat_line[stat_line.rindex(")") + 2:].split()[:3]
            if state in ("Z", "X"):
                continue
            if int(pgrp) == pgid or needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                found.add(int(entry))
        except (OSError, ValueError):
            continue  # gone while we looked, or not ours to read
    return found
