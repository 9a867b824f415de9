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

import dataclasses
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import OpenIntEnum, Reader, Writer

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
]

MIH_PORT = 4551  # IANA "ieee-mih", UDP and TCP (RFC 5677)
MIH_VERSION = 1  # 802.21-2008 clause 8: the version of this standard
HEADER_LENGTH = 8
MAX_PAYLOAD_LENGTH = 0xFFFF  # 16-bit Variable Payload Length
_MAX_LENGTH_OCTETS = 4  # a length beyond 2**32 cannot occur inside a 16-bit payload; refuse it early


class ServiceId(OpenIntEnum):
    """MIH Service Identifier (802.21-2008 clause 8; Wireshark packet-mih.c ``servicevalues``)."""

    SERVICE_MANAGEMENT = 1
    EVENT = 2
    COMMAND = 3
    INFORMATION = 4


class Opcode(OpenIntEnum):
    """MIH Opcode (802.21-2008 clause 8; packet-mih.c ``opcodevalues``)."""

    CONFIRM = 0
    REQUEST = 1
    RESPONSE = 2
    INDICATION = 3


class ServiceManagementAction(OpenIntEnum):
    """AIDs of the service management service (802.21-2008 Table L.1; packet-mih.c ``serv_act_id_values``)."""

    CAPABILITY_DISCOVER = 1
    REGISTER = 2
    DEREGISTER = 3
    EVENT_SUBSCRIBE = 4
    EVENT_UNSUBSCRIBE = 5


class InformationAction(OpenIntEnum):
    """AIDs of the information service (802.21-2008 Table L.1; packet-mih.c ``info_act_id_values``)."""

    GET_INFORMATION = 1
    PUSH_INFORMATION = 2


class TLVType(OpenIntEnum):
    """TLV type values (802.21-2008 Table L.2; the ``#define``s at the top of packet-mih.c)."""

    SOURCE_MIHF_ID = 1
    DESTINATION_MIHF_ID = 2
    STATUS = 3
    LINK_TYPE = 4
    MIH_EVENT_LIST = 5
    MIH_COMMAND_LIST = 6
    IS_QUERY_TYPE_LIST = 7
    TRANSPORT_OPTION_LIST = 8
    LINK_ADDRESS_LIST = 9
    MBB_HANDOVER_SUPPORT = 10
    REGISTER_REQUEST_CODE = 11
    VALID_TIME_INTERVAL = 12
    LINK_IDENTIFIER = 13
    NEW_LINK_IDENTIFIER = 14
    OLD_ACCESS_ROUTER = 15
    NEW_ACCESS_ROUTER = 16
    IP_RENEWAL_FLAG = 17
    MOBILITY_MANAGEMENT_SUPPORT = 18
    IP_ADDRESS_CONFIGURATION_METHODS = 19
    LINK_DOWN_REASON = 20
    TIMER_INTERVAL = 21
    LINK_GOING_DOWN_REASON = 22
    LINK_PARAMETER_REPORT_LIST = 23
    DEVICE_STATES_REQUEST = 24
    LINK_IDENTIFIER_LIST = 25
    DEVICE_STATES_RESPONSE_LIST = 26
    GET_STATUS_REQUEST_SET = 27
    GET_STATUS_RESPONSE_LIST = 28
    CONFIGURE_REQUEST_LIST = 29
    CONFIGURE_RESPONSE_LIST = 30
    LIST_OF_LINK_POA_LIST = 31
    PREFERRED_LINK_LIST = 32
    HANDOVER_RESOURCE_QUERY_LIST = 33
    HANDOVER_STATUS = 34
    ACCESS_ROUTER_ADDRESS = 35
    DHCP_SERVER_ADDRESS = 36
    FA_ADDRESS = 37
    LINK_ACTIONS_LIST = 38
    LINK_ACTIONS_RESULT_LIST = 39
    HANDOVER_RESULT = 40
    RESOURCE_STATUS = 41
    RESOURCE_RETENTION_STATUS = 42
    INFO_QUERY_BINARY_DATA_LIST = 43
    INFO_QUERY_RDF_DATA_LIST = 44
    INFO_QUERY_RDF_SCHEMA_URL = 45
    INFO_QUERY_RDF_SCHEMA_LIST = 46
    MAX_RESPONSE_SIZE = 47
    INFO_RESPONSE_BINARY_DATA_LIST = 48
    INFO_RESPONSE_RDF_DATA_LIST = 49
    INFO_RESPONSE_RDF_SCHEMA_URL_LIST = 50
    INFO_RESPONSE_RDF_SCHEMA_LIST = 51
    MOBILE_NODE_MIHF_ID = 52
    QUERY_RESOURCE_REPORT_FLAG = 53
    EVENT_CONFIGURATION_INFO_LIST = 54
    TARGET_NETWORK_INFO = 55
    LIST_OF_TARGET_NETWORK_INFO = 56
    ASSIGNED_RESOURCE_SET = 57
    LINK_DETECTED_INFO_LIST = 58
    MN_LINK_ID = 59
    POA = 60
    UNAUTHENTICATED_INFORMATION_REQUEST = 61
    NETWORK_TYPE = 62
    REQUESTED_RESOURCE_SET = 63
    VENDOR_SPECIFIC = 100


