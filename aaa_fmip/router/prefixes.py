"""A per-node prefix pool for a NAR on point-to-point links (RFC 5568 §5.3, RFC 5271 §5.1; architecture.md §9).

On point-to-point links each node gets a prefix of its own (e.g. a /64), while PrRtAdv advertises the
aggregate the per-node prefixes come from (e.g. a /48). The node forms a temporary NCoA from the aggregate;
the NAR returns the real one, from the node's own prefix, in the HAck (MH option 34, code 2). That NCoA is
the prefix with the modified EUI-64 interface identifier of the node's link-layer address (RFC 4291
Appendix A), which is exactly what the node's kernel forms by SLAAC (RFC 4862 §5.5.3, ``addr_gen_mode 0``)
from the Router Advertisement that radvd sends on the node's link.

:class:`PrefixPool` hands out the per-node prefixes, keyed by the node's link-layer address: the same node
gets the same prefix while it is bound; the prefix comes back when the binding ends (:meth:`release`) or its
lifetime passes (:meth:`expire`, with the time passed in). Pure: no IO, no clock. The pool can be large
(a /32 of /64s); nothing here is proportional to its size, only to the prefixes handed out.

No library offers this (it is a few dictionaries and a heap), so it is written here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Final

__all__ = [
    "Allocation",
    "PerNodePrefixes",
    "PoolExhausted",
    "PrefixPool",
    "PrefixPoolConfig",
    "interface_identifier",
    "ncoa_for",
]

DEFAULT_PREFIX_LENGTH: Final = 64
_IID_BITS: Final = 64  # RFC 4291 §2.5.1: interface identifiers of unicast addresses are 64 bits (except ::/3)


class PoolExhausted(Exception):
    """Every prefix of the pool is handed out: the NAR answers HAck 130 (insufficient resources)."""


def interface_identifier(lla: bytes) -> bytes:
    """The modified EUI-64 interface identifier of a link-layer address (RFC 4291 Appendix A): a 48-bit IEEE
    802 address gets FF-FE in the middle (RFC 2464 §4), an EUI-64 is taken as it is; then the u bit (0x02 of
    the first octet) is inverted. ValueError for any other length."""
    if len(lla) == 6:
        eui64 = lla[:3] + b"\xff\xfe" + lla[3:]
    elif len(lla) == 8:
        eui64 = lla
    else:
        raise ValueError(f"a link-layer address of {len(lla)} octets has no modified EUI-64 identifier")
    return bytes((eui64[0] ^ 0x02,)) + eui64[1:]


def ncoa_for(prefix: IPv6Network, lla: bytes) -> IPv6Address:
    """NCoA' = the first /64 of ``prefix`` | the modified EUI-64 of ``lla`` (what SLAAC forms from a /64 PIO)."""
    if prefix.prefixlen > _IID_BITS:
        raise ValueError(f"{prefix} is longer than /64: no room for an interface identifier")
    return IPv6Address(prefix.network_address.packed[:8] + interface_identifier(lla))


@dataclass(frozen=True)
class PrefixPoolConfig:
    """The NAR's per-node prefix configuration (the router file's ``[prefixes]`` section)."""

    aggregate: IPv6Network  # advertised in PrRtAdv (ND 17 code 4); nodes form their temporary NCoA from it
    pool: IPv6Network  # the per-node prefixes are carved from this (inside the aggregate)
    prefix_length: int = DEFAULT_PREFIX_LENGTH  # each node's prefix

    def __post_init__(self) -> None:
        if not self.pool.subnet_of(self.aggregate):
            raise ValueError(f"the pool {self.pool} is not inside the aggregate {self.aggregate}")
        if not self.pool.prefixlen <= self.prefix_length <= _IID_BITS:
            raise ValueError(
                f"the per-node prefix length must lie between the pool's /{self.pool.prefixlen} and /64, "
                f"got /{self.prefix_length}"
            )

    @property
    def size(self) -> int:
        """How many per-node prefixes the pool holds."""
        return 1 << (self.prefix_length - self.pool.prefixlen)

    def prefix_at(self, index: int) -> IPv6Network:
        base = int(self.pool.network_address) + (index << (128 - self.prefix_length))
        return IPv6Network((base, self.prefix_length))


