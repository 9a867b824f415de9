"""URL forms accepted by RedisStore.from_url, and what the store says about where it points."""

from __future__ import annotations

import pytest

from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import ConfigError
from aaa_fmip.store.redis import RedisStore
from tests.store.conftest import StoreFactory


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("redis://127.0.0.1:6380/2", "127.0.0.1:6380/2"),
        ("redis://user:pw@127.0.0.1", "127.0.0.1:6379/0"),
        ("rediss://:pw@[::1]:7000/1", "tls [::1]:7000/1"),
        ("unix:///run/redis/redis.sock?db=3", "unix:/run/redis/redis.sock"),
        ("redis+sentinel://u:pw@s1:26379,s2,[::1]:26380/fmip/2", "sentinel s1:26379,s2:26379,[::1]:26380 service fmip"),
        ("rediss+sentinel://s1/fmip?sentinel_password=x", "sentinel s1:26379 service fmip"),
        ("redis+cluster://:pw@n1:7000,n2:7001", "cluster n1:7000,n2:7001"),
        ("rediss+cluster://n1", "cluster n1:6379"),
    ],
)
def test_url_forms(url: str, where: str, kek_ring: KekRing) -> None:
    store = RedisStore.from_url(url, kek_ring)  # no IO yet: clients connect on first use
    assert store.where == where
    assert "pw" not in store.where
    store.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost",
        "redis+sentinel://s1:26379",  # no service name
        "redis+sentinel://s1/fmip/x",
        "redis+sentinel://s1/fmip?bogus=1",
        "redis+cluster://n1:7000/3",  # clusters have no databases
        "redis+cluster://n1:99999",
        "redis://host:notaport",
    ],
)
def test_bad_urls(url: str, kek_ring: KekRing) -> None:
    with pytest.raises(ConfigError) as info:
        RedisStore.from_url(url, kek_ring)
    assert info.value.key == "store.url"


def test_bad_prefix(kek_ring: KekRing) -> None:
    with pytest.raises(ConfigError, match=r"store\.prefix"):
        RedisStore.from_url("redis://localhost", kek_ring, prefix="a{b}")


def test_sentinel_and_cluster_urls_work(make_store: StoreFactory, request: pytest.FixtureRequest) -> None:
    """The URLs of the real deployments used by the contract tests, with an explicit database for sentinel."""
    sentinel = request.getfixturevalue("redis_sentinel")
    store = make_store(sentinel.url.rsplit("/", 1)[0] + "/5")
    store.ping()
    assert store.remember_nonce(b"s" * 16, b"n" * 6, ttl=5)
    cluster = request.getfixturevalue("redis_cluster")
    make_store(cluster.url).ping()