class Status(OpenIntEnum):
    """STATUS (802.21-2008 Annex F, data type STATUS; the values packet-mih.c names in ``status_types``)."""

    SUCCESS = 0
    UNSPECIFIED_FAILURE = 1
    REJECTED = 2
    AUTHORIZATION_FAILURE = 3
    NETWORK_ERROR = 4


class RegisterRequestCode(OpenIntEnum):
    """REG_REQUEST_CODE (802.21-2008 Annex F: 0 Registration, 1 Re-Registration; packet-mih.c
    ``reg_request_code_vals``)."""

    REGISTRATION = 0
    RE_REGISTRATION = 1


class TransportSupport(OpenIntEnum):
    """TRANS_LIST bits (BITMAP(16), bit 0 the most significant; packet-mih.c masks 0x8000 / 0x4000)."""

    UDP = 0x8000
    TCP = 0x4000


class ISQueryType(OpenIntEnum):
    """Bit numbers of IQ_TYPE_LST (BITMAP(64), bit 0 the most significant; 802.21-2008 Annex F). The numbering
    follows Wireshark's packet-mih.c, which names bits 0-28 (``IQ_*_MASK`` over the first 32 bits)."""

    BINARY_DATA = 0
    RDF_DATA = 1
    RDF_SCHEMA_URL = 2
    RDF_SCHEMA = 3
    IE_NETWORK_TYPE = 4
    IE_OPERATOR_ID = 5
    IE_SERVICE_PROVIDER_ID = 6
    IE_COUNTRY_CODE = 7
    IE_NETWORK_ID = 8
    IE_NETWORK_AUX_ID = 9
    IE_ROAMING_PARTNERS = 10
    IE_COST = 11
    IE_NETWORK_QOS = 12
    IE_NETWORK_DATA_RATE = 13
    IE_NET_REGULAT_DOMAIN = 14
    IE_NET_FREQUENCY_BANDS = 15
    IE_NET_IP_CFG_METHODS = 16
    IE_NET_CAPABILITIES = 17
    IE_NET_SUPPORTED_LCP = 18
    IE_NET_MOB_MGMT_PROT = 19
    IE_NET_EMSERV_PROXY = 20
    IE_NET_IMS_PROXY_CSCF = 21
    IE_NET_MOBILE_NETWORK = 22
    IE_POA_LINK_ADDR = 23
    IE_POA_LOCATION = 24
    IE_POA_CHANNEL_RANGE = 25
    IE_POA_SYSTEM_INFO = 26
    IE_POA_SUBNET_INFO = 27
    IE_POA_IP_ADDR = 28

    @staticmethod
    def bitmap(bits: Sequence[ISQueryType]) -> int:
        """The 64-bit value of IQ_TYPE_LST with ``bits`` set."""
        out = 0
        for bit in bits:
            out |= 1 << (63 - int(bit))
        return out


class IEType(OpenIntEnum):
    """Information Element types (802.21-2008 clause 6; the values ODTONE's ``information_elements.hpp``
    registers). IS query type bits are a separate BITMAP (TLV 7); these are the 4-octet IE Type fields."""

    NETWORK_TYPE = 0x10000000
    OPERATOR_ID = 0x10000001
    SERVICE_PROVIDER_ID = 0x10000002
    COUNTRY_CODE = 0x10000003
    NETWORK_ID = 0x10000100
    NETWORK_AUX_ID = 0x10000101
    ROAMING_PARTNERS = 0x10000102
    COST = 0x10000103
    NETWORK_QOS = 0x10000105
    NETWORK_DATA_RATE = 0x10000106
    NET_REGULAT_DOMAIN = 0x10000107
    NET_FREQUENCY_BANDS = 0x10000108
    NET_IP_CFG_METHODS = 0x10000109
    NET_CAPABILITIES = 0x1000010A
    NET_SUPPORTED_LCP = 0x1000010B
    NET_MOB_MGMT_PROT = 0x1000010C
    NET_EMSERV_PROXY = 0x1000010D
    NET_IMS_PROXY_CSCF = 0x1000010E
    NET_MOBILE_NETWORK = 0x1000010F
    POA_LINK_ADDR = 0x10000200
    POA_LOCATION = 0x10000201
    POA_CHANNEL_RANGE = 0x10000202
    POA_SYSTEM_INFO = 0x10000203
    POA_SUBNET_INFO = 0x10000204
    POA_IP_ADDR = 0x10000205
    CONTAINER_LIST_OF_NETWORKS = 0x10000300
    CONTAINER_NETWORK = 0x10000301
    CONTAINER_POA = 0x10000302


