"""Token buckets, pure: no clock, no IO, no globals. The caller passes ``now`` (seconds, any monotonic origin).

Used by the REST adapter for per-caller and per-address limits (429 + Retry-After) and by the logging setup to
bound lines that an attacker can provoke (asyncio's accept errors, failed authentications). Small enough that
pulling in a library for it would cost more than it saves; nothing here is protocol logic.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_MAX_KEYS: Final = 65536  # buckets kept per limiter; the least recently used is dropped beyond this


@dataclass(frozen=True)
class Rate:
    """``per_second`` tokens added each second, up to ``burst`` tokens held."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and self.burst >= 1):
            raise ValueError("a rate needs per_second > 0 and burst >= 1")


@dataclass
class TokenBucket:
    """One bucket. Starts full: a caller that has been quiet may send ``burst`` requests at once."""

    rate: Rate
    tokens: float = field(default=-1.0)
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.rate.burst

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.rate.burst, self.tokens + (now - self.updated) * self.rate.per_second)
        if self.updated is None or now > self.updated:
            self.updated = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if there are enough and return 0.0; otherwise take nothing and return the seconds
        until there will be enough (> 0)."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate.per_second

    def full_at(self, now: float) -> float:
        """When the bucket will be full again (``now`` if it is)."""
        self._refill(now)
        return now + (self.rate.burst - self.tokens) / self.rate.per_second


class KeyedLimiter(Generic[K]):
    """One :class:`TokenBucket` per key (a caller name, a source address), with a bounded number of keys.

    A key not seen for long is dropped when the table is full; a full bucket carries no state worth keeping, so
    dropping the least recently used one forgets at most a partly spent allowance."""

    def __init__(self, rate: Rate, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def take(self, key: K, now: float, cost: float = 1.0) -> float:
        """As :meth:`TokenBucket.take`, for the bucket of ``key``."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    """HTTP Retry-After (RFC 9110 §10.2.3) is whole seconds: round up, at least 1."""
    return str(max(1, math.ceil(seconds)))


@dataclass
class Summariser(Generic[K]):
    """At most one line per key per ``interval`` seconds, each saying how many events it stands for.

    ``record(key, now)`` returns None while the line is held back, or the number of events (this one included)
    since the last line of that key when one should be written now. Bounded in keys like :class:`KeyedLimiter`.
    """

    interval: float
    max_keys: int = DEFAULT_MAX_KEYS
    _state: OrderedDict[K, tuple[float, int]] = field(default_factory=OrderedDict)

    def record(self, key: K, now: float) -> int | None:
        last, held = self._state.get(key, (-math.inf, 0))
        self._state[key] = (last, held)
        self._state.move_to_end(key)
        if len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        if now - last >= self.interval:
            self._state[key] = (now, 0)
            return held + 1
        self._state[key] = (last, held + 1)
        return None
