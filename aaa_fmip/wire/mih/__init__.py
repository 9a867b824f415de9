"""IEEE 802.21 (MIH) protocol frames and the TLVs of the messages an MIH Information Server needs.

Hand-written because no maintained Python library encodes 802.21 (ODTONE is C++, Wireshark only dissects).
Carried over UDP/TCP port 4551 by RFC 5677; the transport rules live in :mod:`aaa_fmip.mih.transport`.

MIH protocol header (IEEE 802.21-2008 clause 8; masks as in Wireshark's ``packet-mih.c``)::

    octet 0    Version(4) | ACK-Req | ACK-Rsp | UIR | M (more fragments)
    octet 1    FN (fragment number, 7 bits) | Rsvd1 (1)
    octets 2-3 MID = SID(4) | Opcode(2) | AID(10)
    octets 4-5 Rsvd2(4) | TID(12)
    octets 6-7 Variable Payload Length
    payload    TLVs: Source MIHF-ID (type 1), Destination MIHF-ID (type 2), then the message's TLVs in order

TLV (802.21-2008 clause 8)::

    Type(1) | Length | Value
    Length: a value of at most 128 octets has a one-octet Length holding it (so 0x80 means exactly 128); a
    longer value has 0x80|k followed by k octets (big-endian) holding (length - 128).

The same length rule encodes the element count of a LIST and the size of an OCTET_STRING (802.21-2008 Annex F),
and the Length of an Information Element (4-octet IE type, 802.21-2008 clause 6). The decoder accepts only the
shortest form, so every decoded frame re-encodes to the same octets; reserved bits are sent as zero and ignored
on receipt. Unknown TLVs, Information Elements and code points are kept and re-encoded byte for byte.

Two levels: :class:`Frame` (header + raw :class:`TLV` list, enough for the transport) and the typed messages
(:class:`CapabilityDiscoverRequest` ...), each declared by one table of its TLVs that drives both directions.
"""

from __future__ import annotations

from aaa_fmip.wire.mih.codes import (
    HEADER_LENGTH,
    MAX_PAYLOAD_LENGTH,
    MIH_PORT,
    MIH_VERSION,
    IEType,
    InformationAction,
    IPAddress,
    IPNetwork,
    ISQueryType,
    LinkAddressKind,
    Opcode,
    RegisterRequestCode,
    ServiceId,
    ServiceManagementAction,
    Status,
    TLVType,
    TransportSupport,
)
from aaa_fmip.wire.mih.frame import (
    TLV,
    Frame,
    Header,
    decode_frame,
    decode_length,
    encode_frame,
    encode_length,
    frame_length,
)
from aaa_fmip.wire.mih.messages import (
    CapabilityDiscoverRequest,
    CapabilityDiscoverResponse,
    DeRegisterRequest,
    DeRegisterResponse,
    GetInformationRequest,
    GetInformationResponse,
    MIHMessage,
    RegisterRequest,
    RegisterResponse,
    UnknownMessage,
    decode_message,
    encode_message,
    message_class,
    replace,
)
from aaa_fmip.wire.mih.values import (
    InformationElement,
    IQBinData,
    LinkAddress,
    PoAContainer,
    decode_information_elements,
    encode_information_elements,
)

__all__ = [
    "HEADER_LENGTH",
    "MAX_PAYLOAD_LENGTH",
    "MIH_PORT",
    "MIH_VERSION",
    "TLV",
    "CapabilityDiscoverRequest",
    "CapabilityDiscoverResponse",
    "DeRegisterRequest",
    "DeRegisterResponse",
    "Frame",
    "GetInformationRequest",
    "GetInformationResponse",
    "Header",
    "IEType",
    "IPAddress",
    "IPNetwork",
    "IQBinData",
    "ISQueryType",
    "InformationAction",
    "InformationElement",
    "LinkAddress",
    "LinkAddressKind",
    "MIHMessage",
    "Opcode",
    "PoAContainer",
    "RegisterRequest",
    "RegisterRequestCode",
    "RegisterResponse",
    "ServiceId",
    "ServiceManagementAction",
    "Status",
    "TLVType",
    "TransportSupport",
    "UnknownMessage",
    "decode_frame",
    "decode_information_elements",
    "decode_length",
    "decode_message",
    "encode_frame",
    "encode_information_elements",
    "encode_length",
    "encode_message",
    "frame_length",
    "message_class",
    "replace",
]
