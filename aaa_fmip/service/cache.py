"""A bounded in-process cache of unwrapped session records by SPI, for FBU verification (architecture.md §3).

Why it is safe: a cached record only chooses the key an FBU is checked with. Whether that record is still the
stored one (not revoked, not replaced, not expired in Redis) is decided by Redis, in the same script as the
replay check (:meth:`aaa_fmip.store.ops.StoreOps.verify_commit` compares the SHA-1 of the stored value with the
one read), so a revocation rejects the next FBU at once, on every instance, whatever this cache holds. An entry
lives at most ``ttl`` seconds and never past the earliest expiry of its records; a verification that finds the
cache stale, or no cached key that verifies (a colliding session may have been added), reads Redis again.
Entries live between 75% and 100% of ``ttl``, spread by SPI: entries filled together (after a start, or a burst
of new sessions) would otherwise expire together, and their sessions' next FBUs would all read Redis in the same
moment, every ``ttl`` seconds again.

Pure: no IO, time passed in. Thread-safe (the blocking driver runs in a thread pool beside the event loop).
The records hold unwrapped key material, as the service already does while it verifies: the cache keeps it for
``ttl`` seconds more, in this process only; ``size`` 0 disables it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.store import SessionRecord

DEFAULT_SIZE: Final = 100_000  # SPIs (a record is well under 1 KiB)
DEFAULT_TTL: Final = 60.0  # seconds
TTL_SPREAD: Final = 0.25  # an entry lives (1 - TTL_SPREAD * u) * ttl, u in [0, 1) by its SPI


def _spread(spi: int) -> float:
    """A value in [0, 1) for ``spi``, spread evenly over consecutive and random SPIs alike (Fibonacci hashing)."""
    return ((spi * 0x9E3779B1) & 0xFFFFFFFF) / 0x100000000


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live record under an SPI, with the SHA-1 (hex) of its stored value."""

    record: SessionRecord
    digest: str


@dataclass(slots=True)
class _Entry:
    candidates: tuple[Candidate, ...]
    until: float
    hks: dict[tuple[bytes, bytes], SecretBytes] = field(default_factory=dict)  # (hmk_name, AR-ID) -> HK


class SessionCache:
    """SPI → the live records with that SPI, LRU-bounded to ``size`` SPIs, each entry for at most ``ttl`` s."""

    def __init__(self, size: int = DEFAULT_SIZE, ttl: float = DEFAULT_TTL) -> None:
        if size < 0 or ttl < 0:
            raise ValueError("cache size and ttl must not be negative")
        self.size = size
        self.ttl = ttl
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, spi: int, now: float) -> tuple[Candidate, ...] | None:
        """The cached candidates of ``spi``, or None (not cached, or no longer to be used)."""
        with self._lock:
            entry = self._entries.get(spi)
            if entry is None:
                return None
            if entry.until <= now:
                del self._entries[spi]
                return None
            self._entries.move_to_end(spi)
            return entry.candidates

    def put(self, spi: int, candidates: tuple[Candidate, ...], now: float) -> None:
        """Cache the live records read for ``spi`` (none: nothing is cached)."""
        if not self.enabled or not candidates:
            return
        lifetime = self.ttl * (1.0 - TTL_SPREAD * _spread(spi))
        until = min(now + lifetime, min(c.record.expires_at for c in candidates))
        if until <= now:
            return
        with self._lock:
            self._entries[spi] = _Entry(candidates, until)
            self._entries.move_to_end(spi)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def hk(self, spi: int, hmk_name: bytes, ar_id: bytes) -> SecretBytes | None:
        """A handover key derived earlier for a cached record and an AR-ID."""
        entry = self._entries.get(spi)
        return None if entry is None else entry.hks.get((hmk_name, ar_id))

    def keep_hk(self, spi: int, hmk_name: bytes, ar_id: bytes, hk: SecretBytes) -> None:
        entry = self._entries.get(spi)
        if entry is not None and len(entry.hks) < 64:  # bounded: one per AR that verifies this session's FBUs
            entry.hks[(hmk_name, ar_id)] = hk

    def evict(self, spi: int) -> None:
        with self._lock:
            self._entries.pop(spi, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
