"""MIH over IP (RFC 5677): a sans-IO transport core and its thin asyncio UDP+TCP driver.

Hand-written because no Python library carries IEEE 802.21 frames. The rules implemented (RFC 5677 §6, "MIH
transport options"; §6.1 for UDP with MIH ACKs, §6.5 for TCP as the default):

* port 4551 on UDP and TCP; a MoS serves both at once, TCP is the default for clients (§6.5);
* TCP: no MIH ACKs, no MIH fragmentation (fragments received over TCP are rejected), ``TCP_NODELAY``;
* UDP: every message we originate asks for an MIH ACK (ACK-Req); a message that asked for one is acknowledged
  with an ACK frame (ACK-Rsp, same MID and TID, 802.21-2008 clause 8); unacknowledged messages are retransmitted
  with the RFC 2988 timer: initial RTO 3 s while the RTT is unknown, Karn's rule, exponential back-off capped at
  30 s, 2 retransmissions by default (§6); duplicates are detected by (MID, TID) per source and dropped
  after being acknowledged again; messages larger than the path MTU are refused before sending (§6.1: no IP
  fragmentation; we use the IPv6 minimum MTU, 1232 octets of UDP payload, unless configured otherwise).
* bounded state: per-source duplicate and rate state lives in LRU tables with a fixed number of sources and of
  entries per source; a token bucket per source bounds the work one source can cause.

The asyncio driver (:class:`aaa_fmip.mih.server.MIHServer`, with the :class:`~aaa_fmip.mih.server.ByteChannel`
seam for secured channels) and the clients (:mod:`aaa_fmip.mih.client`) run these cores.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire.mih import (
    HEADER_LENGTH,
    MAX_PAYLOAD_LENGTH,
    MIH_PORT,
    TLV,
    Frame,
    Header,
    Opcode,
    TLVType,
    decode_frame,
    encode_frame,
    encode_length,
    frame_length,
)

__all__ = [
    "DEFAULT_RETRIES",
    "INITIAL_RTO",
    "MAX_RTO",
    "MAX_UDP_PAYLOAD",
    "MIH_PORT",
    "Acknowledged",
    "DatagramCore",
    "Event",
    "FrameRejected",
    "MessageReceived",
    "MessageTooLarge",
    "PeerInfo",
    "RttEstimator",
    "StreamCore",
    "TransactionFailed",
]

log = logging.getLogger("aaa_fmip.mih")

INITIAL_RTO = 3.0  # RFC 5677 §6: "initial TMO ... 3 seconds" while the RTT is unknown
MAX_RTO = 30.0  # RFC 5677 §6: maximum TMO
MIN_RTO = 1.0  # RFC 2988 §2.4: rounded up to 1 second
DEFAULT_RETRIES = 2  # RFC 5677 §6: default number of retransmissions
MAX_UDP_PAYLOAD = 1232  # RFC 8200 §5: 1280 minimum MTU - 40 (IPv6) - 8 (UDP)
_CLOCK_GRANULARITY = 0.001  # RFC 2988 §2: G

Peer: TypeAlias = Any  # a socket address as asyncio reports it (hashable)
_Key: TypeAlias = tuple[Peer, int, int, int]  # (peer, SID, AID, TID) of a message awaiting its ACK
Transport: TypeAlias = Literal["udp", "tcp"]


class MessageTooLarge(ValueError):
    """A frame does not fit in one datagram of the configured path MTU (RFC 5677 §6)."""


# --- events --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageReceived:
    peer: Peer
    frame: Frame


@dataclass(frozen=True)
class Acknowledged:
    peer: Peer
    transaction_id: int
    rtt: float | None  # None when the message was retransmitted (Karn's rule: no sample)


@dataclass(frozen=True)
class TransactionFailed:
    """No ACK after the last retransmission (or the entry was evicted to keep state bounded)."""

    peer: Peer
    transaction_id: int
    reason: str


@dataclass(frozen=True)
class FrameRejected:
    """Input dropped; ``reason`` is a stable kebab-case code, ``detail`` names field and offset."""

    peer: Peer
    reason: str
    detail: str = ""


Event: TypeAlias = MessageReceived | Acknowledged | TransactionFailed | FrameRejected


# --- RFC 2988 retransmission timer ---------------------------------------------------------------------------


@dataclass
class RttEstimator:
    """RFC 2988 §2 (the timer RFC 5677 §6 prescribes), with RFC 5677's initial and maximum values."""

    initial_rto: float = INITIAL_RTO
    max_rto: float = MAX_RTO
    min_rto: float = MIN_RTO
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = INITIAL_RTO

    def __post_init__(self) -> None:
        self.rto = self.initial_rto

    def sample(self, rtt: float) -> None:
        if self.srtt is None:  # §2.2
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:  # §2.3, alpha = 1/8, beta = 1/4
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(self.max_rto, max(self.min_rto, self.srtt + max(_CLOCK_GRANULARITY, 4 * self.rttvar)))

    def backed_off(self, rto: float) -> float:
        return min(self.max_rto, rto * 2)  # RFC 2988 §5.5


