"""Errors the real service should never produce, provoked in-process with a stub service: a CryptoError (e.g. a
wrong KEK) and an unexpected exception both become a generic 500 problem, with no message and no traceback."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aaa_fmip.api.app import create_app
from aaa_fmip.api.context import ApiContext
from aaa_fmip.bootstrap import build_callers
from aaa_fmip.config import load_settings
from aaa_fmip.errors import CryptoError
from aaa_fmip.logging import configure_logging
from aaa_fmip.metrics import Metrics
from aaa_fmip.service.router_pairs import RouterPairUseCases
from tests.support.service_proc import Credential, render_config

SECRETISH = "c3" * 32


class StubService:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def handover_key(self, *args: object, **kwargs: object) -> object:
        raise self.exc

    def ready(self) -> None:
        return None

    def live_sessions(self) -> int:
        return 0


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("INFO", stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def app_for(tmp_path: Path, exc: BaseException, ar: Credential) -> Any:
    path = tmp_path / "c.toml"
    path.write_text(render_config(credentials=[ar]))
    settings = load_settings(path, {})
    service = StubService(exc)
    metrics = Metrics()
    metrics.attach_store(live_sessions=service.live_sessions, ping=service.ready)
    context = ApiContext(
        service=service,  # type: ignore[arg-type]
        callers=build_callers(settings),
        metrics=metrics,
        limits=settings.limits,
        router_pairs=RouterPairUseCases(service, time.time, ()),  # type: ignore[arg-type]
    )
    return create_app(context)


@pytest.mark.parametrize(
    "exc",
    [CryptoError(f"wrapped key {SECRETISH}: authentication failed"), RuntimeError(f"boom {SECRETISH}")],
    ids=["crypto-error", "unexpected"],
)
def test_generic_500(tmp_path: Path, log_stream: io.StringIO, exc: BaseException) -> None:
    ar = Credential.new("ar", "ar1", ["2001:db8::1"])
    app = app_for(tmp_path, exc, ar)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = {"ar_address": "2001:db8::1", "spi": 9}
            return await client.post("/v1/handover-keys", json=body, headers=ar.headers)

    response = asyncio.run(call())
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["reason"] == "internal-error" and body["title"] == "Internal error"
    assert SECRETISH not in response.text and "boom" not in response.text and "Traceback" not in response.text
    logged = log_stream.getvalue()
    assert SECRETISH not in logged and "Traceback" not in logged
    assert type(exc).__name__ in logged
