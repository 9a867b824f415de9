"""What the router agent logs and counts of its core's notices and finished handovers (identifiers only, never
key material: the core's notices carry none)."""

from __future__ import annotations

import logging
from typing import Final

from aaa_fmip.router.effects import HandoverFinished, Notice
from aaa_fmip.router.metrics import RouterMetrics

__all__ = ["log_finished", "log_notice"]

log = logging.getLogger("aaa_fmip.router")

# Notices worth a warning: an operator should see them without debug logging.
_WARN: Final = frozenset(
    {"fbu.rejected", "hi.no-hack", "fbu.unknown-nar", "hack.unknown-router", "hack.ncoa-outside-prefix"}
)
_DEBUG: Final = frozenset({"mh.ignored", "prrtadv.sent"})


def log_notice(metrics: RouterMetrics, notice: Notice) -> None:
    """Log a core notice at its level and count what the metrics count."""
    level = logging.WARNING if notice.event in _WARN else logging.DEBUG if notice.event in _DEBUG else logging.INFO
    fields = dict(notice.fields)
    if notice.event == "fbu.rejected" and fields.get("reason") == "key-unavailable":
        fields["hint"] = "no key for this SPI and the key service did not answer; the node gets FBack 128"
    if notice.event == "hi.retransmit":
        metrics.hi_retransmissions.inc()
    elif notice.event == "hi.answered":
        metrics.hi_answered.labels(str(fields.get("hack_code"))).inc()
    elif notice.event in ("mh.malformed", "icmpv6.malformed"):
        metrics.malformed.labels(str(fields.get("field"))).inc()
    log.log(level, notice.event, extra={"event": notice.event, **fields})


def log_finished(metrics: RouterMetrics, done: HandoverFinished) -> None:
    """Log and count a finished PAR handover."""
    metrics.handovers.labels(done.outcome).inc()
    if done.status is not None:
        metrics.handover_seconds.observe(done.duration)
    log.info(
        "handover finished",
        extra={
            "event": "handover.finished",
            "outcome": done.outcome,
            "status": done.status,
            "spi": done.spi,
            "sequence": done.sequence,
            "pcoa": str(done.pcoa),
            "ncoa": str(done.ncoa),
            "nar": str(done.nar) if done.nar else None,
            "hi_transmissions": done.hi_transmissions,
            "ms": round(done.duration * 1000, 3),
        },
    )
