"""Prometheus metrics: one registry per runtime (never the global default), shared by every adapter.

REST records requests; every adapter (REST, Diameter, RADIUS) records FBU verdicts and operation latency with
its ``interface`` label; the FreeRADIUS module and the RADIUS accounting listener count their events (the
counters of docs/freeradius.md) in ``radius_events``. Gauges that reflect the store (live sessions, store up)
are computed at scrape time. No label ever carries key material or an unbounded value (routes are templates,
not paths).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from aaa_fmip import __version__
from aaa_fmip.errors import AaaFmipError
from aaa_fmip.model import FbuVerdict

NAMESPACE: Final = "aaa_fmip"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

# Seconds; service calls are a few Redis round trips, so the interesting range is 0.5 ms .. 1 s.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StoreCollector(Collector):
    """Reads the store at scrape time; a store outage shows as ``store_up 0``, never as a scrape error."""

    def __init__(self, live_sessions: Callable[[], int], ping: Callable[[], object]) -> None:
        self._live_sessions = live_sessions
        self._ping = ping

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(f"{NAMESPACE}_store_up", "1 if the store (Redis) answered at scrape time, else 0.")
        try:
            self._ping()
            count = int(self._live_sessions())
        except (AaaFmipError, OSError):
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield GaugeMetricFamily(
            f"{NAMESPACE}_live_sessions", "Handover master keys (sessions) currently stored.", value=float(count)
        )

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: never touch the store at registration time


class _DurabilityCollector(Collector):
    """The store's replay-state durability as last checked (no IO at scrape time)."""

    def __init__(self, durable: Callable[[], bool | None], volatile_allowed: bool, restarts: Callable[[], int]) -> None:
        self._durable = durable
        self._volatile_allowed = volatile_allowed
        self._restarts = restarts

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            f"{NAMESPACE}_store_volatile_replay_state_allowed",
            "1 if store.allow_volatile_replay_state is set: FBUs are verified even on a store that loses replay state.",
            value=1.0 if self._volatile_allowed else 0.0,
        )
        durable = self._durable()
        if durable is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_store_replay_state_durable",
                "1 if the last check found that Redis keeps FBU replay state across a restart or failover, else 0.",
                value=1.0 if durable else 0.0,
            )
        yield CounterMetricFamily(
            f"{NAMESPACE}_store_restarts",
            "Redis restarts or failovers seen (the server's run id changed between two checks).",
            value=float(self._restarts()),
        )

    def describe(self) -> Iterable[Metric]:
        return []


