"""Node stamps (``<state>/cache/node-stamps.json``): which installed files need not be hashed again.

The drift check (``staging.py``) compares each installed file's blake2b with the manifest's, which
costs reading the whole release. A stamp remembers, for a file hashed before, its digest with what
``lstat`` said of it then: inode, size, mode, mtime and ctime in nanoseconds. While all of these
are unchanged the file's content is too: any write, truncation, rename over it, chmod or link count
change moves its ctime, and a ctime cannot be set back (``utime`` sets only mtime and atime; only a
clock moved back could forge it). So a file whose ``lstat`` matches its stamp takes the stamp's
digest without being read; any other is hashed, and stamped again. Stamps are taken by the drift
check and by the apply (``steps.py``), whose check that the node holds what was planned stamps every
applied file, so the next upgrade's drift check reads nothing.

**Handed over, not read again.** The apply need not read a file its writer digested either
(:meth:`NodeStamps.handed`): the writer took the digest of the bytes it wrote and then sealed the
file with the flist's mtime, in the past, and the apply ``lstat``s it right after moving it into
place. A file that is still the writer's inode with the sealed mtime had no write since the seal
(a write stamps the present), and one whose ``lstat`` is what it was right after the move had no
chmod, write or ``utime`` since (each moves the ctime); its record takes the writer's digest. Any
accidental change is so seen; what is not seen is a deliberate one that also puts the mtime back,
made inside the mount (the state directory's own tree) or within the clock tick of the move. The
digest a file is checked against is the writer's in both ways: reading it again would only look
for changes, and would read the disk (big files are written with direct I/O). The check needs no
wait; the stamp of a file whose ctime has not settled yet (below) is taken at the commit
(:meth:`NodeStamps.confirm`), if its ``lstat`` is still what the check saw.

**The racy-timestamp rule.** A stamp is taken only when the file was unchanged across its hashing
(``lstat`` before and after equal) and its ctime was at least :class:`Margin` old when the hashing
began: otherwise a write right after could get the very same ctime (git's "racy" entries). The
kernel stamps a ctime from its coarse clock (``CLOCK_REALTIME_COARSE``, one tick: 1-10 ms), truncated
to the file system's timestamp granularity ``G`` (1 ns on ext4 with large inodes, xfs, btrfs, tmpfs;
100 ns on NTFS; 1-2 s on ext3, FAT, some NFS servers). A change at any time ``t`` gets a ctime above
``t - tick - G``; so when hashing begins at ``t0 >= ctime + tick + G``, every later change gets a
ctime above the recorded one: a tick and a granule are the whole race, not the 2 s a coarse file
system needs. ``G`` is not asked of the file system (no call says it) but bounded from the ctimes
seen: a truncated timestamp's sub-second part is a multiple of ``G``, and ``G`` divides a second (a
power of ten on every Linux file system), so ``G`` divides the gcd of those parts and 10^9. When no
ctime seen has a sub-second part (a coarse file system, or none seen yet) ``G`` is taken as
:data:`SETTLED_NS`, 2 s, the coarsest in use (FAT); a clock tick that cannot be read counts as 2 s too.

The file is only a cache: it may be deleted (everything is hashed again), a damaged or oversized
one is ignored, and a failure to write it is no error. It is renamed into place whole but not
fsynced: after a power loss it may be an older file (its stamps of files changed since name another
inode or ctime, so those are hashed) or an empty one (ignored).
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from zos_upgrade.fsutil import atomic_write_bytes
from zos_upgrade.upgrade.manifest import FileRecord, record_of

if TYPE_CHECKING:
    from zos_upgrade.flist.filewrite import WrittenFile

__all__ = ["SETTLED_NS", "STAMPS_FILE", "UNSTAMPED", "Margin", "NodeStamps", "coarse_tick_ns"]

STAMPS_FILE = "node-stamps.json"  # in <state>/cache
SETTLED_NS = 2_000_000_000  # the granularity assumed when the timestamps cannot be shown finer
_SECOND = 1_000_000_000
_MAX_BYTES = 64 * 1024 * 1024

Stamp = tuple[int, int, int, int, int]  # ino, size, mode, mtime_ns, ctime_ns


class _Unstamped(enum.Enum):
    HASH = "hash"


UNSTAMPED = _Unstamped.HASH  # what :meth:`NodeStamps.stamped` says of a file that must be read


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)


# Linux's CLOCK_REALTIME_COARSE, the clock file times come from (``time`` names it from Python 3.13)
_LINUX_REALTIME_COARSE = 5


def coarse_tick_ns() -> int | None:
    """One tick of the clock the kernel takes file times from, or None where it cannot be read."""
    linux = _LINUX_REALTIME_COARSE if sys.platform == "linux" else None
    clock = getattr(time, "CLOCK_REALTIME_COARSE", linux)
    if clock is None:
        return None
    try:
        return max(1, round(time.clock_getres(clock) * _SECOND))
    except OSError:
        return None


class Margin:
    """How old a ctime must be for a stamp of it to be sound: a clock tick plus the file system's
    timestamp granularity as bounded by the ctimes :meth:`see` was shown (module docstring).
    Safe across threads: a lost update only keeps the bound larger."""

    def __init__(self, tick_ns: int | None = None) -> None:
        # a tick that cannot be read counts as the coarse granularity itself
        self._tick = tick_ns if tick_ns is not None else coarse_tick_ns() or SETTLED_NS
        self._granule = 0  # gcd of the sub-second parts seen: 0 until one is not zero

    def see(self, ctime_ns: int) -> None:
        self._granule = math.gcd(self._granule, ctime_ns % _SECOND)

    def ns(self) -> int:
        if self._granule == 0:
            return self._tick + SETTLED_NS
        # the granularity divides a second and every ctime's sub-second part: so it divides their gcd
        return self._tick + math.gcd(self._granule, _SECOND)


class NodeStamps:
    """The stamps of one node, read once, consulted and renewed by one drift check or one apply."""

    def __init__(self, path: Path, clock: Callable[[], int] = time.time_ns,
                 margin: Margin | None = None) -> None:
        self.path = path
        self._clock = clock
        self.margin = margin if margin is not None else Margin()
        self._old = self._load()
        self._new: dict[str, tuple[str, Stamp]] = {}
        # handed-over files checked before their ctime settled: stamped by ``confirm`` once it has
        self._pending: dict[str, tuple[str, Stamp, Path | str]] = {}
        self.hashed = 0  # files read this time (no stamp, or a stale one)

    def _load(self) -> dict[str, tuple[str, Stamp]]:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(_MAX_BYTES + 1)
            if len(data) > _MAX_BYTES:
                return {}
            return msgspec.json.decode(data, type=dict[str, tuple[str, tuple[int, int, int, int, int]]])
        except (OSError, msgspec.DecodeError):
            return {}

    def record(self, rel: str, path: Path | str) -> FileRecord | None:
        """``record_of(path)``, a regular file's digest taken from its stamp while it is valid."""
        return self._record(rel, path, trust=True)

    def stamped(self, rel: str, path: Path | str) -> FileRecord | _Unstamped | None:
        """What one ``lstat`` tells of ``rel`` without reading it: absent (None), not a regular file
        (its record), a regular file whose stamp holds (its record), else :data:`UNSTAMPED`: the
        caller hashes it with :meth:`record`. A drift check sorts its files with this in one thread
        (a pool would cost more in handing over than the ``lstat`` itself) and hashes the rest on
        every core."""
        before, other = self._regular(path)
        if before is None:
            return other
        kept = self._kept(rel, before)
        return UNSTAMPED if kept is None else kept

    def _regular(self, path: Path | str) -> tuple[os.stat_result | None, FileRecord | None]:
        """A regular file's ``lstat`` (its ctime shown to the margin) and None; or None and the
        record of whatever else is there (None: nothing)."""
        try:
            before = os.lstat(path)
        except FileNotFoundError:
            return None, None
        if not stat.S_ISREG(before.st_mode):
            return None, record_of(Path(path))
        self.margin.see(before.st_ctime_ns)
        return before, None

    def _kept(self, rel: str, before: os.stat_result) -> FileRecord | None:
        """The record the stamp of the regular file ``rel`` gives while ``before`` matches it (the
        stamp renewed), else None."""
        kept, now = self._old.get(rel), _stamp(before)
        if kept is None or tuple(kept[1]) != now:
            return None
        self._new[rel] = (kept[0], now)
        return FileRecord("file", stat.S_IMODE(before.st_mode), before.st_size, kept[0])

    def fresh(self, rel: str, path: Path | str) -> FileRecord | None:
        """``record_of(path)``, hashed whatever its stamp says, and stamped (the apply's check)."""
        return self._record(rel, path, trust=False)

    def handed(self, rel: str, path: Path | str, written: WrittenFile,
               renamed: os.stat_result) -> FileRecord | None:
        """The record of a file the apply just moved into place (``renamed``: its ``lstat`` right after
        the rename): its writer's digest, without a read, while the file is the inode the writer
        sealed, with the mtime it sealed (the flist's, in the past: a write would have stamped the
        present) and nothing changed since the rename (a write, chmod or ``utime`` moves the ctime).
        It is stamped now if its ctime has settled, else once it has (:meth:`confirm`, later: the
        check needs no wait, only the stamp does). Otherwise it is hashed (:meth:`fresh`)."""
        began = self._clock()
        now, other = self._regular(path)
        if now is None:
            return other
        unchanged = (_stamp(now) == _stamp(renamed)
                     and (now.st_ino, now.st_mtime_ns) == (written.ino, written.mtime_ns))
        if not unchanged:
            return self.fresh(rel, path)
        if self._settled(now, began):
            self._new[rel] = (written.digest, _stamp(now))
        else:
            self._pending[rel] = (written.digest, _stamp(now), path)
        return FileRecord("file", stat.S_IMODE(now.st_mode), now.st_size, written.digest)

    def confirm(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Stamp the handed-over files still pending whose ``lstat`` is what it was when they were
        checked, once their ctime has settled: by the commit it has, a restart later (were the
        commit sooner, it waits for what is left of the margin, a few ms at most)."""
        pending, self._pending = self._pending, {}
        self.settle((path for _digest, _stamp, path in pending.values()), sleep)
        for rel, (digest, stamp_then, path) in pending.items():
            began = self._clock()
            with contextlib.suppress(FileNotFoundError):
                now = os.lstat(path)
                if _stamp(now) == stamp_then and self._settled(now, began):
                    self._new[rel] = (digest, stamp_then)

    def _settled(self, st: os.stat_result, began: int) -> bool:
        margin = self.margin.ns()
        return began - st.st_ctime_ns >= margin and began - st.st_mtime_ns >= margin

    def _record(self, rel: str, path: Path | str, *, trust: bool) -> FileRecord | None:
        began = self._clock()  # before the lstat: a change after it cannot keep a settled ctime
        before, other = self._regular(path)
        if before is None:
            return other
        if trust and (kept := self._kept(rel, before)) is not None:
            return kept
        now = _stamp(before)
        self.hashed += 1
        found = record_of(Path(path))
        with contextlib.suppress(FileNotFoundError):
            after = os.lstat(path)
            settled = began - before.st_ctime_ns >= self.margin.ns()
            if found is not None and found.kind == "file" and _stamp(after) == now and settled:
                self._new[rel] = (found.digest, now)
        return found

    def settle(self, paths: Iterable[Path | str], sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait until the ctime of each of ``paths`` is older than the margin (the files were just
        written or renamed: the apply waits once for all, then stamps them as it hashes them)."""
        newest = 0
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                ctime = os.lstat(path).st_ctime_ns
                self.margin.see(ctime)
                newest = max(newest, ctime)
        while (left := newest + self.margin.ns() - self._clock()) > 0:
            sleep(left / _SECOND)

    def forget(self, rels: Iterable[str]) -> None:
        """Drop the stamps of ``rels`` (files removed from the node)."""
        for rel in rels:
            self._old.pop(rel, None)
            self._new.pop(rel, None)

    def save(self, *, keep_old: bool = False) -> None:
        """Keep the stamps of this check (best effort: a cache that cannot be written is no error).
        ``keep_old``: the stamps read that this run did not renew stay too (an apply stamps only
        the files it applied; the drift check before it stamped the others)."""
        stamps = {**self._old, **self._new} if keep_old else self._new
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # not fsynced: a stamp only spares a read, and one lost (or a whole file) costs a hash
            atomic_write_bytes(self.path, msgspec.json.encode(stamps), 0o600, durable=False)
