"""The node's own files: what it runs (boot files), the events that name releases, ``status.json`` (SPEC 8).

``Boot`` lives in :mod:`.boot`, the events in :mod:`.events`, the daemon's state document in
:mod:`.state`. The watchers that produce events are in :mod:`zos_upgrade.watch`.
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