class LinkAddressKind(OpenIntEnum):
    """LINK_ADDR CHOICE selector (802.21-2008 Annex F; packet-mih.c ``link_addr_types``, ODTONE ``address.hpp``)."""

    MAC = 0
    CELL_ID_3G = 1
    CELL_ID_2G = 2
    ADDR_3GPP = 3
    ADDR_3GPP2 = 4
    OTHER_L2 = 5


_ADDRESS_FAMILY_IPV4 = 1  # IANA Address Family Numbers, used by TRANSPORT_ADDR (802.21-2008 Annex F)
_ADDRESS_FAMILY_IPV6 = 2
_ADDRESS_FAMILY_802 = 6

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


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


# --- value codecs --------------------------------------------------------------------------------------------


def _decode_mihf_id(value: bytes, base: int) -> bytes:
    r = Reader(value, base=base)
    out = _pull_octet_string(r, "MIHF_ID")
    r.expect_end("MIHF_ID")
    # MIHF_ID = OCTET_STRING of at most 253 octets (802.21-2008 F.3.11): an NAI or FQDN; zero length when the
    # destination is not known yet (802.21-2008 §8.3.1, e.g. MIH_Capability_Discover.request)
    if len(out) > 253:
        raise DecodeError(f"MIHF_ID of {len(out)} octets", field="MIHF_ID", offset=base)
    return out


def _push_transport_addr(w: Writer, family: int, address: bytes) -> None:
    w.push_u16(family)
    _push_octet_string(w, address)


def _push_ip(w: Writer, address: IPAddress) -> None:
    family = _ADDRESS_FAMILY_IPV4 if address.version == 4 else _ADDRESS_FAMILY_IPV6
    _push_transport_addr(w, family, address.packed)


def _pull_ip(r: Reader, field: str) -> IPAddress:
    at = r.offset
    family = r.pull_u16(field)
    raw = _pull_octet_string(r, field)
    if family == _ADDRESS_FAMILY_IPV4 and len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    if family == _ADDRESS_FAMILY_IPV6 and len(raw) == 16:
        return ipaddress.IPv6Address(raw)
    raise DecodeError(f"IP_ADDR family {family} with {len(raw)} octets", field=field, offset=at)


@dataclass(frozen=True)
class LinkAddress:
    """LINK_ADDR (802.21-2008 Annex F): a CHOICE. ``data`` is the MAC address for ``MAC``, the 7 octets
    PLMN_ID|LAC|CI or PLMN_ID|CELL_ID for the cell ids, and the OCTET_STRING's octets for the others."""

    kind: LinkAddressKind
    data: bytes

    @classmethod
    def mac(cls, address: bytes | str) -> LinkAddress:
        raw = bytes.fromhex(address.replace(":", "").replace("-", "")) if isinstance(address, str) else address
        return cls(LinkAddressKind.MAC, raw)

    def __str__(self) -> str:
        if self.kind == LinkAddressKind.MAC:
            return ":".join(f"{b:02x}" for b in self.data)
        return f"{self.kind.name}:{self.data.hex()}"


_CELL_ID_LENGTH = 7


def _push_link_addr(w: Writer, address: LinkAddress) -> None:
    w.push_u8(int(address.kind))
    if address.kind == LinkAddressKind.MAC:
        _push_transport_addr(w, _ADDRESS_FAMILY_802, address.data)
    elif address.kind in (LinkAddressKind.CELL_ID_3G, LinkAddressKind.CELL_ID_2G):
        if len(address.data) != _CELL_ID_LENGTH:
            raise ValueError("a cell id is 7 octets")
        w.push_bytes(address.data)
    else:
        _push_octet_string(w, address.data)


