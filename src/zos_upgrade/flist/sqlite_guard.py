"""The guards every SQLite database of an flist is read behind (v2 as it is, v1 inside its tar.gz).

An flist is a database someone else wrote. Its schema is code: a view runs a query (a recursive
one never ends), a trigger or a virtual table runs more, a generated column computes on read. So
before any query the schema must hold only the tables and indexes the format defines
(:func:`check_schema`), and every query runs under a :class:`QueryGuard`: a budget of SQLite
virtual-machine steps scaled to the database's size, an optional deadline, and a cap on the length
of any value, each stopping the statement with a :class:`FlistTooCostly` that says which bound it hit.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection

from zos_upgrade.flist.model import FlistError, FlistTooCostly, HostileFlist, Limits

__all__ = ["Deadline", "QueryGuard", "check_schema"]

log = logging.getLogger(__name__)

_STEPS_PER_CALL = 1000  # how often SQLite calls the progress handler (VM instructions)
_MIN_STEPS = 5_000_000  # a tiny database still gets room for its fixed per-query costs
_INTERNAL_TABLES = frozenset({"sqlite_sequence"})  # AUTOINCREMENT's own table
_MAX_VALUE_BYTES = 2**31 - 1


class Deadline:
    """``limits.max_seconds`` from now on ``limits.clock`` (never, when it is None)."""

    def __init__(self, limits: Limits, source: str) -> None:
        self.source = source
        self.seconds = limits.max_seconds
        self._clock = limits.clock
        self._at = None if limits.max_seconds is None else limits.clock() + limits.max_seconds

    def passed(self) -> bool:
        return self._at is not None and self._clock() > self._at

    def error(self) -> FlistTooCostly:
        return FlistTooCostly(
            f"{self.source}: reading the flist took longer than the {self.seconds} s allowed"
        )

    def check(self) -> None:
        """Raise :class:`FlistTooCostly` once the deadline has passed."""
        if self.passed():
            raise self.error()


class QueryGuard:
    """Bounds the work, the time and the value sizes of every statement run on ``db``.

    :meth:`reset` starts the step budget of one read (the walk, the tags...); the deadline counts
    from the guard's creation unless one is given. A statement over a bound is interrupted by
    SQLite; :meth:`failure` turns the resulting error into the typed one.
    """

    def __init__(self, db: sqlite3.Connection, source: str, size: int, limits: Limits,
                 deadline: Deadline | None = None) -> None:
        self.source = source
        self.budget = _MIN_STEPS + limits.max_query_steps_per_byte * size
        self.deadline = deadline or Deadline(limits, source)
        self.steps = 0
        self._tripped: FlistTooCostly | None = None
        # no value can be longer than the file holding it; computed ones (zeroblob, printf) neither
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, min(max(size, 1 << 20), _MAX_VALUE_BYTES))
        db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        # functions with side effects may not run from the schema (views, defaults, indexes)
        db.execute("PRAGMA trusted_schema = OFF")
        db.set_progress_handler(self._progress, _STEPS_PER_CALL)

    def reset(self) -> None:
        """Start the step budget of a new read."""
        self.steps = 0

    def check_time(self) -> None:
        """Raise :class:`FlistTooCostly` once the deadline has passed (called between statements)."""
        self.deadline.check()

    def _progress(self) -> int:
        self.steps += _STEPS_PER_CALL
        if self.steps > self.budget:
            self._tripped = FlistTooCostly(
                f"{self.source}: a query on the flist database needed more than {self.budget} SQLite "
                "steps (the budget for a database of this size); refusing it as hostile"
            )
        elif self.deadline.passed():
            self._tripped = self.deadline.error()
        return 1 if self._tripped is not None else 0

    def failure(self, exc: Exception, what: str) -> FlistError:
        """The typed error for a statement that failed with ``exc`` (interrupted by us, or corrupt)."""
        tripped, self._tripped = self._tripped, None
        if tripped is not None:
            log.warning("flist query stopped", extra={"flist": self.source, "steps": self.steps})
            return tripped
        return FlistError(f"{self.source}: {what} database is corrupt or unreadable: {exc}")


def check_schema(db: sqlite3.Connection, source: str, what: str, tables: Collection[str],
                 indexes: Collection[str]) -> None:
    """Refuse a database holding anything but plain ``tables`` and indexes on them.

    ``indexes`` are the index names allowed besides SQLite's own ``sqlite_autoindex_*``. Views,
    triggers, virtual tables, generated columns and unknown tables are refused by name.
    """
    allowed_tables = frozenset(tables) | _INTERNAL_TABLES
    expected = f"only the tables {sorted(tables)} and their indexes are allowed"
    try:
        rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        # hidden: 1 a virtual table's hidden column, 2 and 3 generated (computed) columns
        computed = {table: [row[1] for row in db.execute(f"PRAGMA table_xinfo({table})") if row[6] != 0]
                    for table in sorted(allowed_tables)}
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        raise FlistError(f"{source}: {what} database is corrupt or unreadable: {exc}") from exc
    for kind, name, table, sql in rows:
        where = f"{source}: {what} database holds {kind} {name!r}"
        if kind == "table":
            if name not in allowed_tables:
                raise HostileFlist(f"{where}; {expected}")
            if not isinstance(sql, str) or not sql.lstrip().upper().startswith("CREATE TABLE"):
                raise HostileFlist(f"{where}, which is not a plain table (virtual?); {expected}")
        elif kind == "index":
            if table not in allowed_tables or not (
                name in indexes or str(name).startswith(f"sqlite_autoindex_{table}_")
            ):
                raise HostileFlist(f"{where} on {table!r}; {expected}")
        else:  # view, trigger, anything a later SQLite invents
            raise HostileFlist(f"{where}; {expected}")
    for table, hidden in computed.items():
        if hidden:
            raise HostileFlist(
                f"{source}: {what} table {table!r} has computed or hidden columns {hidden}; {expected}"
            )
