"""The per-node prefix pool: distinct prefixes, same node → same prefix, release, expiry with the time passed in,
exhaustion; the NCoA' it predicts is the modified EUI-64 address SLAAC forms (RFC 4291 Appendix A)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aaa_fmip.router.prefixes import (
    PerNodePrefixes,
    PoolExhausted,
    PrefixPool,
    PrefixPoolConfig,
    interface_identifier,
    ncoa_for,
)

AGGREGATE = IPv6Network("2001:db8:2::/48")
POOL = IPv6Network("2001:db8:2:100::/56")


def mac(n: int) -> bytes:
    return bytes((0x02, 0, 0, 0, n >> 8, n & 0xFF))


def test_ncoa_is_what_slaac_forms_from_mac_02_00_00_00_00_01() -> None:
    # the kernel (addr_gen_mode 0) forms fe80::ff:fe00:1 from this MAC, so prefix::ff:fe00:1 from a /64 PIO
    assert interface_identifier(bytes.fromhex("020000000001")).hex() == "000000fffe000001"
    assert ncoa_for(IPv6Network("2001:db8:2:100::/64"), bytes.fromhex("020000000001")) == IPv6Address(
        "2001:db8:2:100::ff:fe00:1"
    )
    # a universal MAC gets its u bit set; an EUI-64 keeps its middle octets
    assert interface_identifier(bytes.fromhex("001122334455")).hex() == "021122fffe334455"
    assert interface_identifier(bytes.fromhex("0011223344556677")).hex() == "0211223344556677"
    with pytest.raises(ValueError):
        interface_identifier(b"\x01\x02")


def test_config_checks() -> None:
    assert PrefixPoolConfig(AGGREGATE, POOL).size == 256
    assert PrefixPoolConfig(AGGREGATE, POOL, 60).size == 16
    with pytest.raises(ValueError, match="not inside"):
        PrefixPoolConfig(AGGREGATE, IPv6Network("2001:db8:3::/56"))
    with pytest.raises(ValueError, match="/64"):
        PrefixPoolConfig(AGGREGATE, POOL, 72)
    with pytest.raises(ValueError, match="between"):
        PrefixPoolConfig(AGGREGATE, POOL, 52)
    with pytest.raises(ValueError, match="preferred"):
        PerNodePrefixes(PrefixPoolConfig(AGGREGATE, POOL), valid_lifetime=10, preferred_lifetime=20)


def test_same_node_same_prefix_and_distinct_nodes_distinct_prefixes() -> None:
    pool = PrefixPool(PrefixPoolConfig(AGGREGATE, POOL))
    first = pool.allocate(mac(1), 0.0, 60)
    assert first.prefix == IPv6Network("2001:db8:2:100::/64")
    assert first.ncoa == IPv6Address("2001:db8:2:100::ff:fe00:1")
    again = pool.allocate(mac(1), 10.0, 60)
    assert again.prefix == first.prefix and again.expires_at == 70.0
    second = pool.allocate(mac(2), 10.0, 60)
    assert second.prefix == IPv6Network("2001:db8:2:101::/64") and len(pool) == 2 and pool.free == 254


def test_release_and_reuse() -> None:
    pool = PrefixPool(PrefixPoolConfig(AGGREGATE, POOL))
    a = pool.allocate(mac(1), 0.0, 60)
    pool.allocate(mac(2), 0.0, 60)
    released = pool.release(mac(1))
    assert released is not None and released.prefix == a.prefix
    assert pool.release(mac(1)) is None and pool.get(mac(1)) is None
    assert pool.allocate(mac(3), 0.0, 60).prefix == a.prefix  # the lowest free one comes back first


def test_expiry_with_the_time_passed_in() -> None:
    pool = PrefixPool(PrefixPoolConfig(AGGREGATE, POOL))
    pool.allocate(mac(1), 0.0, 10)
    pool.allocate(mac(2), 0.0, 30)
    assert pool.next_expiry() == 10.0
    assert pool.expire(9.999) == []
    assert [a.lla for a in pool.expire(10.0)] == [mac(1)]
    pool.renew(mac(2), 25.0, 30)  # a renewal moves the expiry: the old heap entry no longer counts
    assert pool.expire(30.0) == [] and pool.next_expiry() == 55.0
    bound = pool.bind(mac(2), "pnp2", 40.0, 100)
    assert bound is not None and bound.interface == "pnp2" and bound.expires_at == 140.0
    assert [a.lla for a in pool.expire(140.0)] == [mac(2)] and pool.free == pool.size


def test_exhaustion_and_recovery() -> None:
    pool = PrefixPool(PrefixPoolConfig(AGGREGATE, IPv6Network("2001:db8:2:100::/63")))  # two /64s
    pool.allocate(mac(1), 0.0, 60)
    pool.allocate(mac(2), 0.0, 60)
    with pytest.raises(PoolExhausted):
        pool.allocate(mac(3), 0.0, 60)
    assert pool.allocate(mac(2), 1.0, 60).prefix == IPv6Network("2001:db8:2:101::/64")  # holders still renew
    assert [a.lla for a in pool.expire(60.5)] == [mac(1)]  # mac(2) was renewed to 61.0
    assert pool.free == 1 and pool.get(mac(2)) is not None
    assert pool.allocate(mac(3), 60.5, 60).prefix == IPv6Network("2001:db8:2:100::/64")


def test_binding_a_link_takes_it_from_its_previous_node() -> None:
    pool = PrefixPool(PrefixPoolConfig(AGGREGATE, POOL))
    pool.allocate(mac(1), 0.0, 60)
    pool.allocate(mac(2), 0.0, 60)
    pool.bind(mac(1), "pnp0", 0.0, 60)
    pool.bind(mac(2), "pnp0", 0.0, 60)
    assert pool.by_interface("pnp0") == pool.get(mac(2))
    a = pool.get(mac(1))
    assert a is not None and a.interface is None
    assert pool.bind(mac(9), "pnp0", 0.0, 60) is None


def test_a_large_pool_costs_nothing_up_front() -> None:
    pool = PrefixPool(PrefixPoolConfig(IPv6Network("2001:db8::/32"), IPv6Network("2001:db8::/32")))
    assert pool.size == 2**32
    assert pool.allocate(mac(1), 0.0, 1).prefix == IPv6Network("2001:db8::/64")


class PoolMachine(RuleBasedStateMachine):
    """Random allocations, renewals, releases and clock moves against a model: prefixes stay distinct, a node
    keeps its prefix while it holds one, nothing outlives its expiry, and the counts add up."""

    def __init__(self) -> None:
        super().__init__()
        self.config = PrefixPoolConfig(AGGREGATE, IPv6Network("2001:db8:2:100::/62"))  # four /64s
        self.pool = PrefixPool(self.config)
        self.now = 0.0
        self.model: dict[bytes, tuple[IPv6Network, float]] = {}

    @rule(node=st.integers(0, 6), lifetime=st.floats(0.5, 20))
    def allocate(self, node: int, lifetime: float) -> None:
        lla = mac(node)
        try:
            got = self.pool.allocate(lla, self.now, lifetime)
        except PoolExhausted:
            assert lla not in self.model and len(self.model) == 4
            return
        if lla in self.model:
            assert got.prefix == self.model[lla][0]
        self.model[lla] = (got.prefix, max(self.model.get(lla, (got.prefix, 0.0))[1], self.now + lifetime))
        assert got.expires_at == self.model[lla][1]

    @rule(node=st.integers(0, 6), link=st.integers(0, 3), lifetime=st.floats(0.5, 20))
    def bind(self, node: int, link: int, lifetime: float) -> None:
        bound = self.pool.bind(mac(node), f"pnp{link}", self.now, lifetime)
        assert (bound is not None) == (mac(node) in self.model)
        if bound is not None:
            assert bound.interface == f"pnp{link}" and bound.prefix == self.model[mac(node)][0]
            self.model[mac(node)] = (bound.prefix, self.now + lifetime)

    @rule(node=st.integers(0, 6))
    def release(self, node: int) -> None:
        gone = self.pool.release(mac(node))
        assert (gone is not None) == (mac(node) in self.model)
        self.model.pop(mac(node), None)

    @rule(step=st.floats(0, 10))
    def tick(self, step: float) -> None:
        self.now += step
        released = {a.lla for a in self.pool.expire(self.now)}
        expected = {lla for lla, (_p, at) in self.model.items() if at <= self.now}
        assert released == expected
        for lla in expected:
            del self.model[lla]

    @invariant()
    def consistent(self) -> None:
        held = self.pool.allocations()
        assert len({a.prefix for a in held}) == len(held) == len(self.model)
        assert all(a.prefix.subnet_of(self.config.pool) and a.prefix.prefixlen == 64 for a in held)
        assert self.pool.free == 4 - len(held)
        assert {a.lla: a.prefix for a in held} == {lla: p for lla, (p, _at) in self.model.items()}
        links = [a.interface for a in held if a.interface is not None]
        assert len(links) == len(set(links))  # a link is bound to one node at most
        assert all(self.pool.by_interface(link) == next(a for a in held if a.interface == link) for link in links)


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@given(st.lists(st.integers(0, 2**16 - 1), unique=True, min_size=1, max_size=50))
@settings(max_examples=30, deadline=None)
def test_distinct_nodes_get_distinct_prefixes_and_all_come_back(nodes: list[int]) -> None:
    pool = PrefixPool(PrefixPoolConfig(AGGREGATE, POOL))
    allocations = [pool.allocate(mac(n), 0.0, 60) for n in nodes]
    assert len({a.prefix for a in allocations}) == len(nodes)
    assert all(a.ncoa in a.prefix for a in allocations)
    for n in nodes:
        pool.release(mac(n))
    assert len(pool) == 0 and pool.free == pool.size


def test_restore_after_a_restart_keeps_every_held_prefix_from_other_nodes() -> None:
    config = PrefixPoolConfig(AGGREGATE, IPv6Network("2001:db8:2:100::/61"))  # eight /64s
    before = PrefixPool(config)
    for n in range(6):
        before.allocate(mac(n), 0.0, 100)
    before.release(mac(1))
    before.release(mac(3))
    before.bind(mac(4), "pnp4", 0.0, 100)
    saved = before.allocations()
    foreign = replace(saved[0], lla=mac(50), prefix=IPv6Network("2001:db8:9::/64"))  # another pool now
    twice = replace(saved[0], lla=mac(51))  # a prefix listed twice: the first holder keeps it
    after = PrefixPool(config)
    restored = after.restore([*saved, foreign, twice])
    assert {a.lla for a in restored} == {mac(0), mac(2), mac(4), mac(5)}
    assert after.by_interface("pnp4") == after.get(mac(4)) and after.get(mac(4)).ncoa == before.get(mac(4)).ncoa  # type: ignore[union-attr]
    held = {a.prefix for a in restored}
    fresh = [after.allocate(mac(60 + n), 1.0, 100).prefix for n in range(4)]
    assert not held & set(fresh) and len(set(fresh)) == 4  # the two released and the two never used
    with pytest.raises(PoolExhausted):
        after.allocate(mac(70), 1.0, 100)
    assert after.restore(saved) == []  # all taken already: nothing twice
