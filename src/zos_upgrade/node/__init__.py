"""The node's own files: what it runs (boot files), the events that name releases, ``status.json`` (SPEC 8).

``Boot`` lives in :mod:`.boot`, the events in :mod:`.events`, the daemon's state document in
:mod:`.state`. The watchers that produce events are in :mod:`zos_upgrade.watch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos_upgrade import lazy

if TYPE_CHECKING:
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

# name -> the submodule defining it: imported at first use (issue 19, an idle daemon's memory)
__getattr__ = lazy.exports(__name__, {
    "BINARIES_FILE": "boot",
    "FLIST_INFO_FILE": "boot",
    "FLIST_NAME_FILE": "boot",
    "Boot": "boot",
    "BootFileError": "boot",
    "BootMethod": "boot",
    "Event": "events",
    "EventType": "events",
    "FListEvent": "events",
    "ReleaseEvent": "events",
    "RepoEvent": "events",
    "RepoFList": "events",
    "DaemonState": "state",
    "StateFileError": "state",
    "UpgradeRecord": "state",
    "read_state": "state",
    "write_state": "state",
})
