"""Value codecs: MIHF identifiers, transport and link addresses, Information Elements (802.21-2008 clause 6)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader, Writer
from aaa_fmip.wire.mih.codes import (
    _ADDRESS_FAMILY_802,
    _ADDRESS_FAMILY_IPV4,
    _ADDRESS_FAMILY_IPV6,
    IEType,
    IPAddress,
    IPNetwork,
    LinkAddressKind,
)
from aaa_fmip.wire.mih.frame import _check_range, _pull_octet_string, _push_octet_string, decode_length, encode_length

# --- value codecs --------------------------------------------------------------------------------------------


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
