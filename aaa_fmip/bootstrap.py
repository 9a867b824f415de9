"""The composition root: the one place that turns :class:`~aaa_fmip.config.Settings` into running parts.

:func:`build_runtime` starts the embedded Redis when no ``store.url`` is configured, loads (or, for the embedded
store, creates) the key-encryption key, opens the store, and builds the service, the caller registry and the
metrics. Adapters (REST, Diameter, RADIUS) receive the :class:`Runtime`; nothing here is a module global.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, overload

from aaa_fmip.callers import CallerRegistry
from aaa_fmip.config import Settings
from aaa_fmip.crypto.wrap import Kek, KekRing, load_kek_file
from aaa_fmip.errors import ConfigError, CryptoError, StoreUnavailable
from aaa_fmip.metrics import Metrics
from aaa_fmip.model import AccessRouter, Caller
from aaa_fmip.send_policy import SendPolicy
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store.durability import ReplayDurabilityPolicy
from aaa_fmip.store.redis import RedisStore

if TYPE_CHECKING:
    from aaa_fmip.api.context import ApiContext

log = logging.getLogger("aaa_fmip.bootstrap")

StoreKind = Literal["embedded", "redis"]


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class Runtime:
    """Everything a running service holds. :meth:`close` releases it (store, then the embedded Redis)."""

    settings: Settings
    store: RedisStore
    service: HandoverKeyService
    callers: CallerRegistry
    metrics: Metrics
    kek_ring: KekRing = field(repr=False)
    store_kind: StoreKind
    _embedded: _Stoppable | None = field(default=None, repr=False)
    _closed: bool = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.store.close()
        finally:
            if self._embedded is not None:
                self._embedded.stop()


def build_callers(settings: Settings) -> CallerRegistry:
    """The caller registry of ``settings``: every token digest with its caller, every access router."""
    tokens: list[tuple[bytes, Caller]] = []
    routers: list[AccessRouter] = []
    for ar in settings.access_routers:
        router = ar.to_model()
        routers.append(router)
        if ar.token_sha256 is not None:  # None: a Diameter-only router, no REST access
            tokens.append((ar.token_sha256, Caller(name=ar.name, role="ar", router=router)))
    for client in settings.clients:
        caller = Caller(name=client.name, role=client.role, mihf_ids=frozenset(client.mihf_ids))
        tokens.append((client.token_sha256, caller))
    return CallerRegistry(tuple(tokens), tuple(routers))


@overload
def load_kek_ring(settings: Settings) -> KekRing | None: ...
@overload
def load_kek_ring(settings: Settings, fallback: Callable[[], Kek]) -> KekRing: ...
def load_kek_ring(settings: Settings, fallback: Callable[[], Kek] | None = None) -> KekRing | None:
    """The KEK ring: the current KEK from AAA_FMIP_KEK or keys.kek_file (else ``fallback()``, the embedded store's
    own), and the retired ones of keys.previous_kek_files, which still unwrap and verify; None without a
    current KEK."""
    keys = settings.keys
    current: Kek | None = keys.kek
    if current is None and keys.kek_file is not None:
        try:
            current = load_kek_file(keys.kek_file)
        except CryptoError as exc:
            raise ConfigError(str(exc), key="keys.kek_file") from None
    if current is None and fallback is not None:
        current = fallback()
    if current is None:
        return None
    previous = []
    for i, path in enumerate(keys.previous_kek_files):
        try:
            previous.append(load_kek_file(path))
        except CryptoError as exc:
            raise ConfigError(str(exc), key=f"keys.previous_kek_files[{i}]") from None
    try:
        return KekRing(current, tuple(previous))
    except CryptoError as exc:  # two keys with one id: the current KEK listed as previous, or two such files
        raise ConfigError(f"{exc} (ids: {', '.join(k.key_id for k in (current, *previous))})", key="keys") from None


def build_runtime(settings: Settings, *, clock: Callable[[], float] = time.time) -> Runtime:
    """Wire the store, service, registry and metrics described by ``settings``."""
    embedded: _Stoppable | None = None
    ring = load_kek_ring(settings)
    if settings.store.embedded:
        from aaa_fmip.store.embedded import ensure_kek, start_embedded

        data_dir = settings.store.data_dir
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {data_dir}: {exc.strerror or exc}", key="store.data_dir") from None
        if ring is None:

            def own_kek() -> Kek:
                try:
                    return ensure_kek(data_dir)
                except CryptoError as exc:  # e.g. data_dir/kek readable by others: the operator must fix it
                    raise ConfigError(str(exc), key="store.data_dir") from None

            ring = load_kek_ring(settings, own_kek)
        server = start_embedded(data_dir)
        embedded = server
        url = server.url
        kind: StoreKind = "embedded"
    else:
        if ring is None:  # config.load_settings already refuses this; keep the invariant local too
            raise ConfigError("an external Redis needs keys.kek_file or AAA_FMIP_KEK", key="keys.kek_file")
        url = settings.store.url
        kind = "redis"
    try:
        store = RedisStore.from_url(
            url,
            ring,
            prefix=settings.store.prefix,
            socket_timeout=settings.store.timeout,
            slot_chains=settings.store.slot_chains,
            writer=settings.store.writer,
            replay_policy=ReplayDurabilityPolicy(
                allow_volatile=settings.store.allow_volatile_replay_state,
                min_appendfsync=settings.store.min_appendfsync,
                wait_replicas=settings.store.replay_wait_replicas,
                wait_timeout_ms=settings.store.replay_wait_timeout_ms,
            ),
        )
        service = HandoverKeyService(
            store,
            max_lifetime=settings.keys.max_lifetime,
            clock=clock,
            lifetime_units=settings.keys.lifetime_units,
            send_policy=SendPolicy(
                min_key_bits=settings.send.min_key_bits,
                max_key_bits=settings.send.max_key_bits,
                hk_lifetime=settings.send.hk_lifetime,
                timestamp_delta=settings.send.timestamp_delta,
            ),
        )
        metrics = Metrics()
        metrics.attach_store(live_sessions=service.live_sessions, ping=store.ping)
        monitor = store.durability
        if monitor is not None:
            metrics.attach_durability(
                durable=lambda: None if monitor.report is None else monitor.report.durable,
                volatile_allowed=monitor.policy.allow_volatile,
                restarts=lambda: monitor.restarts,
            )
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    return Runtime(
        settings=settings,
        store=store,
        service=service,
        callers=build_callers(settings),
        metrics=metrics,
        kek_ring=ring,
        store_kind=kind,
        _embedded=embedded,
    )


def api_context(runtime: Runtime) -> ApiContext:
    """The pieces of ``runtime`` the REST adapter takes (it never sees the runtime or the settings)."""
    from aaa_fmip.api.context import ApiContext
    from aaa_fmip.service.router_pairs import RouterPairUseCases

    async def close_async_store() -> None:
        aio = runtime.store.aio
        if aio is not None:
            await aio.aclose()

    return ApiContext(
        service=runtime.service,
        callers=runtime.callers,
        metrics=runtime.metrics,
        limits=runtime.settings.limits,
        router_pairs=RouterPairUseCases(
            runtime.service.store,
            runtime.service.clock,
            runtime.callers.routers,
            period=runtime.settings.router_pairs.period,
            overlap=runtime.settings.router_pairs.overlap,
        ),
        on_shutdown=close_async_store,
    )


def check_store_at_start(runtime: Runtime) -> None:
    """``serve`` at start: warn loudly about the volatile-replay-state opt-out, and check the store's durability
    once (the store logs the verdict; FBUs are refused on a store that would lose replay state)."""
    if runtime.settings.store.allow_volatile_replay_state:
        log.warning(
            "store.allow_volatile_replay_state is true: FBUs are verified even if Redis would lose replay state, "
            "so after a Redis restart or failover an FBU accepted before may be accepted again (a replay). "
            "Run Redis as docs/configuration.md describes and remove this setting.",
            extra={"event": "volatile-replay-state-allowed"},
        )
    try:
        runtime.store.check_durability()
    except StoreUnavailable as exc:
        log.warning(
            "the store's durability could not be checked at start; it is checked before the first FBU",
            extra={"event": "store-durability-unknown", "error": str(exc)},
        )
