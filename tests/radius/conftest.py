"""Fixtures of the RADIUS tests: a test PKI, and a module-wide stack of redis-server (the session's, under a prefix
of its own) + ``aaa-fmip serve`` + FreeRADIUS (threaded, with the aaa-fmip module) sharing one configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aaa_fmip.bootstrap import Runtime
from tests.radius._stack import StackConfig
from tests.support.freeradius import FreeRadius, Pki, make_pki
from tests.support.redis_server import RedisServer
from tests.support.service_proc import ServiceProcess


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Stack:
    config: StackConfig
    config_path: Path
    service: ServiceProcess
    radius: FreeRadius
    runtime: Runtime  # the test's own view of the same store


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stack")
    config = StackConfig(base / "config", redis_server.url)
    path = config.write()
    service = ServiceProcess(base / "serve", config=path.read_text())
    radius = FreeRadius(base / "freeradius", pki, aaa_config=path, threaded=True)
    runtime = config.runtime()
    try:
        service.start()
        radius.start()
        yield Stack(config, path, service, radius, runtime)
    finally:
        radius.stop()
        service.stop()
        runtime.close()