# --- helpers -------------------------------------------------------------------------------------------------


def _is_ack_only(frame: Frame) -> bool:
    """An ACK frame: ACK-Rsp set and nothing but MIHF-IDs in it (a response with ACK-Rsp is also a message)."""
    return frame.header.ack_rsp and all(
        t.type in (TLVType.SOURCE_MIHF_ID, TLVType.DESTINATION_MIHF_ID) for t in frame.tlvs
    )


def ack_frame(acknowledged: Header, *, source: bytes, destination: bytes | None) -> Frame:
    """The ACK of a message (802.21-2008 clause 8): ACK-Rsp, the same MID and TID; MIHF-IDs as ODTONE sends them."""
    header = Header(
        acknowledged.service_id, acknowledged.opcode, acknowledged.action_id, acknowledged.transaction_id, ack_rsp=True
    )
    tlvs: tuple[TLV, ...] = ()
    if destination is not None:
        tlvs = (
            TLV(TLVType.SOURCE_MIHF_ID, encode_length(len(source)) + source),
            TLV(TLVType.DESTINATION_MIHF_ID, encode_length(len(destination)) + destination),
        )
    return Frame(header, tlvs)


@dataclass
class _SourceState:
    """What we remember about one UDP source: recently seen (MID, TID) and its token bucket."""

    seen: OrderedDict[tuple[int, int], float] = field(default_factory=OrderedDict)
    tokens: float = 0.0
    refilled_at: float = 0.0
    rtt: RttEstimator = field(default_factory=RttEstimator)


@dataclass
class _Pending:
    peer: Peer
    data: bytes
    transaction_id: int
    first_sent: float
    deadline: float
    rto: float
    retries_left: int
    retransmitted: bool = False


# --- UDP core ------------------------------------------------------------------------------------------------