class Metrics:
    """The metric families of one runtime, in their own :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_requests = Counter(
            "http_requests",
            "REST requests by route template, method and status code.",
            ["method", "route", "status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "REST request latency, from the first byte received to the last byte sent.",
            ["method", "route"],
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.fbu_verdicts = Counter(
            "fbu_verifications",
            "FBU verifications by outcome: verdict accepted, retransmission or rejected (with its reason).",
            ["interface", "verdict", "reason"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.operation_latency = Histogram(
            "operation_duration_seconds",
            "Service operation latency (ingest, handover_key, verify_fbu, revoke, audit) by interface.",
            ["interface", "operation"],
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.operation_errors = Counter(
            "operation_errors",
            "Service operations that ended in an error, by error class (not_found, forbidden, store_unavailable, ...).",
            ["interface", "operation", "error"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.audit_exported = Counter(
            "audit_exported_entries",
            "Audit entries exported outside Redis (audit.export_file / audit.export_syslog).",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.audit_export_pass = Histogram(
            "audit_export_pass_duration_seconds",
            "Audit export passes (export and retention) that succeeded, by how long they took; a full pass (every "
            "12th) reads every audit chain's head, so with many slot chains it can outgrow audit.export_interval.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.audit_export_errors = Counter(
            "audit_export_errors",
            "Audit export passes that failed, by where: store (incl. an entry that does not verify) or sink.",
            ["where"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "auth_failures",
            "REST requests refused by authentication, by reason (missing-token, invalid-token, wrong-role).",
            ["reason"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "rate_limited",
            "REST requests answered 429, by limit: caller (per authenticated caller) or address (failed "
            "authentications per source address).",
            ["limit"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.shed = Counter(
            "http_shed",
            "Connections or requests the REST listener refused or closed to protect itself, by reason "
            "(connection-limit, header-timeout, requests-in-flight, body-timeout, bad-http-request).",
            ["reason"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.radius_events = Counter(
            "radius_events",
            "RADIUS events by interface (radius: the FreeRADIUS module; radius-accounting: the accounting "
            "listener) and event (sessions_stored, keys_pushed, sessions_revoked, accounting_stop, ingest_error, "
            "ingest_timeout, ...; docs/freeradius.md lists them).",
            ["interface", "event"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        # labelled children of the per-request metrics (and the FreeRADIUS module's counters), looked up once
        # (``labels()`` takes a lock and builds its key on every call); bounded like any label set a client's input
        # can reach
        self._children: dict[tuple[object, ...], Any] = {}
        info = InfoMetricFamily(f"{NAMESPACE}_build", "Version of the running aaa-fmip.")
        info.add_metric([], {"version": __version__})
        self._scraped: list[Collector] = [_Static([info])]  # collected at scrape time in this process
        self.registry.register(self._scraped[0])
        self._store_collector: _StoreCollector | None = None

    def attach_store(self, *, live_sessions: Callable[[], int], ping: Callable[[], object]) -> None:
        """Export ``store_up`` and ``live_sessions``, computed at each scrape."""
        if self._store_collector is not None:
            self.registry.unregister(self._store_collector)
            self._scraped.remove(self._store_collector)
        self._store_collector = _StoreCollector(live_sessions, ping)
        self.registry.register(self._store_collector)
        self._scraped.append(self._store_collector)

    def attach_durability(
        self, *, durable: Callable[[], bool | None], volatile_allowed: bool, restarts: Callable[[], int]
    ) -> None:
        """Export the store's replay-state durability: ``store_replay_state_durable`` (as last checked),
        ``store_volatile_replay_state_allowed`` and ``store_restarts_total``."""
        collector = _DurabilityCollector(durable, volatile_allowed, restarts)
        self.registry.register(collector)
        self._scraped.append(collector)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._child(self.http_requests, method, route, status).inc()
        self._child(self.http_latency, method, route).observe(seconds)

    def _child(self, metric: Any, *labels: object) -> Any:
        """``metric.labels(*labels)`` (values as text), from a cache of at most 4,096 children."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*(str(v) for v in labels))
            if len(self._children) < 4096:
                self._children[key] = child
        return child

    def count_rejected(self, reason: str) -> None:
        self.shed.labels(reason).inc()

    def count_auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def count_rate_limited(self, limit: str) -> None:
        self.rate_limited.labels(limit).inc()

    def count_radius(self, interface: str, event: str, amount: int = 1) -> None:
        """One more ``event`` (a name from a bounded set, never a value) of a RADIUS ``interface``."""
        self._child(self.radius_events, interface, event).inc(amount)  # the module counts in every request

    def radius_counts(self, interface: str) -> dict[str, int]:
        """The RADIUS events of ``interface`` counted so far, by name (those never seen are absent)."""
        counts: dict[str, int] = {}
        for family in self.radius_events.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("interface") == interface and sample.value:
                    counts[sample.labels["event"]] = int(sample.value)
        return counts

    def observe_fbu(self, interface: str, verdict: FbuVerdict) -> None:
        if verdict.valid:
            self._child(self.fbu_verdicts, interface, verdict.verdict, "none").inc()
        else:
            self._child(self.fbu_verdicts, interface, "rejected", verdict.reason).inc()

    @contextmanager
    def operation(self, interface: str, operation: str) -> Iterator[None]:
        """Time one service call; an :class:`AaaFmipError` is counted by its class and re-raised."""
        start = time.perf_counter()
        try:
            yield
        except AaaFmipError as exc:
            self.operation_errors.labels(interface, operation, error_label(exc)).inc()
            raise
        finally:
            self._child(self.operation_latency, interface, operation).observe(time.perf_counter() - start)

    def render(self) -> bytes:
        """The exposition. With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set, see
        :mod:`aaa_fmip.commands.workers`): counters and histograms summed over every process, and the gauges
        computed at scrape time by this one."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            for collector in self._scraped:
                registry.register(collector)
            return generate_latest(registry)
        return generate_latest(self.registry)


def error_label(exc: BaseException) -> str:
    """``StoreUnavailable`` → ``store_unavailable``: a bounded label value from the error's class."""
    name = type(exc).__name__
    out = [name[0].lower()]
    for char in name[1:]:
        out.append(f"_{char.lower()}" if char.isupper() else char)
    return "".join(out)


class _Static(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics)