@dataclass(frozen=True)
class PerNodePrefixes:
    """What a NAR core needs to run per-node prefixes: the pool and the timings of its bindings."""

    pool: PrefixPoolConfig
    interfaces: tuple[str, ...] = ("pnp*",)  # shell patterns naming the per-node point-to-point links
    hold: float = 60.0  # seconds a prefix assigned in a HAck waits for its node to attach
    lifetime: float = 600.0  # seconds a bound prefix lives without its link being seen (renewed while it is)
    valid_lifetime: int = 86_400  # seconds: PIO Valid Lifetime (radvd's AdvValidLifetime; the NAACK RA's)
    preferred_lifetime: int = 14_400  # seconds: PIO Preferred Lifetime
    router_lifetime: int = 1_800  # seconds: RA Router Lifetime (radvd's default, 3 × MaxRtrAdvInterval)
    return_prefix: bool = True  # also put the node's prefix in the HAck (MH option 34 code 4)

    def __post_init__(self) -> None:
        if self.hold <= 0 or self.lifetime <= 0:
            raise ValueError("hold and lifetime must be positive")
        if self.preferred_lifetime > self.valid_lifetime:
            raise ValueError("the preferred lifetime cannot exceed the valid lifetime (RFC 4861 §4.6.2)")


@dataclass(frozen=True)
class Allocation:
    """One node's per-node prefix: ``ncoa`` is the address its kernel forms there by SLAAC."""

    lla: bytes
    prefix: IPv6Network
    ncoa: IPv6Address
    expires_at: float
    interface: str | None = None  # the node's point-to-point link, once it has attached there


