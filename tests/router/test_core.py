"""The sans-IO PAR and NAR state machines (RFC 5568 §6.1–6.3), driven in memory with real keys and messages."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip import mn
from aaa_fmip.errors import BadAuthenticator
from aaa_fmip.router import core
from aaa_fmip.router.verify import FbuVerdict, ReceivedMh
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import LinkLayerAddressCode, PrRtAdvCode
from aaa_fmip.wire.mh import FBackStatus, HAckCode
from tests.router._pair import (
    MN_LLA,
    NAR,
    NAR_AP,
    NAR_PREFIX,
    NCOA,
    PAR,
    PAR_AP,
    PCOA,
    Pair,
    make_core,
    node_key,
    predictive_fbu,
    reactive_fbu,
    router_key_of,
)

MN_LL = IPv6Address("fe80::2")


def _rtsolpr(*aps: tuple[int, bytes]) -> bytes:
    options: list[icmpv6.NDOption] = [icmpv6.LinkLayerAddress(LinkLayerAddressCode.SENDER, MN_LLA)]
    options += [icmpv6.LinkLayerAddress(code, ap) for code, ap in aps]
    return icmpv6.encode_icmpv6(icmpv6.RtSolPr(7, tuple(options)), source=MN_LL, destination=IPv6Address("fe80::1"))


def _prrtadv(effects: list[core.Effect]) -> icmpv6.PrRtAdv:
    sent = [e for e in effects if isinstance(e, core.SendIcmpv6)]
    assert len(sent) == 1 and sent[0].destination == MN_LL
    decoded = icmpv6.decode_icmpv6(sent[0].message, source=sent[0].source, destination=sent[0].destination)
    assert isinstance(decoded, icmpv6.PrRtAdv) and decoded.identifier == 7
    return decoded


UNKNOWN_AP = bytes.fromhex("02dd00000009")


@pytest.mark.parametrize(
    ("asked", "code", "outcomes"),
    [
        ([(1, NAR_AP)], PrRtAdvCode.NEW_ROUTER_INFO, []),
        ([(0, b"")], PrRtAdvCode.NEW_ROUTER_INFO, []),
        ([(1, UNKNOWN_AP)], PrRtAdvCode.NO_NEW_ROUTER_INFO, [(6, UNKNOWN_AP)]),
        ([(1, PAR_AP)], PrRtAdvCode.NO_NEW_ROUTER_INFO, [(5, PAR_AP)]),
        ([(1, NAR_AP), (1, UNKNOWN_AP)], PrRtAdvCode.PARTIAL_NEW_ROUTER_INFO, [(6, UNKNOWN_AP)]),
    ],
)
def test_rtsolpr_answered_from_the_neighbour_table(
    asked: list[tuple[int, bytes]], code: int, outcomes: list[tuple[int, bytes]]
) -> None:
    par = make_core("par")
    effects = par.receive_icmpv6(MN_LL, IPv6Address("fe80::1"), _rtsolpr(*asked), 0.0)
    assert core.Prefetch(MN_LLA) in effects  # the key can be fetched before the FBU
    adv = _prrtadv(effects)
    assert adv.code == code
    lla = [(o.option_code, o.address) for o in adv.options if isinstance(o, icmpv6.LinkLayerAddress)]
    assert lla[0] == (LinkLayerAddressCode.SENDER, bytes.fromhex("02cc00000001"))
    assert [x for x in lla if x[0] in (5, 6, 7)] == outcomes
    nar_info = [o for o in adv.options if isinstance(o, icmpv6.IPAddressPrefix)]
    if code in (PrRtAdvCode.NEW_ROUTER_INFO, PrRtAdvCode.PARTIAL_NEW_ROUTER_INFO):
        assert (LinkLayerAddressCode.NEW_ACCESS_POINT, NAR_AP) in lla
        assert [(o.option_code, o.prefix_length, o.address) for o in nar_info] == [
            (3, 128, NAR),
            (4, 64, NAR_PREFIX.network_address),
        ]
    else:
        assert nar_info == []


def test_malformed_icmpv6_is_a_notice() -> None:
    effects = make_core("par").receive_icmpv6(MN_LL, IPv6Address("fe80::1"), b"\x9a\x00\x00", 0.0)
    assert [type(e) for e in effects] == [core.Notice]


def _fback(pair: Pair, to: IPv6Address) -> mhwire.FBack:
    assert len(pair.to_node) == 1
    sent = pair.to_node[0]
    assert sent.destination == to and sent.source == PAR
    return mn.verify_fback(node_key(), sent.mh, par=PAR, destination=to)


def test_predictive_handover_hi_hack_fback() -> None:
    pair = Pair()
    pair.fbu(predictive_fbu(sequence=9), now=1.0)
    hi_sent, hack_sent = pair.wire
    hi = mhwire.decode_mh(hi_sent.mh, source=PAR, destination=NAR)
    assert isinstance(hi, mhwire.HI)
    assert hi.code == mhwire.HICode.FBU_FROM_PCOA and not hi.s_flag
    assert mhwire.MHLinkLayerAddress(2, MN_LLA) in hi.options
    assert mhwire.MHIPv6AddressPrefix(1, 128, PCOA) in hi.options
    assert mhwire.MHIPv6AddressPrefix(2, 128, NCOA) in hi.options
    hack = mhwire.decode_mh(hack_sent.mh, source=NAR, destination=PAR)
    assert isinstance(hack, mhwire.HAck) and hack.sequence == hi.sequence and hack.code == HAckCode.ACCEPTED_NCOA_VALID
    fback = _fback(pair, PCOA)  # verify_fback checks the BADF with the node's own HK
    assert (fback.status, fback.sequence, fback.lifetime_seconds) == (0, 9, 60)
    [done] = pair.finished
    assert (done.outcome, done.status, done.hi_transmissions, done.nar) == ("accepted", 0, 1, NAR)


def test_reactive_handover_is_code_1_and_fback_goes_to_the_ncoa() -> None:
    pair = Pair()
    pair.fbu(reactive_fbu(sequence=3), now=1.0)
    hi = mhwire.decode_mh(pair.wire[0].mh)
    assert isinstance(hi, mhwire.HI) and hi.code == mhwire.HICode.FBU_NOT_FROM_PCOA and not hi.s_flag
    fback = _fback(pair, NCOA)
    assert fback.status == FBackStatus.ACCEPTED


def test_assigned_addressing_returns_the_nar_ncoa_in_fback() -> None:
    pair = Pair(par=make_core("par", assigned_addressing=True))
    pair.fbu(predictive_fbu(), now=1.0)
    hi = mhwire.decode_mh(pair.wire[0].mh)
    assert isinstance(hi, mhwire.HI) and hi.s_flag
    hack = mhwire.decode_mh(pair.wire[1].mh)
    assigned = IPv6Address("2001:db8:2::ff:fe00:1")  # modified EUI-64 of 02:00:00:00:00:01
    assert isinstance(hack, mhwire.HAck) and hack.code == HAckCode.ACCEPTED_NCOA_ASSIGNED
    assert hack.options == (mhwire.MHIPv6AddressPrefix(2, 128, assigned),)
    fback = _fback(pair, PCOA)
    assert fback.status == FBackStatus.ACCEPTED_NCOA_INVALID
    assert mhwire.AlternateCareOfAddress(assigned) in fback.options


def test_nar_refuses_an_ncoa_outside_its_prefix_and_supplies_one() -> None:
    nar = make_core("nar")
    hi = mhwire.HI(1, 0, (mhwire.MHLinkLayerAddress(2, MN_LLA), mhwire.MHIPv6AddressPrefix(2, 128, PCOA)))
    effects = nar.receive_mh(ReceivedMh(PAR, NAR, None, mhwire.encode_mh(hi, source=PAR, destination=NAR)), 0.0)
    [sent] = [e for e in effects if isinstance(e, core.SendMh)]
    hack = mhwire.decode_mh(sent.mh, source=NAR, destination=PAR)
    assert isinstance(hack, mhwire.HAck) and hack.code == HAckCode.ACCEPTED_NCOA_NOT_VALID
    [option] = hack.options
    assert isinstance(option, mhwire.MHIPv6AddressPrefix) and option.address in NAR_PREFIX


def test_nar_refuses_hi_from_an_unknown_router() -> None:
    nar = make_core("nar")
    stranger = IPv6Address("2001:db8:9::1")
    hi = mhwire.encode_mh(mhwire.HI(1, 0), source=stranger, destination=NAR)
    [_, sent] = nar.receive_mh(ReceivedMh(stranger, NAR, None, hi), 0.0)
    assert isinstance(sent, core.SendMh)
    hack = mhwire.decode_mh(sent.mh)
    assert isinstance(hack, mhwire.HAck) and hack.code == HAckCode.ADMINISTRATIVELY_PROHIBITED


def test_nar_answers_a_repeated_hi_with_the_same_hack() -> None:
    nar = make_core("nar")
    hi = mhwire.HI(4, 0, (mhwire.MHLinkLayerAddress(2, MN_LLA), mhwire.MHIPv6AddressPrefix(2, 128, NCOA)))
    packet = ReceivedMh(PAR, NAR, None, mhwire.encode_mh(hi, source=PAR, destination=NAR))
    first = [e for e in nar.receive_mh(packet, 0.0) if isinstance(e, core.SendMh)]
    second = nar.receive_mh(packet, 0.3)
    assert first == [e for e in second if isinstance(e, core.SendMh)]
    assert any(isinstance(e, core.Notice) and e.event == "hi.retransmission" for e in second)


def test_nar_is_out_of_resources() -> None:
    nar = make_core("nar", max_nar_handovers=0)
    hi = mhwire.HI(4, 0, (mhwire.MHIPv6AddressPrefix(2, 128, NCOA),))
    effects = nar.receive_mh(ReceivedMh(PAR, NAR, None, mhwire.encode_mh(hi, source=PAR, destination=NAR)), 0.0)
    hack = mhwire.decode_mh(next(e for e in effects if isinstance(e, core.SendMh)).mh)
    assert isinstance(hack, mhwire.HAck) and hack.code == HAckCode.INSUFFICIENT_RESOURCES


@pytest.mark.parametrize(
    ("hack_code", "supplied", "status", "alternate"),
    [
        (0, None, 0, None),
        (1, IPv6Address("2001:db8:2::77"), 1, IPv6Address("2001:db8:2::77")),
        (1, None, 128, None),
        (2, IPv6Address("2001:db8:2::78"), 1, IPv6Address("2001:db8:2::78")),
        (2, None, 128, None),
        (3, None, 1, PCOA),
        (128, None, 128, None),
        (129, None, 129, None),
        (130, None, 130, None),
        (200, None, 128, None),
    ],
)
def test_every_hack_code_maps_to_an_fback_status(
    hack_code: int, supplied: IPv6Address | None, status: int, alternate: IPv6Address | None
) -> None:
    pair = Pair(deliver_to_nar=False)
    pair.fbu(predictive_fbu(), now=1.0)
    hi = mhwire.decode_mh(pair.wire[0].mh)
    assert isinstance(hi, mhwire.HI)
    options = () if supplied is None else (mhwire.MHIPv6AddressPrefix(2, 128, supplied),)
    hack = mhwire.encode_mh(mhwire.HAck(hi.sequence, hack_code, options), source=NAR, destination=PAR)
    pair.run(pair.par.receive_mh(ReceivedMh(NAR, PAR, None, hack), 1.05), 1.05)
    fback = _fback(pair, PCOA)
    assert fback.status == status
    alternates = [o.address for o in fback.options if isinstance(o, mhwire.AlternateCareOfAddress)]
    assert alternates == ([] if alternate is None else [alternate])
    assert fback.lifetime == (15 if status < 128 else 0)


def test_hi_retransmitted_with_backoff_then_fback_128() -> None:
    pair = Pair(deliver_to_nar=False)
    pair.fbu(predictive_fbu(), now=0.0)
    deadlines = []
    while pair.par.next_deadline() is not None and not pair.to_node:
        deadline = pair.par.next_deadline()
        assert deadline is not None
        deadlines.append(round(deadline, 6))
        pair.run(pair.par.handle_timer(deadline), deadline)
    assert deadlines == [0.1, 0.3, 0.7, 1.5]  # 100 ms doubling (RFC 5568 §6.2.1.1)
    assert len(pair.wire) == 1 + core.HI_RETRIES
    assert len({s.mh for s in pair.wire}) == 1  # the same HI each time
    assert _fback(pair, PCOA).status == FBackStatus.REASON_UNSPECIFIED
    [done] = pair.finished
    assert (done.outcome, done.hi_transmissions) == ("no-hack", 4)
    late = mhwire.decode_mh(pair.wire[0].mh)
    assert isinstance(late, mhwire.HI)
    hack = mhwire.encode_mh(mhwire.HAck(late.sequence, 0), source=NAR, destination=PAR)
    effects = pair.par.receive_mh(ReceivedMh(NAR, PAR, None, hack), 2.0)
    assert [e.event for e in effects if isinstance(e, core.Notice)] == ["hack.unexpected"]


def test_fbu_retransmission_answered_as_retransmission() -> None:
    pair = Pair(deliver_to_nar=False)
    packet = predictive_fbu(sequence=5)
    pair.fbu(packet, now=0.0)
    pair.fbu(packet, now=0.05)  # while the HI is out: nothing new goes anywhere
    assert len(pair.wire) == 1 and pair.to_node == []
    hi = mhwire.decode_mh(pair.wire[0].mh)
    assert isinstance(hi, mhwire.HI)
    hack = mhwire.encode_mh(mhwire.HAck(hi.sequence, 0), source=NAR, destination=PAR)
    pair.run(pair.par.receive_mh(ReceivedMh(NAR, PAR, None, hack), 0.06), 0.06)
    pair.fbu(packet, now=0.5)
    assert len(pair.to_node) == 2 and pair.to_node[0] == pair.to_node[1]
    assert len(pair.wire) == 1 and len(pair.finished) == 1  # no second HI
    assert sum(n.event == "fbu.retransmission" for n in pair.notices) == 2


def test_forged_fbu_is_dropped_and_does_not_block_the_genuine_one() -> None:
    pair = Pair()
    other = mn.derive_handover_key(mn.derive_master_key(emsk=bytes(64), eap_session_id=b"x" * 20), PAR)
    forged_key = type(other)(other.hk, other.hk_name, node_key().spi)  # right SPI, wrong key
    pair.fbu(predictive_fbu(sequence=2, key=forged_key), now=0.0)
    assert pair.to_node == [] and pair.wire == []
    assert [f.outcome for f in pair.finished] == ["bad-authenticator"]
    pair.fbu(predictive_fbu(sequence=2), now=0.1)
    assert _fback(pair, PCOA).status == 0


def test_replayed_fbu_is_dropped() -> None:
    pair = Pair()
    old = predictive_fbu(sequence=10)
    pair.fbu(predictive_fbu(sequence=11), now=0.0)
    pair.to_node.clear()
    pair.fbu(old, now=0.1)
    assert pair.to_node == [] and pair.finished[-1].outcome == "replay"


@pytest.mark.parametrize(("reason", "status"), [("unknown-spi", 128), ("key-unavailable", 128), ("revoked", 129)])
def test_rejection_without_a_key_gets_an_unsigned_fback(reason: str, status: int) -> None:
    pair = Pair()
    pair.verdict_override = FbuVerdict("rejected", node_key().spi, 1, reason)
    pair.fbu(predictive_fbu(sequence=1), now=0.0)
    [sent] = pair.to_node
    fback = mhwire.decode_mh(sent.mh, source=PAR, destination=PCOA)
    assert isinstance(fback, mhwire.FBack) and fback.status == status and fback.lifetime == 0
    with pytest.raises(Exception, match="BADF"):
        mhwire.badf_input(sent.mh)
    with pytest.raises((BadAuthenticator, Exception)):
        mn.verify_fback(node_key(), sent.mh, par=PAR, destination=PCOA)


def test_ncoa_of_no_known_nar_gets_fback_128_signed() -> None:
    pair = Pair()
    packet = mn.build_fbu_packet(
        node_key(), sequence=1, lifetime_seconds=8, pcoa=PCOA, ncoa=IPv6Address("2001:db8:7::5"), par=PAR
    )
    pair.fbu(packet, now=0.0)
    assert pair.wire == []
    assert _fback(pair, PCOA).status == 128


def test_unsolicited_hack_triggers_a_buffering_hi() -> None:
    pair = Pair()
    pair.fbu(predictive_fbu(), now=0.0)
    effects = pair.nar.solicit_hi(PAR, PCOA, 1.0)
    pair.run(effects, 1.0)
    his = [mhwire.decode_mh(s.mh) for s in pair.wire if s.destination == NAR]
    assert len(his) == 2
    assert isinstance(his[1], mhwire.HI) and his[1].u_flag and his[1].sequence != his[0].sequence  # type: ignore[union-attr]
    unknown = pair.nar.solicit_hi(PAR, IPv6Address("2001:db8:1::999"), 2.0)
    [sent] = unknown
    assert isinstance(sent, core.SendMh)
    effects = pair.par.receive_mh(ReceivedMh(NAR, PAR, None, sent.mh), 2.0)
    assert [e.event for e in effects if isinstance(e, core.Notice)] == ["hack.unsolicited-ignored"]


def test_a_verdict_for_no_fbu_is_a_local_protocol_error() -> None:
    with pytest.raises(core.LocalProtocolError):
        make_core("par").fbu_verified(99, FbuVerdict("rejected", 1, 1, "x"), 0.0)


def test_finished_handovers_are_forgotten() -> None:
    pair = Pair()
    pair.fbu(predictive_fbu(), now=0.0)
    assert pair.par.next_deadline() is not None
    pair.par.handle_timer(100.0)
    pair.nar.handle_timer(100.0)
    assert pair.par.next_deadline() is None and pair.nar.next_deadline() is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_any_mh_bytes_give_effects_not_exceptions(data: bytes, with_home: bool) -> None:
    par = make_core("par")
    effects = par.receive_mh(ReceivedMh(PCOA, PAR, PCOA if with_home else None, data), 0.0)
    assert all(isinstance(e, core.Notice | core.VerifyFbu | core.SendMh) for e in effects)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_any_icmpv6_bytes_give_effects_not_exceptions(data: bytes) -> None:
    effects = make_core("par").receive_icmpv6(MN_LL, IPv6Address("fe80::1"), data, 0.0)
    assert all(isinstance(e, core.Notice | core.SendIcmpv6 | core.Prefetch) for e in effects)


def test_a_node_that_authenticated_again_may_restart_its_numbering() -> None:
    second = mn.derive_handover_key(mn.derive_master_key(emsk=bytes(range(5, 69)), eap_session_id=b"\x0d" * 9), PAR)
    pair = Pair()
    pair.keys.append(router_key_of(second))
    pair.fbu(predictive_fbu(sequence=1), now=0.0)
    pair.fbu(predictive_fbu(sequence=1, key=second), now=1.0)  # same PCoA, same number, another session
    assert [
        mn.verify_fback(k, s.mh, par=PAR, destination=PCOA).status
        for k, s in zip((node_key(), second), pair.to_node, strict=True)
    ] == [0, 0]
