"""Migration hooks: executables at the release root, run from the staged tree, never copied to the node.

``pre-copy`` runs before services stop, ``post-copy`` right after the files are in place, ``migrate``
after that (convert data), ``post-start`` once the restarted services passed probation. Each runs
with a timeout in its own process group (so a hanging hook and its children are killed together),
with the node root and both versions in its environment. A hook that exists but is not a regular
executable file fails the transaction: silently skipping a migration would be worse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from collections.abc import Mapping
from pathlib import Path

from zos_upgrade.upgrade.errors import HookFailed

__all__ = ["run_hook"]

log = logging.getLogger(__name__)

_OUTPUT_TAIL = 4096


async def run_hook(
    tree: Path,
    name: str,
    *,
    env: Mapping[str, str],
    timeout: float,
) -> bool:
    """Run ``<tree>/<name>`` if the release has it; True if it ran (and succeeded), False if absent.

    Raises HookFailed when the hook is not a regular executable file, exits non-zero, or runs
    longer than ``timeout`` seconds (then its whole process group is killed).
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
        proc = await asyncio.create_subprocess_exec(
            str(path), cwd=str(tree), env=full_env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
    except OSError as exc:
        raise HookFailed(f"hook {name}: cannot execute /{name} of the release: {exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            output, _ = await proc.communicate()
    except TimeoutError:
        _kill_group(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()
        raise HookFailed(f"hook {name}: still running after {timeout:g}s; killed") from None
    except BaseException:
        _kill_group(proc.pid)
        raise
    tail = output[-_OUTPUT_TAIL:].decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise HookFailed(f"hook {name}: exited with status {proc.returncode}: {tail[-500:]}")
    log.info("hook done", extra={"hook": name, "output": tail[-500:]})
    return True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
