"""The typed errors of the supervisor layer, shared by every back-end.

They are designed for the upgrader that catches them: "unknown", "already monitored", "is up" and
"is down" are expected answers it branches on; ``SupervisorUnavailable`` and ``ProtocolError`` mean
the supervisor cannot be trusted right now.
"""

from __future__ import annotations

from collections.abc import Iterable

from zos_upgrade.errors import ConfigError, ZosUpgradeError

__all__ = [
    "AlreadyMonitored",
    "InvalidServiceName",
    "ProtocolError",
    "ServiceIsDown",
    "ServiceIsUp",
    "StopFailed",
    "SupervisorError",
    "SupervisorUnavailable",
    "UnknownService",
]


class SupervisorError(ZosUpgradeError):
    """The supervisor refused a request or could not be asked."""


class InvalidServiceName(SupervisorError, ConfigError):
    """A service name that must not be sent to a supervisor (spaces, '/', control characters...)."""


class UnknownService(SupervisorError):
    """The supervisor does not manage (or has no config for) this service."""


class AlreadyMonitored(SupervisorError):
    """``monitor`` of a service the supervisor already manages."""


class ServiceIsUp(SupervisorError):
    """``forget`` of a service that is still running or whose target is up."""


class ServiceIsDown(SupervisorError):
    """``kill`` of a service that has no running process."""


class SupervisorUnavailable(SupervisorError):
    """The supervisor's socket is missing, refused us, or did not answer in time."""


class ProtocolError(SupervisorError):
    """The supervisor answered with garbage, the wrong shape, or too many bytes."""


class StopFailed(SupervisorError):
    """``stop_many`` could not bring every service down; ``survivors`` names those still up."""

    def __init__(self, survivors: Iterable[str], *, rounds: int) -> None:
        self.survivors = sorted(survivors)
        super().__init__(
            f"services still running after stop and {rounds} SIGKILL rounds: {', '.join(self.survivors)}"
        )
