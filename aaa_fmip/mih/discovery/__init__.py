"""Mobility Server (MoS) discovery: DHCPv4/DHCPv6 options (RFC 5678) and DNS NAPTR/SRV (RFC 5679).

Pure codecs first (no IO, only :class:`~aaa_fmip.errors.DecodeError` escapes a decoder):

* DHCPv4 OPTION-IPv4_Address-MoS (139) and OPTION-IPv4_FQDN-MoS (140), RFC 5678 §3: sub-options
  ``code(1) len(1) value``; a value longer than 255 octets is split over several instances of the option and
  concatenated again by the receiver (RFC 3396 §5-§7).
* DHCPv6 OPTION_MoS_ADDRESS (54) and OPTION_MoS_DOMAIN_NAME_LIST (55), RFC 5678 §4: sub-options
  ``code(2) len(2) value``.
* Sub-option codes 1 IS, 2 CS, 3 ES (RFC 5678 §3 and §4; unknown codes are kept). A sub-option of length 0
  says "no server of this type" and decodes to an empty tuple. FQDNs use the uncompressed DNS encoding of RFC
  3315 §8 (RFC 8415 §10), written by dnspython.
* The two DHCP messages a node needs to ask for them: DHCPINFORM (RFC 2131 §3.4, with the options in the
  Parameter Request List, RFC 2132 §9.8) and the DHCPv6 Information-Request (RFC 8415 §18.2.6, Option Request
  Option). No maintained Python DHCP client asks for arbitrary options without a full lease machine, and these
  two exchanges are a few dozen lines; they are written here.

Then RFC 5679 resolution: :func:`resolution` is a generator that yields the DNS queries it needs and receives
their answers (sans IO); it follows NAPTR ``MIHIS+M2T``/``+M2U`` (flags "s", empty regexp, order then
preference, RFC 3958 §2.2), then SRV (priority, then weight, RFC 2782), then AAAA/A, and without NAPTR falls
back to SRV ``_MIHIS._tcp.<domain>`` / ``_udp``. :func:`resolve_mos` drives it with dnspython's resolver; the
``dhcpv4_inform`` / ``dhcpv6_information_request`` adapters send the DHCP messages over UDP.
"""

from __future__ import annotations

from aaa_fmip.mih.discovery.dhcp import (
    DhcpMosInfo,
    build_dhcpinform,
    build_information_request,
    decode_dhcpv4_mos_addresses,
    decode_dhcpv4_mos_domains,
    decode_dhcpv6_mos_addresses,
    decode_dhcpv6_mos_domains,
    decode_domain_list,
    dhcpv4_inform,
    dhcpv4_options,
    dhcpv6_information_request,
    dhcpv6_options,
    encode_dhcpv4_mos_addresses,
    encode_dhcpv4_mos_domains,
    encode_dhcpv4_option,
    encode_dhcpv6_mos_addresses,
    encode_dhcpv6_mos_domains,
    encode_dhcpv6_option,
    encode_domain_list,
    parse_dhcpv4_reply,
    parse_dhcpv6_reply,
)
from aaa_fmip.mih.discovery.dns import (
    Answer,
    MosEndpoint,
    Naptr,
    Query,
    Service,
    Srv,
    Transport,
    order_srv,
    resolution,
    resolve_mos,
    select_naptr,
)
from aaa_fmip.mih.discovery.types import (
    DHCPV4_MOS_ADDRESS,
    DHCPV4_MOS_FQDN,
    DHCPV6_MOS_ADDRESS,
    DHCPV6_MOS_DOMAIN_LIST,
    MIH_PORT,
    DiscoveryError,
    IPAddress,
    MosAddresses,
    MosDomains,
    ServiceType,
)

__all__ = [
    "DHCPV4_MOS_ADDRESS",
    "DHCPV4_MOS_FQDN",
    "DHCPV6_MOS_ADDRESS",
    "DHCPV6_MOS_DOMAIN_LIST",
    "MIH_PORT",
    "Answer",
    "DhcpMosInfo",
    "DiscoveryError",
    "IPAddress",
    "MosAddresses",
    "MosDomains",
    "MosEndpoint",
    "Naptr",
    "Query",
    "Service",
    "ServiceType",
    "Srv",
    "Transport",
    "build_dhcpinform",
    "build_information_request",
    "decode_dhcpv4_mos_addresses",
    "decode_dhcpv4_mos_domains",
    "decode_dhcpv6_mos_addresses",
    "decode_dhcpv6_mos_domains",
    "decode_domain_list",
    "dhcpv4_inform",
    "dhcpv4_options",
    "dhcpv6_information_request",
    "dhcpv6_options",
    "encode_dhcpv4_mos_addresses",
    "encode_dhcpv4_mos_domains",
    "encode_dhcpv4_option",
    "encode_dhcpv6_mos_addresses",
    "encode_dhcpv6_mos_domains",
    "encode_dhcpv6_option",
    "encode_domain_list",
    "order_srv",
    "parse_dhcpv4_reply",
    "parse_dhcpv6_reply",
    "resolution",
    "resolve_mos",
    "select_naptr",
]
