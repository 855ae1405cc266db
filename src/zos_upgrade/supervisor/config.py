"""zinit service config files (``<root>/etc/zinit/<name>.yaml``): strict parsing and rendering.

A release ships its services as these files, so they are external input: unknown keys and wrong
types are refused with a ``ConfigError`` that names the file and the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from zos_upgrade.errors import ConfigError
from zos_upgrade.fsutil import atomic_write_bytes, fsync_dir
from zos_upgrade.supervisor.errors import InvalidServiceName

__all__ = [
    "MAX_SERVICE_NAME",
    "LogMode",
    "ServiceConfig",
    "normalize_signal",
    "parse_service_config",
    "render_service_config",
    "validate_service_name",
]

# zinit's line protocol splits a command on spaces and the name becomes a file name: keep it short
# and plain. 255 is the usual file-name limit minus room for ".yaml".
MAX_SERVICE_NAME = 200
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]+$")
_LOG_MODES = ("ring", "stdout", "null")
LogMode = str


def validate_service_name(name: str) -> str:
    """Return ``name`` if it can travel in a zinit command line and be a file name, else raise.

    Refused: empty, longer than MAX_SERVICE_NAME, '.', '..', or any character outside
    ``[A-Za-z0-9_.@+-]`` (so no spaces, '/', NUL or control characters).
    """
    if not isinstance(name, str):
        raise InvalidServiceName(f"service name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidServiceName("service name is empty; expected 1 to 200 characters of [A-Za-z0-9_.@+-]")
    if len(name) > MAX_SERVICE_NAME:
        raise InvalidServiceName(
            f"service name {name[:40]!r}... is {len(name)} characters; at most {MAX_SERVICE_NAME} allowed"
        )
    if name in (".", "..") or not _NAME_RE.fullmatch(name):
        raise InvalidServiceName(
            f"service name {name!r} is refused: expected only letters, digits and _.@+- "
            "(no spaces, '/', NUL or control characters)"
        )
    return name


def normalize_signal(sig: str) -> str:
    """``"kill"``, ``"SIGKILL"`` or ``"9"`` -> ``"SIGKILL"``; anything else raises ``ValueError``."""
    text = str(sig).strip().upper()
    if text.isdigit():
        try:
            return _signal.Signals(int(text)).name
        except ValueError:
            raise ValueError(f"unknown signal number {sig!r}") from None
    if not text.startswith("SIG"):
        text = "SIG" + text
    if text not in _signal.Signals.__members__ or text.startswith("SIG_"):
        raise ValueError(f"unknown signal {sig!r}; expected a name like SIGTERM or SIGKILL")
    return text


def _empty_env() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ServiceConfig:
    """The keys of a zinit service file (``signal.stop`` is flattened to ``signal_stop``)."""

    exec: str
    test: str = ""
    oneshot: bool = False
    after: tuple[str, ...] = ()
    signal_stop: str = "sigterm"
    log: LogMode = "ring"
    env: Mapping[str, str] = field(default_factory=_empty_env)
    dir: str = ""

    def __post_init__(self) -> None:
        # Make a config built in code obey the same rules as one read from a file.
        _check(self, source="<ServiceConfig>")


def _fail(source: str, key: str, expected: str, got: Any) -> ConfigError:
    return ConfigError(f"{source}: key {key!r}: expected {expected}, got {got!r}")


def _check(cfg: ServiceConfig, *, source: str) -> None:
    if not isinstance(cfg.exec, str) or not cfg.exec.strip():
        raise _fail(source, "exec", "a non-empty command string", cfg.exec)
    if not isinstance(cfg.test, str):
        raise _fail(source, "test", "a command string", cfg.test)
    if not isinstance(cfg.oneshot, bool):
        raise _fail(source, "oneshot", "true or false", cfg.oneshot)
    if not isinstance(cfg.after, tuple) or not all(isinstance(a, str) for a in cfg.after):
        raise _fail(source, "after", "a list of service names", cfg.after)
    for dep in cfg.after:
        try:
            validate_service_name(dep)
        except ConfigError as exc:
            raise ConfigError(f"{source}: key 'after': {exc}") from None
    try:
        normalize_signal(cfg.signal_stop)
    except (ValueError, AttributeError):
        raise _fail(source, "signal.stop", "a signal name like sigterm", cfg.signal_stop) from None
    if cfg.log not in _LOG_MODES:
        raise _fail(source, "log", "one of ring, stdout, null", cfg.log)
    if not isinstance(cfg.env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
        for k, v in cfg.env.items()
    ):
        raise _fail(source, "env", "a mapping of variable names to strings", dict(cfg.env))
    if not isinstance(cfg.dir, str) or "\0" in cfg.dir:
        raise _fail(source, "dir", "a directory path", cfg.dir)
    if "\0" in cfg.exec + cfg.test:
        raise _fail(source, "exec", "a command without NUL bytes", cfg.exec)


_KEYS = ("exec", "test", "oneshot", "after", "signal", "log", "env", "dir")


def parse_service_config(text: str | bytes, *, source: str) -> ServiceConfig:
    """Parse a zinit service file strictly; ``source`` (a file name) goes into every error."""
    import yaml  # here: a service file is read during a transaction, never by an idle daemon

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping of zinit keys ({', '.join(_KEYS)}), got {doc!r:.80}")
    for key in doc:
        if key not in _KEYS:
            raise ConfigError(f"{source}: unknown key {key!r}; expected one of {', '.join(_KEYS)}")
    if "exec" not in doc:
        raise ConfigError(f"{source}: missing key 'exec' (the command to run)")
    sig: Any = doc.get("signal", {})
    if sig is None:
        sig = {}
    if not isinstance(sig, dict) or any(k != "stop" for k in sig):
        raise _fail(source, "signal", "a mapping with only 'stop'", sig)
    after: Any = doc.get("after", [])
    if after is None:
        after = []
    if not isinstance(after, list):
        raise _fail(source, "after", "a list of service names", after)
    env: Any = doc.get("env", {})
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise _fail(source, "env", "a mapping of variable names to strings", env)
    if not all(isinstance(v, str) for v in env.values()):
        raise _fail(source, "env", "string values (quote numbers in YAML)", env)
    for key, expected in (("exec", str), ("test", str), ("log", str), ("dir", str)):
        if key in doc and not isinstance(doc[key], expected):
            raise _fail(source, key, "a string", doc[key])
    if "oneshot" in doc and not isinstance(doc["oneshot"], bool):
        raise _fail(source, "oneshot", "true or false", doc["oneshot"])
    stop = sig.get("stop", "sigterm")
    if not isinstance(stop, str):
        raise _fail(source, "signal.stop", "a signal name like sigterm", stop)
    try:
        cfg = ServiceConfig(
            exec=doc["exec"],
            test=doc.get("test") or "",
            oneshot=doc.get("oneshot", False),
            after=tuple(after),
            signal_stop=stop,
            log=doc.get("log") or "ring",
            env=MappingProxyType(dict(env)),
            dir=doc.get("dir") or "",
        )
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("<ServiceConfig>", source)) from None
    return cfg


def render_service_config(cfg: ServiceConfig) -> str:
    """The YAML zinit reads; ``parse_service_config(render_service_config(c)) == c``."""
    doc: dict[str, Any] = {"exec": cfg.exec}
    if cfg.test:
        doc["test"] = cfg.test
    if cfg.oneshot:
        doc["oneshot"] = True
    if cfg.after:
        doc["after"] = list(cfg.after)
    if cfg.signal_stop.lower() != "sigterm":
        doc["signal"] = {"stop": cfg.signal_stop}
    if cfg.log != "ring":
        doc["log"] = cfg.log
    if cfg.env:
        doc["env"] = dict(cfg.env)
    if cfg.dir:
        doc["dir"] = cfg.dir
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


async def write_config_file(path: Path, data: bytes) -> None:
    """Durably install one service config file (its directory created when missing)."""

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)

    await asyncio.to_thread(write)


async def remove_config_file(path: Path) -> None:
    """Durably remove one service config file; a missing one is already removed."""

    def remove() -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)

    await asyncio.to_thread(remove)
