"""A 0-hub compatible server (SPEC 6): its storage folder, read and write APIs, block store and config.

Only release engineers and test rigs run it; a node imports :mod:`zos_upgrade.hub` (the client) and
never this package, so nodes do not load Starlette.
"""

from zos_upgrade.hubserver.app import create_app, serve
from zos_upgrade.hubserver.config import HubConfig, load_hub_config
from zos_upgrade.hubserver.storage import HubStorage

__all__ = ["HubConfig", "HubStorage", "create_app", "load_hub_config", "serve"]
