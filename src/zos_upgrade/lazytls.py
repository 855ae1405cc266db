"""asyncio without OpenSSL until something needs TLS (issue 19: an idle daemon's memory).

``import asyncio`` imports ``ssl``, which maps libssl and libcrypto and initialises OpenSSL (about
6 MiB of an idle daemon's resident memory), although a node following an ``http://`` hub never
opens a TLS connection. :func:`import_asyncio_without_tls` imports asyncio while ``ssl`` reads as
absent (asyncio's own ``try: import ssl / except ImportError`` takes it so), then watches the
imports: the first ``import ssl`` by anyone (an ``https://`` poll, httpx at a transaction) loads the
real module and hands it to asyncio's modules, so TLS works in that process exactly as if asyncio
had loaded it itself (tests/e2e/test_idle_imports.py fetches over https after idling lean).

What asyncio derives from ``ssl`` at import is re-derived here (:data:`_DERIVED`, checked on
3.11-3.13); :func:`rearm` refuses (raises) when an asyncio module still lacks it, so a Python whose
asyncio changed fails loudly at the first TLS need instead of failing a handshake later.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["import_asyncio_without_tls", "rearm", "tls_deferred"]

# the asyncio modules that keep ``ssl`` as a global (the proactor one only exists to Windows' use)
_HOLDERS = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto", "asyncio.proactor_events")


def _again_errors(ssl: ModuleType) -> object:
    return (ssl.SSLWantReadError, ssl.SSLSyscallError)


# module-level names asyncio computes from ssl at import, and how
_DERIVED: dict[str, dict[str, Callable[[ModuleType], object]]] = {
    "asyncio.sslproto": {"SSLAgainErrors": _again_errors}}


def tls_deferred() -> bool:
    """Whether asyncio was imported without ``ssl`` and is still waiting for it."""
    return any(isinstance(f, _SSLWatch) for f in sys.meta_path)


def import_asyncio_without_tls() -> None:
    """Import asyncio without ``ssl`` (nothing happens when either is already loaded)."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    watch = _SSLWatch()
    sys.modules["ssl"] = None  # type: ignore[assignment]  # the import system's "absent" marker
    try:
        import asyncio
        import asyncio.base_events
        import asyncio.selector_events
        import asyncio.sslproto  # noqa: F401
    finally:
        del sys.modules["ssl"]
    sys.meta_path.insert(0, watch)


def rearm(ssl: ModuleType) -> None:
    """Give asyncio the real ``ssl`` module and what it derives from it at import."""
    for name in _HOLDERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "ssl", None) is None:
            module.ssl = ssl  # type: ignore[attr-defined]
        for attribute, derive in _DERIVED.get(name, {}).items():
            if module is not None and not hasattr(module, attribute):
                setattr(module, attribute, derive(ssl))
    missing = [name for name in _HOLDERS if name in sys.modules and sys.modules[name].ssl is not ssl]
    if missing:  # an asyncio this module does not know: TLS there would fail at a handshake
        raise ImportError(f"asyncio modules {missing} do not take the ssl module back")


class _SSLWatch(importlib.abc.MetaPathFinder):
    """Finds ``ssl`` with the finders after it, and re-arms asyncio once the module has run."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "ssl":
            return None
        sys.meta_path.remove(self)  # one import of ssl per process: then the watch is done
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec: importlib.machinery.ModuleSpec | None = (
                find(fullname, path, target) if find is not None else None)
            if spec is not None and spec.loader is not None:
                spec.loader = _Rearming(spec.loader)
                return spec
        return None


class _Rearming(importlib.abc.Loader):
    """The real loader of ``ssl``; after the module ran, asyncio gets it."""

    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.real.exec_module(module)
        rearm(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_code...: the real loader's
        return getattr(self.real, name)
