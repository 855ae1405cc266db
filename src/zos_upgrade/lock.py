"""One daemon per node: an exclusive ``flock`` on a file in the state directory.

``flock`` is released by the kernel when the holder dies, even by SIGKILL, so a crashed daemon never
leaves a stale lock behind; the pid written into the file is only there to name the holder in the
refusal message. :func:`lock_holder` tells who holds it without taking it (``status``): taking
even a shared lock to probe would make a daemon starting at that instant refuse to run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from zos_upgrade.errors import ZosUpgradeError

__all__ = ["LOCK_FILE_NAME", "DaemonLock", "DaemonLocked", "lock_holder"]

LOCK_FILE_NAME = "daemon.lock"
PROC_LOCKS = Path("/proc/locks")


class DaemonLocked(ZosUpgradeError):
    """Another daemon holds the node's lock."""

    def __init__(self, path: Path, holder_pid: int | None) -> None:
        who = f"pid {holder_pid}" if holder_pid else "an unknown process"
        super().__init__(
            f"another zos-upgrade daemon ({who}) holds the lock {path}; "
            "only one daemon may run on a node: stop it first"
        )
        self.path = path
        self.holder_pid = holder_pid


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class DaemonLock:
    """Hold ``<state_dir>/daemon.lock`` for as long as this object is acquired."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DaemonLocked` naming the holder; never waits."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ZosUpgradeError(f"cannot open lock file {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DaemonLocked(self.path, holder) from None
            raise ZosUpgradeError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock. The file stays: unlinking a lock file races with the next daemon opening it."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def lock_holder(state_dir: Path, *, proc_locks: Path = PROC_LOCKS) -> int | None:
    """The pid holding ``<state_dir>/daemon.lock`` (an ``flock``), 0 when it is held by a process of
    another pid namespace, None when nobody holds it (or there is no lock file). Read-only: it reads
    the kernel's lock table (``/proc/locks``: ``N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF``).

    Raises :class:`ZosUpgradeError` when the lock table cannot be read (no procfs).
    """
    try:
        st = os.stat(state_dir / LOCK_FILE_NAME)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ZosUpgradeError(f"cannot stat {state_dir / LOCK_FILE_NAME}: {exc.strerror or exc}") from exc
    try:
        table = proc_locks.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ZosUpgradeError(
            f"cannot read the kernel's lock table {proc_locks}: {exc.strerror or exc}") from exc
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        fields = line.split()
        # "->" marks a waiter blocked on the lock, not its holder
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        pid, where = fields[4], fields[5].split(":")
        if len(where) != 3 or not pid.lstrip("-").isdigit():
            continue
        try:
            key = (int(where[0], 16), int(where[1], 16), int(where[2]))
        except ValueError:
            continue
        if key == wanted:
            return max(0, int(pid))
    return None