class PrefixPool:
    """Per-node prefixes, one per link-layer address (module docstring)."""

    def __init__(self, config: PrefixPoolConfig) -> None:
        self.config = config
        self._by_lla: dict[bytes, tuple[int, Allocation]] = {}
        self._by_interface: dict[str, bytes] = {}  # link → the LLA bound there
        self._free: list[int] = []  # released indexes (a heap: the lowest is handed out first)
        self._fresh = 0  # every index from here on has never been handed out
        self._expiry: list[tuple[float, bytes]] = []  # a heap; stale entries are skipped

    # ---- counts

    @property
    def size(self) -> int:
        return self.config.size

    def __len__(self) -> int:
        """Prefixes handed out."""
        return len(self._by_lla)

    @property
    def free(self) -> int:
        return self.size - len(self._by_lla)

    def allocations(self) -> list[Allocation]:
        return [allocation for _index, allocation in self._by_lla.values()]

    def get(self, lla: bytes) -> Allocation | None:
        entry = self._by_lla.get(lla)
        return entry[1] if entry else None

    def by_interface(self, interface: str) -> Allocation | None:
        lla = self._by_interface.get(interface)
        return self.get(lla) if lla is not None else None

    # ---- changes

    def allocate(self, lla: bytes, now: float, lifetime: float) -> Allocation:
        """The node's prefix, new or the one it holds; its lifetime is extended to ``now + lifetime`` (never
        shortened). PoolExhausted when the node holds none and none is free; ValueError for an LLA without a
        modified EUI-64 identifier."""
        interface_identifier(lla)  # the check, before anything is taken
        entry = self._by_lla.get(lla)
        if entry is not None:
            return self._renew(entry, max(entry[1].expires_at, now + lifetime))
        if self._free:
            index = heapq.heappop(self._free)
        elif self._fresh < self.size:
            index, self._fresh = self._fresh, self._fresh + 1
        else:
            raise PoolExhausted(f"all {self.size} prefixes of {self.config.pool} are in use")
        prefix = self.config.prefix_at(index)
        allocation = Allocation(lla, prefix, ncoa_for(prefix, lla), now + lifetime)
        self._by_lla[lla] = (index, allocation)
        heapq.heappush(self._expiry, (allocation.expires_at, lla))
        return allocation

    def bind(self, lla: bytes, interface: str, now: float, lifetime: float) -> Allocation | None:
        """The node attached on ``interface``: remember the link and set its lifetime to ``now + lifetime``.
        None when the node holds no prefix. A link bound to another node before is taken from it."""
        entry = self._by_lla.get(lla)
        if entry is None:
            return None
        other = self._by_interface.get(interface)
        if other is not None and other != lla and other in self._by_lla:
            other_index, other_allocation = self._by_lla[other]
            self._by_lla[other] = (other_index, replace(other_allocation, interface=None))
        index, allocation = entry
        if allocation.interface is not None and allocation.interface != interface:
            self._by_interface.pop(allocation.interface, None)
        self._by_interface[interface] = lla
        return self._renew((index, replace(allocation, interface=interface)), now + lifetime)

    def renew(self, lla: bytes, now: float, lifetime: float) -> Allocation | None:
        entry = self._by_lla.get(lla)
        return self._renew(entry, now + lifetime) if entry is not None else None

    def release(self, lla: bytes) -> Allocation | None:
        """End the node's binding: its prefix goes back to the pool. None when it held none."""
        entry = self._by_lla.pop(lla, None)
        if entry is None:
            return None
        if entry[1].interface is not None and self._by_interface.get(entry[1].interface) == lla:
            del self._by_interface[entry[1].interface]
        heapq.heappush(self._free, entry[0])
        return entry[1]

    def expire(self, now: float) -> list[Allocation]:
        """Release every allocation whose lifetime ended at or before ``now``; the released ones."""
        released: list[Allocation] = []
        while self._expiry and self._expiry[0][0] <= now:
            at, lla = heapq.heappop(self._expiry)
            entry = self._by_lla.get(lla)
            if entry is not None and entry[1].expires_at == at:
                gone = self.release(lla)
                assert gone is not None
                released.append(gone)
        return released

    def next_expiry(self) -> float | None:
        while self._expiry:
            at, lla = self._expiry[0]
            entry = self._by_lla.get(lla)
            if entry is not None and entry[1].expires_at == at:
                return at
            heapq.heappop(self._expiry)
        return None

    def restore(self, saved: Iterable[Allocation]) -> list[Allocation]:
        """Take back the allocations saved before a restart (same node, same prefix, same link), so that no other
        node is given their prefixes (at start, before anything else is allocated). Left out: those that do
        not fit this pool (another pool or length now), a node or prefix or link that is already taken, an LLA
        without an EUI-64 form. The restored ones, NCoA' recomputed."""
        used: set[int] = {index for index, _allocation in self._by_lla.values()}
        restored: list[Allocation] = []
        for allocation in saved:
            prefix = allocation.prefix
            if prefix.prefixlen != self.config.prefix_length or not prefix.subnet_of(self.config.pool):
                continue
            try:
                ncoa = ncoa_for(prefix, allocation.lla)
            except ValueError:
                continue
            index = (int(prefix.network_address) - int(self.config.pool.network_address)) >> (128 - prefix.prefixlen)
            if index in used or allocation.lla in self._by_lla or allocation.interface in self._by_interface:
                continue
            used.add(index)
            allocation = replace(allocation, ncoa=ncoa)
            self._by_lla[allocation.lla] = (index, allocation)
            if allocation.interface is not None:
                self._by_interface[allocation.interface] = allocation.lla
            heapq.heappush(self._expiry, (allocation.expires_at, allocation.lla))
            restored.append(allocation)
        self._fresh = max(self._fresh, max(used) + 1 if used else 0)
        self._free = [i for i in range(self._fresh) if i not in used]  # sorted: already a heap
        return restored

    def _renew(self, entry: tuple[int, Allocation], expires_at: float) -> Allocation:
        index, allocation = entry
        renewed = replace(allocation, expires_at=expires_at)
        self._by_lla[allocation.lla] = (index, renewed)
        if expires_at != allocation.expires_at:
            heapq.heappush(self._expiry, (expires_at, allocation.lla))
        return renewed
