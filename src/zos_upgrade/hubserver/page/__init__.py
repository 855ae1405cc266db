"""The hub's web page at its root URL (issue 20 item 6): server-rendered HTML, no build step."""

from zos_upgrade.hubserver.page.handler import HubPage

__all__ = ["HubPage"]
