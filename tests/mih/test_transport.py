"""The sans-IO RFC 5677 cores: ACKs, the RFC 2988 timer, duplicates, bounded state, TCP framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.mih.server import PlainChannel
from aaa_fmip.mih.transport import (
    Acknowledged,
    DatagramCore,
    FrameRejected,
    MessageReceived,
    MessageTooLarge,
    RttEstimator,
    StreamCore,
    TransactionFailed,
)
from aaa_fmip.wire import mih

MN = b"mn1@example.org"
MOS = b"mos.example.org"
PEER = ("2001:db8::1", 40000, 0, 0)
SERVER = ("2001:db8::2", 4551, 0, 0)


def request(tid: int = 1, *, ack_req: bool = True) -> mih.Frame:
    data = mih.encode_message(mih.DeRegisterRequest(source=MN, destination=MOS, transaction_id=tid, ack_req=ack_req))
    return mih.decode_frame(data)


def response(tid: int = 1) -> mih.Frame:
    return mih.decode_frame(mih.encode_message(mih.DeRegisterResponse(source=MOS, destination=MN, transaction_id=tid)))


def test_a_message_asking_for_an_ack_gets_one() -> None:
    core = DatagramCore(MOS)
    events = core.receive(mih.encode_frame(request(7)), PEER, 0.0)
    assert [type(e) for e in events] == [MessageReceived]
    ((data, peer),) = core.datagrams_to_send()
    assert peer == PEER
    ack = mih.decode_frame(data)
    assert ack.header.ack_rsp and not ack.header.ack_req
    assert ack.header.message_id == request(7).header.message_id and ack.header.transaction_id == 7
    assert ack.source == MOS and ack.first(mih.TLVType.DESTINATION_MIHF_ID) == b"\x0f" + MN


def test_no_ack_without_ack_req() -> None:
    core = DatagramCore(MOS)
    core.receive(mih.encode_frame(request(7, ack_req=False)), PEER, 0.0)
    assert core.datagrams_to_send() == []


def test_retransmission_schedule_rfc5677_defaults() -> None:
    """Initial RTO 3 s, doubled each time, 2 retransmissions, then the transaction fails."""
    core = DatagramCore(MN)
    core.send(request(1, ack_req=False), SERVER, 100.0)
    ((first, _),) = core.datagrams_to_send()
    assert mih.decode_frame(first).header.ack_req  # reliable sends ask for an ACK
    assert core.next_timer() == 103.0
    assert core.handle_timer(102.9) == [] and core.datagrams_to_send() == []
    assert core.handle_timer(103.0) == []
    assert core.datagrams_to_send() == [(first, SERVER)]
    assert core.next_timer() == 109.0  # 3 s, then 6 s
    assert core.handle_timer(109.0) == []
    assert core.datagrams_to_send() == [(first, SERVER)]
    assert core.next_timer() == 121.0  # then 12 s
    events = core.handle_timer(121.0)
    assert events == [TransactionFailed(SERVER, 1, "no-ack")]
    assert core.datagrams_to_send() == [] and core.next_timer() is None and core.pending == 0
    assert core.counters["retransmissions"] == 2


def test_backoff_is_capped_at_30_seconds() -> None:
    core = DatagramCore(MN, initial_rto=20.0, retries=3)
    core.send(request(), SERVER, 0.0)
    core.handle_timer(20.0)
    assert core.next_timer() == 50.0  # min(40, 30)
    core.handle_timer(50.0)
    assert core.next_timer() == 80.0


def test_ack_stops_retransmission_and_samples_the_rtt() -> None:
    client, server = DatagramCore(MN), DatagramCore(MOS)
    client.send(request(3), SERVER, 10.0)
    ((data, _),) = client.datagrams_to_send()
    server.receive(data, PEER, 10.1)
    ((ack, _),) = server.datagrams_to_send()
    events = client.receive(ack, SERVER, 10.2)
    assert len(events) == 1 and isinstance(events[0], Acknowledged)
    assert events[0].rtt == pytest.approx(0.2)
    assert client.pending == 0 and client.next_timer() is None
    # RFC 2988 §2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR = 0.6, rounded up to 1 s (§2.4)
    client.send(request(4), SERVER, 11.0)
    assert client.next_timer() == pytest.approx(12.0)


def test_karn_no_sample_from_a_retransmitted_message() -> None:
    client, server = DatagramCore(MN), DatagramCore(MOS)
    client.send(request(5), SERVER, 0.0)
    client.datagrams_to_send()
    client.handle_timer(3.0)
    ((data, _),) = client.datagrams_to_send()
    server.receive(data, PEER, 3.5)
    ((ack, _),) = server.datagrams_to_send()
    (event,) = client.receive(ack, SERVER, 3.6)
    assert event == Acknowledged(SERVER, 5, None)
    client.send(request(6), SERVER, 4.0)
    assert client.next_timer() == 7.0  # still the initial 3 s


def test_duplicates_are_acked_again_but_delivered_once() -> None:
    core = DatagramCore(MOS, seen_lifetime=60.0)
    data = mih.encode_frame(request(9))
    assert isinstance(core.receive(data, PEER, 0.0)[0], MessageReceived)
    core.datagrams_to_send()
    assert core.receive(data, PEER, 1.0) == [FrameRejected(PEER, "duplicate")]
    assert len(core.datagrams_to_send()) == 1  # the ACK is sent again: the first may have been lost
    assert isinstance(core.receive(mih.encode_frame(request(10)), PEER, 2.0)[0], MessageReceived)
    assert isinstance(core.receive(data, ("2001:db8::9", 1, 0, 0), 2.0)[0], MessageReceived)  # other source
    assert isinstance(core.receive(data, PEER, 61.0)[0], MessageReceived)  # remembered for seen_lifetime


def test_a_response_settles_the_request_even_if_its_ack_was_lost() -> None:
    client = DatagramCore(MN)
    client.send(request(11), SERVER, 0.0)
    client.datagrams_to_send()
    events = client.receive(mih.encode_frame(response(11)), SERVER, 0.5)
    assert [type(e) for e in events] == [MessageReceived]
    assert client.pending == 0


def test_piggybacked_ack_on_a_response() -> None:
    client = DatagramCore(MN)
    client.send(request(12), SERVER, 0.0)
    client.datagrams_to_send()
    frame = response(12)
    piggy = mih.Frame(mih.Header(**{**frame.header.__dict__, "ack_rsp": True}), frame.tlvs)
    events = client.receive(mih.encode_frame(piggy), SERVER, 0.4)
    assert [type(e) for e in events] == [Acknowledged, MessageReceived]


def test_messages_larger_than_the_path_mtu_are_refused() -> None:
    core = DatagramCore(MOS, max_datagram=100)
    big = mih.GetInformationResponse(
        source=MOS, destination=MN, results=((mih.InformationElement(mih.IEType.POA_LOCATION, bytes(200)),),)
    )
    with pytest.raises(MessageTooLarge):
        core.send(mih.decode_frame(mih.encode_message(big)), PEER, 0.0)
    assert core.datagrams_to_send() == [] and core.pending == 0


def test_malformed_and_fragmented_input_is_rejected() -> None:
    core = DatagramCore(MOS)
    (event,) = core.receive(b"\x10\x00\x14", PEER, 0.0)
    assert isinstance(event, FrameRejected) and event.reason == "malformed-frame" and "offset" in event.detail
    frame = request(1)
    fragment = mih.Frame(mih.Header(**{**frame.header.__dict__, "more_fragments": True}), frame.tlvs)
    assert core.receive(mih.encode_frame(fragment), PEER, 0.0) == [FrameRejected(PEER, "fragment-not-supported")]
    assert core.datagrams_to_send() == []


def test_a_flood_from_one_source_gives_bounded_work_and_state() -> None:
    core = DatagramCore(MOS, rate=100.0, burst=50.0, max_seen_per_source=32)
    delivered = 0
    for i in range(5000):
        now = i * 0.0001  # 10,000 datagrams/s for 0.5 s
        for event in core.receive(mih.encode_frame(request(i % 4096)), PEER, now):
            delivered += isinstance(event, MessageReceived)
    # at most the burst plus what the rate refills in 0.5 s
    assert delivered <= 50 + 100 * 0.5 + 1
    assert core.counters["rate-limited"] >= 5000 - 101
    assert core.sources == 1 and core.seen_entries() <= 32
    assert len(core.datagrams_to_send()) == delivered  # one ACK per accepted message, none for the dropped


def test_state_stays_bounded_across_many_sources() -> None:
    core = DatagramCore(MOS, max_sources=100, max_seen_per_source=8)
    for i in range(1000):
        core.receive(mih.encode_frame(request(i % 4096)), (f"2001:db8::{i:x}", 4551, 0, 0), 0.0)
    assert core.sources == 100 and core.seen_entries() <= 100 * 8
    core.datagrams_to_send()


def test_pending_transactions_per_peer_are_bounded() -> None:
    core = DatagramCore(MOS, max_pending_per_peer=4)
    for tid in range(1, 11):
        core.send(response(tid), PEER, 0.0)
    assert core.pending == 4 and core.counters["pending-evicted"] == 6


def test_rtt_estimator_rfc2988() -> None:
    rtt = RttEstimator(min_rto=0.0)
    assert rtt.rto == 3.0
    rtt.sample(1.0)
    assert (rtt.srtt, rtt.rttvar, rtt.rto) == (1.0, 0.5, 3.0)
    rtt.sample(2.0)  # RTTVAR = 3/4 * 0.5 + 1/4 * 1 = 0.625; SRTT = 7/8 + 2/8 = 1.125
    assert rtt.rttvar == pytest.approx(0.625) and rtt.srtt == pytest.approx(1.125)
    assert rtt.rto == pytest.approx(1.125 + 2.5)
    rtt.sample(100.0)
    assert rtt.rto == 30.0


# --- TCP ---------------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=20))
def test_stream_core_reassembles_any_segmentation(cuts: list[int]) -> None:
    frames = [request(t, ack_req=False) for t in range(1, 4)]
    stream = b"".join(mih.encode_frame(f) for f in frames)
    core = StreamCore(PEER)
    got: list[mih.Frame] = []
    at = 0
    for cut in [*cuts, len(stream)]:
        got += [e.frame for e in core.receive(stream[at : at + cut]) if isinstance(e, MessageReceived)]
        at += cut
        if at >= len(stream):
            break
    got += [e.frame for e in core.receive(stream[at:]) if isinstance(e, MessageReceived)]
    assert got == frames


def test_stream_core_skips_a_malformed_frame_and_keeps_step() -> None:
    bad = bytes.fromhex("10001401000100 03".replace(" ", "")) + b"\x01\x05\x00"  # TLV overruns the payload
    good = mih.encode_frame(request(2, ack_req=False))
    frame = request(3, ack_req=False)
    fragment = mih.encode_frame(mih.Frame(mih.Header(**{**frame.header.__dict__, "fragment_number": 1}), frame.tlvs))
    events = StreamCore(PEER).receive(bad + fragment + good)
    assert [getattr(e, "reason", None) for e in events] == ["malformed-frame", "fragment-over-tcp", None]
    assert isinstance(events[2], MessageReceived) and events[2].frame.header.transaction_id == 2


def test_stream_core_bounds_its_buffer() -> None:
    core = StreamCore(PEER, max_buffer=100)
    assert core.receive(b"\x10\x00\x14\x01\x00\x01\xff\xff" + bytes(200)) == [FrameRejected(PEER, "buffer-overflow")]


def test_no_mih_acks_or_fragments_over_tcp() -> None:
    data = StreamCore.encode(request(1, ack_req=True))
    assert not mih.decode_frame(data).header.ack_req
    frame = request(1)
    with pytest.raises(ValueError):
        StreamCore.encode(mih.Frame(mih.Header(**{**frame.header.__dict__, "more_fragments": True}), frame.tlvs))


def test_plain_channel_is_the_identity() -> None:
    channel = PlainChannel()
    assert channel.receive(b"abc") == [b"abc"]
    channel.send(b"x")
    channel.send(b"y")
    assert channel.data_to_send() == [b"x", b"y"] and channel.data_to_send() == []
    assert not channel.closed


def test_total_pending_is_bounded_and_stale_timers_are_skipped() -> None:
    core = DatagramCore(MOS, max_pending=5)
    for i in range(10):
        core.send(response(1), (f"2001:db8::{i}", 1, 0, 0), float(i))
    assert core.pending == 5 and core.counters["pending-evicted"] == 5
    assert core.next_timer() == 5.0 + 3.0  # the oldest one kept was sent at t = 5
    ack = mih.Frame(mih.Header(mih.ServiceId.SERVICE_MANAGEMENT, mih.Opcode.RESPONSE, 3, 1, ack_rsp=True))
    core.receive(mih.encode_frame(ack), ("2001:db8::5", 1, 0, 0), 6.0)
    assert core.pending == 4 and core.next_timer() == 6.0 + 3.0
    core.datagrams_to_send()
    assert core.handle_timer(100.0) == []  # first retransmissions of the four
    assert len(core.datagrams_to_send()) == 4
