"""One real ``aaa-fmip serve`` per test module, on the session's redis-server under a prefix of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api._deploy import Deployment, start_deployment
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def deployment(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = start_deployment(tmp_path_factory.mktemp("serve"), redis_server)
    yield d
    d.service.stop()
