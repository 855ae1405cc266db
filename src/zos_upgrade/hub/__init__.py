"""A 0-hub: the client nodes and release engineers use, and a compatible server (SPEC 6).

The server lives in :mod:`zos_upgrade.hub.server` (imported on demand: nodes do not need Starlette).
"""

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
