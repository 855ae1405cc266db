"""One logging setup: human lines on a terminal, JSON lines for machines.

Code logs events with fields (``log.info("upgrade done", extra={"version": "1.2.3"})``); the JSON
formatter emits every such field, the human one appends them as ``key=value`` (a dict, a list or a
string with spaces as JSON, so ``reason="a b"`` and ``phases={"fetch": 0.1}`` read as one value).

Human lines go through one rich :func:`console` on stderr, the same one progress bars draw on: rich
prints a log line above a live bar instead of into the middle of it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LogFormat", "console", "human_logs", "setup_logging"]

LogFormat = Literal["auto", "human", "json"]

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, sort_keys=False)


def _human_value(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, separators=(", ", ": "))
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in "\"=" for c in text) else text


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={_human_value(v)}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}" + (f"  {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _ConsoleHandler(logging.Handler):
    """Writes formatted records through the shared console (so they land above a progress bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from rich.text import Text

            # soft_wrap: the terminal wraps a long line; rich must not cut it into pieces of its own
            console().print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:  # a log line must never take the program down
            self.handleError(record)


_state: dict[str, Any] = {"console": None, "human": False}


def console() -> Console:
    """The process's one stderr console: human log lines and progress bars share it."""
    if _state["console"] is None:
        # rich is imported only once a person reads the output: a daemon logging JSON never loads it
        from rich.console import Console

        _state["console"] = Console(stderr=True)
    shared: Console = _state["console"]
    return shared


def human_logs() -> bool:
    """Whether log lines are for a person (human format): then a command's own summary is the one shown."""
    return bool(_state["human"])


def setup_logging(fmt: LogFormat = "auto", level: int | str = logging.INFO) -> None:
    """Configure the root logger once, writing to stderr."""
    if fmt == "auto":
        fmt = "human" if sys.stderr.isatty() else "json"
    _state["console"] = None  # sys.stderr may be another file than at the last setup (tests)
    _state["human"] = fmt == "human"
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = _ConsoleHandler()
        handler.setFormatter(HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO: that is noise for an operator
    logging.getLogger("httpx").setLevel(logging.WARNING)
