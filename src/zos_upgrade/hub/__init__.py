"""The node-side 0-hub client (SPEC 6): HubClient, the hub's wire objects, names and RepoFList.

The compatible server is :mod:`zos_upgrade.hubserver`; nothing here imports it (nodes need no Starlette).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zos_upgrade import lazy

if TYPE_CHECKING:
    from zos_upgrade.hub.client import HubClient
    from zos_upgrade.hub.flists import RepoFList
    from zos_upgrade.hub.models import (
        ContentEntry,
        FlistContents,
        FlistInfo,
        HubAnswerInvalid,
        HubError,
        InvalidName,
        RepoEntry,
        Repository,
        WriteRefused,
    )
    from zos_upgrade.net import NotFound

__all__ = [
    "ContentEntry",
    "FlistContents",
    "FlistInfo",
    "HubAnswerInvalid",
    "HubClient",
    "HubError",
    "InvalidName",
    "NotFound",
    "RepoEntry",
    "RepoFList",
    "Repository",
    "WriteRefused",
]

# name -> the submodule defining it: imported at first use (issue 19, an idle daemon's memory)
__getattr__ = lazy.exports(__name__, {
    "HubClient": "client",
    "RepoFList": "flists",
    "ContentEntry": "models",
    "FlistContents": "models",
    "FlistInfo": "models",
    "HubAnswerInvalid": "models",
    "HubError": "models",
    "InvalidName": "models",
    "RepoEntry": "models",
    "Repository": "models",
    "WriteRefused": "models",
    "NotFound": "zos_upgrade.net",
})
