"""The node's knowledge: what it runs (boot files), what it noticed (events, watchers), what the
daemon last did (``status.json``). See SPEC sections 8 and 9.

``Boot`` lives in :mod:`.boot`, the events in :mod:`.events`, the watchers in :mod:`.watch`, the
daemon's state document in :mod:`.state`.
"""

from zos_upgrade.node.boot import (
    BINARIES_FILE,
    FLIST_INFO_FILE,
    FLIST_NAME_FILE,
    Boot,
    BootFileError,
    BootMethod,
)
from zos_upgrade.node.events import Event, EventType, FListEvent, ReleaseEvent, RepoEvent, RepoFList
from zos_upgrade.node.state import DaemonState, StateFileError, UpgradeRecord, read_state, write_state

__all__ = [
    "BINARIES_FILE",
    "FLIST_INFO_FILE",
    "FLIST_NAME_FILE",
    "Boot",
    "BootFileError",
    "BootMethod",
    "DaemonState",
    "Event",
    "EventType",
    "FListEvent",
    "ReleaseEvent",
    "RepoEvent",
    "RepoFList",
    "StateFileError",
    "UpgradeRecord",
    "read_state",
    "write_state",
]