class DatagramCore:
    """RFC 5677 over UDP for one local MIHF, all peers: ACKs, retransmission, duplicates, rate, sizes.

    Feed it ``receive(data, peer, now)`` and ``handle_timer(now)``; send with ``send(frame, peer, now)``; write
    what ``datagrams_to_send()`` returns; call ``handle_timer`` at ``next_timer()``. No IO, no clock.
    """

    def __init__(
        self,
        mihf_id: bytes,
        *,
        retries: int = DEFAULT_RETRIES,
        initial_rto: float = INITIAL_RTO,
        max_rto: float = MAX_RTO,
        min_rto: float = MIN_RTO,
        max_datagram: int = MAX_UDP_PAYLOAD,
        max_sources: int = 4096,
        max_seen_per_source: int = 64,
        seen_lifetime: float = 2 * MAX_RTO * (DEFAULT_RETRIES + 1),
        max_pending_per_peer: int = 16,
        max_pending: int = 16384,
        rate: float = 1000.0,
        burst: float = 1000.0,
    ) -> None:
        self.mihf_id = mihf_id
        self.retries = retries
        self.initial_rto, self.max_rto, self.min_rto = initial_rto, max_rto, min_rto
        self.max_datagram = max_datagram
        self.max_sources = max_sources
        self.max_seen_per_source = max_seen_per_source
        self.seen_lifetime = seen_lifetime
        self.max_pending_per_peer = max_pending_per_peer
        self.max_pending = max_pending
        self.rate, self.burst = rate, burst
        self._sources: OrderedDict[Peer, _SourceState] = OrderedDict()
        # (peer, SID, AID, TID) -> pending; insertion order = send order
        self._pending: OrderedDict[_Key, _Pending] = OrderedDict()
        self._by_peer: dict[Peer, OrderedDict[_Key, None]] = {}
        self._deadlines: list[tuple[float, int, _Key]] = []  # heap; entries whose deadline changed are skipped
        self._sequence = 0
        self._out: list[tuple[bytes, Peer]] = []
        self.counters: dict[str, int] = {}

    # state sizes, for tests and metrics
    @property
    def sources(self) -> int:
        return len(self._sources)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def seen_entries(self) -> int:
        return sum(len(s.seen) for s in self._sources.values())

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _source(self, peer: Peer, now: float) -> _SourceState:
        state = self._sources.get(peer)
        if state is None:
            state = _SourceState(tokens=self.burst, refilled_at=now)
            state.rtt = RttEstimator(self.initial_rto, self.max_rto, self.min_rto)
            self._sources[peer] = state
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
                self._count("sources-evicted")
        else:
            self._sources.move_to_end(peer)
        return state

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        heap = self._deadlines
        while heap:
            deadline, _, key = heap[0]
            pending = self._pending.get(key)
            if pending is not None and pending.deadline == deadline:
                return deadline
            heapq.heappop(heap)  # stale: acknowledged, evicted or rescheduled
        return None

    def _schedule(self, key: _Key, pending: _Pending) -> None:
        self._sequence += 1
        heapq.heappush(self._deadlines, (pending.deadline, self._sequence, key))

    def _drop(self, key: _Key) -> _Pending | None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            mine = self._by_peer.get(key[0])
            if mine is not None:
                mine.pop(key, None)
                if not mine:
                    del self._by_peer[key[0]]
        return pending

    def send(self, frame: Frame, peer: Peer, now: float, *, reliable: bool = True) -> None:
        """Queue ``frame`` for ``peer``; with ``reliable`` it asks for an ACK and is retransmitted until one comes."""
        if frame.header.more_fragments or frame.header.fragment_number:
            raise ValueError("MIH fragmentation is not used over IP")
        if reliable and not frame.header.ack_req:
            frame = replace(frame, header=replace(frame.header, ack_req=True))
        data = encode_frame(frame)
        if len(data) > self.max_datagram:
            raise MessageTooLarge(f"{len(data)} octets exceed the {self.max_datagram}-octet datagram limit")
        self._out.append((data, peer))
        self._count("sent")
        if not frame.header.ack_req:
            return
        h = frame.header
        key = (peer, int(h.service_id), h.action_id, h.transaction_id)
        rto = self._source(peer, now).rtt.rto
        self._drop(key)
        pending = _Pending(peer, data, h.transaction_id, now, now + rto, rto, self.retries)
        self._pending[key] = pending
        self._by_peer.setdefault(peer, OrderedDict())[key] = None
        self._schedule(key, pending)
        mine = self._by_peer[peer]
        while len(mine) > self.max_pending_per_peer:  # oldest first: state per peer and in all stays bounded
            self._drop(next(iter(mine)))
            self._count("pending-evicted")
        while len(self._pending) > self.max_pending:
            self._drop(next(iter(self._pending)))
            self._count("pending-evicted")

    def receive(self, data: bytes, peer: Peer, now: float) -> list[Event]:
        state = self._source(peer, now)
        # token bucket per source: bounded work for any one source (RFC 5677 §6 asks for rate control)
        state.tokens = min(self.burst, state.tokens + (now - state.refilled_at) * self.rate)
        state.refilled_at = now
        if state.tokens < 1:
            self._count("rate-limited")
            return [FrameRejected(peer, "rate-limited")]
        state.tokens -= 1
        try:
            frame = decode_frame(data)
        except DecodeError as exc:
            self._count("malformed")
            return [FrameRejected(peer, "malformed-frame", str(exc))]
        h = frame.header
        if h.more_fragments or h.fragment_number:
            self._count("fragment")  # RFC 5677 §6: no MIH fragmentation together with IP; not reassembled
            return [FrameRejected(peer, "fragment-not-supported")]
        events: list[Event] = []
        if h.ack_rsp:
            events.extend(self._acknowledged(peer, h, now, state))
            if _is_ack_only(frame):
                return events
        if h.opcode == Opcode.RESPONSE:
            # a response proves our request arrived even if its ACK was lost: stop retransmitting the request
            self._drop((peer, int(h.service_id), h.action_id, h.transaction_id))
        if h.ack_req:
            self._out.append((encode_frame(ack_frame(h, source=self.mihf_id, destination=frame.source)), peer))
            self._count("acks-sent")
        # duplicate detection by (MID, TID) per source (RFC 5677 §6)
        key = (h.message_id, h.transaction_id)
        for old, expires in list(state.seen.items())[: len(state.seen)]:
            if expires > now:
                break
            del state.seen[old]
        if key in state.seen:
            self._count("duplicates")
            return [*events, FrameRejected(peer, "duplicate")]
        state.seen[key] = now + self.seen_lifetime
        while len(state.seen) > self.max_seen_per_source:
            state.seen.popitem(last=False)
        self._count("received")
        return [*events, MessageReceived(peer, frame)]

    def _acknowledged(self, peer: Peer, h: Header, now: float, state: _SourceState) -> list[Event]:
        pending = self._drop((peer, int(h.service_id), h.action_id, h.transaction_id))
        if pending is None:
            self._count("stray-acks")
            return []
        rtt = None if pending.retransmitted else now - pending.first_sent
        if rtt is not None:
            state.rtt.sample(rtt)
        self._count("acked")
        return [Acknowledged(peer, h.transaction_id, rtt)]

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            p = self._pending.get(key)
            if p is None or p.deadline != deadline:
                continue  # stale entry
            if p.retries_left == 0:
                self._drop(key)
                self._count("transactions-failed")
                events.append(TransactionFailed(p.peer, p.transaction_id, "no-ack"))
                continue
            p.retries_left -= 1
            p.retransmitted = True
            state = self._sources.get(p.peer)
            p.rto = state.rtt.backed_off(p.rto) if state is not None else min(self.max_rto, p.rto * 2)
            p.deadline = now + p.rto
            self._schedule(key, p)
            self._out.append((p.data, p.peer))
            self._count("retransmissions")
        return events


