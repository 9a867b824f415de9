"""ICMPv6 FMIPv6 messages (RFC 5568 §6.1) and the ND options they carry (RFC 5568 §6.4, RFC 5269 §4, RFC 3971 §5);
the three Neighbor Discovery messages a NAR on point-to-point links meets (RS, RA, NA: RFC 4861 §4; RFC 5568
§6.3 for the UNA and the RA with NAACK), with their own ``encode_nd_message`` / ``decode_nd_message``.

``encode_icmpv6`` computes the Checksum over the IPv6 pseudo-header (RFC 4443 §2.3, Next Header 58);
``decode_icmpv6`` verifies it when it is given both addresses. Lengths and padding are computed by the
encoders and checked by the decoders, never stored. ICMPv6 messages other than RtSolPr and PrRtAdv decode to
:class:`UnknownIcmpv6Message`, ND options this module does not know to :class:`UnknownNDOption`; both
re-encode octet for octet.

Link-layer addresses (ND options 1, 2, 19) carry no length of their own: the link layer defines it
(RFC 4861 §4.6.1, RFC 5568 §6.4.3). The encoder pads with zero octets; the decoder takes an IEEE 802 48-bit
address (RFC 2464 §6) when the octets after the sixth are zero padding, an empty address when the field is
all zero and shorter than that, and otherwise the whole field.
"""

from __future__ import annotations

from aaa_fmip.wire.icmpv6.codes import (
    FmipSubtype,
    HandoverKeyAlgorithm,
    Icmpv6Type,
    IPAddressPrefixCode,
    LinkLayerAddressCode,
    NAACKStatus,
    PrRtAdvCode,
)
from aaa_fmip.wire.icmpv6.messages import (
    Icmpv6Message,
    NDMessage,
    NeighborAdvertisement,
    PrRtAdv,
    RouterAdvertisement,
    RouterSolicitation,
    RtSolPr,
    UnknownIcmpv6Message,
    decode_icmpv6,
    decode_nd_message,
    encode_icmpv6,
    encode_nd_message,
)
from aaa_fmip.wire.icmpv6.options import (
    NAACK,
    HandoverKeyReply,
    HandoverKeyRequest,
    IPAddressPrefix,
    LinkLayerAddress,
    NDOption,
    NewRouterPrefix,
    PrefixInformation,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    UnknownNDOption,
    decode_nd_options,
    encode_nd_options,
)
from aaa_fmip.wire.nd import NDOptionType
from aaa_fmip.wire.send import ICMPV6_NEXT_HEADER, CGAOption, Nonce, RSASignature, Timestamp

__all__ = [
    "ICMPV6_NEXT_HEADER",
    "NAACK",
    "CGAOption",
    "FmipSubtype",
    "HandoverKeyAlgorithm",
    "HandoverKeyReply",
    "HandoverKeyRequest",
    "IPAddressPrefix",
    "IPAddressPrefixCode",
    "Icmpv6Message",
    "Icmpv6Type",
    "LinkLayerAddress",
    "LinkLayerAddressCode",
    "NAACKStatus",
    "NDMessage",
    "NDOption",
    "NDOptionType",
    "NeighborAdvertisement",
    "NewRouterPrefix",
    "Nonce",
    "PrRtAdv",
    "PrRtAdvCode",
    "PrefixInformation",
    "RSASignature",
    "RouterAdvertisement",
    "RouterSolicitation",
    "RtSolPr",
    "SourceLinkLayerAddress",
    "TargetLinkLayerAddress",
    "Timestamp",
    "UnknownIcmpv6Message",
    "UnknownNDOption",
    "decode_icmpv6",
    "decode_nd_message",
    "decode_nd_options",
    "encode_icmpv6",
    "encode_nd_message",
    "encode_nd_options",
]
