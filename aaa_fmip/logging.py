"""Structured logs: one JSON object per line on stderr.

Rules (architecture.md §5, house style): no key material in any log line, never a request body. Callers log
identifiers (names, SPIs, routes) only; as a second line of defence :class:`RedactingFilter` replaces any run of
hex digits as long as a key (32 octets or more) and anything that looks like a bearer token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from typing import Any, Final, TextIO

from aaa_fmip.crypto.secrets import REDACTED

LOGGER_NAME: Final = "aaa_fmip"

# 64+ hex digits = 32+ octets: HK, HMK, EMSK, DSRK, KEK (optionally 0x-prefixed, as FreeRADIUS prints octets).
_KEY_HEX: Final = re.compile(r"(?i)(?<![0-9a-f])(?:0x)?[0-9a-f]{64,}(?![0-9a-f])")
_BEARER: Final = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")

# Attributes every LogRecord has; anything else was passed with ``extra=`` and becomes a JSON field.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName", "color_message"}
)


def redact(text: str) -> str:
    """``text`` with key-length hex runs and bearer tokens replaced."""
    text = _KEY_HEX.sub(REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} octets>"
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, and scrubs ``extra`` fields; drops exception messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS:
                setattr(record, name, _redact_value(value))
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; exceptions as type and frames, never their message."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and name not in entry:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            # Exception text can quote input (even key material from a library); type and frames suffice.
            exc_type, _exc, tb = record.exc_info
            entry["exc_type"] = f"{exc_type.__module__}.{exc_type.__qualname__}"
            entry["exc_frames"] = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)]
        return json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's, libraries') through one redacting JSON handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # uvicorn's access log would duplicate ours (aaa_fmip.api.access) and show raw query strings.
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if not name.startswith(LOGGER_NAME) else name)
