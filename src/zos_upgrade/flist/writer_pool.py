"""File-writer processes of a materialize: started on demand, fed jobs of files, stopped with it.

One Python process writes files at about the speed ``tar -xzf`` does on one core, but gains little
from a second core (the interpreter lock serialises the work between system calls), while ``tar``
and ``gzip`` use two. So a materialize of a big tree hands its regular files to child processes
(``writer_child``), one per core: a child reads a ``dir://`` store itself; for a remote store the
parent fetches what the block cache lacks into it and the child writes from the cache. The parent
keeps everything that decides what is safe: it walks the flist, refuses hostile entries, creates
directories, links and specials, and renames a file into place only after a child has written,
sized and sealed it under its temporary name and the batch is flushed.

Children are started as a fresh interpreter rather than forked: the parent may run threads, and a
fork taken while one holds a lock deadlocks the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zos_upgrade.flist.cache import BlockCache
from zos_upgrade.flist.filewrite import Tally
from zos_upgrade.flist.model import Entry, FlistError
from zos_upgrade.flist.writer_child import HEADER, StoreSpec, frame, job_file, rebuild_error

__all__ = ["WriterPool"]

log = logging.getLogger(__name__)

# Jobs queued per child: enough that a child never waits for the parent between two jobs, few
# enough that the last files still spread over every child.
_QUEUED_PER_CHILD = 2
_CLOSE_TIMEOUT = 30.0

# glibc serves each block-sized buffer (512 KiB read, decrypted, inflated) from a fresh mmap, or from
# heap it just trimmed: either way every byte is a page fault again (70,000 per 200 MB measured).
# A child keeps its freed buffers instead; it holds a few MB at most. The caller's own values win.
_MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(8 * 1024 * 1024),
                  "MALLOC_TRIM_THRESHOLD_": str(64 * 1024 * 1024)}


@dataclass
class _Child:
    proc: asyncio.subprocess.Process
    ready: bool = False
    alive: bool = True
    # per job sent and not answered: its id and each file's path and future
    queued: list[tuple[int, list[tuple[str, asyncio.Future[Tally]]]]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None


class WriterPool:
    """``size`` file-writer processes writing into the destination behind ``dest_fd``."""

    child_module = "zos_upgrade.flist.writer_child"  # what each child runs (``python -m``)

    def __init__(self, size: int, dest_fd: int, cache: BlockCache | None, store: StoreSpec,
                 as_root: bool, *, keep_fetched: bool = True, digests: bool = False) -> None:
        if size < 1:
            raise ValueError(f"a writer pool needs at least one process, got {size}")
        self.size = size
        self._dest_fd = dest_fd
        # digests: children digest each file's content as they write it (``filewrite.content_hasher``)
        self._setup = (dest_fd, None if cache is None else str(cache.root), store, as_root, os.getpid(),
                       keep_fetched, digests)
        self._children: list[_Child] = []
        self._waiting: list[asyncio.Future[None]] = []  # callers of ``room``, first come first woken
        self._next_job = 0
        self._stopping = False  # children exit because we close or kill them: nothing to report

    async def start(self) -> None:
        """Spawn the children; each says ``ready`` once it has loaded what it needs (not waited for)."""
        env = {**_MALLOC_TUNING, **os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        for _ in range(self.size):
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-P", "-m", self.child_module,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, pass_fds=(self._dest_fd,),
                    env=env,
                )
            except OSError as exc:
                log.warning("cannot start a file writer process", extra={"reason": str(exc)})
                continue
            child = _Child(proc)
            self._send(child, self._setup)
            child.reader = asyncio.create_task(self._read_replies(child))
            self._children.append(child)
        self._wake()

    @property
    def ready(self) -> bool:
        """At least one child can take files."""
        return any(c.ready and c.alive for c in self._children)

    @property
    def running(self) -> int:
        """Children started and not exited."""
        return sum(c.alive for c in self._children)

    @property
    def failed(self) -> bool:
        """No child is running or starting: the caller writes files itself."""
        return not any(c.alive for c in self._children)

    async def room(self) -> bool:
        """Wait until a ready child has room for a job (True) or no child is left (False)."""
        while True:
            if self._pick() is not None:
                return True
            if self.failed:
                return False
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken for a slot it will not take: pass it on
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)

    def _wake(self) -> None:
        """Wake as many callers of ``room`` as there are free slots (all of them when no child is
        left): waking every waiter on every reply made the parent spend its time re-checking."""
        alive = [c for c in self._children if c.alive]
        free = len(self._waiting) if not alive else sum(
            _QUEUED_PER_CHILD - len(c.queued) for c in alive if c.ready)
        woken = 0
        for waiter in self._waiting:
            if woken >= free:
                break
            if not waiter.done():
                waiter.set_result(None)
                woken += 1

    def _pick(self) -> _Child | None:
        ready = [c for c in self._children if c.ready and c.alive and len(c.queued) < _QUEUED_PER_CHILD]
        return min(ready, key=lambda c: len(c.queued), default=None)

    def submit(self, files: Sequence[tuple[Entry, str]]) -> list[asyncio.Future[Tally]]:
        """Hand ``files`` (entry, temporary name) to the least busy ready child as one job (call after
        ``room`` said True, no await between): it writes each file under its temporary name beside
        its final one; each future has that file's counts or error."""
        child = self._pick()
        if child is None:
            raise RuntimeError("WriterPool.submit without room")
        loop = asyncio.get_running_loop()
        job = [(entry.path, loop.create_future()) for entry, _tmp in files]
        self._next_job += 1
        self._send(child, (self._next_job, tuple(job_file(entry, tmp) for entry, tmp in files)))
        child.queued.append((self._next_job, job))
        return [done for _path, done in job]

    def _send(self, child: _Child, message: tuple[Any, ...]) -> None:
        assert child.proc.stdin is not None
        # no drain: at most _QUEUED_PER_CHILD jobs are ever unanswered, so the buffer stays small
        child.proc.stdin.write(frame(message))

    async def _read_replies(self, child: _Child) -> None:
        assert child.proc.stdout is not None
        stdout = child.proc.stdout
        try:
            while True:
                size = HEADER.unpack(await stdout.readexactly(HEADER.size))[0]
                reply = marshal.loads(await stdout.readexactly(size))
                if reply[0] == "ready":
                    child.ready = True
                else:
                    self._settle(child, reply)
                self._wake()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the child exited
        except Exception as exc:  # a reply we cannot read: the child is not trusted with more files
            log.error("file writer process sent a malformed reply", extra={"pid": child.proc.pid,
                                                                           "reason": repr(exc)})
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
        finally:
            child.alive = False
            self._wake()
        code = await child.proc.wait()
        if not self._stopping and (child.queued or not child.ready):
            log.warning("file writer process exited", extra={"pid": child.proc.pid, "code": code,
                                                            "started": child.ready})
        for path, done in (file for _job_id, job in child.queued for file in job):
            if not done.done():
                done.set_exception(FlistError(
                    f"{path}: the file writer process {child.proc.pid} exited with code {code} "
                    "before writing it"))
        child.queued.clear()

    def _settle(self, child: _Child, reply: tuple[Any, ...]) -> None:
        """Settle the oldest job's files from ``reply``, read whole first: a reply that does not
        parse, or answers another job, raises before any file is settled, so every file of the job
        fails with the child."""
        job_id, results, records = reply
        if not child.queued:
            raise ValueError(f"an answer to job {job_id!r}, but no job is waiting for one")
        expected_id, job = child.queued[0]
        if job_id != expected_id or len(results) != len(job):
            raise ValueError(f"{len(results)} results for job {job_id!r}; expected job {expected_id} "
                             f"with {len(job)} files")
        outcomes = [Tally(*body) if status == "ok" else rebuild_error(*body) for status, body in results]
        for name, level, message, extra in records:
            logging.getLogger(name).log(level, message, extra=extra)
        child.queued.pop(0)
        for (_path, done), outcome in zip(job, outcomes, strict=True):
            if done.done():  # the file's task was cancelled: the run is failing anyway
                continue
            if isinstance(outcome, Tally):
                done.set_result(outcome)
            else:
                done.set_exception(outcome)

    async def close(self) -> None:
        """After the last file: let every child finish and exit (killed after a generous timeout).
        A child still starting was given nothing: it is killed rather than waited for."""
        self._stopping = True
        for child in self._children:
            if not child.ready:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
            if child.proc.stdin is not None:
                child.proc.stdin.close()
        try:
            await asyncio.wait_for(self._reap(), _CLOSE_TIMEOUT)
        except TimeoutError:
            await self.kill()

    async def kill(self) -> None:
        """Stop every child now and wait until each has exited: after this, nothing writes any more."""
        self._stopping = True
        for child in self._children:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
        await asyncio.shield(self._reap())

    async def _reap(self) -> None:
        for child in self._children:
            await child.proc.wait()
            if child.reader is not None:
                await asyncio.gather(child.reader, return_exceptions=True)
