"""Who may write: a bearer token names the one repository it may write (the real hub's rule)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from starlette.requests import Request

from zos_upgrade.hub.models import HubError
from zos_upgrade.hub.rollout import node_token

__all__ = ["NodeGuard", "TokenGuard", "Unauthorized", "bearer"]


class Unauthorized(HubError):
    """A write without a valid token (HTTP 401), or for a repository the token does not own (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def bearer(request: Request) -> str:
    """The token of the request's ``Authorization: bearer <token>`` header, else :class:`Unauthorized`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("no authorization provided", 401)
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("authorization must be 'bearer <token>'", 401)
    return token.strip()


class NodeGuard:
    """Checks a node's report token: the HMAC of the node id under the hub's node secret."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret

    def authorize(self, request: Request, node_id: str) -> None:
        if self.secret is None:
            raise Unauthorized("this hub accepts no node reports (no [rollout] node_secret)", 403)
        expected = node_token(self.secret, node_id).encode()
        if not hmac.compare_digest(expected, bearer(request).encode()):
            raise Unauthorized(f"invalid token for node {node_id!r}", 401)


class TokenGuard:
    """Checks the ``Authorization`` header of a write against the configured tokens."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self.tokens = tokens  # token -> repository

    def authorize(self, request: Request, asked: str | None = None) -> str:
        """The repository the bearer token owns; ``asked`` (default: the ``{owner}`` path parameter)
        must be ``me`` or that repository."""
        given = bearer(request).encode()
        owner: str | None = None
        for known, repo in self.tokens.items():
            # every token is compared, in constant time, so timing tells nothing about any of them
            if hmac.compare_digest(known.encode(), given):
                owner = repo
        if owner is None:
            raise Unauthorized("invalid token", 401)
        asked = asked if asked is not None else request.path_params.get("owner", "me")
        if asked not in ("me", owner):
            raise Unauthorized(f"this token writes repository {owner!r}, not {asked!r}", 403)
        return owner
