"""The v2 flist format: rfs "FungiList", a plain SQLite database (SPEC 4.1).

:mod:`.schema` holds what reading and writing share, :mod:`.reader` streams entries out of a
database (behind :mod:`zos_upgrade.flist.sqlite_guard`), :mod:`.writer` builds one.
"""

from zos_upgrade.flist.v2.reader import V2Reader
from zos_upgrade.flist.v2.schema import SCHEMA
from zos_upgrade.flist.v2.writer import write_v2

__all__ = ["SCHEMA", "V2Reader", "write_v2"]