def _pull_link_addr(r: Reader, field: str) -> LinkAddress:
    at = r.offset
    kind = LinkAddressKind(r.pull_u8(field))
    if kind == LinkAddressKind.MAC:
        family = r.pull_u16(field)
        if family != _ADDRESS_FAMILY_802:
            raise DecodeError(f"MAC_ADDR with address family {family}", field=field, offset=at)
        return LinkAddress(kind, _pull_octet_string(r, field))
    if kind in (LinkAddressKind.CELL_ID_3G, LinkAddressKind.CELL_ID_2G):
        return LinkAddress(kind, r.pull_bytes(_CELL_ID_LENGTH, field))
    if kind in (LinkAddressKind.ADDR_3GPP, LinkAddressKind.ADDR_3GPP2, LinkAddressKind.OTHER_L2):
        return LinkAddress(kind, _pull_octet_string(r, field))
    raise DecodeError(f"unknown LINK_ADDR selector {int(kind)}", field=field, offset=at)


def _pull_choice(r: Reader, field: str) -> bool:
    """A CHOICE(NULL, X) selector: False for NULL, True for X."""
    at = r.offset
    selector = r.pull_u8(field)
    if selector > 1:
        raise DecodeError(f"CHOICE selector {selector}", field=field, offset=at)
    return selector == 1


# --- Information Elements (802.21-2008 clause 6) ---------------------------------------------------------------


@dataclass(frozen=True)
class InformationElement:
    """One IE: 4-octet type, 802.21 length, raw value (containers hold further IEs)."""

    type: IEType
    value: bytes


def encode_information_elements(ies: Sequence[InformationElement]) -> bytes:
    w = Writer()
    for ie in ies:
        _check_range(int(ie.type), 32, "IE type")
        w.push_u32(int(ie.type))
        _push_octet_string(w, ie.value)
    return w.getvalue()


def _pull_ies(r: Reader, count: int | None, field: str) -> tuple[InformationElement, ...]:
    out: list[InformationElement] = []
    while (len(out) < count) if count is not None else not r.at_end():
        ie_type = IEType(r.pull_u32(f"{field} IE type"))
        out.append(InformationElement(ie_type, _pull_octet_string(r, f"{field} IE {ie_type.name}")))
    return tuple(out)


def decode_information_elements(data: bytes, *, base: int = 0) -> tuple[InformationElement, ...]:
    """A sequence of IEs filling ``data`` exactly (the content of a container IE)."""
    return _pull_ies(Reader(data, base=base), None, "IE container")


@dataclass(frozen=True)
class PoAContainer:
    """IE_CONTAINER_POA with the IP-level facts of one point of attachment (802.21-2008 clause 6):
    IE_POA_LINK_ADDR, IE_POA_SUBNET_INFO (one per prefix), IE_POA_IP_ADDR (the access router's address).
    Other IEs inside the container are kept in ``other`` and re-encoded after these."""

    link_address: LinkAddress | None = None
    subnets: tuple[IPNetwork, ...] = ()
    ip_addresses: tuple[IPAddress, ...] = ()
    other: tuple[InformationElement, ...] = ()

    def to_ie(self) -> InformationElement:
        ies: list[InformationElement] = []
        if self.link_address is not None:
            w = Writer()
            _push_link_addr(w, self.link_address)
            ies.append(InformationElement(IEType.POA_LINK_ADDR, w.getvalue()))
        for subnet in self.subnets:
            w = Writer()
            w.push_u8(subnet.prefixlen)  # IP_SUBNET_INFO = SEQUENCE(IP_PREFIX_LEN, IP_ADDR)
            _push_ip(w, subnet.network_address)
            ies.append(InformationElement(IEType.POA_SUBNET_INFO, w.getvalue()))
        for address in self.ip_addresses:
            w = Writer()
            _push_ip(w, address)
            ies.append(InformationElement(IEType.POA_IP_ADDR, w.getvalue()))
        ies.extend(self.other)
        return InformationElement(IEType.CONTAINER_POA, encode_information_elements(ies))

    @classmethod
    def from_ie(cls, ie: InformationElement) -> PoAContainer:
        if ie.type != IEType.CONTAINER_POA:
            raise DecodeError(f"IE {ie.type.name} is not IE_CONTAINER_POA", field="IE_CONTAINER_POA", offset=0)
        link: LinkAddress | None = None
        subnets: list[IPNetwork] = []
        addresses: list[IPAddress] = []
        other: list[InformationElement] = []
        for inner in decode_information_elements(ie.value):
            r = Reader(inner.value)
            if inner.type == IEType.POA_LINK_ADDR and link is None:
                link = _pull_link_addr(r, "IE_POA_LINK_ADDR")
            elif inner.type == IEType.POA_SUBNET_INFO:
                at = r.offset
                prefix_length = r.pull_u8("IP_PREFIX_LEN")
                network = _pull_ip(r, "IE_POA_SUBNET_INFO")
                try:
                    subnets.append(ipaddress.ip_network((network, prefix_length)))
                except ValueError as exc:
                    raise DecodeError(str(exc), field="IE_POA_SUBNET_INFO", offset=at) from None
            elif inner.type == IEType.POA_IP_ADDR:
                addresses.append(_pull_ip(r, "IE_POA_IP_ADDR"))
            else:
                other.append(inner)
                continue
            r.expect_end(inner.type.name)
        return cls(link, tuple(subnets), tuple(addresses), tuple(other))


