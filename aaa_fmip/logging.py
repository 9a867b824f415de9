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
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Final, TextIO

from aaa_fmip.crypto.secrets import REDACTED
from aaa_fmip.ratelimit import KeyedLimiter, Rate

LOGGER_NAME: Final = "aaa_fmip"
RATE_KEY: Final = "rate_key"  # ``extra={RATE_KEY: ...}``: the key under which RateLimitFilter counts a line

# Loggers whose lines a client can provoke at will: asyncio (one error per failed accept(), thousands a second
# when descriptors run out), uvicorn's protocol warnings, and the REST listener's own refusals.
FLOODABLE_LOGGERS: Final = ("asyncio", "uvicorn.error", "aaa_fmip.api.http")
FLOOD_RATE: Final = Rate(per_second=1.0, burst=10.0)  # lines per second per (logger, message)

# 64+ hex digits = 32+ octets: HK, HMK, EMSK, DSRK, KEK (optionally 0x-prefixed, as FreeRADIUS prints octets).
_KEY_HEX: Final = re.compile(r"(?i)(?<![0-9a-f])(?:0x)?[0-9a-f]{64,}(?![0-9a-f])")
_BEARER: Final = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
# What either pattern needs to match somewhere: most texts have neither, and one search is cheaper than two subs.
_MAYBE_SECRET: Final = re.compile(r"(?i)[0-9a-f]{64}|bearer\s")

# Attributes every LogRecord has; anything else was passed with ``extra=`` and becomes a JSON field.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message", RATE_KEY}
)


def redact(text: str) -> str:
    """``text`` with key-length hex runs and bearer tokens replaced."""
    if _MAYBE_SECRET.search(text) is None:
        return text
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
            if name in _STANDARD_ATTRS or value is None or type(value) in (int, float, bool):
                continue  # numbers and None carry no secret
            redacted = _redact_value(value)
            if redacted is not value:
                setattr(record, name, redacted)
        return True


class RateLimitFilter(logging.Filter):
    """At most ``rate`` lines per (logger, key); the next line let through says how many were dropped
    (``suppressed``). The key is the record's ``rate_key`` (passed with ``extra=``) where it has one, else the
    first line of its message. Attached to :data:`FLOODABLE_LOGGERS` by :func:`configure_logging`, and to the
    handler that forwards to FreeRADIUS (:mod:`aaa_fmip.radius.radlog`) with ``keyed_only``: there only the
    lines that name a ``rate_key`` are limited. Thread-safe (the FreeRADIUS module logs from many threads)."""

    def __init__(
        self, rate: Rate = FLOOD_RATE, clock: Callable[[], float] = time.monotonic, *, keyed_only: bool = False
    ) -> None:
        super().__init__()
        self._limiter: KeyedLimiter[tuple[str, str]] = KeyedLimiter(rate, max_keys=1024)
        self._suppressed: dict[tuple[str, str], int] = {}
        self._clock = clock
        self._keyed_only = keyed_only
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        mark = getattr(record, RATE_KEY, None)
        if mark is None:
            if self._keyed_only:
                return True
            mark = str(record.msg).split("\n", 1)[0][:120]
        key = (record.name, str(mark))
        with self._lock:
            if self._limiter.take(key, self._clock()):
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                if len(self._suppressed) > 1024:  # bounded like the limiter; a forgotten count is only a count
                    self._suppressed.pop(next(iter(self._suppressed)))
                return False
            dropped = self._suppressed.pop(key, 0)
        if dropped:
            record.suppressed = dropped
        return True


# json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":")) builds this encoder per call; one line
# per request (the access log) makes that worth keeping once. Same text; safe across threads.
_LINE: Final = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; exceptions as type and frames, never their message."""

    _second: tuple[int, str] = (-1, "")  # the last second formatted, and its text (most lines share it)

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        entry: dict[str, Any] = {
            "ts": f"{cached[1]}.{int(record.msecs):03d}Z",
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
        return _LINE.encode(entry)


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
    # The line names no source file, thread or process: the logging HOWTO's "Optimization" switches spare every
    # record working them out (the caller's frame walk alone was a quarter of an access line's cost).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # uvicorn's access log would duplicate ours (aaa_fmip.api.access) and show raw query strings.
    logging.getLogger("uvicorn.access").disabled = True
    for name in FLOODABLE_LOGGERS:
        lg = logging.getLogger(name)
        for old in [f for f in lg.filters if isinstance(f, RateLimitFilter)]:
            lg.removeFilter(old)
        lg.addFilter(RateLimitFilter())


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if not name.startswith(LOGGER_NAME) else name)
