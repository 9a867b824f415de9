"""Typed MIH messages: the TLV tables of the messages the Information Server speaks, encoded and decoded."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader, Writer
from aaa_fmip.wire.mih.codes import (
    HEADER_LENGTH,
    InformationAction,
    Opcode,
    RegisterRequestCode,
    ServiceId,
    ServiceManagementAction,
    Status,
    TLVType,
)
from aaa_fmip.wire.mih.frame import (
    TLV,
    Frame,
    Header,
    _decode_mihf_id,
    decode_frame,
    decode_length,
    encode_frame,
    encode_length,
)
from aaa_fmip.wire.mih.values import (
    InformationElement,
    IQBinData,
    _pull_ies,
    encode_information_elements,
)

# --- TLV value codecs used by the message tables --------------------------------------------------------------


@dataclass(frozen=True)
class _Codec:
    encode: Callable[[Any], bytes]
    decode: Callable[[Reader], Any]


def _uint(size: int, wrap: Callable[[int], Any] = int) -> _Codec:
    return _Codec(
        lambda v: int(v).to_bytes(size, "big"),
        lambda r: wrap(int.from_bytes(r.pull_bytes(size, "value"), "big")),
    )


def _mihf_id_encode(value: bytes) -> bytes:
    if len(value) > 253:
        raise ValueError("an MIHF_ID is at most 253 octets")
    return encode_length(len(value)) + value


def _mihf_id_decode(r: Reader) -> bytes:
    at = r.offset
    return _decode_mihf_id(r.pull_rest(), at)


def _list_codec(push: Callable[[Writer, Any], None], pull: Callable[[Reader], Any]) -> _Codec:
    def encode(items: Sequence[Any]) -> bytes:
        w = Writer()
        w.push_bytes(encode_length(len(items)))
        for item in items:
            push(w, item)
        return w.getvalue()

    def decode(r: Reader) -> tuple[Any, ...]:
        count = decode_length(r, "LIST")
        return tuple(pull(r) for _ in range(count))

    return _Codec(encode, decode)


def _push_ir_bin_data(w: Writer, ies: Sequence[InformationElement]) -> None:
    w.push_bytes(encode_length(len(ies)))  # IR_BIN_DATA = LIST(INFO_ELEMENT)
    w.push_bytes(encode_information_elements(ies))


def _pull_ir_bin_data(r: Reader) -> tuple[InformationElement, ...]:
    return _pull_ies(r, decode_length(r, "IR_BIN_DATA"), "IR_BIN_DATA")


_MIHF_ID = _Codec(_mihf_id_encode, _mihf_id_decode)
_RAW = _Codec(bytes, lambda r: r.pull_rest())
_STATUS = _uint(1, Status)
_U8 = _uint(1)
_U16 = _uint(2)
_U32 = _uint(4)
_U64 = _uint(8)
_REQUEST_CODE = _uint(1, RegisterRequestCode)
_IQ_BIN_DATA_LIST = _list_codec(lambda w, q: q.encode(w), IQBinData.decode)
_IR_BIN_DATA_LIST = _list_codec(_push_ir_bin_data, _pull_ir_bin_data)


# --- typed messages ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    tlv: TLVType
    codec: _Codec
    required: bool


def _f(name: str, tlv: TLVType, codec: _Codec, *, required: bool = False) -> _Field:
    return _Field(name, tlv, codec, required)


@dataclass(frozen=True, kw_only=True)
class MIHMessage:
    """Common part of every typed message: identifiers, the header flags a sender may set, and the TLVs this
    codec does not interpret (kept in order and re-encoded after the known ones)."""

    SERVICE_ID: ClassVar[ServiceId]
    OPCODE: ClassVar[Opcode]
    ACTION_ID: ClassVar[int]
    TLVS: ClassVar[tuple[_Field, ...]] = ()

    source: bytes  # Source MIHF-ID (TLV 1)
    destination: bytes  # Destination MIHF-ID (TLV 2)
    transaction_id: int = 0
    ack_req: bool = False
    ack_rsp: bool = False
    uir: bool = False
    extra_tlvs: tuple[TLV, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CapabilityDiscoverRequest(MIHMessage):
    """MIH_Capability_Discover.request (§8.6.1.1)."""

    SERVICE_ID = ServiceId.SERVICE_MANAGEMENT
    OPCODE = Opcode.REQUEST
    ACTION_ID = ServiceManagementAction.CAPABILITY_DISCOVER
    TLVS = (
        _f("link_addresses", TLVType.LINK_ADDRESS_LIST, _RAW),
        _f("events", TLVType.MIH_EVENT_LIST, _U32),
        _f("commands", TLVType.MIH_COMMAND_LIST, _U32),
        _f("query_types", TLVType.IS_QUERY_TYPE_LIST, _U64),
        _f("transports", TLVType.TRANSPORT_OPTION_LIST, _U16),
    )

    link_addresses: bytes | None = None  # LIST(NET_TYPE_ADDR), carried as its raw value (not needed by a MoS)
    events: int | None = None  # BITMAP(32)
    commands: int | None = None  # BITMAP(32)
    query_types: int | None = None  # IQ_TYPE_LST, BITMAP(64): ISQueryType.bitmap(...)
    transports: int | None = None  # TRANS_LIST, BITMAP(16): TransportSupport bits


@dataclass(frozen=True, kw_only=True)
class CapabilityDiscoverResponse(MIHMessage):
    """MIH_Capability_Discover.response (802.21-2008 clause 8)."""

    SERVICE_ID = ServiceId.SERVICE_MANAGEMENT
    OPCODE = Opcode.RESPONSE
    ACTION_ID = ServiceManagementAction.CAPABILITY_DISCOVER
    TLVS = (
        _f("status", TLVType.STATUS, _STATUS, required=True),
        *CapabilityDiscoverRequest.TLVS,
    )

    status: Status = Status.SUCCESS
    link_addresses: bytes | None = None
    events: int | None = None
    commands: int | None = None
    query_types: int | None = None
    transports: int | None = None


@dataclass(frozen=True, kw_only=True)
class RegisterRequest(MIHMessage):
    """MIH_Register.request (802.21-2008 clause 8). The LINK_ID list is carried as its raw value."""

    SERVICE_ID = ServiceId.SERVICE_MANAGEMENT
    OPCODE = Opcode.REQUEST
    ACTION_ID = ServiceManagementAction.REGISTER
    TLVS = (
        _f("link_identifiers", TLVType.LINK_IDENTIFIER_LIST, _RAW, required=True),
        _f("request_code", TLVType.REGISTER_REQUEST_CODE, _REQUEST_CODE, required=True),
    )

    link_identifiers: bytes = b"\x00"  # LIST(LINK_ID); an empty list by default
    request_code: RegisterRequestCode = RegisterRequestCode.REGISTRATION


@dataclass(frozen=True, kw_only=True)
class RegisterResponse(MIHMessage):
    """MIH_Register.response (802.21-2008 clause 8)."""

    SERVICE_ID = ServiceId.SERVICE_MANAGEMENT
    OPCODE = Opcode.RESPONSE
    ACTION_ID = ServiceManagementAction.REGISTER
    TLVS = (
        _f("status", TLVType.STATUS, _STATUS, required=True),
        _f("valid_time_interval", TLVType.VALID_TIME_INTERVAL, _U32),
    )

    status: Status = Status.SUCCESS
    valid_time_interval: int | None = None  # seconds; 0 = infinite


@dataclass(frozen=True, kw_only=True)
class DeRegisterRequest(MIHMessage):
    """MIH_DeRegister.request (802.21-2008 clause 8)."""

    SERVICE_ID = ServiceId.SERVICE_MANAGEMENT
    OPCODE = Opcode.REQUEST
    ACTION_ID = ServiceManagementAction.DEREGISTER


@dataclass(frozen=True, kw_only=True)
class DeRegisterResponse(MIHMessage):
    """MIH_DeRegister.response (802.21-2008 clause 8)."""

    SERVICE_ID = ServiceId.SERVICE_MANAGEMENT
    OPCODE = Opcode.RESPONSE
    ACTION_ID = ServiceManagementAction.DEREGISTER
    TLVS = (_f("status", TLVType.STATUS, _STATUS, required=True),)

    status: Status = Status.SUCCESS


@dataclass(frozen=True, kw_only=True)
class GetInformationRequest(MIHMessage):
    """MIH_Get_Information.request (802.21-2008 clause 8), binary queries only; RDF queries stay raw."""

    SERVICE_ID = ServiceId.INFORMATION
    OPCODE = Opcode.REQUEST
    ACTION_ID = InformationAction.GET_INFORMATION
    TLVS = (
        _f("queries", TLVType.INFO_QUERY_BINARY_DATA_LIST, _IQ_BIN_DATA_LIST),
        _f("max_response_size", TLVType.MAX_RESPONSE_SIZE, _U16),
    )

    queries: tuple[IQBinData, ...] | None = None
    max_response_size: int | None = None  # octets


@dataclass(frozen=True, kw_only=True)
class GetInformationResponse(MIHMessage):
    """MIH_Get_Information.response (802.21-2008 clause 8): one IR_BIN_DATA (a list of IEs) per query."""

    SERVICE_ID = ServiceId.INFORMATION
    OPCODE = Opcode.RESPONSE
    ACTION_ID = InformationAction.GET_INFORMATION
    TLVS = (
        _f("status", TLVType.STATUS, _STATUS, required=True),
        _f("results", TLVType.INFO_RESPONSE_BINARY_DATA_LIST, _IR_BIN_DATA_LIST),
    )

    status: Status = Status.SUCCESS
    results: tuple[tuple[InformationElement, ...], ...] | None = None


@dataclass(frozen=True, kw_only=True)
class UnknownMessage(MIHMessage):
    """A message this codec has no table for; its TLVs after the MIHF-IDs are in ``extra_tlvs``."""

    SERVICE_ID = ServiceId.SERVICE_MANAGEMENT
    OPCODE = Opcode.REQUEST
    ACTION_ID = 0

    service_id: ServiceId
    opcode: Opcode
    action_id: int


_MESSAGES: tuple[type[MIHMessage], ...] = (
    CapabilityDiscoverRequest,
    CapabilityDiscoverResponse,
    RegisterRequest,
    RegisterResponse,
    DeRegisterRequest,
    DeRegisterResponse,
    GetInformationRequest,
    GetInformationResponse,
)
_BY_MID: dict[tuple[int, int, int], type[MIHMessage]] = {
    (int(c.SERVICE_ID), int(c.OPCODE), int(c.ACTION_ID)): c for c in _MESSAGES
}


def message_class(header: Header) -> type[MIHMessage] | None:
    return _BY_MID.get((int(header.service_id), int(header.opcode), header.action_id))


def encode_message(msg: MIHMessage) -> bytes:
    """The frame of a typed message (no fragmentation: RFC 5677 transports carry whole messages)."""
    if isinstance(msg, UnknownMessage):
        sid, opcode, aid = msg.service_id, msg.opcode, msg.action_id
    else:
        sid, opcode, aid = msg.SERVICE_ID, msg.OPCODE, int(msg.ACTION_ID)
    tlvs = [
        TLV(TLVType.SOURCE_MIHF_ID, _MIHF_ID.encode(msg.source)),
        TLV(TLVType.DESTINATION_MIHF_ID, _MIHF_ID.encode(msg.destination)),
    ]
    for field in msg.TLVS:
        value = getattr(msg, field.name)
        if value is None:
            if field.required:
                raise ValueError(f"{type(msg).__name__}.{field.name} is required")
            continue
        tlvs.append(TLV(field.tlv, field.codec.encode(value)))
    tlvs.extend(msg.extra_tlvs)
    header = Header(sid, opcode, aid, msg.transaction_id, ack_req=msg.ack_req, ack_rsp=msg.ack_rsp, uir=msg.uir)
    return encode_frame(Frame(header, tuple(tlvs)))


def _tlv_offsets(frame: Frame) -> list[int]:
    """Absolute offset of each TLV's value start, for error messages."""
    offsets, at = [], HEADER_LENGTH
    for tlv in frame.tlvs:
        at += 1 + len(encode_length(len(tlv.value)))
        offsets.append(at)
        at += len(tlv.value)
    return offsets