# --- TCP core ------------------------------------------------------------------------------------------------


class StreamCore:
    """RFC 5677 over TCP for one connection: splits the byte stream into frames by their Payload Length.

    A frame that does not decode is skipped (its length is known from the header, so the stream stays in step);
    fragments are rejected (RFC 5677 §6: no MIH fragmentation over TCP); ACK-Req is ignored (no MIH ACKs over TCP).
    """

    def __init__(self, peer: Peer, *, max_buffer: int = 4 * (HEADER_LENGTH + MAX_PAYLOAD_LENGTH)) -> None:
        self.peer = peer
        self.max_buffer = max_buffer
        self._buffer = bytearray()

    def receive(self, data: bytes) -> list[Event]:
        self._buffer += data
        if len(self._buffer) > self.max_buffer:
            self._buffer.clear()
            return [FrameRejected(self.peer, "buffer-overflow")]
        events: list[Event] = []
        while True:
            total = frame_length(bytes(self._buffer[:HEADER_LENGTH]))
            if total is None or len(self._buffer) < total:
                return events
            raw = bytes(self._buffer[:total])
            del self._buffer[:total]
            try:
                frame = decode_frame(raw)
            except DecodeError as exc:
                events.append(FrameRejected(self.peer, "malformed-frame", str(exc)))
                continue
            if frame.header.more_fragments or frame.header.fragment_number:
                events.append(FrameRejected(self.peer, "fragment-over-tcp"))
                continue
            events.append(MessageReceived(self.peer, frame))

    @staticmethod
    def encode(frame: Frame) -> bytes:
        h = frame.header
        if h.more_fragments or h.fragment_number:
            raise ValueError("MIH fragmentation MUST NOT be used over TCP (RFC 5677 §6)")
        if h.ack_req or h.ack_rsp:
            frame = replace(frame, header=replace(h, ack_req=False, ack_rsp=False))
        return encode_frame(frame)


# --- asyncio driver ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerInfo:
    transport: Transport
    address: Peer


Handler: TypeAlias = Callable[[Frame, PeerInfo], Frame | None]
