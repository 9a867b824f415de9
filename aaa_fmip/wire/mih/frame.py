"""The 802.21 frame: the length rule, the header and raw TLVs (enough for the transport)."""

from __future__ import annotations

from dataclasses import dataclass

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader, Writer
from aaa_fmip.wire.mih.codes import (
    _MAX_LENGTH_OCTETS,
    HEADER_LENGTH,
    MAX_PAYLOAD_LENGTH,
    MIH_VERSION,
    Opcode,
    ServiceId,
    TLVType,
)

# --- the 802.21 length rule ----------------------------------------------------------------------------------


def encode_length(n: int) -> bytes:
    """802.21-2008 clause 8 Length (also LIST counts and OCTET_STRING sizes)."""
    if n < 0:
        raise ValueError("negative length")
    if n <= 128:
        return bytes([n])
    extra = n - 128
    k = max(1, (extra.bit_length() + 7) // 8)
    if k > _MAX_LENGTH_OCTETS:
        raise ValueError(f"length {n} too large")
    return bytes([0x80 | k]) + extra.to_bytes(k, "big")


def decode_length(r: Reader, field: str) -> int:
    """Read a Length in its shortest form; a longer form than needed is a DecodeError (one encoding per value)."""
    at = r.offset
    first = r.pull_u8(field)
    if first <= 128:
        return first
    k = first & 0x7F
    if k > _MAX_LENGTH_OCTETS:
        raise DecodeError(f"{k} length octets", field=field, offset=at)
    extra = int.from_bytes(r.pull_bytes(k, field), "big")
    if extra == 0 or (k > 1 and extra < 1 << (8 * (k - 1))):
        raise DecodeError("length not in its shortest form", field=field, offset=at)
    return 128 + extra


def _push_octet_string(w: Writer, data: bytes) -> None:
    w.push_bytes(encode_length(len(data)))
    w.push_bytes(data)


def _pull_octet_string(r: Reader, field: str) -> bytes:
    return r.pull_bytes(decode_length(r, field), field)


# --- frame level ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """The MIH protocol header (802.21-2008 clause 8); the payload length is computed by the encoder."""

    service_id: ServiceId
    opcode: Opcode
    action_id: int  # 10 bits; its meaning depends on service_id
    transaction_id: int  # 12 bits
    ack_req: bool = False
    ack_rsp: bool = False
    uir: bool = False  # unauthenticated information request
    more_fragments: bool = False
    fragment_number: int = 0  # 7 bits
    version: int = MIH_VERSION  # 4 bits

    @property
    def message_id(self) -> int:
        return (int(self.service_id) << 12) | (int(self.opcode) << 10) | self.action_id


@dataclass(frozen=True)
class TLV:
    """One TLV as it was on the wire (the value is kept raw; the typed messages interpret it)."""

    type: TLVType
    value: bytes


@dataclass(frozen=True)
class Frame:
    header: Header
    tlvs: tuple[TLV, ...] = ()

    def first(self, tlv_type: TLVType) -> bytes | None:
        for tlv in self.tlvs:
            if tlv.type == tlv_type:
                return tlv.value
        return None

    @property
    def source(self) -> bytes | None:
        """The Source MIHF-ID when the first TLV carries one (802.21-2008 clause 8: it always comes first)."""
        if self.tlvs and self.tlvs[0].type == TLVType.SOURCE_MIHF_ID:
            try:
                return _decode_mihf_id(self.tlvs[0].value, 0)
            except DecodeError:
                return None
        return None


def _check_range(value: int, bits: int, field: str) -> None:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{field} {value} does not fit in {bits} bits")


def encode_frame(frame: Frame) -> bytes:
    h = frame.header
    for value, bits, name in (
        (h.version, 4, "version"),
        (h.fragment_number, 7, "fragment_number"),
        (int(h.service_id), 4, "service_id"),
        (int(h.opcode), 2, "opcode"),
        (h.action_id, 10, "action_id"),
        (h.transaction_id, 12, "transaction_id"),
    ):
        _check_range(value, bits, name)
    payload = Writer()
    for tlv in frame.tlvs:
        _check_range(int(tlv.type), 8, "TLV type")
        payload.push_u8(int(tlv.type))
        payload.push_bytes(encode_length(len(tlv.value)))
        payload.push_bytes(tlv.value)
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"payload of {len(payload)} octets exceeds {MAX_PAYLOAD_LENGTH}")
    flags = (h.version << 4) | (h.ack_req << 3) | (h.ack_rsp << 2) | (h.uir << 1) | int(h.more_fragments)
    w = Writer()
    w.push_u8(flags)
    w.push_u8(h.fragment_number << 1)
    w.push_u16(h.message_id)
    w.push_u16(h.transaction_id)
    w.push_u16(len(payload))
    w.push_bytes(payload.getvalue())
    return w.getvalue()


def frame_length(prefix: bytes) -> int | None:
    """Total length of the frame that ``prefix`` starts, once its header is complete (TCP framing)."""
    if len(prefix) < HEADER_LENGTH:
        return None
    return HEADER_LENGTH + int.from_bytes(prefix[6:8], "big")


def decode_frame(data: bytes) -> Frame:
    """Exactly one frame; anything before or after it, or a malformed TLV, is a DecodeError."""
    r = Reader(data)
    flags = r.pull_u8("MIH header")
    fragment = r.pull_u8("MIH header")
    mid = r.pull_u16("MIH header")
    tid = r.pull_u16("MIH header") & 0x0FFF
    length = r.pull_u16("MIH payload length")
    header = Header(
        service_id=ServiceId(mid >> 12),
        opcode=Opcode((mid >> 10) & 0x3),
        action_id=mid & 0x3FF,
        transaction_id=tid,
        ack_req=bool(flags & 0x08),
        ack_rsp=bool(flags & 0x04),
        uir=bool(flags & 0x02),
        more_fragments=bool(flags & 0x01),
        fragment_number=fragment >> 1,
        version=flags >> 4,
    )
    tlvs: list[TLV] = []
    with r.restrict_to(length, "MIH payload"):
        while not r.at_end():
            tlv_type = TLVType(r.pull_u8("TLV type"))
            value_length = decode_length(r, f"TLV {tlv_type.name} length")
            tlvs.append(TLV(tlv_type, r.pull_bytes(value_length, f"TLV {tlv_type.name} value")))
    r.expect_end("MIH frame")
    return Frame(header, tuple(tlvs))


def _decode_mihf_id(value: bytes, base: int) -> bytes:
    r = Reader(value, base=base)
    out = _pull_octet_string(r, "MIHF_ID")
    r.expect_end("MIHF_ID")
    # MIHF_ID = OCTET_STRING of at most 253 octets (802.21-2008 F.3.11): an NAI or FQDN; zero length when the
    # destination is not known yet (802.21-2008 §8.3.1, e.g. MIH_Capability_Discover.request)
    if len(out) > 253:
        raise DecodeError(f"MIHF_ID of {len(out)} octets", field="MIHF_ID", offset=base)
    return out
