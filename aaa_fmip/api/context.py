"""What the composition root hands the REST adapter: typed pieces, never the runtime or the settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aaa_fmip.api.settings import LimitSettings
from aaa_fmip.callers import CallerRegistry
from aaa_fmip.metrics import Metrics
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.service.router_pairs import RouterPairUseCases


@dataclass(frozen=True)
class ApiContext:
    """The use cases, who may call, the metrics, the listener's limits, and what to release when the app stops
    (the store's asyncio connections belong to the app's event loop)."""

    service: HandoverKeyService
    callers: CallerRegistry
    metrics: Metrics
    limits: LimitSettings
    router_pairs: RouterPairUseCases
    on_shutdown: Callable[[], Awaitable[None]] | None = None
