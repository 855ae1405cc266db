"""The root of every error this package raises on purpose.

Each layer defines its own subclasses next to the code that raises them; the CLI maps any
``ZosUpgradeError`` to exit code 1 with its message, so every message must say what was wrong,
where (file, URL, entry path, service name) and what was expected.
"""


class ZosUpgradeError(Exception):
    """Base class of all deliberate errors of zos-upgrade."""


class ConfigError(ZosUpgradeError):
    """A configuration file or option is invalid."""
