from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mih_sec._stack import Stack, start_stack
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Stack]:
    """A real key service on the shared redis-server, with the mos, aaa and auditor callers of _stack."""
    s = start_stack(tmp_path_factory.mktemp("mih-service"), redis_server.url)
    try:
        yield s
    finally:
        s.service.stop()
