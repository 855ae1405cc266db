"""Who may write: a bearer token names the one repository it may write (the real hub's rule)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from starlette.requests import Request

from zos_upgrade.hub.models import HubError

__all__ = ["TokenGuard", "Unauthorized"]


class Unauthorized(HubError):
    """A write without a valid token (HTTP 401), or for a repository the token does not own (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TokenGuard:
    """Checks the ``Authorization`` header of a write against the configured tokens."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self.tokens = tokens  # token -> repository

    def authorize(self, request: Request) -> str:
        """The repository the bearer token owns; ``{owner}`` must be ``me`` or that repository."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise Unauthorized("no authorization provided", 401)
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("authorization must be 'bearer <token>'", 401)
        given = token.strip().encode()
        owner: str | None = None
        for known, repo in self.tokens.items():
            # every token is compared, in constant time, so timing tells nothing about any of them
            if hmac.compare_digest(known.encode(), given):
                owner = repo
        if owner is None:
            raise Unauthorized("invalid token", 401)
        asked = request.path_params.get("owner", "me")
        if asked not in ("me", owner):
            raise Unauthorized(f"this token writes repository {owner!r}, not {asked!r}", 403)
        return owner
