"""The v1 flist format (0-flist): a tar.gz holding a SQLite database of capnp records (SPEC 4.2).

:mod:`.archive` unpacks and packs the tar.gz, :mod:`.reader` streams entries out of the records,
:mod:`.writer` builds them, :mod:`.routes` reads and writes where the blocks live (router.yaml or
the backend metadata), :mod:`.schema` holds what reading and writing share.
"""

from zos_upgrade.flist.v1.archive import DB_MEMBER, ROUTER_MEMBER
from zos_upgrade.flist.v1.reader import V1Reader
from zos_upgrade.flist.v1.schema import acl_key, dir_key, load_schema
from zos_upgrade.flist.v1.writer import write_v1

__all__ = ["DB_MEMBER", "ROUTER_MEMBER", "V1Reader", "acl_key", "dir_key", "load_schema", "write_v1"]