def decode_message(data: bytes | Frame) -> MIHMessage:
    """A typed message from a frame's octets (or an already decoded Frame)."""
    frame = data if isinstance(data, Frame) else decode_frame(data)
    h = frame.header
    if h.more_fragments or h.fragment_number:
        raise DecodeError("a fragment of a message", field="MIH header", offset=1)
    offsets = _tlv_offsets(frame)
    if len(frame.tlvs) < 2 or frame.tlvs[0].type != TLVType.SOURCE_MIHF_ID:
        raise DecodeError("Source MIHF-ID TLV missing", field="MIH payload", offset=HEADER_LENGTH)
    if frame.tlvs[1].type != TLVType.DESTINATION_MIHF_ID:
        raise DecodeError("Destination MIHF-ID TLV missing", field="MIH payload", offset=offsets[0])
    source = _decode_mihf_id(frame.tlvs[0].value, offsets[0])
    destination = _decode_mihf_id(frame.tlvs[1].value, offsets[1])
    common: dict[str, Any] = {
        "source": source,
        "destination": destination,
        "transaction_id": h.transaction_id,
        "ack_req": h.ack_req,
        "ack_rsp": h.ack_rsp,
        "uir": h.uir,
    }
    cls = message_class(h)
    if cls is None:
        return UnknownMessage(
            **common, service_id=h.service_id, opcode=h.opcode, action_id=h.action_id, extra_tlvs=frame.tlvs[2:]
        )
    by_type = {int(f.tlv): f for f in cls.TLVS}
    values: dict[str, Any] = {}
    extra: list[TLV] = []
    for tlv, at in zip(frame.tlvs[2:], offsets[2:], strict=True):
        field = by_type.get(int(tlv.type))
        if field is None:
            if tlv.type in (TLVType.SOURCE_MIHF_ID, TLVType.DESTINATION_MIHF_ID):
                raise DecodeError("a second MIHF-ID TLV", field=tlv.type.name, offset=at)
            extra.append(tlv)
            continue
        if field.name in values:
            raise DecodeError("TLV repeated", field=tlv.type.name, offset=at)
        r = Reader(tlv.value, base=at)
        values[field.name] = field.codec.decode(r)
        r.expect_end(tlv.type.name)
    for field in cls.TLVS:
        if field.required and field.name not in values:
            raise DecodeError(f"required TLV {field.tlv.name} missing", field=cls.__name__, offset=HEADER_LENGTH)
    return cls(**common, **values, extra_tlvs=tuple(extra))


def replace(msg: MIHMessage, **changes: Any) -> MIHMessage:
    """``dataclasses.replace`` with the message type kept for mypy's sake."""
    return dataclasses.replace(msg, **changes)