@dataclass(frozen=True)
class IQBinData:
    """IQ_BIN_DATA (802.21-2008 Annex F): SEQUENCE of optional query restrictions. The querier's location is
    given by a LINK_ADDR (the PoA it is attached to) and a neighbourhood radius in metres; a querier LOCATION
    (civic or geospatial) is not supported and is a DecodeError."""

    querier_link_address: LinkAddress | None = None
    neighbour_radius: int | None = None  # NGHB_RADIUS, metres
    network_types: int | None = None  # NET_TYPE_INC, BITMAP(32)
    networks: tuple[bytes, ...] | None = None  # NETWK_INC = LIST(NETWORK_ID)
    report_template: tuple[IEType, ...] | None = None  # RPT_TEMPL = LIST(IE_TYPE)
    report_limit: tuple[int, int] | None = None  # RPT_LIMIT = (max IEs, start entry)
    currency: bytes | None = None  # CURR_PREF, 3 octets (ISO 4217)

    def encode(self, w: Writer) -> None:
        located = self.querier_link_address is not None or self.neighbour_radius is not None
        w.push_u8(int(located))
        if located:
            w.push_u8(0)  # LOCATION: NULL
            w.push_u8(int(self.querier_link_address is not None))
            if self.querier_link_address is not None:
                _push_link_addr(w, self.querier_link_address)
            w.push_u8(int(self.neighbour_radius is not None))
            if self.neighbour_radius is not None:
                w.push_u32(self.neighbour_radius)
        w.push_u8(int(self.network_types is not None))
        if self.network_types is not None:
            w.push_u32(self.network_types)
        w.push_u8(int(self.networks is not None))
        if self.networks is not None:
            w.push_bytes(encode_length(len(self.networks)))
            for network in self.networks:
                _push_octet_string(w, network)
        w.push_u8(int(self.report_template is not None))
        if self.report_template is not None:
            w.push_bytes(encode_length(len(self.report_template)))
            for ie_type in self.report_template:
                w.push_u32(int(ie_type))
        w.push_u8(int(self.report_limit is not None))
        if self.report_limit is not None:
            w.push_u16(self.report_limit[0])
            w.push_u16(self.report_limit[1])
        w.push_u8(int(self.currency is not None))
        if self.currency is not None:
            if len(self.currency) != 3:
                raise ValueError("CURR_PREF is 3 octets")
            w.push_bytes(self.currency)

    @classmethod
    def decode(cls, r: Reader) -> IQBinData:
        link: LinkAddress | None = None
        radius: int | None = None
        if _pull_choice(r, "QUERIER_LOC"):
            if _pull_choice(r, "QUERIER_LOC location"):
                raise DecodeError("a querier LOCATION is not supported", field="QUERIER_LOC", offset=r.offset)
            if _pull_choice(r, "QUERIER_LOC link address"):
                link = _pull_link_addr(r, "QUERIER_LOC link address")
            if _pull_choice(r, "NGHB_RADIUS"):
                radius = r.pull_u32("NGHB_RADIUS")
        network_types = r.pull_u32("NET_TYPE_INC") if _pull_choice(r, "NET_TYPE_INC") else None
        networks: tuple[bytes, ...] | None = None
        if _pull_choice(r, "NETWK_INC"):
            count = decode_length(r, "NETWK_INC")
            networks = tuple(_pull_octet_string(r, "NETWORK_ID") for _ in range(count))
        template: tuple[IEType, ...] | None = None
        if _pull_choice(r, "RPT_TEMPL"):
            count = decode_length(r, "RPT_TEMPL")
            template = tuple(IEType(r.pull_u32("IE_TYPE")) for _ in range(count))
        limit = (r.pull_u16("RPT_LIMIT"), r.pull_u16("RPT_LIMIT")) if _pull_choice(r, "RPT_LIMIT") else None
        currency = r.pull_bytes(3, "CURR_PREF") if _pull_choice(r, "CURR_PREF") else None
        return cls(link, radius, network_types, networks, template, limit, currency)


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
