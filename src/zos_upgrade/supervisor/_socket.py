"""Reaching a supervisor's unix socket: one place that turns OS errors into clear typed errors."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from zos_upgrade.supervisor.errors import SupervisorUnavailable

__all__ = ["check_socket", "connect_error"]


def check_socket(path: Path, what: str) -> None:
    """Raise SupervisorUnavailable unless ``path`` exists and is a unix socket we may look at."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SupervisorUnavailable(f"{what} socket {path} does not exist; is {what} running?") from None
    except PermissionError:
        raise SupervisorUnavailable(
            f"permission denied reaching {what} socket {path}; run as a user allowed to use it"
        ) from None
    except OSError as exc:
        raise SupervisorUnavailable(f"cannot reach {what} socket {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise SupervisorUnavailable(f"{path} is not a unix socket; expected the {what} control socket")


def connect_error(exc: OSError, path: Path, what: str) -> SupervisorUnavailable:
    """The typed error for a failed ``connect()`` to ``path``."""
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return SupervisorUnavailable(
            f"permission denied connecting to {what} socket {path}; run as a user allowed to use it"
        )
    if isinstance(exc, FileNotFoundError):
        return SupervisorUnavailable(f"{what} socket {path} does not exist; is {what} running?")
    if isinstance(exc, ConnectionRefusedError):
        return SupervisorUnavailable(
            f"nothing accepts connections on {what} socket {path}; is {what} running?"
        )
    return SupervisorUnavailable(f"cannot connect to {what} socket {path}: {exc.strerror or exc}")
