"""Per-node prefixes through the sans-IO PAR and NAR (RFC 5568 §5.3, §6.3, §10; RFC 5271 §5.1): HI S=1, HAck
Code 2 with NCoA' and the prefix, FBack Status 1 with the Alternate CoA, HAck 130 on an empty pool, the PAR's
prefix check, the UNA answered with RA + NAACK Status 2; the bytes are asserted, not only the decoded values."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aaa_fmip import mn
from aaa_fmip.router import core
from aaa_fmip.router.neighbours import Neighbour, NeighbourTable
from aaa_fmip.router.prefixes import PerNodePrefixes, PrefixPoolConfig
from aaa_fmip.router.verify import ReceivedMh
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.mh import FBackStatus, HAckCode
from tests.router._pair import MN_LLA, NAR, NAR_AP, NCOA, PAR, PAR_AP, PAR_PREFIX, PCOA, Pair, node_key, predictive_fbu

AGGREGATE = IPv6Network("2001:db8:2::/48")
NODE_PREFIX = IPv6Network("2001:db8:2:100::/64")
NCOA_PRIME = IPv6Address("2001:db8:2:100::ff:fe00:1")  # MN_LLA 02:00:00:00:00:01, modified EUI-64


def _table(me: str) -> NeighbourTable:
    return NeighbourTable(
        [
            Neighbour(PAR_AP, PAR, PAR_PREFIX, local=me == "par"),
            Neighbour(NAR_AP, NAR, AGGREGATE, local=me == "nar", assigns_addresses=True),
        ]
    )


POOL = IPv6Network("2001:db8:2:100::/56")


def _pair(pool: IPv6Network = POOL, **per_node: object) -> Pair:
    par = core.RouterCore(
        core.RouterParameters(addresses=(PAR,), access_prefixes=(PAR_PREFIX,), neighbours=_table("par")),
        initial_hi_sequence=100,
    )
    nar = core.RouterCore(
        core.RouterParameters(
            addresses=(NAR,),
            access_prefixes=(AGGREGATE,),
            neighbours=_table("nar"),
            per_node=PerNodePrefixes(PrefixPoolConfig(AGGREGATE, pool), **per_node),  # type: ignore[arg-type]
        ),
        initial_hi_sequence=500,
    )
    return Pair(par=par, nar=nar)


def _events(pair: Pair, effects: list[core.Effect] | None = None) -> list[core.PrefixEvent]:
    return [e for e in (effects or []) if isinstance(e, core.PrefixEvent)]


def test_predictive_handover_assigns_the_ncoa_from_the_nodes_own_prefix() -> None:
    pair = _pair()
    assert NCOA in AGGREGATE and NCOA not in NODE_PREFIX  # the node formed its NCoA from the aggregate
    pair.fbu(predictive_fbu(), 0.0)
    hi_wire, hack_wire = pair.wire
    # HI: Sequence | S=1 U=0 (0x80) | Code 0 — RFC 5271 §5.1: "the PAR MUST send the HI with the S flag set"
    assert hi_wire.mh[2] == mhwire.MHType.HANDOVER_INITIATE and hi_wire.mh[8:10] == b"\x80\x00"
    # HAck: Sequence | Reserved | Code 2 (assigned; not 3 "use the PCoA": architecture.md §9)
    assert hack_wire.mh[2] == mhwire.MHType.HANDOVER_ACKNOWLEDGE and hack_wire.mh[8:10] == b"\x00\x02"
    # MH option 34 (length 18) code 2 /128 NCoA' at 8n+4, then code 4 /64 the node's prefix
    opt_ncoa = bytes((34, 18, 2, 128)) + NCOA_PRIME.packed
    opt_prefix = bytes((34, 18, 4, 64)) + NODE_PREFIX.network_address.packed
    assert hack_wire.mh.index(opt_ncoa) % 8 == 4 and hack_wire.mh.index(opt_prefix) % 8 == 4
    (to_node,) = pair.to_node
    assert to_node.destination == PCOA
    fback = mn.verify_fback(node_key(), to_node.mh, par=PAR, destination=PCOA)  # BADF over the Alternate CoA
    assert fback.status == FBackStatus.ACCEPTED_NCOA_INVALID
    assert [o for o in fback.options if isinstance(o, mhwire.AlternateCareOfAddress)] == [
        mhwire.AlternateCareOfAddress(NCOA_PRIME)
    ]
    assert to_node.mh[6] == 1 and bytes((3, 16)) + NCOA_PRIME.packed in to_node.mh  # Status 1, MH option 3
    (finished,) = pair.finished
    assert finished.ncoa == NCOA_PRIME and finished.outcome == "accepted_ncoa_invalid"
    assert pair.nar.prefix_pool is not None
    held = pair.nar.prefix_pool.get(MN_LLA)
    assert held is not None and held.prefix == NODE_PREFIX and held.interface is None


def test_hi_retransmission_gets_the_same_hack_and_no_second_prefix() -> None:
    pair = _pair()
    pair.deliver_to_nar = True
    pair.fbu(predictive_fbu(), 0.0)
    hi = pair.wire[0]
    again = pair.nar.receive_mh(ReceivedMh(hi.source, hi.destination, None, hi.mh), 0.05)
    assert next(e for e in again if isinstance(e, core.SendMh)).mh == pair.wire[1].mh
    assert pair.nar.prefix_pool is not None and len(pair.nar.prefix_pool) == 1


def test_empty_pool_gives_hack_130_and_fback_130() -> None:
    pair = _pair(IPv6Network("2001:db8:2:100::/64"))  # room for one node
    pair.fbu(predictive_fbu(), 0.0)
    other = node_key()
    second = mn.build_fbu_packet(
        other,
        sequence=2,
        lifetime_seconds=60,
        pcoa=PCOA,
        ncoa=NCOA,
        par=PAR,
        home_address_option=True,
        mh_lla=bytes.fromhex("020000000002"),
    )
    pair.fbu(second, 1.0)
    assert pair.wire[-1].mh[8:10] == bytes((0, HAckCode.INSUFFICIENT_RESOURCES))
    fback = mn.verify_fback(other, pair.to_node[-1].mh, par=PAR, destination=PCOA)
    assert fback.status == FBackStatus.INSUFFICIENT_RESOURCES


def test_par_refuses_a_supplied_ncoa_outside_the_prefix_the_nar_returned() -> None:
    pair = _pair()
    pair.deliver_to_nar = False
    pair.fbu(predictive_fbu(), 0.0)
    hi = mhwire.decode_mh(pair.wire[0].mh)
    assert isinstance(hi, mhwire.HI)
    for ncoa, prefix, status in (
        (IPv6Address("2001:db8:2:200::1"), NODE_PREFIX, FBackStatus.REASON_UNSPECIFIED),  # not in the prefix
        (IPv6Address("2001:db8:9::1"), IPv6Network("2001:db8:9::/64"), FBackStatus.REASON_UNSPECIFIED),  # nor NAR's
    ):
        fresh = _pair()
        fresh.deliver_to_nar = False
        fresh.fbu(predictive_fbu(), 0.0)
        options = (
            mhwire.MHIPv6AddressPrefix(2, 128, ncoa),
            mhwire.MHIPv6AddressPrefix(4, prefix.prefixlen, prefix.network_address),
        )
        hack = mhwire.encode_mh(
            mhwire.HAck(hi.sequence, HAckCode.ACCEPTED_NCOA_ASSIGNED, options), source=NAR, destination=PAR
        )
        fresh.run(fresh.par.receive_mh(ReceivedMh(NAR, PAR, None, hack), 0.01), 0.01)
        fback = mn.verify_fback(node_key(), fresh.to_node[-1].mh, par=PAR, destination=PCOA)
        assert fback.status == status and fback.options[:-1] == ()  # no Alternate CoA
        assert any(n.event == "hack.ncoa-outside-prefix" for n in fresh.notices)


def test_without_the_returned_prefix_the_par_checks_the_aggregate() -> None:
    pair = _pair(return_prefix=False)
    pair.fbu(predictive_fbu(), 0.0)
    assert bytes((34, 18, 4)) not in pair.wire[1].mh  # no option 34 code 4
    fback = mn.verify_fback(node_key(), pair.to_node[0].mh, par=PAR, destination=PCOA)
    assert (fback.status, fback.options[0]) == (1, mhwire.AlternateCareOfAddress(NCOA_PRIME))


def test_s0_hi_at_a_per_node_nar_gets_hack_1_with_ncoa_prime() -> None:
    pair = _pair()
    pair.par = core.RouterCore(
        replace(
            pair.par.params,
            neighbours=NeighbourTable(
                [
                    Neighbour(PAR_AP, PAR, PAR_PREFIX, local=True),
                    Neighbour(NAR_AP, NAR, AGGREGATE),  # this PAR does not know the NAR assigns addresses
                ]
            ),
        ),
        initial_hi_sequence=100,
    )
    pair.fbu(predictive_fbu(), 0.0)
    assert pair.wire[0].mh[8] == 0  # S=0
    assert pair.wire[1].mh[8:10] == bytes((0, HAckCode.ACCEPTED_NCOA_NOT_VALID))
    fback = mn.verify_fback(node_key(), pair.to_node[0].mh, par=PAR, destination=PCOA)
    assert (fback.status, fback.options[0]) == (1, mhwire.AlternateCareOfAddress(NCOA_PRIME))


def _una(target: IPv6Address, lla: bytes = MN_LLA) -> bytes:
    na = icmpv6.NeighborAdvertisement(target, (icmpv6.TargetLinkLayerAddress(lla),))
    return icmpv6.encode_nd_message(na, source=target, destination=IPv6Address("ff02::1"))


def test_una_from_an_aggregate_ncoa_gets_ra_with_naack_status_2() -> None:
    pair = _pair()
    effects = pair.nar.receive_icmpv6(NCOA, IPv6Address("ff02::1"), _una(NCOA), 5.0, interface="pnp7")
    kinds = [(e.kind, e.allocation.interface if e.allocation else None) for e in _events(pair, effects)]
    assert kinds == [("assigned", None), ("bound", "pnp7")]
    (sent,) = [e for e in effects if isinstance(e, core.SendIcmpv6)]
    assert (sent.destination, sent.interface) == (IPv6Address("ff02::1"), "pnp7")
    ra = icmpv6.decode_nd_message(sent.message)
    assert isinstance(ra, icmpv6.RouterAdvertisement) and ra.router_lifetime == 1800
    # NAACK on the wire: Type 20 | Length 3 | Option-Code 0 | Status 2 | Reserved(4) | NCoA' at octet 8
    naack = bytes((20, 3, 0, 2)) + bytes(4) + NCOA_PRIME.packed
    assert naack in sent.message and sent.message.index(naack) % 8 == 0
    # and the node's prefix in a PIO (L and A set) so SLAAC forms NCoA' from this RA alone
    pio = bytes((3, 4, 64, 0xC0)) + (86400).to_bytes(4, "big") + (14400).to_bytes(4, "big") + bytes(4)
    assert pio + NODE_PREFIX.network_address.packed in sent.message
    # the NCoA' itself, a solicited NA or a link outside the per-node patterns: no RA
    assert not [
        e
        for e in pair.nar.receive_icmpv6(NCOA_PRIME, IPv6Address("ff02::1"), _una(NCOA_PRIME), 6.0, interface="pnp7")
        if isinstance(e, core.SendIcmpv6)
    ]
    assert pair.nar.receive_icmpv6(NCOA, IPv6Address("ff02::1"), _una(NCOA), 6.0, interface="br0") == []
    link_local = IPv6Address("fe80::ff:fe00:1")  # e.g. the kernel announcing its link-local address: no NAACK
    assert not [
        e
        for e in pair.nar.receive_icmpv6(link_local, IPv6Address("ff02::1"), _una(link_local), 6.5, interface="pnp7")
        if isinstance(e, core.SendIcmpv6)
    ]
    router_na = icmpv6.encode_nd_message(
        icmpv6.NeighborAdvertisement(NCOA, (icmpv6.TargetLinkLayerAddress(bytes(6)),), router=True),
        source=NCOA,
        destination=IPv6Address("ff02::1"),
    )
    assert pair.nar.receive_icmpv6(NCOA, IPv6Address("ff02::1"), router_na, 7.0, interface="pnp8") == []


def test_rs_binds_the_predicted_prefix_and_a_vanished_link_releases_it() -> None:
    pair = _pair()
    pair.fbu(predictive_fbu(), 0.0)
    rs = icmpv6.encode_nd_message(
        icmpv6.RouterSolicitation((icmpv6.SourceLinkLayerAddress(MN_LLA),)),
        source=IPv6Address("fe80::ff:fe00:1"),
        destination=IPv6Address("ff02::2"),
    )
    effects = pair.nar.receive_icmpv6(IPv6Address("fe80::ff:fe00:1"), IPv6Address("ff02::2"), rs, 1.0, interface="pnp0")
    (bound,) = _events(pair, effects)
    assert bound.kind == "bound" and bound.allocation is not None and bound.allocation.prefix == NODE_PREFIX
    assert not [e for e in effects if isinstance(e, core.SendIcmpv6)]  # radvd answers RSs, not the agent
    again = pair.nar.receive_icmpv6(IPv6Address("fe80::ff:fe00:1"), IPv6Address("ff02::2"), rs, 2.0, interface="pnp0")
    assert _events(pair, again) == []  # already bound there: nothing to redo
    assert pair.nar.links_present({"pnp0", "br0"}, 3.0) == []
    (released,) = _events(pair, pair.nar.links_present({"br0"}, 4.0))
    assert (released.kind, released.reason) == ("released", "link-gone")
    assert pair.nar.prefix_pool is not None and pair.nar.prefix_pool.free == pair.nar.prefix_pool.size


def test_a_prefix_whose_node_never_attaches_expires_after_hold() -> None:
    pair = _pair(hold=5.0)
    pair.fbu(predictive_fbu(), 0.0)
    assert pair.nar.next_deadline() is not None and pair.nar.next_deadline() <= 5.0  # type: ignore[operator]
    assert _events(pair, pair.nar.handle_timer(4.9)) == []
    (expired,) = _events(pair, pair.nar.handle_timer(5.0))
    assert (expired.kind, expired.reason) == ("released", "expired")
    assert pair.nar.prefix_pool is not None and len(pair.nar.prefix_pool) == 0
    assert pair.nar.release_prefix(MN_LLA) == []


class PerNodeNarMachine(RuleBasedStateMachine):
    """Random HIs (S=1) from a handful of nodes, retransmitted or not, nodes attaching on links, links going away
    and the clock moving: only DecodeError-free effects, every HAck is Code 2 with NCoA' inside its own prefix or
    130 when the pool is empty, no two nodes ever share a prefix, and once every link is gone and the timers have
    run the pool is full again."""

    def __init__(self) -> None:
        super().__init__()
        self.nar = _pair(IPv6Network("2001:db8:2:100::/62"), hold=5.0, lifetime=20.0).nar  # four /64s
        self.now = 0.0
        self.sequence = 0
        self.links: set[str] = set()
        self.answers: dict[int, bytes] = {}
        self.sent_at = -1.0

    @rule(node=st.integers(1, 6), again=st.booleans())
    def hi(self, node: int, again: bool) -> None:
        if not again or self.sequence == 0 or self.now != self.sent_at:
            self.sequence += 1  # (a retransmission comes within the same instant here; see the NAR record's hold)
        self.sent_at = self.now
        lla = bytes((2, 0, 0, 0, 0, node))
        hi = mhwire.HI(
            self.sequence,
            0,
            (mhwire.MHLinkLayerAddress(2, lla), mhwire.MHIPv6AddressPrefix(2, 128, NCOA)),
            s_flag=True,
        )
        effects = self.nar.receive_mh(
            ReceivedMh(PAR, NAR, None, mhwire.encode_mh(hi, source=PAR, destination=NAR)), self.now
        )
        (sent,) = [e for e in effects if isinstance(e, core.SendMh)]
        if self.answers.get(self.sequence, sent.mh) != sent.mh:
            raise AssertionError("a repeated HI got another HAck")
        if self.sequence in self.answers:
            return  # a retransmission: the same octets as before, whatever the pool holds now
        self.answers[self.sequence] = sent.mh
        hack = mhwire.decode_mh(sent.mh, source=NAR, destination=PAR)
        assert isinstance(hack, mhwire.HAck)
        if hack.code == HAckCode.INSUFFICIENT_RESOURCES:
            assert self.nar.prefix_pool is not None and self.nar.prefix_pool.free == 0
            return
        assert hack.code == HAckCode.ACCEPTED_NCOA_ASSIGNED
        ncoa, prefix = (o for o in hack.options if isinstance(o, mhwire.MHIPv6AddressPrefix))
        assert ncoa.address in IPv6Network((prefix.address, prefix.prefix_length))

    @rule(node=st.integers(1, 6))
    def attach(self, node: int) -> None:
        lla = bytes((2, 0, 0, 0, 0, node))
        link = f"pnp{node}"
        rs = icmpv6.encode_nd_message(
            icmpv6.RouterSolicitation((icmpv6.SourceLinkLayerAddress(lla),)),
            source=IPv6Address("fe80::1"),
            destination=IPv6Address("ff02::2"),
        )
        self.nar.receive_icmpv6(IPv6Address("fe80::1"), IPv6Address("ff02::2"), rs, self.now, interface=link)
        self.links.add(link)

    @rule(node=st.integers(1, 6))
    def detach(self, node: int) -> None:
        self.links.discard(f"pnp{node}")
        self.nar.links_present(self.links, self.now)

    @rule(step=st.floats(0, 8))
    def tick(self, step: float) -> None:
        self.now += step
        self.nar.handle_timer(self.now)

    @invariant()
    def distinct(self) -> None:
        assert self.nar.prefix_pool is not None
        held = self.nar.prefix_pool.allocations()
        assert len({a.prefix for a in held}) == len(held) <= 4
        assert all(a.ncoa in a.prefix for a in held)

    def teardown(self) -> None:
        self.nar.links_present(set(), self.now)
        self.nar.handle_timer(self.now + 1000)
        assert self.nar.prefix_pool is not None and self.nar.prefix_pool.free == 4


TestPerNodeNar = PerNodeNarMachine.TestCase
TestPerNodeNar.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)


def test_restored_prefixes_are_bound_again_or_dropped() -> None:
    before = _pair(hold=5.0)
    before.fbu(predictive_fbu(), 0.0)  # MN_LLA: assigned, not attached
    rs = icmpv6.encode_nd_message(
        icmpv6.RouterSolicitation((icmpv6.SourceLinkLayerAddress(bytes.fromhex("020000000002")),)),
        source=IPv6Address("fe80::2"),
        destination=IPv6Address("ff02::2"),
    )
    before.nar.receive_icmpv6(IPv6Address("fe80::2"), IPv6Address("ff02::2"), rs, 1.0, interface="pnp2")
    rs3 = icmpv6.encode_nd_message(
        icmpv6.RouterSolicitation((icmpv6.SourceLinkLayerAddress(bytes.fromhex("020000000003")),)),
        source=IPv6Address("fe80::3"),
        destination=IPv6Address("ff02::2"),
    )
    before.nar.receive_icmpv6(IPv6Address("fe80::3"), IPv6Address("ff02::2"), rs3, 1.0, interface="pnp3")
    assert before.nar.prefix_pool is not None
    saved = before.nar.prefix_pool.allocations()
    assert sorted(a.interface or "" for a in saved) == ["", "pnp2", "pnp3"]
    after = _pair(hold=5.0)
    events = _events(after, after.nar.restore_prefixes(saved, {"pnp2", "br0"}, 3.0))  # pnp3 went meanwhile
    assert sorted((e.kind, e.allocation.lla[-1] if e.allocation else 0) for e in events) == [
        ("assigned", 1),
        ("bound", 2),
    ]
    assert after.nar.prefix_pool is not None and len(after.nar.prefix_pool) == 2
    late = _pair(hold=5.0)
    assert late.nar.restore_prefixes(saved, set(), 10.0) == []  # no link left, and the hold ran out
