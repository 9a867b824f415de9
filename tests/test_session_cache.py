"""The FBU verification's session cache (pure, time passed in): bounded by SPIs, by its TTL and by the
records' own expiry; evictable; disabled at size 0."""

from __future__ import annotations

import os

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.service.cache import Candidate, SessionCache
from aaa_fmip.store import SessionRecord


def candidate(spi: int, expires_at: float) -> Candidate:
    record = SessionRecord(
        hmk_name=os.urandom(8),
        spi=spi,
        hmk=SecretBytes(os.urandom(64)),
        user_name="alice",
        kind="eap",
        created_at=0.0,
        expires_at=expires_at,
    )
    return Candidate(record, os.urandom(20).hex())


def test_an_entry_lives_at_most_the_ttl_and_never_past_its_records() -> None:
    cache = SessionCache(size=10, ttl=60.0)
    long_lived = (candidate(1, 1_000.0),)
    cache.put(1, long_lived, now=100.0)
    assert cache.get(1, 144.9) == long_lived  # at least 75% of the TTL
    assert cache.get(1, 160.0) is None  # at most the TTL
    short_lived = (candidate(2, 130.0), candidate(2, 1_000.0))
    cache.put(2, short_lived, now=100.0)
    assert cache.get(2, 129.9) == short_lived
    assert cache.get(2, 130.0) is None  # the earliest record's expiry
    cache.put(3, (candidate(3, 99.0),), now=100.0)  # already expired: not cached
    assert cache.get(3, 100.0) is None


def test_entries_filled_together_do_not_expire_together() -> None:
    """1,000 sessions cached in the same second (a start, a burst of sessions): their entries expire over the last
    quarter of the TTL, evenly, not all at its end, so their next FBUs do not all read Redis at once."""
    cache = SessionCache(size=2_000, ttl=60.0)
    spis = [*range(1, 501), *(int.from_bytes(os.urandom(4), "big") for _ in range(500))]
    for spi in spis:
        cache.put(spi, (candidate(spi, 10_000.0),), now=0.0)

    def live(at: float) -> int:
        return sum(cache.get(spi, at) is not None for spi in list(spis))

    assert live(44.9) == 1_000
    expired = [1_000 - live(at) for at in (48.75, 52.5, 56.25)]  # a quarter, half, three quarters into the spread
    assert [round(e / 250) for e in expired] == [1, 2, 3], expired  # a quarter of them per 3.75 s
    assert live(60.0) == 0


def test_least_recently_used_spis_go_first() -> None:
    cache = SessionCache(size=2, ttl=60.0)
    for spi in (1, 2):
        cache.put(spi, (candidate(spi, 1_000.0),), now=0.0)
    assert cache.get(1, 1.0) is not None  # 1 is now the most recently used
    cache.put(3, (candidate(3, 1_000.0),), now=1.0)
    assert [cache.get(spi, 2.0) is not None for spi in (1, 2, 3)] == [True, False, True]
    assert len(cache) == 2


def test_evict_and_kept_handover_keys() -> None:
    cache = SessionCache(size=10, ttl=60.0)
    c = candidate(7, 1_000.0)
    cache.put(7, (c,), now=0.0)
    hk = SecretBytes(os.urandom(32))
    cache.keep_hk(7, c.record.hmk_name, b"\x20\x01" + bytes(14), hk)
    assert cache.hk(7, c.record.hmk_name, b"\x20\x01" + bytes(14)) is hk
    assert cache.hk(7, c.record.hmk_name, bytes(16)) is None  # another AR-ID
    cache.evict(7)
    assert cache.get(7, 1.0) is None and cache.hk(7, c.record.hmk_name, b"\x20\x01" + bytes(14)) is None


def test_size_zero_disables_it() -> None:
    cache = SessionCache(size=0)
    cache.put(1, (candidate(1, 1_000.0),), now=0.0)
    assert not cache.enabled and cache.get(1, 1.0) is None
