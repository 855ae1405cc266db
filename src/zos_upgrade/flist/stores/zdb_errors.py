"""0-db's own error answers, turned into typed store errors that say what to fix.

0-db answers a refused command with a fixed sentence (``-Access denied``, ``-No space left on this
namespace``, ...; see 0-db's ``zdbd/commands*.c``). A caller that must react differently to a wrong
password, a missing namespace, a read-only namespace or a full one catches the class, not the text.
"""

from __future__ import annotations

from zos_upgrade.flist.stores.base import StoreError

__all__ = [
    "ZdbAccessDenied",
    "ZdbFull",
    "ZdbNamespaceMissing",
    "ZdbReadOnly",
    "ZdbRefused",
    "ZdbUnsupported",
    "zdb_refusal",
]


class ZdbRefused(StoreError):
    """The 0-db (or Redis) server answered a command with an error."""

    hint = ""

    def __init__(self, url: str, what: str, answer: str) -> None:
        super().__init__(f"{url}: {what} refused: {answer}" + (f" ({self.hint})" if self.hint else ""))
        self.url = url
        self.answer = answer


class ZdbAccessDenied(ZdbRefused):
    hint = "the namespace needs its password: zdb://:PASSWORD@host:port/namespace"


class ZdbNamespaceMissing(ZdbRefused):
    hint = "no such namespace on this 0-db: create it (NSNEW) or fix the URL's path"


class ZdbReadOnly(ZdbRefused):
    hint = "this namespace takes no writes: give its password, or unlock it"


class ZdbFull(ZdbRefused):
    hint = "the namespace reached its maxsize: raise it (NSSET ns maxsize N) or use another"


class ZdbUnsupported(ZdbRefused):
    hint = "the server does not know this command: is it a 0-db in user mode?"


# the first words of 0-db's answers, by what they mean for a caller
_ANSWERS: tuple[tuple[str, type[ZdbRefused]], ...] = (
    ("Access denied", ZdbAccessDenied),
    ("Namespace protected and private", ZdbAccessDenied),
    ("Namespace not found", ZdbNamespaceMissing),
    ("Namespace is in read-only mode", ZdbReadOnly),
    ("Namespace is temporarily locked", ZdbReadOnly),
    ("Namespace is temporarily frozen", ZdbReadOnly),
    ("Namespace is protected by worm mode", ZdbReadOnly),
    ("No space left on this namespace", ZdbFull),
    ("Command not supported", ZdbUnsupported),
)


def zdb_refusal(url: str, what: str, answer: str) -> ZdbRefused:
    """The typed error for the server's error ``answer`` to ``what``."""
    for start, kind in _ANSWERS:
        if answer.startswith(start):
            return kind(url, what, answer)
    return ZdbRefused(url, what, answer)
