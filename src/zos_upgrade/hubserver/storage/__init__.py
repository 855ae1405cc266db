"""The hub server's storage folder (SPEC 6): repositories, flists, links and tags, read and written safely."""

from zos_upgrade.hubserver.storage.blocks import BlockFolder, LinkInBlockFolder
from zos_upgrade.hubserver.storage.hub_storage import HubStorage
from zos_upgrade.hubserver.storage.layout import Conflict, FileChanged, NotInStorage, clean_symlink
from zos_upgrade.hubserver.storage.lookup import StoredFlist

__all__ = [
    "BlockFolder", "Conflict", "FileChanged", "HubStorage", "LinkInBlockFolder", "NotInStorage",
    "StoredFlist", "clean_symlink",
]
