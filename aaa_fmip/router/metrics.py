"""Prometheus metrics of the access-router agent (one registry per agent; docs/router.md explains each)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RouterMetrics"]

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.handovers = Counter(
            "aaa_fmip_router_handovers",
            "PAR handovers by outcome (FBack status name, or why no FBack was sent).",
            ["outcome"],
            registry=r,
        )
        self.handover_seconds = Histogram(
            "aaa_fmip_router_handover_seconds",
            "FBU received to FBack sent at the PAR (verification, HI/HAck round trip included).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.verify_seconds = Histogram(
            "aaa_fmip_router_fbu_verify_seconds",
            "Time to a verdict on one FBU, by how it was reached (local, fetch, service).",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.verdicts = Counter(
            "aaa_fmip_router_fbu_verdicts", "FBU verdicts by outcome and reason.", ["outcome", "reason"], registry=r
        )
        self.cache_lookups = Counter(
            "aaa_fmip_router_key_cache_lookups", "Key cache lookups by SPI: hit or miss.", ["result"], registry=r
        )
        self.fetch_seconds = Histogram(
            "aaa_fmip_router_key_fetch_seconds",
            "Calls to the key service by kind (spi, lla, verify) and result (ok, unknown, error).",
            ["kind", "result"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.hi_retransmissions = Counter(
            "aaa_fmip_router_hi_retransmissions", "HI messages sent again for want of a HAck.", registry=r
        )
        self.hi_answered = Counter(
            "aaa_fmip_router_hi_answered", "HI messages answered as NAR, by HAck code.", ["code"], registry=r
        )
        self.keys_revoked = Counter(
            "aaa_fmip_router_keys_revoked",
            "Keys dropped from the cache because the revocation feed named them.",
            registry=r,
        )
        self.feed_errors = Counter(
            "aaa_fmip_router_revocation_feed_errors", "Failed polls of the revocation feed.", registry=r
        )
        self.verdict_reports = Counter(
            "aaa_fmip_router_verdict_reports",
            "Locally made verdicts for the audit trail, by result: sent, dropped (buffer full), failed (a batch "
            "the service did not take; kept for the next try).",
            ["result"],
            registry=r,
        )
        self.keys_held = Gauge("aaa_fmip_router_keys_held", "Handover keys in the cache.", registry=r)
        self.malformed = Counter(
            "aaa_fmip_router_malformed", "Datagrams dropped as malformed, by the field at fault.", ["field"], registry=r
        )
        self.prefixes_allocated = Gauge(
            "aaa_fmip_router_prefixes_allocated", "Per-node prefixes handed out (NAR, [prefixes]).", registry=r
        )
        self.prefixes_free = Gauge(
            "aaa_fmip_router_prefixes_free", "Per-node prefixes left in the pool (NAR, [prefixes]).", registry=r
        )
        self.prefixes_exhausted = Counter(
            "aaa_fmip_router_prefix_pool_exhausted",
            "Nodes refused a per-node prefix because the pool was empty (HAck 130).",
            registry=r,
        )
        self.prefixes_released = Counter(
            "aaa_fmip_router_prefixes_released",
            "Per-node prefixes back in the pool, by reason: expired, link-gone, released.",
            ["reason"],
            registry=r,
        )
        self.radvd_reloads = Counter(
            "aaa_fmip_router_radvd_reloads",
            "radvd configurations applied for the per-node links, by result (ok, error).",
            ["result"],
            registry=r,
        )
