"""Logging: one setup for text (dev) and JSON (serve) lines, with the correlation id.

The current request's or job's correlation id lives in a context variable; the
log record factory stamps it on every record, so each log line can be tied to the HTTP
request and the events it produced.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = ["correlation_id", "get_logger", "setup_logging"]

correlation_id: ContextVar[str | None] = ContextVar("pressluft_correlation_id", default=None)

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "correlation_id",
    "color_message",  # uvicorn's coloured duplicate of the message
}


_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Stamp every record with the current correlation id (for every handler)."""
    record = _base_factory(*args, **kwargs)
    record.correlation_id = correlation_id.get()
    return record


if not getattr(_base_factory, "_pressluft", False):
    _record_factory._pressluft = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(_record_factory)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.correlation_id:  # type: ignore[attr-defined]
            line["correlation_id"] = record.correlation_id  # type: ignore[attr-defined]
        line.update(_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line, enc_hook=str).decode()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(value: object) -> str:
    """No control characters in a text line (no forged lines, no terminal escapes)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", str(value))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = " ".join(f"{k}={_clean(v)}" for k, v in _extras(record).items())
        cid = record.correlation_id  # type: ignore[attr-defined]
        parts = [stamp, f"{record.levelname.lower():7}", _clean(record.getMessage())]
        if fields:
            parts.append(fields)
        if cid:
            parts.append(f"correlation_id={cid}")
        text = "  ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(fmt: str, level: str, stream: Any = None) -> None:
    """Route all loggers (ours, uvicorn's, litestar's) through one handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # What no line shows is not gathered for every record (the logging docs'
    # "Optimization": the caller's frame, thread and process names).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # Access lines come from our own middleware (with route and correlation id);
    # uvicorn's own start/stop chatter is only interesting when it goes wrong.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
