"""Lazy re-exports for a package's ``__init__`` (PEP 562): ``from pkg import Name`` still works, but
the submodule that defines ``Name`` is imported only when the name is first asked for.

Why: a package ``__init__`` that imports every submodule makes any import of the package load all
of them; an idle daemon then carries the HTTP client, crypto and block stacks it uses only during a
transaction (issue 19). Type checkers see the names through the package's ``TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["exports"]


def exports(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """The ``__getattr__`` of ``package``: ``names`` maps each exported name to the module that
    defines it (a submodule's name relative to ``package``, or a full ``zos_upgrade.`` name for a
    re-export from elsewhere); the value is cached in the package once loaded."""

    def load(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        full = module if module.startswith("zos_upgrade.") else f"{package}.{module}"
        value = getattr(importlib.import_module(full), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return load
