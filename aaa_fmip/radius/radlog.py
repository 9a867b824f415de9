"""The project's logging inside FreeRADIUS: every ``aaa_fmip.*`` log line goes to FreeRADIUS' own log.

rlm_python3 gives the embedded interpreter ``radiusd.radlog(level, message)``; FreeRADIUS then writes the line
where its ``log { }`` section says, with its own time stamp and level (``Info:``, ``Warning:``, ``Error:``;
``Debug:`` lines only when it runs with ``-X``). :func:`install` puts a :class:`RadlogHandler` on the
``aaa_fmip`` logger, so the module, its store-call pool and everything below them (the service, the store) log
with the standard :mod:`logging` calls, as they do in ``aaa-fmip serve``:

* :class:`aaa_fmip.logging.RedactingFilter` first: no key-length hex run or bearer token reaches FreeRADIUS'
  log, whatever a caller passed;
* then a :class:`aaa_fmip.logging.RateLimitFilter` that limits only the lines naming a ``rate_key`` (failures a
  client or an outage can repeat at the authentication rate): at most one a key every
  :data:`RATE_LIMIT_INTERVAL` seconds, the next one saying how many were left out;
* :class:`RadlogFormatter`: ``aaa_fmip: `` + the message (+ `` (N more like this since the last report)``);
  an exception shows as its type only, never its message or traceback (a library's message can quote input).

Nothing here raises into FreeRADIUS: a failing ``radlog`` loses the line, not the request. Standard library and
:mod:`aaa_fmip.logging` only, so it can be imported as soon as ``prepend_sys_path`` is in place.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aaa_fmip.logging import LOGGER_NAME, RateLimitFilter, RedactingFilter
from aaa_fmip.ratelimit import Rate

PREFIX: Final = "aaa_fmip: "
RATE_LIMIT_INTERVAL: Final = 10.0  # seconds between two lines of one rate_key (docs/freeradius.md)

Radlog = Callable[[int, str], None]


@dataclass(frozen=True)
class RadlogLevels:
    """FreeRADIUS' log levels (``radiusd.L_DBG``, ``L_INFO``, ``L_WARN``, ``L_ERR``)."""

    debug: int
    info: int
    warning: int
    error: int

    def of(self, levelno: int) -> int:
        if levelno >= logging.ERROR:
            return self.error
        if levelno >= logging.WARNING:
            return self.warning
        if levelno >= logging.INFO:
            return self.info
        return self.debug


class RadlogFormatter(logging.Formatter):
    """``aaa_fmip: <message>``, with the count of lines the rate limit left out and an exception's type."""

    def format(self, record: logging.LogRecord) -> str:
        message = PREFIX + record.getMessage()
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            message += f" ({suppressed} more like this since the last report)"
        if record.exc_info and record.exc_info[0] is not None:
            message += f" ({record.exc_info[0].__name__})"
        return message


class RadlogHandler(logging.Handler):
    """Hands each record to ``radlog`` at the matching FreeRADIUS level; never raises."""

    def __init__(self, radlog: Radlog, levels: RadlogLevels, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.DEBUG)
        self._radlog = radlog
        self._levels = levels
        self.setFormatter(RadlogFormatter())
        self.addFilter(RedactingFilter())
        self.addFilter(RateLimitFilter(Rate(per_second=1.0 / RATE_LIMIT_INTERVAL, burst=1.0), clock, keyed_only=True))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # logging must never be what breaks a request
            self._radlog(self._levels.of(record.levelno), self.format(record))


@dataclass
class Installed:
    """What :func:`install` changed, for :func:`uninstall`."""

    handler: RadlogHandler
    previous_level: int


def install(radlog: Radlog, levels: RadlogLevels) -> Installed:
    """Forward every ``aaa_fmip.*`` line, debug included, to ``radlog`` (which decides what FreeRADIUS shows).
    Replaces a handler an earlier :func:`install` left (a module instantiated again)."""
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(h, RadlogHandler)]:
        logger.removeHandler(old)
    handler = RadlogHandler(radlog, levels)
    installed = Installed(handler, logger.level)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return installed


def uninstall(installed: Installed) -> None:
    logger = logging.getLogger(LOGGER_NAME)
    logger.removeHandler(installed.handler)
    logger.setLevel(installed.previous_level)
