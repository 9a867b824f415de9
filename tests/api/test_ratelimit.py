"""The pure token-bucket core (aaa_fmip.ratelimit), with time passed in, and the log filter built on it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aaa_fmip.api.settings import LimitSettings
from aaa_fmip.config import load_settings
from aaa_fmip.errors import ConfigError
from aaa_fmip.logging import RateLimitFilter
from aaa_fmip.ratelimit import KeyedLimiter, Rate, Summariser, TokenBucket, retry_after_header


def test_bucket_starts_full_then_refuses_with_the_wait_until_a_token() -> None:
    bucket = TokenBucket(Rate(per_second=2.0, burst=3))
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert bucket.take(100.25) == pytest.approx(0.25)  # a refusal takes nothing
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) == pytest.approx(0.5)


def test_bucket_refills_only_up_to_its_burst() -> None:
    bucket = TokenBucket(Rate(per_second=10.0, burst=5))
    for _ in range(5):
        bucket.take(0.0)
    assert bucket.full_at(0.0) == pytest.approx(0.5)
    taken = [bucket.take(1000.0) for _ in range(6)]  # a long pause refills to 5, not 10,000
    assert taken[:5] == [0.0] * 5 and taken[5] > 0


def test_time_going_backwards_neither_refills_nor_breaks() -> None:
    bucket = TokenBucket(Rate(per_second=1.0, burst=1))
    assert bucket.take(50.0) == 0.0
    assert bucket.take(10.0) > 0  # an earlier instant adds nothing
    assert bucket.take(51.0) == 0.0


def test_cost_larger_than_one() -> None:
    bucket = TokenBucket(Rate(per_second=1.0, burst=4))
    assert bucket.take(0.0, cost=3) == 0.0
    assert bucket.take(0.0, cost=3) == pytest.approx(2.0)


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError):
        Rate(per_second=0.0, burst=1)
    with pytest.raises(ValueError):
        Rate(per_second=1.0, burst=0.5)


def test_keyed_limiter_keeps_callers_apart_and_bounds_its_table() -> None:
    limiter: KeyedLimiter[str] = KeyedLimiter(Rate(per_second=1.0, burst=1), max_keys=2)
    assert limiter.take("ar1", 0.0) == 0.0
    assert limiter.take("ar1", 0.0) > 0
    assert limiter.take("ar2", 0.0) == 0.0  # another caller is not affected
    assert limiter.take("ar3", 0.0) == 0.0
    assert len(limiter) == 2  # ar1, the least recently used, was dropped
    assert limiter.take("ar1", 0.0) == 0.0  # and so starts again with a full bucket


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"


def test_summariser_reports_once_per_interval_with_the_count() -> None:
    s: Summariser[str] = Summariser(interval=10.0)
    assert s.record("a", 0.0) == 1
    assert [s.record("a", t) for t in (1.0, 2.0, 3.0)] == [None, None, None]
    assert s.record("b", 3.0) == 1  # keys are independent
    assert s.record("a", 10.0) == 4  # this one and the three held back
    assert s.record("a", 11.0) is None


def _record(msg: str, name: str = "asyncio") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_log_filter_drops_a_flood_and_says_how_many() -> None:
    now = [0.0]
    f = RateLimitFilter(Rate(per_second=1.0, burst=3), clock=lambda: now[0])
    flood = "socket.accept() out of system resource\nsocket: <fd=6>"
    passed = [f.filter(_record(flood)) for _ in range(1000)]
    assert sum(passed) == 3
    assert f.filter(_record("another message"))  # a different line has its own allowance
    now[0] = 1.0
    record = _record(flood)
    assert f.filter(record)
    assert getattr(record, "suppressed", None) == 997


def test_limit_settings_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[limits]\nheader_timeout = 2.5\ncaller_burst = 7\nrate_limit = false\n")
    limits = load_settings(
        path, {"AAA_FMIP_LIMITS_MAX_CONNECTIONS": "300", "AAA_FMIP_LIMITS_CALLER_RATE": "1.5"}
    ).limits
    assert (limits.header_timeout, limits.caller_burst, limits.rate_limit) == (2.5, 7, False)
    assert (limits.max_connections, limits.caller_rate) == (300, 1.5)
    assert load_settings(None, {}).limits == LimitSettings()
    with pytest.raises(ConfigError, match=r"limits.max_connections \(from AAA_FMIP_LIMITS_MAX_CONNECTIONS\)"):
        load_settings(None, {"AAA_FMIP_LIMITS_MAX_CONNECTIONS": "0"})
    with pytest.raises(ConfigError, match=r"limits\.header_timeout"):
        path.write_text("[limits]\nheader_timeout = 0\n")
        load_settings(path, {})
    with pytest.raises(ConfigError, match=r"limits\.no_such"):
        path.write_text("[limits]\nno_such = 1\n")
        load_settings(path, {})
    with pytest.raises(ConfigError, match=r"server\.healthcheck_key_file"):
        path.write_text(f'[server]\nhealthcheck_cert_file = "{path}"\n')
        load_settings(path, {})
